/**
 * Voicemail delivered as e-mail (IMAP): the PBX or carrier mails each voicemail; the bridge
 * reads the mails and counts them: unseen = new, seen = old, urgent by the priority headers.
 * Two ways to run it:
 * - a shared account (`imap.username`): one session for the system; each mail's mailbox comes
 *   from the rules; admins link mailboxes (`!admin link @u:hs mail 2001`);
 * - per-user accounts (no `imap.username`): `!link mail <address> --password ...`; the IMAP
 *   login proves it; every voicemail mail in that account counts for that mailbox.
 * Watching changes nothing on the server (read-only EXAMINE, BODY.PEEK, no flag ever set); only
 * `!heard` (`\Seen`) and `!delete` (`\Deleted` and UID EXPUNGE of that one mail) do, each in a
 * short read-write session of its own (mailWrite.ts), and only on mails the watch filed under
 * the mailbox named.
 */
import type { MessageInfo, MwiCounts, MwiUpdate } from "../../core/mwi.js";
import { withTimeout } from "../../util/timeout.js";
import type {
  GatewayHost,
  KindSystem,
  LinkingCapability,
  LinkProof,
  LinkRequest,
  MailboxCredentials,
  MessagesCapability,
  UpstreamMwiCapability,
  VoicemailMessage,
  VoicemailGateway,
  WatchingCapability,
} from "../gateway.js";
import { createImapClient, isAuthFailure } from "./imapClient.js";
import { MailSession } from "./mailSession.js";
import { changeMails, type MailChange } from "./mailWrite.js";
import type { ImapSettings } from "./settings.js";
import { compileRules, type CompiledRules } from "./voicemailRules.js";

/** How long a watch waits for the mailbox's first report. */
const FIRST_REPORT_TIMEOUT_MS = 15_000;
/** How long a `!link` login may take. */
const PROOF_TIMEOUT_MS = 20_000;

export class ImapGateway implements VoicemailGateway {
  readonly watching: WatchingCapability;
  readonly linking?: LinkingCapability;
  /**
   * `!mwi off` (by the last user who follows the mailbox) stops reading it: nothing is reported,
   * a per-user account's session logs out; nothing changes on the server. `!mwi on` reads it again.
   */
  readonly upstreamMwi: UpstreamMwiCapability = {
    switchOn: (mailbox, credentials) => this.watch(mailbox, credentials),
    switchOff: (mailbox) => this.unwatch(mailbox),
  };
  readonly messages: MessagesCapability = {
    list: async (mailbox) => this.listMessages(mailbox),
    markHeard: (mailbox, ids) => this.change(mailbox, ids, "seen"),
    remove: (mailbox, id) => this.change(mailbox, [id], "delete"),
  };
  private readonly rules: CompiledRules;
  /** Shared account: the one session; per-user: one per watched mailbox (address). */
  private shared?: MailSession;
  private readonly sessions = new Map<string, { session: MailSession; password: string }>();
  private readonly watched = new Set<string>();

  constructor(
    readonly system: KindSystem<"imap", ImapSettings>,
    private readonly host: GatewayHost,
  ) {
    this.rules = compileRules(system.imap.rules, system.imap.senders);
    const sharedAccount = system.imap.username !== undefined;
    this.watching = {
      watch: (mailbox, credentials) => this.watch(mailbox, credentials),
      unwatch: (mailbox) => this.unwatch(mailbox),
      systemCredentials: sharedAccount,
    };
    if (!sharedAccount) this.linking = { prove: (request) => this.prove(request) };
  }

  get systemId(): string {
    return this.system.id;
  }

  private get label(): string {
    return `${this.systemId}`;
  }

  private session(credentials: MailboxCredentials, ownMailbox?: string): MailSession {
    const { imap } = this.system;
    return new MailSession({
      label: ownMailbox === undefined ? this.label : `${this.label}/${ownMailbox}`,
      server: imap,
      credentials,
      folder: imap.folder,
      pollSeconds: imap.pollSeconds,
      maxMessages: imap.maxMessages,
      maxFetchBytes: imap.maxFetchBytes,
      rules: this.rules,
      watched: this.watched,
      ...(ownMailbox !== undefined ? { ownMailbox } : {}),
      report: (mailbox, counts, message) => this.report(mailbox, counts, message),
      log: this.host.log,
    });
  }

  /** Connecting happens in the background: an unreachable server must not hold up the bridge's start. */
  async start(): Promise<void> {
    const { username, password } = this.system.imap;
    if (username === undefined) return;
    this.shared = this.session({ username, password: password ?? "" });
    this.shared.start();
  }

  /** The IMAP sessions (the shared account's and one per watched mailbox): connected or retrying. */
  status(): Record<string, number> {
    const counts = { connected: 0, retrying: 0 };
    for (const s of [this.shared, ...[...this.sessions.values()].map((x) => x.session)]) if (s) counts[s.connected ? "connected" : "retrying"]++;
    return counts;
  }

  async stop(): Promise<void> {
    const all = [this.shared, ...[...this.sessions.values()].map((s) => s.session)];
    this.shared = undefined;
    this.sessions.clear();
    await Promise.all(all.map((s) => s?.stop().catch(() => undefined)));
  }

  private async report(mailbox: string, counts: MwiCounts, message: MessageInfo | undefined): Promise<void> {
    if (!this.watched.has(mailbox)) return;
    const update: MwiUpdate = { systemId: this.systemId, mailbox, counts, ...(message ? { message } : {}), receivedAt: Date.now() };
    await this.host.acceptUpdate(update).catch((err: Error) => this.host.log.error(`${this.systemId}: update of ${mailbox} not stored: ${err.message}`));
  }

  private async watch(mailbox: string, credentials?: MailboxCredentials): Promise<void> {
    this.watched.add(mailbox);
    if (this.shared) {
      await withTimeout(this.shared.whenSynced().then(() => this.shared?.reportNow(mailbox)), FIRST_REPORT_TIMEOUT_MS, undefined);
      return;
    }
    if (!credentials) {
      this.host.log.warn(`${this.systemId}: cannot watch ${mailbox}: nobody who follows it linked it with its password, and the system has no shared account (imap.username)`);
      return;
    }
    const running = this.sessions.get(mailbox);
    if (running && running.password === credentials.password) return;
    // A new password (a fresh !link): the old session goes.
    if (running) await running.session.stop();
    const session = this.session(credentials, mailbox);
    this.sessions.set(mailbox, { session, password: credentials.password });
    session.start();
    await withTimeout(session.whenSynced(), FIRST_REPORT_TIMEOUT_MS, undefined);
  }

  /** `!mwi off` and `!unlink`: the mailbox is no longer reported; a per-user account's session logs out. */
  private async unwatch(mailbox: string): Promise<void> {
    this.watched.delete(mailbox);
    const running = this.sessions.get(mailbox);
    if (!running) return;
    this.sessions.delete(mailbox);
    await running.session.stop();
    this.host.log.info(`${this.systemId}: stopped watching the account of ${mailbox}`);
  }

  /** The session reading this mailbox, and the credentials it reads with (the shared account's, or the mailbox's own). */
  private readerOf(mailbox: string): { session: MailSession; credentials: MailboxCredentials } {
    const { username, password } = this.system.imap;
    if (this.shared && username !== undefined && this.watched.has(mailbox)) return { session: this.shared, credentials: { username, password: password ?? "" } };
    const own = this.sessions.get(mailbox);
    if (own) return { session: own.session, credentials: { username: mailbox, password: own.password } };
    throw new Error("the bridge is not reading this mailbox now (is MWI off?)");
  }

  /** `${UIDVALIDITY}:${UID}`: a mail's handle, which no other mail can ever have in that folder. */
  private static idOf(uidValidity: bigint, uid: number): string {
    return `${uidValidity}:${uid}`;
  }

  private listMessages(mailbox: string): VoicemailMessage[] {
    const { session } = this.readerOf(mailbox);
    const validity = session.uidValidityNow;
    if (validity === undefined) throw new Error("the mail server has not been read yet; try again later");
    return session.voicemailsOf(mailbox).map(({ uid, seen, voicemail }) => {
      const time = voicemail.info.time !== undefined ? Date.parse(voicemail.info.time) : NaN;
      return {
        id: ImapGateway.idOf(validity, uid),
        fresh: !seen,
        urgent: voicemail.urgent,
        ...(voicemail.info.ani !== undefined ? { callerNumber: voicemail.info.ani } : {}),
        ...(voicemail.info.callerName !== undefined ? { callerName: voicemail.info.callerName } : {}),
        ...(Number.isFinite(time) ? { time } : {}),
        ...(voicemail.info.duration !== undefined ? { duration: voicemail.info.duration } : {}),
      };
    });
  }

  /**
   * Marks seen, or deletes, only mails that the watch filed under this mailbox, under the
   * UIDVALIDITY they were learnt in; then the watching session resyncs, and reports the counts.
   */
  private async change(mailbox: string, ids: readonly string[], kind: MailChange["kind"]): Promise<void> {
    const { session, credentials } = this.readerOf(mailbox);
    const validity = session.uidValidityNow;
    if (validity === undefined) throw new Error("the mail server has not been read yet; try again later");
    const mine = new Map(session.voicemailsOf(mailbox).map((m) => [ImapGateway.idOf(validity, m.uid), m]));
    const uids = ids.map((id) => mine.get(id)).filter((m) => m !== undefined && (kind === "delete" || !m.seen)).map((m) => m!.uid);
    if (kind === "delete" && uids.length !== 1) throw new Error("there is no such message any more");
    if (!uids.length) return;
    const change: MailChange = kind === "delete" ? { kind, uid: uids[0]! } : { kind, uids };
    try {
      await changeMails(this.system.imap, credentials, this.system.imap.folder, validity, change, (line) => this.host.log.warn(`${this.systemId}: ${mailbox}: ${line}`));
    } catch (err) {
      this.host.log.warn(`${this.systemId}: ${kind === "delete" ? "deleting a mail" : "marking mails read"} of ${mailbox} failed: ${(err as Error).message}`);
      throw err;
    } finally {
      await session.refresh().catch(() => undefined);
    }
    this.host.log.info(`${this.systemId}: ${kind === "delete" ? "deleted one mail" : `marked ${uids.length} mail(s) read`} of ${mailbox}`);
  }

  /**
   * A per-user account: the mailbox is the account's address, and logging in with it and the
   * password proves it is the user's. The login is its own short connection (it changes nothing).
   */
  private async prove(request: LinkRequest): Promise<LinkProof> {
    const who = `${this.systemId}: link of ${request.mailbox} for ${request.userId}`;
    if (request.authUser !== undefined && request.authUser !== request.mailbox) {
      this.host.log.info(`${who} refused: --auth-user not allowed`);
      return { ok: false, reason: "this system takes no --auth-user: the mailbox is the mail account's address, whose password proves it is yours" };
    }
    if (!request.mailbox.includes("@")) {
      return { ok: false, reason: "the mailbox of this system is your mail address (name@example.org)" };
    }
    const credentials = { username: request.mailbox, password: request.password ?? "" };
    const client = createImapClient(this.system.imap, credentials, { idle: false });
    client.on("error", () => undefined);
    try {
      const connected = await withTimeout(client.connect().then(() => true), PROOF_TIMEOUT_MS, false);
      if (!connected) {
        this.host.log.info(`${who}: no answer from ${this.system.imap.host}:${this.system.imap.port}`);
        return { ok: false, reason: "the mail server could not be reached; try again later", transient: true };
      }
    } catch (err) {
      if (isAuthFailure(err)) {
        this.host.log.info(`${who} refused: the server refused the login`);
        return { ok: false, reason: "the mail server refused the login" };
      }
      this.host.log.info(`${who}: ${(err as Error).message}`);
      return { ok: false, reason: "the mail server could not be reached; try again later", transient: true };
    } finally {
      await client.logout().catch(() => client.close());
    }
    return { ok: true, credentials };
  }
}
