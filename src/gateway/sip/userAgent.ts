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
import { rateLimitedLog, type RateLimitedLog } from "../../util/rateLimitedLog.js";
import { withTimeout } from "../../util/timeout.js";
import { randomToken, newBranch } from "./dialog.js";
import { SipHeaders, bodyText, buildResponse, describe, serializeMessage, type SipMessage, type SipRequest, type SipResponse } from "./message.js";
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
  /** Caps and timeouts of inbound TCP connections (see TransportOptions). */
  maxConnections?: number;
  maxConnectionsPerSource?: number;
  idleTimeoutMs?: number;
  messageTimeoutMs?: number;
  /** Server transactions kept at most (the oldest are dropped). */
  maxServerTransactions?: number;
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
  /** Unusable messages and unsent answers: a stranger can cause one per datagram. */
  private readonly noise: RateLimitedLog;

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
      opts.maxServerTransactions,
    );
    this.noise = rateLimitedLog((line) => opts.logger.warn(line));
    this.rand = opts.random ?? Math.random;
    this.userAgent = opts.userAgent ?? "matrix-appservice-voicemail";
    transport.setHandler({
      message: (msg, source, size) => this.onMessage(msg, source, size),
      invalid: (reason, partial, source, tooLarge, size) => this.onInvalid(reason, partial, source, tooLarge, size),
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
      ...(opts.maxConnections !== undefined ? { maxConnections: opts.maxConnections } : {}),
      ...(opts.maxConnectionsPerSource !== undefined ? { maxConnectionsPerSource: opts.maxConnectionsPerSource } : {}),
      ...(opts.idleTimeoutMs !== undefined ? { idleTimeoutMs: opts.idleTimeoutMs } : {}),
      ...(opts.messageTimeoutMs !== undefined ? { messageTimeoutMs: opts.messageTimeoutMs } : {}),
    };
    const transport = await SipTransport.open(transportOpts);
    const ua = new SipUserAgent(opts, transport);
    opts.logger.info(`sip: user agent listening on ${opts.bindAddress}:${transport.localPort}`);
    return ua;
  }

  get localPort(): number {
    return this.transport.localPort;
  }

  get localAddress(): string {
    return this.transport.localAddress;
  }

  /** What strangers can make the user agent hold: for tests and figures. */
  get held(): { inboundConnections: number; serverTransactions: number } {
    return { inboundConnections: this.transport.inboundConnections, serverTransactions: this.tx.serverTransactions };
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
    this.noise.flush();
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

  private onMessage(msg: SipMessage, source: Endpoint, size: number): void {
    if (this.closed) return;
    if (msg.kind === "response") {
      if (!this.tx.receiveResponse(msg)) this.logger.debug(`sip: stray response ${describe(msg)}`);
      return;
    }
    this.logger.debug(`sip: <- ${describe(msg)} from ${source.transport}:${source.address}:${source.port}`);
    if (msg.method === "ACK") return; // only ever for our final answers to an INVITE: nothing to do
    if (this.tx.absorbRetransmission(msg, { ...source, port: this.replyPort(msg, source) }, size)) return;
    void this.dispatch(msg, source, size).catch((err: Error) => {
      this.logger.error(`sip: handling ${msg.method} failed: ${err.message}`);
      void this.reply(msg, source, size, 500);
    });
  }

  private onInvalid(reason: string, partial: SipMessage | undefined, source: Endpoint, tooLarge: boolean, size: number): void {
    if (this.closed) return;
    this.noise(`unusable ${source.address}`, `sip: unusable message from ${source.transport}:${source.address}:${source.port}: ${reason}`);
    // Answer only a request we can route an answer for; a bad response is just dropped.
    if (partial?.kind !== "request" || partial.method === "ACK" || !partial.headers.has("via")) return;
    void this.reply(partial, source, size, tooLarge ? 513 : 400, { reason: tooLarge ? undefined : badRequestReason(reason) });
  }

  private async dispatch(req: SipRequest, source: Endpoint, size: number): Promise<void> {
    const problem = checkRequest(req);
    if (problem) return this.reply(req, source, size, 400, { reason: badRequestReason(problem) });
    if (req.method !== "CANCEL" && req.headers.getList("require").length > 0) {
      // RFC 3261 §8.2.2.3: we support no extensions.
      return this.reply(req, source, size, 420, { headers: [["Unsupported", req.headers.getList("require").join(", ")]] });
    }
    switch (req.method) {
      case "NOTIFY": {
        const { status, inDialog } = await this.notifyStatus(req, source);
        // A NOTIFY that matched one of our dialogs names our random tag: it comes from the
        // notifier (or from someone who sees its traffic), not from a forged address.
        return this.reply(req, source, inDialog ? Infinity : size, status);
      }
      case "OPTIONS":
        return this.reply(req, source, size, 200, { headers: [["Allow", ALLOW], ["Accept", MWI_CONTENT_TYPE]] });
      case "CANCEL":
        return this.reply(req, source, size, 481);
      default:
        return KNOWN_METHODS.has(req.method)
          ? this.reply(req, source, size, 405, { headers: [["Allow", ALLOW]] })
          : this.reply(req, source, size, 501, { headers: [["Allow", ALLOW]] });
    }
  }

  /** NOTIFY: to its subscription (dialog), else to the unsolicited handler, else 481. */
  private async notifyStatus(req: SipRequest, source: Endpoint): Promise<{ status: number; inDialog: boolean }> {
    const eventValue = req.headers.get("event");
    const event = eventValue === undefined ? undefined : parseEvent(eventValue);
    if (!event) return { status: 400, inDialog: false };
    if (event.package !== EVENT_PACKAGE) return { status: 489, inDialog: false };
    const callId = req.headers.get("call-id")!;
    const toTag = parseNameAddr(req.headers.get("to")!)!.tag;
    const fromTag = parseNameAddr(req.headers.get("from")!)!.tag;
    if (toTag !== undefined) {
      // In a dialog (or racing ahead of the 2xx that confirms it): matched by Call-ID and tags.
      const sub = this.dialogs.get(`${callId}|${toTag}`);
      return sub?.matchesRemote(fromTag) ? { status: sub.handleNotify(req), inDialog: true } : { status: 481, inDialog: false };
    }
    if (!this.unsolicited) return { status: 481, inDialog: false };
    const notify: UnsolicitedNotify = { requestUri: req.uri, headers: req.headers, event: event.package, body: bodyText(req), source };
    const ct = req.headers.get("content-type");
    if (ct !== undefined) notify.contentType = ct;
    try {
      const status = await this.unsolicited(notify);
      return { status: Number.isInteger(status) && status >= 200 && status <= 699 ? status : 500, inDialog: false };
    } catch (err) {
      this.logger.error(`sip: unsolicited NOTIFY handler threw: ${(err as Error).message}`);
      return { status: 500, inDialog: false };
    }
  }

  /**
   * Answers `req` where RFC 3261 §18.2.2 / RFC 3581 say: same connection, or source port with
   * rport. Over UDP the source address may be forged: the answer is never larger than the
   * `size` bytes the request came in (optional headers and the reason's detail go first; an
   * answer that still does not fit is not sent). Infinity for a request known to be genuine.
   */
  private async reply(
    req: SipRequest,
    source: Endpoint,
    size: number,
    status: number,
    opts: { reason?: string | undefined; headers?: Array<[string, string]> } = {},
  ): Promise<void> {
    if (this.closed) return;
    const toTag = randomToken(6);
    const full = this.response(req, source, status, toTag, opts.reason, [...(opts.headers ?? []), ["User-Agent", this.userAgent]]);
    const res =
      source.transport !== "udp"
        ? full
        : [full, this.response(req, source, status, toTag, opts.reason, opts.headers ?? []), this.response(req, source, status, toTag, undefined, [])].find(
            (r) => serializeMessage(r).length <= size,
          );
    if (!res) {
      this.noise(`unanswered ${source.address}`, `sip: no ${status} to ${source.address}:${source.port}: the answer would be larger than the ${size}-byte request`);
      return;
    }
    const dest: Endpoint = { ...source, port: this.replyPort(req, source) };
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

  /** Where the answer goes: the source, or over UDP the Via's port unless it asked for rport. */
  private replyPort(req: SipRequest, source: Endpoint): number {
    const top = parseVia(req.headers.getList("via")[0] ?? "");
    if (top && !top.params.has("rport") && source.transport === "udp") return top.port ?? 5060;
    return source.port;
  }

  /** The response with its top Via marked with received and rport (RFC 3261 §18.2.1, RFC 3581). */
  private response(req: SipRequest, source: Endpoint, status: number, toTag: string, reason: string | undefined, headers: Array<[string, string]>): SipResponse {
    const res: SipResponse = buildResponse(req, status, { toTag, ...(reason !== undefined ? { reason } : {}), headers });
    const vias = res.headers.getAll("via");
    const top = parseVia(req.headers.getList("via")[0] ?? "");
    if (top) {
      if (top.params.has("rport")) top.params.set("rport", String(source.port));
      if (top.host !== source.address) top.params.set("received", source.address);
      // Rewrite the first element of the first Via line only (a line may hold several).
      const rest = splitTopLevel(vias[0] ?? "", ",").slice(1);
      res.headers.delete("via");
      res.headers.append("Via", [formatVia(top), ...rest].join(","));
      for (const v of vias.slice(1)) res.headers.append("Via", v);
    }
    return res;
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
