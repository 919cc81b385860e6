/**
 * One MWI subscription (RFC 6665, event package "message-summary" of RFC 3842): establish with
 * digest auth, refresh in the dialog before expiry, recover with a new dialog when the notifier
 * loses it, obey `Subscription-State: terminated` reasons, unsubscribe with Expires: 0.
 *
 * Attach listeners before start(): the first NOTIFY usually follows the 200 at once.
 */
import { EventEmitter } from "node:events";
import { Buffer } from "node:buffer";
import { atLeastDelay, backoffDelay } from "../../core/backoff.js";
import { withTimeout } from "../../util/timeout.js";
import { DigestClient, selectChallenge } from "./digest.js";
import { addressInDialog, confirmDialog, newDialog, type Dialog } from "./dialog.js";
import {
  formatNameAddr,
  parseCSeq,
  parseNameAddr,
  parseRetryAfter,
  parseSeconds,
  parseSipUri,
  parseSubscriptionState,
  type SubscriptionStateHeader,
} from "./headers.js";
import { SipHeaders, bodyText, type SipRequest, type SipResponse } from "./message.js";
import type { ClientOutcome } from "./transaction.js";
import type { SipLogger, TransportKind } from "./transport.js";

export const EVENT_PACKAGE = "message-summary";
export const MWI_CONTENT_TYPE = "application/simple-message-summary";

export interface SipTarget {
  host: string;
  port: number;
  transport: TransportKind;
}

export interface SubscriptionOptions {
  /** Where every request is sent (an outbound proxy, in effect): the voice mail server. */
  target: SipTarget;
  /** Request-URI and To of the initial SUBSCRIBE, e.g. sip:1001@127.0.0.1. */
  uri: string;
  /** From identity (defaults to uri). */
  fromUri?: string;
  /** Digest user; default: the user part of uri. */
  username?: string;
  password: string;
  /** Requested expiry in seconds, default 3600. */
  expires?: number;
  /** Refresh at this fraction of the granted expiry, minus up to 10% jitter; default 0.8. */
  refreshFraction?: number;
}

export type SubscribeResult =
  | { ok: true; expires: number; state: "active" | "pending" }
  | {
      ok: false;
      kind: "auth" | "not-found" | "rejected" | "timeout" | "unreachable";
      status?: number;
      reason: string;
      /** Seconds from a Retry-After header, when the server sent one. */
      retryAfter?: number;
    };

export type SubscriptionState = "init" | "pending" | "active" | "terminated";

export interface NotifyInfo {
  contentType?: string;
  /** The raw Subscription-State header value, e.g. "active;expires=3600". */
  subscriptionState: string;
}

export interface SubscriptionEvents {
  /** Every NOTIFY body in this subscription (across recovered dialogs too). */
  notify: [body: string, info: NotifyInfo];
  /** The subscription ended for good (not after unsubscribe(), nor a failed start()). */
  terminated: [reason: string, retryAfter?: number];
  /** A lost subscription was established again (new dialog). */
  resubscribed: [];
  /** For logging only; emitted only when someone listens. */
  error: [err: Error];
}

/** Tunables, all in milliseconds. */
export interface SubscriptionTimers {
  retryBaseMs: number;
  retryMaxMs: number;
  /** Wait for probation/giveup without retry-after. */
  defaultRetryAfterMs: number;
  /** How long unsubscribe() waits for the final NOTIFY. */
  unsubscribeWaitMs: number;
  /** Established this long = healthy again: the backoff starts over. */
  stableAfterMs: number;
}

/** What a subscription needs from the user agent. */
export interface SubscriptionHost {
  readonly logger: SipLogger;
  readonly timers: SubscriptionTimers;
  random(): number;
  /** Adds Via, Contact (with `contactUser`), Max-Forwards, User-Agent, then runs the transaction. */
  send(req: SipRequest, target: SipTarget, contactUser: string): Promise<ClientOutcome>;
  registerDialog(callId: string, localTag: string, sub: Subscription): void;
  unregisterDialog(callId: string, localTag: string): void;
  /** The subscription is over for good: the user agent may forget it. */
  release(sub: Subscription): void;
}

type Failure = Extract<SubscribeResult, { ok: false }>;
type Outcome = { ok: true; response: SipResponse } | { ok: false; failure: Failure } | { ok: "closed" };

const PERMANENT = new Set<Failure["kind"]>(["auth", "not-found", "rejected"]);
/** Notifier reasons after which a new subscription would be refused again (RFC 6665 §4.1.3). */
const FINAL_REASONS = new Set(["rejected", "noresource", "invariant"]);
const MAX_TIMER_MS = 2 ** 31 - 1;

export class Subscription extends EventEmitter<SubscriptionEvents> {
  private currentState: SubscriptionState = "init";
  private dialog: Dialog | undefined;
  private readonly auth: DigestClient;
  private readonly requestedExpires: number;
  private readonly fromUri: string;
  private readonly contactUser: string;
  private startPromise: Promise<SubscribeResult> | undefined;
  private stopPromise: Promise<void> | undefined;
  private stopped = false;
  /** The SUBSCRIBE transaction chain in progress, if any. */
  private inflight: Promise<unknown> | undefined;
  /** The attempt or refresh in progress (the transaction plus acting on its outcome). */
  private operation: Promise<unknown> | undefined;
  /** A terminating NOTIFY that arrived while a SUBSCRIBE was in flight: handled after it. */
  private deferredTermination: SubscriptionStateHeader | undefined;
  /** Consecutive failures: drives the backoff; reset once the subscription is stable. */
  private failures = 0;
  private refreshTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private stableTimer: NodeJS.Timeout | undefined;
  private finalNotifyWaiter: (() => void) | undefined;
  private lastGranted = 0;
  private endReason: string | undefined;
  private challengedAndAccepted = false;

  /** The options without the password (that lives only in the digest client). */
  private readonly options: Readonly<Omit<SubscriptionOptions, "password">>;

  constructor(
    private readonly host: SubscriptionHost,
    options: SubscriptionOptions,
  ) {
    super();
    const { password, ...rest } = options;
    this.options = rest;
    const uri = parseSipUri(options.uri);
    this.fromUri = options.fromUri ?? options.uri;
    this.contactUser = parseSipUri(this.fromUri)?.user ?? uri?.user ?? "mwi";
    this.auth = new DigestClient(options.username ?? uri?.user ?? "", password);
    this.requestedExpires = options.expires ?? 3600;
  }

  get state(): SubscriptionState {
    return this.currentState;
  }

  /** The mailbox URI this subscription is for. */
  get uri(): string {
    return this.options.uri;
  }

  /**
   * The notifier challenged (401/407) and then accepted our credentials with a 2xx: only that
   * proves the password is the mailbox's. A 2xx without a challenge proves nothing.
   */
  get authenticated(): boolean {
    return this.challengedAndAccepted;
  }

  /** The expiry the notifier granted last, in seconds (0 before the first success). */
  get expires(): number {
    return this.lastGranted;
  }

  /** Sends the initial SUBSCRIBE; resolves on its final outcome (same promise on every call). */
  start(): Promise<SubscribeResult> {
    this.startPromise ??= this.initialAttempt();
    return this.startPromise;
  }

  private async initialAttempt(): Promise<SubscribeResult> {
    if (!parseSipUri(this.options.uri)) {
      this.currentState = "terminated";
      this.stopped = true;
      this.host.release(this);
      return { ok: false, kind: "rejected", reason: `not a sip: URI: ${this.options.uri.slice(0, 80)}` };
    }
    const result = await this.track(this.attempt());
    if (!result.ok && !this.stopped) {
      if (PERMANENT.has(result.kind)) {
        this.currentState = "terminated";
        this.stopped = true;
        this.host.release(this);
      } else this.scheduleRecovery(this.backoffDelay(result.retryAfter), `initial SUBSCRIBE failed: ${result.reason}`);
    }
    return result;
  }

  /** Unsubscribes (Expires: 0 in the dialog), waits briefly for the final NOTIFY, stops all timers. */
  unsubscribe(): Promise<void> {
    this.stopPromise ??= this.doUnsubscribe();
    return this.stopPromise;
  }

  private async doUnsubscribe(): Promise<void> {
    this.stopped = true;
    this.clearTimers();
    // Let a running SUBSCRIBE finish, but not for long: if an unconfirmed one is abandoned and
    // its 2xx comes late, the notifier's NOTIFYs get 481 and it drops the subscription itself.
    if (this.operation) await this.boundedWait(this.operation.catch(() => undefined));
    const d = this.dialog;
    if (d?.remoteTag !== undefined) {
      const finalNotify = new Promise<void>((resolve) => (this.finalNotifyWaiter = resolve));
      const outcome = await this.transact(d, 0);
      if (outcome.ok === true) await this.boundedWait(finalNotify);
      else if (outcome.ok === false) {
        this.host.logger.debug(`sip: unsubscribe of ${this.options.uri} got no 2xx: ${outcome.failure.reason}`);
      }
    }
    this.finalNotifyWaiter = undefined;
    this.dropDialog();
    this.currentState = "terminated";
    this.host.release(this);
  }

  /** Waits for `p`, at most unsubscribeWaitMs. */
  private async boundedWait(p: Promise<unknown>): Promise<void> {
    await withTimeout(p, this.host.timers.unsubscribeWaitMs, undefined);
  }

  /** Stops without sending anything (the user agent is closing). */
  shutdown(): void {
    this.stopped = true;
    this.clearTimers();
    this.finalNotifyWaiter?.();
    this.dropDialog();
    this.currentState = "terminated";
  }

  // ------------------------------------------------------------------ establishing

  /** One attempt at a new subscription: new Call-ID and tag. */
  private async attempt(): Promise<SubscribeResult> {
    this.dropDialog();
    const d = newDialog(this.options.uri);
    this.dialog = d;
    this.host.registerDialog(d.callId, d.localTag, this);
    const outcome = await this.transact(d, this.requestedExpires);
    if (outcome.ok === "closed") return { ok: false, kind: "unreachable", reason: "user agent closed" };
    if (!outcome.ok) {
      if (this.dialog === d) this.dropDialog();
      return outcome.failure;
    }
    if (this.dialog !== d) return { ok: false, kind: "unreachable", reason: "stopped meanwhile" };
    const granted = this.accepted(d, outcome.response);
    const state = this.currentState === "pending" || (this.currentState === "init" && outcome.response.status === 202) ? "pending" : "active";
    this.currentState = state;
    this.host.logger.info(`sip: subscribed to ${this.options.uri} for ${granted}s (${state})`);
    this.afterTransaction(d);
    // A NOTIFY that raced ahead of the 200 may already have ended it for good.
    if ((this.currentState as SubscriptionState) === "terminated") {
      return { ok: false, kind: "rejected", reason: this.endReason ?? "terminated" };
    }
    return { ok: true, expires: granted, state };
  }

  /** A 2xx to a SUBSCRIBE in dialog `d`: confirm it, take the granted expiry, plan the refresh. */
  private accepted(d: Dialog, res: SipResponse): number {
    confirmDialog(d, res, parseNameAddr(res.headers.get("to") ?? "")?.tag);
    const granted = parseSeconds(res.headers.get("expires")) ?? this.requestedExpires;
    if (!this.stopped) {
      if (granted === 0) {
        // Accepted for no time at all (a one-shot fetch): a new subscription, but paced by the
        // backoff so a notifier that always does this is not hammered.
        clearTimeout(this.refreshTimer);
        this.refreshTimer = setTimeout(() => this.scheduleRecovery(this.backoffDelay(), "notifier granted Expires: 0"), 0);
        return granted;
      }
      this.scheduleRefresh(granted);
      if (this.stableTimer === undefined) {
        this.stableTimer = setTimeout(() => {
          this.stableTimer = undefined;
          this.failures = 0;
        }, this.host.timers.stableAfterMs);
      }
    }
    return granted;
  }

  private async refresh(): Promise<void> {
    const d = this.dialog;
    if (this.stopped || !d) return;
    const outcome = await this.transact(d, this.requestedExpires);
    if (this.stopped || this.dialog !== d || outcome.ok === "closed") return;
    if (outcome.ok) {
      const granted = this.accepted(d, outcome.response);
      this.host.logger.debug(`sip: refreshed ${this.options.uri} for ${granted}s`);
      this.afterTransaction(d);
      return;
    }
    // RFC 6665 §4.1.2.2: 481 (and a timeout) means the subscription is gone: start a new one.
    const f = outcome.failure;
    const lost = f.status === 481 || f.kind === "timeout" || (f.kind === "unreachable" && f.status === undefined);
    const delay = lost || PERMANENT.has(f.kind) ? this.immediateDelay() : this.backoffDelay(f.retryAfter);
    this.scheduleRecovery(delay, `refresh failed: ${f.reason}`);
  }

  /** Remembers the running attempt or refresh, so unsubscribe() can wait for it. */
  private track<T>(op: Promise<T>): Promise<T> {
    this.operation = op;
    void op.finally(() => {
      if (this.operation === op) this.operation = undefined;
    }).catch(() => undefined);
    return op;
  }

  /** A terminating NOTIFY that came during the transaction is acted on now. */
  private afterTransaction(d: Dialog): void {
    const t = this.deferredTermination;
    this.deferredTermination = undefined;
    if (t && this.dialog === d) this.terminatedByNotifier(t);
  }

  /**
   * Runs one SUBSCRIBE (with Expires `expires`) through auth challenges and 423; resolves with
   * the 2xx or a classified failure.
   */
  private transact(d: Dialog, expires: number): Promise<Outcome> {
    const run = this.transactChain(d, expires);
    this.inflight = run;
    void run.finally(() => {
      if (this.inflight === run) this.inflight = undefined;
    }).catch(() => undefined);
    return run;
  }

  private async transactChain(d: Dialog, initialExpires: number): Promise<Outcome> {
    let expires = initialExpires;
    let answered = false; // credentials were sent in answer to a challenge in this chain
    let staleRetries = 0;
    let intervalRetries = 0;
    for (;;) {
      const req = this.buildSubscribe(d, expires);
      const outcome = await this.host.send(req, this.options.target, this.contactUser);
      if (outcome.kind === "closed") return { ok: "closed" };
      if (outcome.kind === "timeout") return fail("timeout", "no response (transaction timeout)");
      if (outcome.kind === "transport-error") return fail("unreachable", `cannot reach ${this.describeTarget()}: ${outcome.error}`);
      const res = outcome.response;
      if (res.status >= 200 && res.status < 300) {
        if (answered) this.challengedAndAccepted = true;
        return { ok: true, response: res };
      }

      if (res.status === 401 || res.status === 407) {
        const proxy = res.status === 407;
        const challenge = selectChallenge(res.headers.getAll(proxy ? "proxy-authenticate" : "www-authenticate"), proxy);
        if (!challenge) return fail("auth", "no supported digest challenge", res.status);
        // Once per nonce: a fresh challenge after our answer means the password is wrong.
        if (answered && !challenge.stale) {
          this.auth.reset();
          return fail("auth", "credentials rejected", res.status);
        }
        if (challenge.stale && ++staleRetries > 3) return fail("auth", "stale nonce loop", res.status);
        this.auth.accept(challenge);
        answered = true;
        continue;
      }
      if (res.status === 423 && ++intervalRetries <= 2) {
        const min = parseSeconds(res.headers.get("min-expires"));
        if (min !== undefined && min > expires) {
          expires = min;
          continue;
        }
      }
      return classify(res);
    }
  }

  private buildSubscribe(d: Dialog, expires: number): SipRequest {
    d.localSeq++;
    const { uri, routes } = d.remoteTag !== undefined ? addressInDialog(d) : { uri: this.options.uri, routes: [] };
    const headers = new SipHeaders();
    for (const r of routes) headers.append("Route", r);
    headers.append("From", `${formatNameAddr({ uri: this.fromUri })};tag=${d.localTag}`);
    headers.append("To", formatNameAddr({ uri: this.options.uri }) + (d.remoteTag ? `;tag=${d.remoteTag}` : ""));
    headers.append("Call-ID", d.callId);
    headers.append("CSeq", `${d.localSeq} SUBSCRIBE`);
    headers.append("Event", EVENT_PACKAGE);
    headers.append("Accept", MWI_CONTENT_TYPE);
    headers.append("Expires", String(expires));
    headers.append("Allow", "NOTIFY, OPTIONS");
    // Credentials: those for a challenge just received, or reused ones (qop only) up front.
    for (const [n, v] of this.auth.headers("SUBSCRIBE", uri)) headers.append(n, v);
    return { kind: "request", method: "SUBSCRIBE", uri, headers, body: Buffer.alloc(0) };
  }

  // ------------------------------------------------------------------ NOTIFY

  /** True while the dialog (Call-ID, our tag) could own a NOTIFY from `remoteTag`. */
  matchesRemote(remoteTag: string | undefined): boolean {
    const d = this.dialog;
    if (!d) return false;
    // Before confirmation (NOTIFY racing the 200, RFC 6665 §4.1.2.4) any remote tag is taken.
    return d.remoteTag === undefined || d.remoteTag === remoteTag;
  }

  /** Handles a NOTIFY the user agent matched to this subscription; returns the status to answer. */
  handleNotify(req: SipRequest): number {
    const d = this.dialog;
    if (!d) return 481;
    const from = parseNameAddr(req.headers.get("from") ?? "");
    if (!this.matchesRemote(from?.tag)) return 481;
    const cseq = parseCSeq(req.headers.get("cseq") ?? "");
    if (!cseq) return 400;
    // RFC 3261 §12.2.2: lower than the last one = out of order.
    if (d.remoteSeq !== undefined && cseq.seq < d.remoteSeq) return 500;
    const rawState = req.headers.get("subscription-state");
    const ss = rawState === undefined ? undefined : parseSubscriptionState(rawState);
    if (!ss) return 400; // RFC 6665 §8.2.1: mandatory in a NOTIFY
    d.remoteSeq = cseq.seq;
    if (d.remoteTag === undefined) confirmDialog(d, req, from?.tag);

    const body = bodyText(req);
    if (body.length > 0) {
      const info: NotifyInfo = { subscriptionState: rawState! };
      const ct = req.headers.get("content-type");
      if (ct !== undefined) info.contentType = ct;
      this.safeEmit("notify", body, info);
    }
    if (this.stopped && ss.state === "terminated") {
      // Released after this NOTIFY's 200 is on its way, not before: the caller may close next.
      const waiter = this.finalNotifyWaiter;
      setImmediate(() => waiter?.());
      return 200;
    }
    if (ss.state === "terminated") {
      if (this.inflight) this.deferredTermination = ss;
      else setImmediate(() => this.dialog === d && this.terminatedByNotifier(ss));
      return 200;
    }
    if (!this.stopped && (ss.state === "active" || ss.state === "pending")) {
      this.currentState = ss.state;
      // The notifier's view of the remaining time is authoritative (0 while active is nonsense,
      // and obeying it would loop refresh -> NOTIFY -> refresh).
      if (ss.expires !== undefined && ss.expires > 0 && !this.inflight) this.scheduleRefresh(ss.expires);
    }
    return 200;
  }

  /** RFC 6665 §4.1.3: what to do depends on the reason. */
  private terminatedByNotifier(ss: SubscriptionStateHeader): void {
    if (this.stopped) return;
    const reason = ss.reason ?? "none";
    this.host.logger.info(`sip: ${this.options.uri} terminated by notifier (reason=${reason})`);
    if (FINAL_REASONS.has(reason)) {
      this.terminate(`notifier: ${reason}`, ss.retryAfter);
      return;
    }
    let delay: number;
    if (ss.retryAfter !== undefined) delay = this.atLeast(ss.retryAfter * 1000);
    else if (reason === "probation" || reason === "giveup") delay = this.atLeast(this.host.timers.defaultRetryAfterMs);
    else delay = this.immediateDelay(); // deactivated, timeout, none, unknown
    this.scheduleRecovery(delay, `terminated by notifier (reason=${reason})`);
  }

  // ------------------------------------------------------------------ recovery and timers

  private scheduleRefresh(grantedSeconds: number): void {
    this.lastGranted = grantedSeconds;
    clearTimeout(this.refreshTimer);
    const fraction = this.options.refreshFraction ?? 0.8;
    // Jitter spreads thousands of mailboxes that were subscribed together.
    const factor = Math.max(0.05, fraction - 0.1 * this.host.random());
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, grantedSeconds) * 1000 * factor);
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      void this.track(this.refresh()).catch((err: Error) => this.reportError(err));
    }, delay);
  }

  /** Drops the dialog and tries a new subscription after `delayMs`, again and again until told otherwise. */
  private scheduleRecovery(delayMs: number, why: string): void {
    if (this.stopped) return;
    this.dropDialog();
    this.clearTimers();
    this.currentState = "init";
    this.failures++;
    this.host.logger.info(`sip: ${this.options.uri}: ${why}; new subscription in ${Math.round(delayMs)} ms`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.track(this.recover()).catch((err: Error) => this.reportError(err));
    }, Math.min(MAX_TIMER_MS, delayMs));
  }

  private async recover(): Promise<void> {
    if (this.stopped) return;
    const result = await this.attempt();
    if (this.stopped) return;
    if (result.ok) {
      this.safeEmit("resubscribed");
      return;
    }
    if (PERMANENT.has(result.kind)) {
      this.terminate(result.reason);
      return;
    }
    this.scheduleRecovery(this.backoffDelay(result.retryAfter), `resubscribe failed: ${result.reason}`);
  }

  private terminate(reason: string, retryAfter?: number): void {
    this.dropDialog();
    this.clearTimers();
    this.currentState = "terminated";
    this.stopped = true;
    this.endReason = reason;
    this.host.release(this);
    this.host.logger.warn(`sip: subscription to ${this.options.uri} ended: ${reason}`);
    if (retryAfter === undefined) this.safeEmit("terminated", reason);
    else this.safeEmit("terminated", reason, retryAfter);
  }

  /** Immediately the first time; repeated churn falls back to the backoff so a loop cannot spin. */
  private immediateDelay(): number {
    return this.failures === 0 ? 0 : this.backoffDelay();
  }

  /** The bridge's one backoff (by consecutive failures), or at least Retry-After when the server gave one. */
  private backoffDelay(retryAfterSeconds?: number): number {
    if (retryAfterSeconds !== undefined) return this.atLeast(retryAfterSeconds * 1000);
    const { retryBaseMs, retryMaxMs } = this.host.timers;
    return backoffDelay(this.failures, { baseMs: retryBaseMs, maxMs: retryMaxMs, random: () => this.host.random() });
  }

  private atLeast(ms: number): number {
    return atLeastDelay(ms, () => this.host.random());
  }

  private dropDialog(): void {
    if (this.dialog) this.host.unregisterDialog(this.dialog.callId, this.dialog.localTag);
    this.dialog = undefined;
    this.deferredTermination = undefined;
  }

  private clearTimers(): void {
    clearTimeout(this.refreshTimer);
    clearTimeout(this.retryTimer);
    clearTimeout(this.stableTimer);
    this.refreshTimer = this.retryTimer = this.stableTimer = undefined;
  }

  private describeTarget(): string {
    const t = this.options.target;
    return `${t.transport}:${t.host}:${t.port}`;
  }

  private reportError(err: Error): void {
    this.host.logger.error(`sip: ${this.options.uri}: ${err.message}`);
    this.safeEmit("error", err);
  }

  /** A throwing listener must not break the protocol handling; "error" only with a listener. */
  private safeEmit<K extends keyof SubscriptionEvents>(event: K, ...args: SubscriptionEvents[K]): void {
    if (event === "error" && this.listenerCount("error") === 0) return;
    try {
      (this.emit as (e: K, ...a: SubscriptionEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.host.logger.error(`sip: ${String(event)} listener threw: ${(err as Error).message}`);
    }
  }
}

function fail(kind: Failure["kind"], reason: string, status?: number, retryAfter?: number): Outcome {
  const failure: Failure = { ok: false, kind, reason };
  if (status !== undefined) failure.status = status;
  if (retryAfter !== undefined) failure.retryAfter = retryAfter;
  return { ok: false, failure };
}

/** Maps a final non-2xx response to a failure kind. */
function classify(res: SipResponse): Outcome {
  const s = res.status;
  const reason = `${s} ${res.reason}`.trim();
  const retryAfter = parseRetryAfter(res.headers.get("retry-after"));
  if (s === 401 || s === 407 || s === 403) return fail("auth", reason, s);
  if (s === 404 || s === 410 || s === 484 || s === 604) return fail("not-found", reason, s);
  if (s === 408) return fail("timeout", reason, s, retryAfter);
  if (s === 480 || s === 486 || (s >= 500 && s < 600 && s !== 501 && s !== 505)) return fail("unreachable", reason, s, retryAfter);
  return fail("rejected", reason, s, retryAfter);
}
