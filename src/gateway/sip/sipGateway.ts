/**
 * Voice mail systems that serve MWI by SIP SUBSCRIBE/NOTIFY (RFC 3842, RFC 6665): Asterisk,
 * FreeSWITCH, FreePBX, Kamailio, most carriers. Users prove a mailbox is theirs by subscribing
 * with its credentials; `!mwi off` unsubscribes upstream.
 */
import { BlockList, isIPv6 } from "node:net";
import pLimit from "p-limit";
import type { MessageInfo, MwiUpdate } from "../../core/mwi.js";
import { clampCount } from "../../core/mwi.js";
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
import { newestInboxMessage } from "./asteriskSpool.js";
import { parseMessageSummary, type MessageSummary } from "./messageSummary.js";
import type { SipSettings } from "./settings.js";
import { SipUserAgent, type SipTlsOptions, type Subscription, type SubscribeResult, type UnsolicitedNotify } from "./userAgent.js";

/** How long a link waits for the first NOTIFY after the 200 (RFC 6665 requires one at once). */
const FIRST_NOTIFY_TIMEOUT_MS = 5_000;
/** Subscriptions started (or ended) at once when many mailboxes are watched: spreads the load. */
const STARTS_IN_FLIGHT = 16;
/** How long shutdown waits for the unsubscriptions before closing anyway. */
const STOP_BUDGET_MS = 10_000;

function failureText(result: Extract<SubscribeResult, { ok: false }>): string {
  switch (result.kind) {
    case "auth":
      return "the server refused the credentials (wrong password or auth user)";
    case "not-found":
      return "the server has no such mailbox";
    case "timeout":
    case "unreachable":
      return "the voice mail server could not be reached; try again later";
    case "rejected":
      return `the server refused the subscription (${result.status ?? "no status"} ${result.reason})`;
  }
}

/** ANI, DNIS and time from the optional message headers of the body (RFC 3842 §5.2). */
function messageFromSummary(summary: MessageSummary): MessageInfo | undefined {
  const newest = summary.messages[summary.messages.length - 1];
  if (!newest) return undefined;
  const user = (value: string | undefined) => {
    if (!value) return undefined;
    const uri = /<([^>]*)>/.exec(value)?.[1] ?? value;
    return (/^(?:sips?|tel):([^@;>]+)/i.exec(uri.trim())?.[1] ?? uri.trim()).slice(0, 64) || undefined;
  };
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
  readonly watching: WatchingCapability = {
    watch: (mailbox, credentials) => this.watch(mailbox, credentials),
    unwatch: (mailbox) => this.unwatch(mailbox),
  };
  /** `!mwi off` ends the subscription; `!mwi on` subscribes again. */
  readonly upstreamMwi: UpstreamMwiCapability = {
    switchOn: (mailbox, credentials) => this.watch(mailbox, credentials),
    switchOff: (mailbox) => this.unwatch(mailbox),
  };
  private ua?: SipUserAgent;
  /** The one subscription per watched mailbox. */
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly allowedSources = new BlockList();
  /** Subscribes and unsubscribes a few at a time. */
  private readonly throttle = pLimit(STARTS_IN_FLIGHT);

  constructor(
    readonly system: KindSystem<"sip", SipSettings>,
    private readonly host: GatewayHost,
  ) {
    for (const source of system.sip.unsolicitedSources) {
      const [address, prefix] = source.split("/");
      const family = isIPv6(address!) ? "ipv6" : "ipv4";
      if (prefix) this.allowedSources.addSubnet(address!, Number(prefix), family);
      else this.allowedSources.addAddress(address!, family);
    }
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
      bindAddress: local.bindAddress,
      port: local.port,
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
  }

  async stop(): Promise<void> {
    // Polite to the server: it frees the subscriptions now; they come back on the next start.
    // A few at a time, like start-up: all at once, most answers would be lost in the burst.
    const all = [...this.subscriptions.values()];
    this.subscriptions.clear();
    const unsubscribeAll = Promise.all(all.map((s) => this.throttle(() => s.unsubscribe().catch(() => undefined))));
    await withTimeout(unsubscribeAll, STOP_BUDGET_MS, undefined);
    this.throttle.clearQueue();
    await this.ua?.close();
  }

  private subscription(mailbox: string, credentials: MailboxCredentials): Subscription {
    if (!this.ua) throw new Error(`SIP system ${this.systemId} is not started`);
    const { server } = this.system.sip;
    return this.ua.subscribe({
      target: { host: server.host, port: server.port, transport: server.transport },
      uri: `sip:${mailbox}@${this.domain}`,
      username: credentials.username,
      password: credentials.password,
      expires: this.system.sip.expires,
    });
  }

  /** Subscribes with the user's credentials: a 200 and a first NOTIFY prove the mailbox is theirs. */
  private async proveLink(request: LinkRequest): Promise<LinkProof> {
    const credentials = { username: request.authUser ?? request.mailbox, password: request.password ?? "" };
    const sub = this.subscription(request.mailbox, credentials);
    const firstNotify = withTimeout(new Promise<string>((resolve) => sub.once("notify", resolve)), FIRST_NOTIFY_TIMEOUT_MS, undefined);
    const result = await sub.start();
    if (!result.ok) {
      await sub.unsubscribe().catch(() => undefined);
      this.host.log.info(`${this.systemId}: link of ${request.mailbox} for ${request.userId} refused: ${result.kind}`);
      return { ok: false, reason: failureText(result) };
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
   * Subscribes with the stored credentials. Resolves once the first NOTIFY's counts are stored,
   * the subscription failed, or FIRST_NOTIFY_TIMEOUT_MS passed: whoever shows the counts next
   * (`!mwi on`) shows fresh ones, not those from before MWI was switched off.
   */
  private async watch(mailbox: string, credentials?: MailboxCredentials): Promise<void> {
    if (this.subscriptions.has(mailbox)) return;
    if (!credentials) {
      this.host.log.warn(`${this.systemId}: cannot watch ${mailbox}: no stored credentials (link it again with !link)`);
      return;
    }
    const sub = this.subscription(mailbox, credentials);
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

  private async unwatch(mailbox: string): Promise<void> {
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

  /** Parses a NOTIFY body; a bad one is logged in one line and changes nothing. */
  private updateFrom(mailbox: string, body: string): MwiUpdate | undefined {
    const parsed = parseMessageSummary(body);
    if (!parsed.ok) {
      this.host.log.warn(`${this.systemId}: ignored a NOTIFY for ${mailbox}: ${parsed.reason}`);
      return undefined;
    }
    const { summary } = parsed;
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

  /** Asterisk's NOTIFY has no caller: its spool has, when the admin told us where it is. */
  private async withCallerDetails(update: MwiUpdate): Promise<MwiUpdate> {
    const spool = this.system.sip.asteriskSpool;
    if (!spool || update.message || update.counts.new === 0) return update;
    const message = await newestInboxMessage(spool.dir, spool.context, update.mailbox).catch(() => undefined);
    return message ? { ...update, message } : update;
  }

  /** Out-of-dialog MWI: only from the configured sources, mapped by Message-Account or request URI. */
  private async onUnsolicited(notify: UnsolicitedNotify): Promise<number> {
    const family = isIPv6(notify.source.address) ? "ipv6" : "ipv4";
    if (!this.allowedSources.check(notify.source.address, family)) {
      this.host.log.warn(`${this.systemId}: refused an unsolicited NOTIFY from ${notify.source.address}: not an allowed source`);
      return 403;
    }
    const parsed = parseMessageSummary(notify.body);
    if (!parsed.ok) {
      this.host.log.warn(`${this.systemId}: bad unsolicited NOTIFY from ${notify.source.address}: ${parsed.reason}`);
      return 400;
    }
    const account = parsed.summary.account ?? notify.requestUri;
    const mailbox = /^sips?:([^@;>]+)@/i.exec(account)?.[1];
    if (!mailbox) {
      this.host.log.warn(`${this.systemId}: unsolicited NOTIFY from ${notify.source.address} names no mailbox`);
      return 400;
    }
    const update = this.updateFrom(decodeURIComponent(mailbox), notify.body);
    if (!update) return 400;
    await this.host.acceptUpdate(await this.withCallerDetails(update));
    return 200;
  }
}
