/**
 * One IMAP account watched for voicemail mails: a connection that opens the folder read-only
 * (EXAMINE), learns each mail once (a bounded header fetch, BODY.PEEK, never a flag change),
 * keeps what it learnt per UID under the folder's UIDVALIDITY, and after every change (IDLE,
 * the poll, a reconnect) resyncs with one FETCH of UID and FLAGS: a mail marked seen by the
 * user's mail client costs that one FETCH, not a re-parse. It reports each wanted mailbox's
 * counts after every (re)connect and whenever they or the newest message change.
 * This session never changes anything on the server: no STORE, no EXPUNGE, no MOVE, no APPEND
 * (`!heard` and `!delete` use a short read-write session of their own, mailWrite.ts).
 */
import type { ImapFlow } from "imapflow";
import type { Logger } from "matrix-appservice-bridge";
import { backoffDelay } from "../../core/backoff.js";
import { rateLimitedLog, type RateLimitedLog } from "../../util/rateLimitedLog.js";
import type { MessageInfo, MwiCounts } from "../../core/mwi.js";
import type { MailboxCredentials } from "../gateway.js";
import { createImapClient, isAuthFailure, type ServerSettings } from "./imapClient.js";
import { readMailFields } from "./mailFields.js";
import { mailboxOf, voicemailOf, type CompiledRules, type VoicemailMail } from "./voicemailRules.js";

/** Mails learnt per FETCH: bounds what one response holds (each at most maxFetchBytes). */
const FETCH_CHUNK = 50;
/** Changes within this window are one resync. */
const SETTLE_MS = 150;
const RECONNECT = { baseMs: 1_000, maxMs: 120_000 };

export interface SessionOptions {
  /** For log lines: the system and, for a per-user account, the mailbox; never a password. */
  label: string;
  server: ServerSettings;
  credentials: MailboxCredentials;
  folder: string;
  pollSeconds: number;
  maxMessages: number;
  maxFetchBytes: number;
  rules: CompiledRules;
  /** A per-user account: every voicemail in it counts for this mailbox, whatever the mail names. */
  ownMailbox?: string;
  /** Shared account: the mailboxes reported (the watched ones), also those without any mail (0 new, 0 old). */
  watched: ReadonlySet<string>;
  report(mailbox: string, counts: MwiCounts, message: MessageInfo | undefined): Promise<void>;
  log: Logger;
}

interface KnownMail {
  seen: boolean;
  deleted: boolean;
  /** Undefined: not a voicemail. */
  voicemail?: VoicemailMail;
  /** The details were read with the body (or the rules need none). */
  detailed: boolean;
}

export class MailSession {
  private client?: ImapFlow;
  private stopped = false;
  private attempt = 0;
  private uidValidity?: bigint;
  private readonly known = new Map<number, KnownMail>();
  /** What was last reported per mailbox; cleared on reconnect, so that all are reported again. */
  private readonly reported = new Map<string, string>();
  private syncing?: Promise<void>;
  private again = false;
  private settleTimer?: NodeJS.Timeout;
  private pollTimer?: NodeJS.Timeout;
  private reconnectTimer?: NodeJS.Timeout;
  private warnedTruncated = false;
  /** True once a sync has completed on the current connection. */
  private synced = false;
  private readonly syncWaiters: (() => void)[] = [];

  /** Logged in with the folder open and usable; otherwise (re)connecting. */
  get connected(): boolean {
    return this.client?.usable === true && this.synced;
  }

  /** Mails whose header (or start) was fetched and parsed, and bodies fetched for details: each mail costs one of each at most. */
  readonly stats = { mailsRead: 0, bodiesRead: 0 };

  /** Unreadable mails: anyone who can mail the account can send them, one line each would flood the log. */
  private readonly noise: RateLimitedLog;

  constructor(private readonly o: SessionOptions) {
    this.noise = rateLimitedLog((line) => o.log.warn(line));
  }

  start(): void {
    void this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.noise.flush();
    clearTimeout(this.settleTimer);
    clearInterval(this.pollTimer);
    clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = undefined;
    this.releaseWaiters();
    if (client) await client.logout().catch(() => client.close());
  }

  /** Resolves once the first sync after connecting is done; at once when it is. */
  whenSynced(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  /** Reports a mailbox again even if unchanged (a new watch wants its first report). */
  async reportNow(mailbox: string): Promise<void> {
    this.reported.delete(mailbox);
    if (this.synced) await this.sync();
  }

  /** The folder's UIDVALIDITY on the current connection: a UID means nothing under another one. */
  get uidValidityNow(): bigint | undefined {
    return this.synced ? this.uidValidity : undefined;
  }

  /** The voicemails of one mailbox as the last sync saw them (not the deleted ones), newest (highest UID) first. */
  voicemailsOf(mailbox: string): { uid: number; seen: boolean; voicemail: VoicemailMail }[] {
    const out: { uid: number; seen: boolean; voicemail: VoicemailMail }[] = [];
    for (const [uid, mail] of this.known) {
      if (mail.voicemail && !mail.deleted && mail.voicemail.mailbox === mailbox) out.push({ uid, seen: mail.seen, voicemail: mail.voicemail });
    }
    return out.sort((a, b) => b.uid - a.uid);
  }

  /** Resyncs now: another session changed flags or expunged, and the counts should follow at once. */
  async refresh(): Promise<void> {
    if (this.synced) await this.sync();
  }

  private releaseWaiters(): void {
    for (const resolve of this.syncWaiters.splice(0)) resolve();
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const log = this.o.log;
    const client = createImapClient(this.o.server, this.o.credentials, { idle: true });
    this.client = client;
    client.on("error", (err: Error) => log.warn(`${this.o.label}: IMAP connection error: ${err.message}`));
    client.on("close", () => this.onClose(client));
    for (const event of ["exists", "expunge", "flags"]) client.on(event, () => this.schedule());
    try {
      await client.connect();
      const mailbox = await client.mailboxOpen(this.o.folder, { readOnly: true });
      // EXAMINE answers [READ-ONLY]: without it nothing is read, so nothing can be changed by mistake.
      if (mailbox.readOnly !== true) throw new Error(`the server did not open ${this.o.folder} read-only`);
      this.checkUidValidity(mailbox.uidValidity);
      log.info(`${this.o.label}: connected to ${this.o.server.host}:${this.o.server.port}, ${this.o.folder} opened read-only (${mailbox.exists} mails)`);
      this.attempt = 0;
      this.reported.clear();
      clearInterval(this.pollTimer);
      this.pollTimer = setInterval(() => this.schedule(), this.o.pollSeconds * 1000);
      this.pollTimer.unref();
      await this.sync();
    } catch (err) {
      if (this.stopped) return void client.close();
      // imapflow's message is often just "Command failed": the server's own words say more.
      const { message, responseText } = err as Error & { responseText?: string };
      const why = isAuthFailure(err) ? "the server refused the login" : responseText ? `${message}: ${responseText.slice(0, 200)}` : message;
      log.warn(`${this.o.label}: IMAP ${this.o.server.host}:${this.o.server.port}: ${why}`);
      client.close();
      this.onClose(client);
    }
  }

  /** UIDs of another UIDVALIDITY name other mails: all that was learnt is void. */
  private checkUidValidity(uidValidity: bigint): void {
    if (this.uidValidity === uidValidity) return;
    if (this.uidValidity !== undefined) this.o.log.info(`${this.o.label}: UIDVALIDITY of ${this.o.folder} changed: reading it afresh`);
    this.known.clear();
    this.uidValidity = uidValidity;
  }

  private onClose(client: ImapFlow): void {
    if (this.client !== client) return;
    this.client = undefined;
    this.synced = false;
    clearInterval(this.pollTimer);
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt++, RECONNECT);
    this.o.log.info(`${this.o.label}: IMAP connection closed; reconnecting in ${Math.round(delay / 1000)} s`);
    // A watch waiting for its first report is not kept waiting for the reconnect.
    this.releaseWaiters();
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => void this.connect(), delay);
    this.reconnectTimer.unref();
  }

  private schedule(): void {
    if (this.stopped || this.settleTimer) return;
    this.settleTimer = setTimeout(() => {
      this.settleTimer = undefined;
      void this.sync();
    }, SETTLE_MS);
  }

  /** One sync at a time; a change during one makes one more. */
  private async sync(): Promise<void> {
    if (this.syncing) {
      this.again = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      do {
        this.again = false;
        const client = this.client;
        if (!client || this.stopped) break;
        try {
          await this.syncOnce(client);
          if (this.client === client && !this.synced) {
            this.synced = true;
            this.releaseWaiters();
          }
        } catch (err) {
          this.o.log.warn(`${this.o.label}: resync of ${this.o.folder} failed: ${(err as Error).message}`);
          // A broken connection, or one whose folder was closed, reconnects (and resyncs then).
          if (client.usable === false || !client.mailbox) client.close();
        }
      } while (this.again);
    })().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async syncOnce(client: ImapFlow): Promise<void> {
    const open = client.mailbox && typeof client.mailbox === "object" ? client.mailbox : undefined;
    if (!open) throw new Error(`${this.o.folder} is no longer open`);
    this.checkUidValidity(open.uidValidity);
    const exists = open.exists;
    const flags = new Map<number, Set<string>>();
    if (exists > 0) {
      for (const m of await client.fetchAll("1:*", { uid: true, flags: true })) flags.set(m.uid, m.flags ?? new Set());
    }
    let uids = [...flags.keys()].sort((a, b) => a - b);
    if (uids.length > this.o.maxMessages) {
      if (!this.warnedTruncated) {
        this.o.log.warn(`${this.o.label}: ${this.o.folder} holds ${uids.length} mails: only the newest ${this.o.maxMessages} are read (imap.maxMessages)`);
        this.warnedTruncated = true;
      }
      uids = uids.slice(-this.o.maxMessages);
    }
    const keep = new Set(uids);
    for (const uid of this.known.keys()) if (!keep.has(uid)) this.known.delete(uid);
    const unknown: number[] = [];
    for (const uid of uids) {
      const f = flags.get(uid)!;
      const mail = this.known.get(uid);
      if (mail) {
        mail.seen = f.has("\\Seen");
        mail.deleted = f.has("\\Deleted");
      } else unknown.push(uid);
    }
    for (let i = 0; i < unknown.length; i += FETCH_CHUNK) await this.learn(client, unknown.slice(i, i + FETCH_CHUNK), flags);
    await this.reportChanges(client);
  }

  /** Reads the header (or, where the mailbox rules read the body, the bounded start of the mail) of new mails. */
  private async learn(client: ImapFlow, uids: number[], flags: Map<number, Set<string>>): Promise<void> {
    const withBody = this.o.rules.mailboxNeedsBody;
    const query = withBody
      ? { uid: true, source: { maxLength: this.o.maxFetchBytes } }
      : { uid: true, bodyParts: [{ key: "header", maxLength: this.o.maxFetchBytes }] };
    const fetched = await client.fetchAll(uids.join(","), query, { uid: true });
    const got = new Map<number, Buffer>();
    for (const m of fetched) {
      const raw = withBody ? m.source : m.bodyParts?.get("header");
      if (raw) got.set(m.uid, raw);
    }
    for (const uid of uids) {
      const raw = got.get(uid);
      const f = flags.get(uid) ?? new Set<string>();
      const mail: KnownMail = { seen: f.has("\\Seen"), deleted: f.has("\\Deleted"), detailed: withBody || !this.o.rules.detailsNeedBody };
      if (raw) {
        this.stats.mailsRead++;
        const fields = await readMailFields(raw, withBody);
        if (fields.unreadable) this.noise("unreadable", `${this.o.label}: mail ${uid} of ${this.o.folder} cannot be read (${fields.unreadable}): not counted`);
        const voicemail = this.classify(fields);
        if (voicemail) mail.voicemail = voicemail;
      }
      this.known.set(uid, mail);
    }
  }

  private classify(fields: Awaited<ReturnType<typeof readMailFields>>): VoicemailMail | undefined {
    const voicemail = voicemailOf(this.o.rules, fields);
    if (!voicemail) return undefined;
    return this.o.ownMailbox !== undefined ? { ...voicemail, mailbox: this.o.ownMailbox } : voicemail;
  }

  /** The newest voicemail's details need its text: fetched once, bounded, with BODY.PEEK. */
  private async detail(client: ImapFlow, uid: number, mail: KnownMail): Promise<void> {
    mail.detailed = true;
    const [m] = await client.fetchAll(String(uid), { uid: true, source: { maxLength: this.o.maxFetchBytes } }, { uid: true });
    if (!m?.source) return;
    this.stats.bodiesRead++;
    const fields = await readMailFields(m.source, true);
    // The rules that named the mailbox from the header name it again; a mail that stopped
    // being a voicemail with its body read keeps what the header said.
    if (mailboxOf(this.o.rules, fields) === undefined && this.o.ownMailbox === undefined) return;
    const voicemail = this.classify(fields);
    if (voicemail && mail.voicemail) mail.voicemail = { ...voicemail, mailbox: mail.voicemail.mailbox };
  }

  private tally(): Map<string, { counts: MwiCounts; newest: number }> {
    const out = new Map<string, { counts: MwiCounts; newest: number }>();
    for (const [uid, mail] of this.known) {
      if (!mail.voicemail || mail.deleted) continue;
      const box = mail.voicemail.mailbox;
      let entry = out.get(box);
      if (!entry) out.set(box, (entry = { counts: { waiting: false, new: 0, old: 0, urgentNew: 0, urgentOld: 0 }, newest: 0 }));
      const c = entry.counts;
      if (mail.seen) {
        c.old++;
        if (mail.voicemail.urgent) c.urgentOld++;
      } else {
        c.new++;
        if (mail.voicemail.urgent) c.urgentNew++;
      }
      c.waiting = c.new > 0;
      entry.newest = Math.max(entry.newest, uid);
    }
    return out;
  }

  /** Reports every wanted mailbox whose counts or newest message changed since the last report. */
  private async reportChanges(client: ImapFlow): Promise<void> {
    const tally = this.tally();
    const own = this.o.ownMailbox;
    const mailboxes = own !== undefined ? [own] : new Set([...this.o.watched, ...this.reported.keys()]);
    for (const box of mailboxes) {
      if (own === undefined && !this.o.watched.has(box)) {
        this.reported.delete(box);
        continue;
      }
      const entry = tally.get(box);
      const counts = entry?.counts ?? { waiting: false, new: 0, old: 0, urgentNew: 0, urgentOld: 0 };
      const key = JSON.stringify([counts, entry?.newest ?? 0]);
      if (this.reported.get(box) === key) continue;
      let message: MessageInfo | undefined;
      if (entry) {
        const newest = this.known.get(entry.newest)!;
        if (!newest.detailed) await this.detail(client, entry.newest, newest).catch((err: Error) => this.o.log.warn(`${this.o.label}: could not read mail ${entry.newest}: ${err.message}`));
        message = newest.voicemail?.info;
      }
      this.reported.set(box, key);
      await this.o.report(box, counts, message);
    }
  }
}
