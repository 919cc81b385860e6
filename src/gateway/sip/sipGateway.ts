/**
 * Voice mail systems that serve MWI by SIP SUBSCRIBE/NOTIFY (RFC 3842, RFC 6665): Asterisk,
 * FreeSWITCH, FreePBX, Kamailio, most carriers. Users prove a mailbox is theirs by subscribing
 * with its credentials, which the server must have challenged; `!mwi off` unsubscribes upstream.
 * MWI is filed only under mailboxes someone linked (the gateway knows what it watches).
 */
import { isIPv6, type BlockList } from "node:net";
import pLimit from "p-limit";
import type { MessageInfo, MwiUpdate } from "../../core/mwi.js";
import { clampCount, MAILBOX_PATTERN } from "../../core/mwi.js";
import { rateLimitedLog, type RateLimitedLog } from "../../util/rateLimitedLog.js";
import { withTimeout } from "../../util/timeout.js";
import type {
  GatewayHost,
  KindSystem,
  LinkingCapability,
  LinkProof,
  LinkRequest,
  MailboxCredentials,
  UpstreamMwiCapability,
  VoicemailGateway,
  WatchingCapability,
} from "../gateway.js";
import { AmiClient } from "../ami/client.js";
import { parseAmiMailbox } from "../ami/mailbox.js";
import { newestMessageOf } from "../ami/voicemailActions.js";
import { newestInboxMessage } from "./asteriskSpool.js";
import { parseMessageSummary, type MessageSummary } from "./messageSummary.js";
import type { SipSettings } from "./settings.js";
import { parseSources } from "./sources.js";
import { localAddressToward } from "./transport.js";
import { SipUserAgent, type SipTlsOptions, type Subscription, type SubscribeResult, type UnsolicitedNotify } from "./userAgent.js";

/** How long a link waits for the first NOTIFY after the 200 (RFC 6665 requires one at once). */
const FIRST_NOTIFY_TIMEOUT_MS = 5_000;
/** Subscriptions started (or ended) at once when many mailboxes are watched: spreads the load. */
const STARTS_IN_FLIGHT = 16;
/** How long shutdown waits for the unsubscriptions before closing anyway. */
const STOP_BUDGET_MS = 10_000;
/** A caller or called number is at most this long; longer input is cut before it is read. */
const MAX_PARTY_CHARS = 64;

export const NO_PASSWORD_CHECK = "this system does not check passwords: an admin must link it";

/**
 * What a user is told of a failed proof. A missing mailbox, a wrong password and any other
 * refusal read the same: told apart, `!link` would tell who has which mailbox (the log has the
 * server's answer for the admin).
 */
const REFUSED_CREDENTIALS = "the server refused the credentials";

function failureText(result: Extract<SubscribeResult, { ok: false }>): string {
  switch (result.kind) {
    case "auth":
    case "not-found":
    case "rejected":
      return REFUSED_CREDENTIALS;
    case "timeout":
    case "unreachable":
      return "the voice mail server could not be reached; try again later";
  }
}

/**
 * The user part of a From or To value (`"Name" <sip:5551234@host>`, `tel:+1555`, a bare
 * number), in linear time: the value comes off the network and may be 64 KB of `<`.
 */
function partyOf(value: string | undefined): string | undefined {
  if (!value) return undefined;
  // The URI is between the first ">" and the last "<" before it.
  const close = value.indexOf(">");
  const open = close < 0 ? -1 : value.lastIndexOf("<", close);
  const uri = (open < 0 ? value : value.slice(open + 1, close)).trim();
  const scheme = /^(?:sips?|tel):/i.exec(uri.slice(0, 5))?.[0];
  if (!scheme) return uri.slice(0, MAX_PARTY_CHARS) || undefined;
  const rest = uri.slice(scheme.length);
  let end = 0;
  while (end < rest.length && end < MAX_PARTY_CHARS && !"@;>".includes(rest[end]!)) end++;
  return rest.slice(0, end) || undefined;
}

/**
 * The mailbox a SIP URI names (`sip:1001@host` -> `1001`), or undefined when it names none or
 * one that is not a mailbox (`/../etc`, bad %-escapes).
 */
function mailboxOf(uri: string): string | undefined {
  const m = /^sips?:([^@;>]{1,384})@/i.exec(uri.slice(0, 400));
  if (!m) return undefined;
  let mailbox: string;
  try {
    mailbox = decodeURIComponent(m[1]!);
  } catch {
    return undefined;
  }
  return MAILBOX_PATTERN.test(mailbox) ? mailbox : undefined;
}

/** ANI, DNIS and time from the optional message headers of the body (RFC 3842 §5.2). */
function messageFromSummary(summary: MessageSummary): MessageInfo | undefined {
  const newest = summary.messages[summary.messages.length - 1];
  if (!newest) return undefined;
  const user = partyOf;
  const info: MessageInfo = {};
  const ani = user(newest.from);
  const dnis = user(newest.to);
  if (ani) info.ani = ani;
  if (dnis) info.dnis = dnis;
  const time = newest.date ? Date.parse(newest.date) : NaN;
  if (!Number.isNaN(time)) info.time = new Date(time).toISOString();
  return Object.keys(info).length ? info : undefined;
}

export class SipGateway implements VoicemailGateway {
  readonly linking: LinkingCapability = { prove: (request) => this.proveLink(request) };
  readonly watching: WatchingCapability;
  /** `!mwi off` ends the subscription (the mailbox stays linked); `!mwi on` subscribes again. */
  readonly upstreamMwi: UpstreamMwiCapability = {
    switchOn: (mailbox, credentials) => this.watch(mailbox, credentials),
    switchOff: (mailbox) => this.unsubscribe(mailbox),
  };
  private ua?: SipUserAgent;
  /** The one subscription per watched mailbox. */
  private readonly subscriptions = new Map<string, Subscription>();
  /** Every mailbox someone linked (watched, with or without credentials): MWI is filed only under these. */
  private readonly linked = new Set<string>();
  private readonly allowedSources: BlockList;
  /** Subscribes and unsubscribes a few at a time. */
  private readonly throttle = pLimit(STARTS_IN_FLIGHT);
  /** Refused and bad NOTIFYs: anyone can send them, one line per datagram would flood the log. */
  private readonly noise: RateLimitedLog;
  /** `sip.ami`: the PBX's manager interface, asked for the caller of the newest message. */
  private readonly ami?: AmiClient;

  constructor(
    readonly system: KindSystem<"sip", SipSettings>,
    private readonly host: GatewayHost,
  ) {
    const sources = parseSources(system.sip.unsolicitedSources);
    if (sources.problems.length) throw new Error(`SIP system ${system.id}: ${sources.problems.join("; ")}`);
    this.allowedSources = sources.list;
    this.noise = rateLimitedLog((line) => host.log.warn(line));
    const ami = system.sip.ami;
    if (ami) {
      const log = host.log;
      this.ami = new AmiClient({
        host: ami.host,
        port: ami.port,
        username: ami.username,
        secret: ami.secret,
        events: "off", // questions only: no event is wanted
        name: `${system.id} (caller details)`,
        log: { debug: (m) => log.debug(m), info: (m) => log.info(m), warn: (m) => log.warn(m) },
        keepAliveMs: ami.keepAliveSeconds * 1000,
        actionTimeoutMs: ami.actionTimeoutSeconds * 1000,
      });
    }
    this.watching = {
      watch: (mailbox, credentials) => this.watch(mailbox, credentials),
      unwatch: (mailbox) => this.unwatch(mailbox),
      systemCredentials: system.sip.credentials !== undefined,
    };
  }

  get systemId(): string {
    return this.system.id;
  }

  /** The bridge's SIP port for this system (the configured one, or the one given for port 0). */
  get localPort(): number | undefined {
    return this.ua?.localPort;
  }

  private get domain(): string {
    return this.system.sip.domain ?? this.system.sip.server.host;
  }

  async start(): Promise<void> {
    const { local, server } = this.system.sip;
    const log = this.host.log;
    // Typed, not spread: a misspelt key here (it once was `ca`) is a compile error.
    const tls: SipTlsOptions = { rejectUnauthorized: server.rejectUnauthorized };
    if (server.caFile) tls.caFile = server.caFile;
    this.ua = await SipUserAgent.start({
      bindAddress: local.bindAddress ?? (await localAddressToward(server.host)),
      port: local.port,
      // Only a notifier we reach over TCP opens connections of its own to our Contact; over UDP
      // and TLS a TCP listener would only be something for strangers to fill.
      listenTcp: server.transport === "tcp",
      maxConnections: local.maxConnections,
      maxConnectionsPerSource: local.maxConnectionsPerSource,
      idleTimeoutMs: local.idleTimeoutSeconds * 1000,
      messageTimeoutMs: local.messageTimeoutSeconds * 1000,
      ...(local.publicAddress ? { publicAddress: local.publicAddress } : {}),
      ...(server.transport === "tls" ? { tls } : {}),
      logger: {
        debug: (m) => log.debug(m),
        info: (m) => log.info(m),
        warn: (m) => log.warn(m),
        error: (m) => log.error(m),
      },
    });
    this.ua.onUnsolicitedNotify((notify) => this.onUnsolicited(notify));
    this.ami?.start();
  }

  /** The subscriptions held, by state (init: being set up or retried). */
  status(): Record<string, number> {
    const counts: Record<string, number> = { init: 0, pending: 0, active: 0, terminated: 0 };
    for (const sub of this.subscriptions.values()) counts[sub.state] = (counts[sub.state] ?? 0) + 1;
    return counts;
  }

  async stop(): Promise<void> {
    // Polite to the server: it frees the subscriptions now; they come back on the next start.
    // A few at a time, like start-up: all at once, most answers would be lost in the burst.
    const all = [...this.subscriptions.values()];
    this.subscriptions.clear();
    const unsubscribeAll = Promise.all(all.map((s) => this.throttle(() => s.unsubscribe().catch(() => undefined))));
    await withTimeout(unsubscribeAll, STOP_BUDGET_MS, undefined);
    this.throttle.clearQueue();
    this.noise.flush();
    await this.ami?.stop();
    await this.ua?.close();
  }

  /** The address the bridge's SIP socket is bound to. */
  get localAddress(): string | undefined {
    return this.ua?.localAddress;
  }

  /**
   * The system's own credentials for a mailbox, if it has some. Its account, not the mailbox, is
   * who subscribes (From): Asterisk finds the endpoint by the From user.
   */
  private systemCredentials(mailbox: string): { credentials: MailboxCredentials; from: string } | undefined {
    const own = this.system.sip.credentials;
    if (!own) return undefined;
    const username = own.username.replaceAll("{mailbox}", mailbox);
    return { credentials: { username, password: own.password }, from: `sip:${username}@${this.domain}` };
  }

  private subscription(mailbox: string, credentials: MailboxCredentials, fromUri?: string): Subscription {
    if (!this.ua) throw new Error(`SIP system ${this.systemId} is not started`);
    const { server } = this.system.sip;
    return this.ua.subscribe({
      target: { host: server.host, port: server.port, transport: server.transport },
      uri: `sip:${mailbox}@${this.domain}`,
      ...(fromUri !== undefined ? { fromUri } : {}),
      username: credentials.username,
      password: credentials.password,
      expires: this.system.sip.expires,
    });
  }

  /**
   * Subscribes with the user's credentials. Proof is a server that challenged (401/407) and then
   * accepted them: a 2xx without a challenge (a server that trusts the bridge's address, or
   * serves MWI openly) would let any password link any mailbox.
   */
  private async proveLink(request: LinkRequest): Promise<LinkProof> {
    const authUser = request.authUser ?? request.mailbox;
    if (authUser !== request.mailbox && !this.system.sip.allowAuthUser) {
      this.host.log.info(`${this.systemId}: link of ${request.mailbox} for ${request.userId} refused: --auth-user not allowed`);
      return { ok: false, reason: "this system takes no --auth-user: the mailbox's own password proves it is yours" };
    }
    const credentials = { username: authUser, password: request.password ?? "" };
    const sub = this.subscription(request.mailbox, credentials);
    const firstNotify = withTimeout(new Promise<string>((resolve) => sub.once("notify", resolve)), FIRST_NOTIFY_TIMEOUT_MS, undefined);
    const result = await sub.start();
    if (!result.ok) {
      await sub.unsubscribe().catch(() => undefined);
      const answer = result.status !== undefined ? ` (${result.status} ${result.reason})` : "";
      this.host.log.info(`${this.systemId}: link of ${request.mailbox} for ${request.userId} refused: ${result.kind}${answer}`);
      const transient = result.kind === "timeout" || result.kind === "unreachable";
      return { ok: false, reason: failureText(result), ...(transient ? { transient } : {}) };
    }
    if (!sub.authenticated) {
      await sub.unsubscribe().catch(() => undefined);
      this.host.log.warn(`${this.systemId}: link of ${request.mailbox} for ${request.userId} refused: the server accepted the subscription without asking for a password`);
      return { ok: false, reason: NO_PASSWORD_CHECK };
    }
    const body = await firstNotify;
    const current = body === undefined ? undefined : this.updateFrom(request.mailbox, body);
    if (current) await this.host.acceptUpdate(await this.withCallerDetails(current));
    // The proving subscription becomes the mailbox's watch, unless it already has one.
    if (this.subscriptions.has(request.mailbox)) await sub.unsubscribe().catch(() => undefined);
    else this.adopt(request.mailbox, sub);
    return { ok: true, credentials, ...(current ? { current } : {}) };
  }

  /**
   * Subscribes with the stored credentials (a user's, who linked the mailbox with a password),
   * else with the system's own. Resolves once the first NOTIFY's counts are stored, the
   * subscription failed, or FIRST_NOTIFY_TIMEOUT_MS passed: whoever shows the counts next
   * (`!mwi on`) shows fresh ones, not those from before MWI was switched off.
   */
  private async watch(mailbox: string, credentials?: MailboxCredentials): Promise<void> {
    this.linked.add(mailbox);
    if (this.subscriptions.has(mailbox)) return;
    const own = credentials ? undefined : this.systemCredentials(mailbox);
    if (!credentials && !own) {
      this.host.log.warn(
        `${this.systemId}: cannot watch ${mailbox}: nobody who follows it linked it with a password, and the system has no sip.credentials (its users get no MWI until one links it with !link)`,
      );
      return;
    }
    const sub = credentials ? this.subscription(mailbox, credentials) : this.subscription(mailbox, own!.credentials, own!.from);
    let reported!: () => void;
    const firstReport = new Promise<void>((resolve) => (reported = resolve));
    this.adopt(mailbox, sub, reported);
    // At start-up thousands of mailboxes are watched at once: they subscribe a few at a time.
    void this.throttle(async () => {
      const result = await sub.start();
      if (result.ok) return;
      // Transient failures are retried by the subscription itself, with backoff; a refused one
      // is dead, and must not stand in the way of a new !link with the right password.
      this.host.log.warn(`${this.systemId}: subscription of ${mailbox} failed: ${result.reason}`);
      if (sub.state === "terminated" && this.subscriptions.get(mailbox) === sub) this.subscriptions.delete(mailbox);
      reported();
    });
    await withTimeout(firstReport, FIRST_NOTIFY_TIMEOUT_MS, undefined);
  }

  /** Nobody follows the mailbox any more: its MWI is not filed from now on. */
  private async unwatch(mailbox: string): Promise<void> {
    this.linked.delete(mailbox);
    await this.unsubscribe(mailbox);
  }

  private async unsubscribe(mailbox: string): Promise<void> {
    const sub = this.subscriptions.get(mailbox);
    if (!sub) return;
    this.subscriptions.delete(mailbox);
    await sub.unsubscribe();
    this.host.log.info(`${this.systemId}: unsubscribed ${mailbox}`);
  }

  /** `reported` is called once a NOTIFY has been handled (stored, or found unusable). */
  private adopt(mailbox: string, sub: Subscription, reported?: () => void): void {
    this.subscriptions.set(mailbox, sub);
    sub.on("notify", (body) => {
      const update = this.updateFrom(mailbox, body);
      if (!update) return reported?.();
      void this.withCallerDetails(update)
        .then((u) => this.host.acceptUpdate(u))
        .catch((err: Error) => this.host.log.error(`${this.systemId}: update of ${mailbox} not stored: ${err.message}`))
        .finally(() => reported?.());
    });
    sub.on("terminated", (reason) => {
      if (this.subscriptions.get(mailbox) === sub) this.subscriptions.delete(mailbox);
      this.host.log.warn(`${this.systemId}: the server ended the subscription of ${mailbox} for good (${reason})`);
    });
    sub.on("resubscribed", () => this.host.log.info(`${this.systemId}: subscription of ${mailbox} re-established`));
    sub.on("error", (err) => this.host.log.warn(`${this.systemId}: ${mailbox}: ${err.message}`));
  }

  /**
   * Parses an in-dialog NOTIFY body; a bad one is logged in one line and changes nothing. Its
   * Message-Account may name a voicemail access number (Asterisk's `voicemail_extension`), but
   * when it names another linked mailbox the report is that mailbox's, not this one's.
   */
  private updateFrom(mailbox: string, body: string): MwiUpdate | undefined {
    const parsed = parseMessageSummary(body);
    if (!parsed.ok) {
      this.host.log.warn(`${this.systemId}: ignored a NOTIFY for ${mailbox}: ${parsed.reason}`);
      return undefined;
    }
    const named = parsed.summary.account === undefined ? undefined : mailboxOf(parsed.summary.account);
    if (named !== undefined && named !== mailbox && this.linked.has(named)) {
      this.noise(`account ${mailbox}`, `${this.systemId}: dropped a NOTIFY in the subscription of ${mailbox}: its Message-Account names mailbox ${named}`);
      return undefined;
    }
    return this.update(mailbox, parsed.summary);
  }

  private update(mailbox: string, summary: MessageSummary): MwiUpdate {
    const message = messageFromSummary(summary);
    return {
      systemId: this.systemId,
      mailbox,
      counts: {
        waiting: summary.waiting,
        new: clampCount(summary.voice.newCount),
        old: clampCount(summary.voice.oldCount),
        urgentNew: clampCount(summary.voice.urgentNew),
        urgentOld: clampCount(summary.voice.urgentOld),
      },
      ...(message ? { message } : {}),
      receivedAt: Date.now(),
    };
  }

  /** Asterisk's NOTIFY has no caller: its AMI or its spool has, when the admin told us where. */
  private async withCallerDetails(update: MwiUpdate): Promise<MwiUpdate> {
    if (update.message || update.counts.new === 0) return update;
    const message = this.ami ? await this.callerOverAmi(update.mailbox) : await this.callerFromSpool(update.mailbox);
    return message ? { ...update, message } : update;
  }

  private async callerFromSpool(mailbox: string): Promise<MessageInfo | undefined> {
    const spool = this.system.sip.asteriskSpool;
    return spool ? newestInboxMessage(spool.dir, spool.context, mailbox).catch(() => undefined) : undefined;
  }

  /** Without an answer (AMI down, slow) the update goes on without the caller: MWI must not wait for it. */
  private async callerOverAmi(name: string): Promise<MessageInfo | undefined> {
    const mailbox = parseAmiMailbox(name, this.system.sip.ami!.context);
    if (!mailbox || !this.ami) return undefined;
    try {
      return await newestMessageOf(this.ami, mailbox);
    } catch (err) {
      this.noise(`ami ${name}`, `${this.systemId}: no caller details for ${name} over AMI: ${(err as Error).message}`);
      return undefined;
    }
  }

  /**
   * Out-of-dialog MWI: only from the configured sources (over UDP a source address can be forged:
   * the firewall must keep strangers off), mapped by Message-Account or request URI, and only
   * for a mailbox someone linked. Per datagram: one parse, at most one update and one spool read.
   */
  private async onUnsolicited(notify: UnsolicitedNotify): Promise<number> {
    const from = notify.source.address;
    const family = isIPv6(from) ? "ipv6" : "ipv4";
    if (!this.allowedSources.check(from, family)) {
      this.noise(`refused ${from}`, `${this.systemId}: refused an unsolicited NOTIFY from ${from}: not an allowed source`);
      return 403;
    }
    const parsed = parseMessageSummary(notify.body);
    if (!parsed.ok) {
      this.noise(`bad ${from}`, `${this.systemId}: bad unsolicited NOTIFY from ${from}: ${parsed.reason}`);
      return 400;
    }
    const mailbox = mailboxOf(parsed.summary.account ?? notify.requestUri);
    if (!mailbox) {
      this.noise(`no mailbox ${from}`, `${this.systemId}: unsolicited NOTIFY from ${from} names no valid mailbox`);
      return 400;
    }
    if (!this.linked.has(mailbox)) {
      this.noise(`unlinked ${from}`, `${this.systemId}: unsolicited NOTIFY from ${from} for mailbox ${mailbox}, which nobody linked: dropped`);
      return 404;
    }
    await this.host.acceptUpdate(await this.withCallerDetails(this.update(mailbox, parsed.summary)));
    return 200;
  }
}
