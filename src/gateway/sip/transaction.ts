/**
 * Non-INVITE transactions (RFC 3261 §17.1.2, §17.2.2). Client side: retransmit over UDP with
 * Timer E (T1 doubling up to T2), give up with Timer F (64*T1), absorb late response copies for
 * Timer K. Server side: a retransmitted request gets the cached final response again instead of
 * being processed twice.
 *
 * The server side answers strangers: a cached response goes only to where the retransmission
 * came from, and over UDP never when it is larger than that datagram (a forged source address
 * cannot turn the bridge into an amplifier); the transactions kept are bounded (the oldest go),
 * and a response is kept only for Timer J over UDP, not at all over TCP and TLS.
 */
import type { Buffer } from "node:buffer";
import { parseCSeq, parseNameAddr, parseVia } from "./headers.js";
import { serializeMessage, type SipRequest, type SipResponse } from "./message.js";
import type { Endpoint, SipLogger } from "./transport.js";

export interface TimerConfig {
  /** RTT estimate, default 500 ms. */
  t1: number;
  /** Maximum retransmit interval for non-INVITE requests, default 4 s. */
  t2: number;
  /** Maximum duration a message stays in the network, default 5 s. */
  t4: number;
}

export const DEFAULT_TIMERS: TimerConfig = { t1: 500, t2: 4000, t4: 5000 };

export type ClientOutcome =
  | { kind: "response"; response: SipResponse }
  | { kind: "timeout" }
  | { kind: "transport-error"; error: string }
  | { kind: "closed" };

export interface Sender {
  send(data: Buffer, dest: Endpoint): Promise<void>;
}

interface ClientTx {
  state: "trying" | "proceeding" | "completed";
  finish(outcome: ClientOutcome): void;
  timers: Set<NodeJS.Timeout>;
  onProvisional?: ((r: SipResponse) => void) | undefined;
}

interface ServerTx {
  /** Serialized final response, once sent. */
  response?: Buffer;
  timer: NodeJS.Timeout;
}

/** Server transactions kept at most (each holds one response of a few hundred bytes). */
export const MAX_SERVER_TRANSACTIONS = 4096;

export class TransactionLayer {
  private readonly clients = new Map<string, ClientTx>();
  private readonly servers = new Map<string, ServerTx>();
  private closed = false;

  constructor(
    private readonly sender: Sender,
    private readonly timers: TimerConfig,
    private readonly logger: SipLogger,
    private readonly maxServerTransactions = MAX_SERVER_TRANSACTIONS,
  ) {}

  /** Server transactions kept now. */
  get serverTransactions(): number {
    return this.servers.size;
  }

  /**
   * Runs a client transaction for `req` (which already carries its top Via with a unique
   * branch) and resolves with the final response, a timeout, or a transport error.
   */
  request(req: SipRequest, dest: Endpoint, onProvisional?: (r: SipResponse) => void): Promise<ClientOutcome> {
    if (this.closed) return Promise.resolve({ kind: "closed" });
    const key = clientKey(req);
    if (!key) return Promise.resolve({ kind: "transport-error", error: "request without a branch" });
    const data = serializeMessage(req);
    const reliable = dest.transport !== "udp";
    const { t1, t2, t4 } = this.timers;

    return new Promise<ClientOutcome>((resolve) => {
      const tx: ClientTx = {
        state: "trying",
        timers: new Set(),
        onProvisional,
        finish: (outcome) => {
          if (tx.state === "completed") return;
          tx.state = "completed";
          clearAll(tx.timers);
          resolve(outcome);
          // Timer K: keep absorbing copies of the final response that UDP may still deliver.
          if (!reliable && outcome.kind === "response") {
            schedule(tx.timers, t4, () => this.clients.delete(key));
          } else {
            this.clients.delete(key);
          }
        },
      };
      this.clients.set(key, tx);

      const send = (): void => {
        this.sender.send(data, dest).catch((err: Error) => tx.finish({ kind: "transport-error", error: err.message }));
      };
      send();
      if (!reliable) {
        // Timer E: T1, 2*T1, ... capped at T2; in Proceeding always T2.
        const retransmit = (interval: number): void => {
          schedule(tx.timers, interval, () => {
            if (tx.state === "completed") return;
            this.logger.debug(`sip: retransmitting ${req.method} (${key})`);
            send();
            retransmit(tx.state === "proceeding" ? t2 : Math.min(2 * interval, t2));
          });
        };
        retransmit(t1);
      }
      // Timer F.
      schedule(tx.timers, 64 * t1, () => tx.finish({ kind: "timeout" }));
    });
  }

  /** Hands a response to its transaction; false when none matches (a stray response). */
  receiveResponse(res: SipResponse): boolean {
    const key = clientKey(res);
    const tx = key ? this.clients.get(key) : undefined;
    if (!tx) return false;
    if (tx.state === "completed") return true; // a retransmitted final response
    if (res.status < 200) {
      tx.state = "proceeding";
      tx.onProvisional?.(res);
    } else {
      tx.finish({ kind: "response", response: res });
    }
    return true;
  }

  /**
   * Server side, called for each incoming request except ACK: true when it is a retransmission
   * (answered again from the cache, or still being processed), false for a new request. `size`
   * is the bytes the request came in.
   */
  absorbRetransmission(req: SipRequest, source: Endpoint, size: number): boolean {
    const key = serverKey(req);
    if (!key) return false;
    const known = this.servers.get(key);
    if (known) {
      // To the source of this copy only; over UDP not when that would amplify it.
      if (known.response && (source.transport !== "udp" || known.response.length <= size)) {
        this.sender.send(known.response, source).catch(() => undefined);
      }
      return true;
    }
    if (this.servers.size >= this.maxServerTransactions) {
      // Maps iterate in insertion order: the first is the oldest.
      const [oldest, tx] = this.servers.entries().next().value!;
      clearTimeout(tx.timer);
      this.servers.delete(oldest);
    }
    // Bounded life even if nobody ever answers.
    const timer = setTimeout(() => this.servers.delete(key), 64 * this.timers.t1);
    this.servers.set(key, { timer });
    return false;
  }

  /** Sends a response to `req`; a final one is kept for retransmissions (Timer J, 64*T1). */
  async respond(req: SipRequest, res: SipResponse, dest: Endpoint): Promise<void> {
    const data = serializeMessage(res);
    const key = serverKey(req);
    const tx = key ? this.servers.get(key) : undefined;
    if (tx && res.status >= 200 && !this.closed) {
      clearTimeout(tx.timer);
      // RFC 3261 §17.2.2: Timer J is 64*T1 over UDP and zero over a reliable transport.
      if (dest.transport === "udp") {
        tx.response = data;
        tx.timer = setTimeout(() => this.servers.delete(key!), 64 * this.timers.t1);
      } else this.servers.delete(key!);
    }
    if (this.closed) return;
    await this.sender.send(data, dest);
  }

  /** Ends every transaction (pending requests resolve as "closed") and clears all timers. */
  close(): void {
    this.closed = true;
    for (const tx of [...this.clients.values()]) {
      tx.finish({ kind: "closed" });
      clearAll(tx.timers);
    }
    this.clients.clear();
    for (const tx of this.servers.values()) clearTimeout(tx.timer);
    this.servers.clear();
  }
}

/** RFC 3261 §17.1.3: top Via branch plus the CSeq method. */
function clientKey(msg: SipRequest | SipResponse): string | undefined {
  const via = parseVia(msg.headers.getList("via")[0] ?? "");
  const cseq = parseCSeq(msg.headers.get("cseq") ?? "");
  if (!via?.branch || !cseq) return undefined;
  return `${via.branch}|${cseq.method}`;
}

/**
 * RFC 3261 §17.2.3: branch, sent-by and method; for pre-RFC 3261 peers (no magic cookie) the
 * RFC 2543 identifiers instead.
 */
function serverKey(req: SipRequest): string | undefined {
  const topVia = req.headers.getList("via")[0] ?? "";
  const via = parseVia(topVia);
  if (!via) return undefined;
  if (via.branch?.startsWith("z9hG4bK")) return `${via.branch}|${via.host}:${via.port ?? ""}|${req.method}`;
  const from = parseNameAddr(req.headers.get("from") ?? "");
  const to = parseNameAddr(req.headers.get("to") ?? "");
  return `2543|${req.headers.get("call-id")}|${req.headers.get("cseq")}|${from?.tag}|${to?.tag}|${topVia}|${req.uri}`;
}

function schedule(set: Set<NodeJS.Timeout>, ms: number, fn: () => void): void {
  const t = setTimeout(() => {
    set.delete(t);
    fn();
  }, ms);
  set.add(t);
}

function clearAll(set: Set<NodeJS.Timeout>): void {
  for (const t of set) clearTimeout(t);
  set.clear();
}
