/**
 * The SIP user agent the SIP gateway uses: one transport (UDP, plus TCP/TLS), the transaction
 * layer, MWI subscriptions, and the answers to whatever a notifier sends us. It never throws on
 * network input: a bad message gets 400 (when it can be answered at all) and is forgotten.
 */
import {
  formatHost,
  formatVia,
  parseCSeq,
  parseEvent,
  parseNameAddr,
  parseVia,
  splitTopLevel,
} from "./headers.js";
import { withTimeout } from "../../util/timeout.js";
import { randomToken, newBranch } from "./dialog.js";
import { SipHeaders, bodyText, buildResponse, describe, type SipMessage, type SipRequest, type SipResponse } from "./message.js";
import { EVENT_PACKAGE, MWI_CONTENT_TYPE, Subscription, type SipTarget, type SubscriptionHost, type SubscriptionOptions, type SubscriptionTimers } from "./subscription.js";
import { DEFAULT_TIMERS, TransactionLayer, type ClientOutcome, type TimerConfig } from "./transaction.js";
import { SipTransport, type Endpoint, type SipLogger, type SipTlsOptions } from "./transport.js";

export type { SipTarget, SubscriptionOptions, SubscribeResult, NotifyInfo } from "./subscription.js";
export { Subscription } from "./subscription.js";
export type { Endpoint, SipLogger, SipTlsOptions } from "./transport.js";

export interface SipUserAgentOptions {
  /** Local address to bind (e.g. "0.0.0.0", "127.0.0.1"). */
  bindAddress: string;
  /** UDP and TCP port; 0 = any free one. */
  port: number;
  /** Address to advertise in Via/Contact when we are behind NAT. */
  publicAddress?: string;
  tls?: SipTlsOptions;
  logger: SipLogger;
  /** Protocol timers (T1/T2/T4) and the subscription tunables, in ms; small values for tests. */
  timers?: Partial<TimerConfig & SubscriptionTimers>;
  /** Source of jitter in [0, 1); inject for deterministic tests. */
  random?: () => number;
  /** User-Agent header value. */
  userAgent?: string;
  maxMessageBytes?: number;
  /** Accept inbound TCP on the UDP port (default true). */
  listenTcp?: boolean;
  connectTimeoutMs?: number;
}

/** An out-of-dialog NOTIFY ("unsolicited MWI"), handed to the application to judge. */
export interface UnsolicitedNotify {
  requestUri: string;
  headers: SipHeaders;
  /** The Event package, lower case (always "message-summary" here). */
  event: string;
  contentType?: string;
  body: string;
  source: Endpoint;
}

/** Returns the status to answer: 200 to accept, 403 for a source not allowed, ... */
export type UnsolicitedNotifyHandler = (notify: UnsolicitedNotify) => number | Promise<number>;

/** Methods we know but do not take (405); anything else is not implemented (501). */
const KNOWN_METHODS = new Set(["INVITE", "BYE", "REGISTER", "SUBSCRIBE", "PUBLISH", "MESSAGE", "REFER", "INFO", "PRACK", "UPDATE"]);
const ALLOW = "NOTIFY, OPTIONS";

export class SipUserAgent implements SubscriptionHost {
  readonly logger: SipLogger;
  readonly timers: SubscriptionTimers;
  private readonly tx: TransactionLayer;
  private readonly dialogs = new Map<string, Subscription>();
  private readonly subscriptions = new Set<Subscription>();
  private unsolicited: UnsolicitedNotifyHandler | undefined;
  private readonly rand: () => number;
  private readonly userAgent: string;
  private closed = false;
  private readonly replying = new Set<Promise<void>>();

  private constructor(
    opts: SipUserAgentOptions,
    private readonly transport: SipTransport,
  ) {
    this.logger = opts.logger;
    const t = opts.timers ?? {};
    this.timers = {
      retryBaseMs: t.retryBaseMs ?? 2_000,
      retryMaxMs: t.retryMaxMs ?? 300_000,
      defaultRetryAfterMs: t.defaultRetryAfterMs ?? 60_000,
      unsubscribeWaitMs: t.unsubscribeWaitMs ?? 2_000,
      stableAfterMs: t.stableAfterMs ?? 60_000,
    };
    this.tx = new TransactionLayer(
      transport,
      { t1: t.t1 ?? DEFAULT_TIMERS.t1, t2: t.t2 ?? DEFAULT_TIMERS.t2, t4: t.t4 ?? DEFAULT_TIMERS.t4 },
      opts.logger,
    );
    this.rand = opts.random ?? Math.random;
    this.userAgent = opts.userAgent ?? "matrix-appservice-voicemail";
    transport.setHandler({
      message: (msg, source) => this.onMessage(msg, source),
      invalid: (reason, partial, source, tooLarge) => this.onInvalid(reason, partial, source, tooLarge),
    });
  }

  static async start(opts: SipUserAgentOptions): Promise<SipUserAgent> {
    const transportOpts = {
      bindAddress: opts.bindAddress,
      port: opts.port,
      logger: opts.logger,
      ...(opts.publicAddress !== undefined ? { publicAddress: opts.publicAddress } : {}),
      ...(opts.tls !== undefined ? { tls: opts.tls } : {}),
      ...(opts.maxMessageBytes !== undefined ? { maxMessageBytes: opts.maxMessageBytes } : {}),
      ...(opts.listenTcp !== undefined ? { listenTcp: opts.listenTcp } : {}),
      ...(opts.connectTimeoutMs !== undefined ? { connectTimeoutMs: opts.connectTimeoutMs } : {}),
    };
    const transport = await SipTransport.open(transportOpts);
    const ua = new SipUserAgent(opts, transport);
    opts.logger.info(`sip: user agent listening on ${opts.bindAddress}:${transport.localPort}`);
    return ua;
  }

  get localPort(): number {
    return this.transport.localPort;
  }

  /** A new subscription; call start() on it (after attaching listeners). */
  subscribe(options: SubscriptionOptions): Subscription {
    if (this.closed) throw new Error("SIP user agent is closed");
    const sub = new Subscription(this, options);
    this.subscriptions.add(sub);
    return sub;
  }

  onUnsolicitedNotify(handler: UnsolicitedNotifyHandler): void {
    this.unsolicited = handler;
  }

  /** Stops every subscription (without unsubscribing), every timer and socket. */
  async close(): Promise<void> {
    if (this.closed) return;
    // Answers on their way (the 200 to a final NOTIFY above all) leave before the sockets close:
    // a notifier that never hears it keeps resending.
    if (this.replying.size) await withTimeout(Promise.allSettled([...this.replying]), 500, undefined);
    this.closed = true;
    for (const sub of this.subscriptions) sub.shutdown();
    this.subscriptions.clear();
    this.dialogs.clear();
    this.tx.close();
    await this.transport.close();
  }

  // ------------------------------------------------------------------ SubscriptionHost

  random(): number {
    return this.rand();
  }

  async send(req: SipRequest, target: SipTarget, contactUser: string): Promise<ClientOutcome> {
    if (this.closed) return { kind: "closed" };
    const dest: Endpoint = { transport: target.transport, address: target.host, port: target.port };
    let local: { host: string; port: number };
    try {
      local = await this.transport.localEndpoint(dest);
    } catch (err) {
      return { kind: "transport-error", error: (err as Error).message };
    }
    if (this.closed) return { kind: "closed" };
    const via = formatVia({
      transport: target.transport.toUpperCase(),
      host: local.host,
      port: local.port,
      // RFC 3581 rport: answer to the port we sent from, which is what NATs need.
      params: new Map([["branch", newBranch()], ["rport", ""]]),
    });
    const transportParam = target.transport === "udp" ? "" : `;transport=${target.transport}`;
    const headers = new SipHeaders([
      ["Via", via],
      ["Max-Forwards", "70"],
      ...req.headers.entries(),
      ["Contact", `<sip:${contactUser}@${formatHost(local.host)}:${local.port}${transportParam}>`],
      ["User-Agent", this.userAgent],
    ]);
    const out: SipRequest = { ...req, headers };
    this.logger.debug(`sip: -> ${describe(out)} to ${target.transport}:${target.host}:${target.port}`);
    const outcome = await this.tx.request(out, dest);
    if (outcome.kind === "response") this.logger.debug(`sip: <- ${describe(outcome.response)}`);
    else this.logger.debug(`sip: ${out.method} ${out.uri}: ${outcome.kind}`);
    return outcome;
  }

  registerDialog(callId: string, localTag: string, sub: Subscription): void {
    this.dialogs.set(`${callId}|${localTag}`, sub);
  }

  unregisterDialog(callId: string, localTag: string): void {
    this.dialogs.delete(`${callId}|${localTag}`);
  }

  release(sub: Subscription): void {
    this.subscriptions.delete(sub);
  }

  // ------------------------------------------------------------------ inbound

  private onMessage(msg: SipMessage, source: Endpoint): void {
    if (this.closed) return;
    if (msg.kind === "response") {
      if (!this.tx.receiveResponse(msg)) this.logger.debug(`sip: stray response ${describe(msg)}`);
      return;
    }
    this.logger.debug(`sip: <- ${describe(msg)} from ${source.transport}:${source.address}:${source.port}`);
    if (msg.method === "ACK") return; // only ever for our final answers to an INVITE: nothing to do
    if (this.tx.absorbRetransmission(msg, source)) return;
    void this.dispatch(msg, source).catch((err: Error) => {
      this.logger.error(`sip: handling ${msg.method} failed: ${err.message}`);
      void this.reply(msg, source, 500);
    });
  }

  private onInvalid(reason: string, partial: SipMessage | undefined, source: Endpoint, tooLarge: boolean): void {
    if (this.closed) return;
    this.logger.warn(`sip: unusable message from ${source.transport}:${source.address}:${source.port}: ${reason}`);
    // Answer only a request we can route an answer for; a bad response is just dropped.
    if (partial?.kind !== "request" || partial.method === "ACK" || !partial.headers.has("via")) return;
    void this.reply(partial, source, tooLarge ? 513 : 400, { reason: tooLarge ? undefined : badRequestReason(reason) });
  }

  private async dispatch(req: SipRequest, source: Endpoint): Promise<void> {
    const problem = checkRequest(req);
    if (problem) return this.reply(req, source, 400, { reason: badRequestReason(problem) });
    if (req.method !== "CANCEL" && req.headers.getList("require").length > 0) {
      // RFC 3261 §8.2.2.3: we support no extensions.
      return this.reply(req, source, 420, { headers: [["Unsupported", req.headers.getList("require").join(", ")]] });
    }
    switch (req.method) {
      case "NOTIFY":
        return this.reply(req, source, await this.notifyStatus(req, source));
      case "OPTIONS":
        return this.reply(req, source, 200, { headers: [["Allow", ALLOW], ["Accept", MWI_CONTENT_TYPE]] });
      case "CANCEL":
        return this.reply(req, source, 481);
      default:
        return KNOWN_METHODS.has(req.method)
          ? this.reply(req, source, 405, { headers: [["Allow", ALLOW]] })
          : this.reply(req, source, 501, { headers: [["Allow", ALLOW]] });
    }
  }

  /** NOTIFY: to its subscription (dialog), else to the unsolicited handler, else 481. */
  private async notifyStatus(req: SipRequest, source: Endpoint): Promise<number> {
    const eventValue = req.headers.get("event");
    const event = eventValue === undefined ? undefined : parseEvent(eventValue);
    if (!event) return 400;
    if (event.package !== EVENT_PACKAGE) return 489;
    const callId = req.headers.get("call-id")!;
    const toTag = parseNameAddr(req.headers.get("to")!)!.tag;
    const fromTag = parseNameAddr(req.headers.get("from")!)!.tag;
    if (toTag !== undefined) {
      // In a dialog (or racing ahead of the 2xx that confirms it): matched by Call-ID and tags.
      const sub = this.dialogs.get(`${callId}|${toTag}`);
      return sub?.matchesRemote(fromTag) ? sub.handleNotify(req) : 481;
    }
    if (!this.unsolicited) return 481;
    const notify: UnsolicitedNotify = { requestUri: req.uri, headers: req.headers, event: event.package, body: bodyText(req), source };
    const ct = req.headers.get("content-type");
    if (ct !== undefined) notify.contentType = ct;
    try {
      const status = await this.unsolicited(notify);
      return Number.isInteger(status) && status >= 200 && status <= 699 ? status : 500;
    } catch (err) {
      this.logger.error(`sip: unsolicited NOTIFY handler threw: ${(err as Error).message}`);
      return 500;
    }
  }

  /** Answers `req` where RFC 3261 §18.2.2 / RFC 3581 say: same connection, or source port with rport. */
  private async reply(
    req: SipRequest,
    source: Endpoint,
    status: number,
    opts: { reason?: string | undefined; headers?: Array<[string, string]> } = {},
  ): Promise<void> {
    if (this.closed) return;
    const res: SipResponse = buildResponse(req, status, {
      toTag: randomToken(6),
      ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
      headers: [...(opts.headers ?? []), ["User-Agent", this.userAgent]],
    });
    const vias = res.headers.getAll("via");
    const top = parseVia(req.headers.getList("via")[0] ?? "");
    let port = source.port;
    if (top) {
      if (top.params.has("rport")) top.params.set("rport", String(source.port));
      else if (source.transport === "udp") port = top.port ?? 5060;
      if (top.host !== source.address) top.params.set("received", source.address);
      // Rewrite the first element of the first Via line only (a line may hold several).
      const rest = splitTopLevel(vias[0] ?? "", ",").slice(1);
      res.headers.delete("via");
      res.headers.append("Via", [formatVia(top), ...rest].join(","));
      for (const v of vias.slice(1)) res.headers.append("Via", v);
    }
    const dest: Endpoint = { ...source, port };
    this.logger.debug(`sip: -> ${describe(res)} to ${dest.transport}:${dest.address}:${dest.port}`);
    const sending = this.tx.respond(req, res, dest);
    this.replying.add(sending);
    try {
      await sending;
    } catch (err) {
      this.logger.debug(`sip: could not send ${status} to ${dest.address}:${dest.port}: ${(err as Error).message}`);
    } finally {
      this.replying.delete(sending);
    }
  }
}

/** The checks of RFC 3261 §8.2 that let us answer sensibly; undefined when fine. */
function checkRequest(req: SipRequest): string | undefined {
  if (!parseVia(req.headers.getList("via")[0] ?? "")) return "missing or bad Via";
  if (!req.headers.get("call-id")) return "missing Call-ID";
  const cseq = parseCSeq(req.headers.get("cseq") ?? "");
  if (!cseq) return "missing or bad CSeq";
  if (cseq.method !== req.method) return "CSeq method does not match";
  if (!parseNameAddr(req.headers.get("from") ?? "")) return "missing or bad From";
  if (!parseNameAddr(req.headers.get("to") ?? "")) return "missing or bad To";
  if (!/^[A-Za-z][A-Za-z0-9+.\-]*:\S+$/.test(req.uri)) return "bad Request-URI";
  return undefined;
}

function badRequestReason(detail: string): string {
  return `Bad Request (${detail.replace(/[^\x20-\x7e]/g, "?").slice(0, 80)})`;
}
