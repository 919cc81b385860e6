/**
 * Asterisk over its Manager Interface (AMI): one connection per system with the bridge's own
 * manager login, which watches every linked mailbox (no per-user credentials). MWI comes from
 * `MessageWaiting` events (they need `read = call`); each one, each watch and each reconnect asks
 * `MailboxCount` for the counts (it tells urgent apart) and `VoicemailBoxSummary` for the newest
 * message's caller. Ring-to-verify linking originates a call that shows and says a one-time code.
 */
import pLimit from "p-limit";
import type { MwiCounts, MwiUpdate } from "../../core/mwi.js";
import { clampCount } from "../../core/mwi.js";
import { rateLimitedLog, type RateLimitedLog } from "../../util/rateLimitedLog.js";
import type { CallVerificationCapability, GatewayHost, KindSystem, MessagesCapability, VerificationCallResult, VoicemailGateway, VoicemailMessage, WatchingCapability } from "../gateway.js";
import { AmiClient, AmiError } from "./client.js";
import type { AmiPacket } from "./frame.js";
import { canonical, isUnheardFolder, MESSAGE_ID, messagesOf, parseAmiMailbox, type AmiMailbox } from "./mailbox.js";
import type { AmiSettings } from "./settings.js";
import { boxDetails, mailboxCount, moveMessage, newestMessageOf, removeMessage } from "./voicemailActions.js";

/** The dial string with the mailbox put in; its pattern (settings.ts) and the mailbox's keep it one channel. */
export function dialStringFor(template: string, mailbox: AmiMailbox): string {
  return template.replaceAll("{mailbox}", mailbox.box).replaceAll("{context}", mailbox.context);
}

export class AmiGateway implements VoicemailGateway {
  readonly watching: WatchingCapability;
  readonly callVerification?: CallVerificationCapability;
  readonly messages: MessagesCapability;
  private readonly client: AmiClient;
  /** Watched mailboxes by `box@context`, with the names they were linked under (`1001`, `1001@default`). */
  private readonly watched = new Map<string, Set<string>>();
  /** One refresh per mailbox at a time; `again` when something asked meanwhile (coalesced, in order). */
  private readonly refreshes = new Map<string, { again: boolean; done: Promise<void> }>();
  /** The counts of the last MessageWaiting, for when MailboxCount cannot be asked. */
  private readonly eventCounts = new Map<string, MwiCounts>();
  /** A new connection stops the resync of the one before. */
  private generation = 0;
  private readonly noise: RateLimitedLog;

  constructor(
    readonly system: KindSystem<"ami", AmiSettings>,
    private readonly host: GatewayHost,
  ) {
    const ami = system.ami;
    const log = host.log;
    this.noise = rateLimitedLog((line) => log.warn(line));
    this.client = new AmiClient({
      host: ami.host,
      port: ami.port,
      username: ami.username,
      secret: ami.secret,
      // MessageWaiting is of class "call"; no other class is wanted.
      events: "call",
      name: system.id,
      log: { debug: (m) => log.debug(m), info: (m) => log.info(m), warn: (m) => log.warn(m) },
      keepAliveMs: ami.keepAliveSeconds * 1000,
      actionTimeoutMs: ami.actionTimeoutSeconds * 1000,
      onReady: () => this.resyncAll(),
      onEvent: (event) => this.onEvent(event),
    });
    this.watching = {
      watch: (mailbox) => this.watch(mailbox),
      unwatch: (mailbox) => this.unwatch(mailbox),
      systemCredentials: true,
    };
    this.messages = {
      list: (mailbox) => this.listMessages(mailbox),
      markHeard: (mailbox, ids) => this.markHeard(mailbox, ids),
      remove: (mailbox, id) => this.removeOne(mailbox, id),
    };
    if (ami.verifyCall) {
      this.callVerification = {
        ring: (mailbox, code) => this.ring(mailbox, code),
        accepts: (mailbox) => this.mailbox(mailbox) !== undefined,
      };
    }
  }

  get systemId(): string {
    return this.system.id;
  }

  async start(): Promise<void> {
    this.client.start();
  }

  /** The one AMI connection: logged in, or (re)connecting. */
  status(): Record<string, number> {
    return this.client.connected ? { connected: 1, retrying: 0 } : { connected: 0, retrying: 1 };
  }

  async stop(): Promise<void> {
    this.generation++;
    this.noise.flush();
    await this.client.stop();
  }

  private mailbox(name: string): AmiMailbox | undefined {
    return parseAmiMailbox(name, this.system.ami.context);
  }

  /** Resolves once the mailbox's counts are stored, or could not be had (then the next connect asks again). */
  private async watch(name: string): Promise<void> {
    const mailbox = this.mailbox(name);
    if (!mailbox) {
      this.host.log.warn(`${this.systemId}: cannot watch ${JSON.stringify(name.slice(0, 100))}: not an AMI mailbox (1001 or 1001@context)`);
      return;
    }
    const key = canonical(mailbox);
    const names = this.watched.get(key) ?? new Set<string>();
    names.add(name);
    this.watched.set(key, names);
    await this.refresh(key);
  }

  /** `!mwi off` and unlinks: the bridge stops asking and drops the mailbox's events. Nothing changes on the PBX. */
  private async unwatch(name: string): Promise<void> {
    const mailbox = this.mailbox(name);
    if (!mailbox) return;
    const key = canonical(mailbox);
    const names = this.watched.get(key);
    names?.delete(name);
    if (names && names.size === 0) {
      this.watched.delete(key);
      this.eventCounts.delete(key);
    }
  }

  private refresh(key: string): Promise<void> {
    const running = this.refreshes.get(key);
    if (running) {
      running.again = true;
      return running.done;
    }
    const state = { again: false, done: Promise.resolve() };
    state.done = (async () => {
      try {
        do {
          state.again = false;
          await this.refreshOnce(key);
        } while (state.again && this.watched.has(key));
      } finally {
        this.refreshes.delete(key);
      }
    })();
    this.refreshes.set(key, state);
    return state.done;
  }

  private async refreshOnce(key: string): Promise<void> {
    const mailbox = parseAmiMailbox(key, this.system.ami.context)!;
    let counts: MwiCounts;
    try {
      counts = await mailboxCount(this.client, mailbox);
    } catch (err) {
      const fallback = this.eventCounts.get(key);
      const transient = err instanceof AmiError && err.transient;
      if (!fallback) {
        const line = `${this.systemId}: counts of ${key} not available now: ${(err as Error).message}`;
        if (transient) this.host.log.debug(line);
        else this.noise(`count ${key}`, line);
        return;
      }
      counts = fallback;
    }
    this.eventCounts.delete(key);
    const message = counts.new > 0 ? await newestMessageOf(this.client, mailbox).catch(() => undefined) : undefined;
    for (const name of this.watched.get(key) ?? []) {
      const update: MwiUpdate = { systemId: this.systemId, mailbox: name, counts, ...(message ? { message } : {}), receivedAt: Date.now() };
      await this.host.acceptUpdate(update).catch((err: Error) => this.host.log.error(`${this.systemId}: update of ${name} not stored: ${err.message}`));
    }
  }

  /**
   * After every login: each watched mailbox is asked for again, so changes missed while
   * disconnected arrive; a few at a time and at a bounded rate, so a PBX restart causes no storm.
   */
  private resyncAll(): void {
    const generation = ++this.generation;
    const { concurrency, perSecond } = this.system.ami.resync;
    const limit = pLimit(concurrency);
    const keys = [...this.watched.keys()];
    if (!keys.length) return;
    this.host.log.info(`${this.systemId}: resync of ${keys.length} mailbox(es)`);
    void (async () => {
      for (const key of keys) {
        if (generation !== this.generation || !this.client.connected) return;
        void limit(() => (generation === this.generation && this.watched.has(key) ? this.refresh(key) : undefined));
        await new Promise((r) => setTimeout(r, 1000 / perSecond));
      }
    })();
  }

  private onEvent(event: AmiPacket): void {
    if (event.get("Event") !== "MessageWaiting") return;
    const raw = event.get("Mailbox") ?? "";
    const mailbox = parseAmiMailbox(raw, this.system.ami.context);
    if (!mailbox) {
      this.noise("bad mailbox", `${this.systemId}: ignored a MessageWaiting for ${JSON.stringify(raw.slice(0, 100))}: not a mailbox`);
      return;
    }
    const key = canonical(mailbox);
    if (!this.watched.has(key)) return; // nobody linked it
    const number = (k: string) => {
      const v = event.get(k);
      return v !== undefined && /^\d{1,12}$/.test(v.trim()) ? clampCount(Number(v)) : 0;
    };
    const fresh = number("New");
    // `New` includes urgent messages; how many are urgent only MailboxCount tells.
    this.eventCounts.set(key, { waiting: fresh > 0, new: fresh, old: number("Old"), urgentNew: 0, urgentOld: 0 });
    void this.refresh(key);
  }

  private mailboxOrThrow(name: string): AmiMailbox {
    const mailbox = this.mailbox(name);
    if (!mailbox) throw new Error("this is not a mailbox of the system");
    return mailbox;
  }

  /** An AMI failure as the user may read it: Asterisk's own reason, or that it was not reached. */
  private failure(what: string, err: unknown): Error {
    const transient = err instanceof AmiError && err.transient;
    this.host.log.warn(`${this.systemId}: ${what} failed: ${(err as Error).message}`);
    return new Error(transient ? "the voice mail system could not be reached; try again later" : "the voice mail system refused it");
  }

  private async listMessages(name: string): Promise<VoicemailMessage[]> {
    const mailbox = this.mailboxOrThrow(name);
    try {
      return messagesOf(await boxDetails(this.client, mailbox));
    } catch (err) {
      throw this.failure(`listing ${canonical(mailbox)}`, err);
    }
  }

  /**
   * Moves exactly the named unheard messages to Old (VoicemailMove needs the folder a message is
   * in, so the box is listed first); messages already heard or gone are left alone. The counts
   * are then asked for as after a MessageWaiting, so the change reaches Matrix the usual way.
   */
  private async markHeard(name: string, ids: readonly string[]): Promise<void> {
    const mailbox = this.mailboxOrThrow(name);
    const key = canonical(mailbox);
    try {
      const details = await boxDetails(this.client, mailbox);
      for (const id of ids) {
        if (!MESSAGE_ID.test(id)) continue;
        const detail = details.find((d) => d.id?.trim() === id && isUnheardFolder(d.folder));
        if (detail) await moveMessage(this.client, mailbox, detail.folder, id, "Old");
      }
    } catch (err) {
      throw this.failure(`marking heard in ${key}`, err);
    } finally {
      if (this.watched.has(key)) void this.refresh(key);
    }
    this.host.log.info(`${this.systemId}: marked ${ids.length} message(s) heard in ${key}`);
  }

  /** Removes the one message with this msg_id, from whichever of INBOX, Urgent and Old it is in. */
  private async removeOne(name: string, id: string): Promise<void> {
    const mailbox = this.mailboxOrThrow(name);
    const key = canonical(mailbox);
    if (!MESSAGE_ID.test(id)) throw new Error("there is no such message");
    try {
      const detail = (await boxDetails(this.client, mailbox)).find((d) => d.id?.trim() === id && /^(inbox|urgent|old)$/i.test(d.folder));
      if (!detail) throw new Error("there is no such message any more");
      await removeMessage(this.client, mailbox, detail.folder, id);
    } catch (err) {
      if (!(err instanceof AmiError)) throw err;
      throw this.failure(`removing a message of ${key}`, err);
    } finally {
      if (this.watched.has(key)) void this.refresh(key);
    }
    this.host.log.info(`${this.systemId}: removed one message of ${key}`);
  }

  private async ring(name: string, code: string): Promise<VerificationCallResult> {
    const verify = this.system.ami.verifyCall;
    const mailbox = this.mailbox(name);
    if (!verify || !mailbox) return { ok: false, reason: "this mailbox cannot be rung" };
    if (!/^\d{4,12}$/.test(code)) throw new Error("a verification code is digits only");
    try {
      await this.client.action({
        Action: "Originate",
        Channel: dialStringFor(verify.dialString, mailbox),
        Application: "SayDigits",
        Data: code,
        // Name and number: whatever the phone shows, it shows the code.
        CallerID: `"${code}" <${code}>`,
        Timeout: String(verify.ringSeconds * 1000),
        Async: "true",
      });
      this.host.log.info(`${this.systemId}: verification call to ${canonical(mailbox)} started`);
      return { ok: true };
    } catch (err) {
      const transient = err instanceof AmiError && err.transient;
      this.host.log.warn(`${this.systemId}: verification call to ${canonical(mailbox)} failed: ${(err as Error).message}`);
      return transient ? { ok: false, reason: "the voice mail system could not be reached; try again later", transient } : { ok: false, reason: "the voice mail system refused the call" };
    }
  }
}
