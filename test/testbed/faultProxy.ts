/**
 * A fault-injecting HTTP reverse proxy on loopback, for the test bed: placed between the bridge
 * and Synapse (the bridge's `homeserver.url`) or between Synapse and the bridge (the
 * registration's `url`), it forwards every request unless its schedule picks a fault for it.
 *
 * Faults (issue 7, "The fault harness"):
 * - refuse: stop listening for a while (connections get ECONNREFUSED) and drop open ones;
 * - reset: forward none, part or all of the request, then reset both connections;
 * - drop-answer: the request reaches upstream and is answered there; the client gets a reset
 *   (after an optional hang, and after an optional `hold` hook: restart a peer right then);
 * - delay: the answer is held back for a while;
 * - 429 with `retry_after_ms`, or 502, answered by the proxy without forwarding.
 *
 * Requests and answers are buffered whole (the client-server and appservice APIs carry small
 * JSON bodies), so "the answer came back from upstream" is a definite point in time.
 */
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect, type Socket } from "node:net";

export const FAULT_KINDS = ["refuse", "reset", "drop-answer", "delay", "429", "502"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export type FaultAction =
  | { kind: "refuse"; forMs: number }
  | { kind: "reset"; forward: "none" | "partial" | "all" }
  | { kind: "drop-answer"; hangMs?: number; hold?: () => Promise<void> }
  | { kind: "delay"; ms: number }
  | { kind: "429"; retryAfterMs: number }
  | { kind: "502" };

/** What a schedule sees of a request. `path` has no query string (tokens may travel there). */
export interface ProxiedRequest {
  seq: number;
  method: string;
  path: string;
}

/** Picks the fault for a request, or none. Called once per request, in arrival order. */
export type FaultSchedule = (request: ProxiedRequest) => FaultAction | undefined;

export interface AppliedFault {
  seq: number;
  /** ms since the epoch. */
  at: number;
  kind: FaultKind;
  method: string;
  path: string;
  detail: string;
}

export interface FaultProxyOptions {
  /** Upstream base URL, e.g. http://127.0.0.1:8008 */
  target: string;
  /** Port on 127.0.0.1; default: any free one. */
  port?: number;
  /** Shown in log lines ("hs", "as"). */
  name?: string;
  schedule?: FaultSchedule;
  /** One line per fault applied (and per upstream failure). */
  log?: (line: string) => void;
  /** An upstream that does not answer within this is treated as gone; default 60 s. */
  upstreamTimeoutMs?: number;
}

const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "host", "content-length"]);

function forwardHeaders(headers: IncomingHttpHeaders, upstreamHost: string, length: number): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  out.host = upstreamHost;
  out["content-length"] = String(length);
  // One request per upstream connection: a pooled socket to a Synapse that restarted would
  // fail the next request, a fault nobody scheduled.
  out.connection = "close";
  return out;
}

function readAll(stream: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => resolve(Buffer.concat(chunks)));
    stream.on("error", reject);
    stream.on("aborted", () => reject(new Error("aborted")));
  });
}

/** A TCP reset where the platform offers one (the peer sees ECONNRESET), else a plain close. */
function resetSocket(socket: Socket | null | undefined): void {
  if (!socket || socket.destroyed) return;
  const s = socket as Socket & { resetAndDestroy?: () => void };
  if (typeof s.resetAndDestroy === "function") s.resetAndDestroy();
  else s.destroy();
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface UpstreamAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export class FaultProxy {
  /** Faults applied, by kind. */
  readonly counts: Record<FaultKind, number> = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  /** Every fault applied, oldest first (evidence for a failed run). */
  readonly applied: AppliedFault[] = [];
  /** Requests seen, faulted or not. */
  requests = 0;
  /** Requests that failed upstream on their own (upstream down, reset): not faults of ours. */
  upstreamFailures = 0;
  /** When the last request arrived or the last answer left (ms since the epoch). */
  lastActivityAt = Date.now();
  /** The schedule in force; undefined forwards everything. */
  schedule: FaultSchedule | undefined;

  private inFlightCount = 0;
  private readonly sockets = new Set<Socket>();
  private listening = true;
  private closed = false;
  private reopened: Promise<void> = Promise.resolve();
  private readonly upstream: URL;
  private readonly log: (line: string) => void;
  private readonly name: string;
  private readonly upstreamTimeoutMs: number;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    options: FaultProxyOptions,
  ) {
    this.upstream = new URL(options.target);
    this.schedule = options.schedule;
    this.log = options.log ?? (() => {});
    this.name = options.name ?? "proxy";
    this.upstreamTimeoutMs = options.upstreamTimeoutMs ?? 60_000;
  }

  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const server = createServer();
    // Synapse and the bridge keep connections alive; a reset must not crash the proxy.
    server.on("clientError", (_err, socket) => socket.destroy());
    const port = await new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port ?? 0, "127.0.0.1", () => {
        server.off("error", reject);
        const addr = server.address();
        resolve(typeof addr === "object" && addr ? addr.port : 0);
      });
    });
    const proxy = new FaultProxy(server, port, options);
    server.on("connection", (socket: Socket) => {
      proxy.sockets.add(socket);
      socket.on("error", () => {});
      socket.once("close", () => proxy.sockets.delete(socket));
    });
    server.on("request", (req: IncomingMessage, res: ServerResponse) => void proxy.handle(req, res));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Requests being handled now. */
  get inFlight(): number {
    return this.inFlightCount;
  }

  /** Total faults applied. */
  get total(): number {
    return FAULT_KINDS.reduce((sum, k) => sum + this.counts[k], 0);
  }

  /** Resolves once the proxy listens again after a `refuse`. */
  whenListening(): Promise<void> {
    return this.reopened;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.schedule = undefined;
    for (const socket of this.sockets) socket.destroy();
    if (this.listening) await new Promise<void>((r) => this.server.close(() => r()));
    this.listening = false;
  }

  private record(req: ProxiedRequest, kind: FaultKind, detail: string): void {
    this.counts[kind]++;
    const fault: AppliedFault = { seq: req.seq, at: Date.now(), kind, method: req.method, path: req.path, detail };
    this.applied.push(fault);
    this.log(`fault ${this.name}#${req.seq} ${kind}${detail ? ` (${detail})` : ""}: ${req.method} ${req.path}`);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.inFlightCount++;
    this.lastActivityAt = Date.now();
    const info: ProxiedRequest = { seq: ++this.requests, method: req.method ?? "GET", path: (req.url ?? "/").split("?")[0]! };
    try {
      const body = await readAll(req);
      const action = this.schedule?.(info);
      await this.apply(action, info, req, res, body);
    } catch {
      // The client went away (or the proxy closed): nothing to answer.
      resetSocket(req.socket);
    } finally {
      this.inFlightCount--;
      this.lastActivityAt = Date.now();
    }
  }

  private async apply(action: FaultAction | undefined, info: ProxiedRequest, req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void> {
    switch (action?.kind) {
      case undefined:
        return this.relay(await this.forward(req, body, info), res);
      case "refuse":
        this.record(info, "refuse", `${action.forMs} ms`);
        resetSocket(req.socket);
        this.refuseFor(action.forMs);
        return;
      case "reset": {
        this.record(info, "reset", `forwarded ${action.forward}`);
        if (action.forward !== "none") await this.forwardThenCut(req, body, action.forward);
        resetSocket(req.socket);
        return;
      }
      case "drop-answer": {
        const answer = await this.forward(req, body, info);
        this.record(info, "drop-answer", answer ? `upstream answered ${answer.status}${action.hold ? ", hold" : ""}${action.hangMs ? `, hang ${action.hangMs} ms` : ""}` : "upstream failed");
        if (action.hold) await action.hold().catch((err: Error) => this.log(`fault ${this.name}#${info.seq}: hold failed: ${err.message}`));
        if (action.hangMs) await sleep(action.hangMs);
        resetSocket(req.socket);
        return;
      }
      case "delay": {
        const answer = await this.forward(req, body, info);
        this.record(info, "delay", `${action.ms} ms`);
        await sleep(action.ms);
        return this.relay(answer, res);
      }
      case "429": {
        this.record(info, "429", `retry_after_ms ${action.retryAfterMs}`);
        const json = JSON.stringify({ errcode: "M_LIMIT_EXCEEDED", error: "Too Many Requests (fault proxy)", retry_after_ms: action.retryAfterMs });
        res.writeHead(429, { "content-type": "application/json", "content-length": Buffer.byteLength(json) });
        res.end(json);
        return;
      }
      case "502": {
        this.record(info, "502", "");
        // What a real reverse proxy (nginx) answers: HTML, not Matrix JSON.
        const html = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n";
        res.writeHead(502, { "content-type": "text/html", "content-length": Buffer.byteLength(html) });
        res.end(html);
        return;
      }
    }
  }

  /** Stops listening (ECONNREFUSED for new connections), drops open connections, listens again after `ms`. */
  private refuseFor(ms: number): void {
    if (!this.listening || this.closed) return;
    this.listening = false;
    for (const socket of this.sockets) resetSocket(socket);
    this.reopened = new Promise<void>((resolve) => {
      this.server.close(() => {
        setTimeout(() => {
          if (this.closed) return resolve();
          this.server.listen(this.port, "127.0.0.1", () => {
            this.listening = true;
            resolve();
          });
        }, ms);
      });
    });
  }

  /** Sends the request upstream and reads the whole answer; undefined when upstream failed. */
  private forward(req: IncomingMessage, body: Buffer, info: ProxiedRequest): Promise<UpstreamAnswer | undefined> {
    return new Promise((resolve) => {
      const upstreamReq = httpRequest(
        {
          host: this.upstream.hostname,
          port: this.upstream.port,
          method: req.method,
          path: req.url,
          headers: forwardHeaders(req.headers, this.upstream.host, body.length),
          agent: false,
          timeout: this.upstreamTimeoutMs,
        },
        (upstreamRes) => {
          readAll(upstreamRes).then(
            (answer) => resolve({ status: upstreamRes.statusCode ?? 502, headers: upstreamRes.headers, body: answer }),
            () => fail("answer cut off"),
          );
        },
      );
      const fail = (why: string): void => {
        this.upstreamFailures++;
        this.log(`${this.name}#${info.seq}: upstream ${why}: ${info.method} ${info.path}`);
        resolve(undefined);
      };
      upstreamReq.on("timeout", () => upstreamReq.destroy(new Error("timeout")));
      upstreamReq.on("error", (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
      upstreamReq.end(body);
    });
  }

  /**
   * Writes part or all of the raw request to upstream, then resets that connection without
   * reading an answer. "partial" cuts inside the bytes (inside the headers for a GET), so the
   * request is incomplete; "all" leaves it to upstream whether it acts on the request.
   */
  private forwardThenCut(req: IncomingMessage, body: Buffer, part: "partial" | "all"): Promise<void> {
    const headers = forwardHeaders(req.headers, this.upstream.host, body.length);
    const head =
      `${req.method} ${req.url} HTTP/1.1\r\n` +
      Object.entries(headers)
        .flatMap(([name, value]) => (Array.isArray(value) ? value : [value]).map((v) => `${name}: ${v}\r\n`))
        .join("") +
      "\r\n";
    const raw = Buffer.concat([Buffer.from(head, "latin1"), body]);
    const bytes = part === "all" ? raw : raw.subarray(0, Math.max(1, Math.floor(raw.length / 2)));
    return new Promise((resolve) => {
      const socket = connect({ host: this.upstream.hostname, port: Number(this.upstream.port || 80) });
      socket.on("error", () => resolve());
      socket.once("connect", () => {
        socket.write(bytes, () => {
          // Give upstream a moment to read what arrived before the reset discards it.
          setTimeout(() => {
            resetSocket(socket);
            resolve();
          }, 20);
        });
      });
    });
  }

  private relay(answer: UpstreamAnswer | undefined, res: ServerResponse): void {
    if (!answer) {
      // Upstream down: the client sees what it would see without a proxy, a broken connection.
      resetSocket(res.socket);
      return;
    }
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(answer.headers)) {
      if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
    }
    headers["content-length"] = String(answer.body.length);
    res.writeHead(answer.status, headers);
    res.end(answer.body);
  }
}

// ---------------------------------------------------------------------------------------------
// Seeded schedules

/** A small seeded PRNG (mulberry32): the same seed gives the same choices in the same order. */
export interface Rng {
  /** In [0, 1). */
  next(): number;
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number;
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  /** A new independent stream derived from this one (e.g. one per proxy). */
  fork(): Rng;
}

export function seededRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const rng: Rng = {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    chance: (p) => next() < p,
    pick: (items) => items[Math.floor(next() * items.length)]!,
    fork: () => seededRng(Math.floor(next() * 4294967296)),
  };
  return rng;
}

/** The seed of a run: FAULT_SEED replays one, otherwise a fresh random one. */
export function faultSeed(): number {
  const given = process.env.FAULT_SEED;
  if (given !== undefined && given !== "") {
    const n = Number(given);
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`FAULT_SEED must be an integer 0..4294967295, not ${given}`);
    return n;
  }
  return Math.floor(Math.random() * 0x100000000);
}

export interface FaultRule {
  /** Matches when both given matchers do; a rule without matchers matches every request. */
  method?: RegExp;
  path?: RegExp;
  /** Chance that a matching request gets a fault from this rule. */
  probability: number;
  /** The fault, drawn from the schedule's random stream. */
  action: (rng: Rng) => FaultAction;
}

export interface RandomSchedule {
  schedule: FaultSchedule;
  /** Faults this schedule has chosen so far. */
  readonly chosen: number;
  /** Once spent, the schedule forwards everything. */
  budget: number;
  /**
   * A one-shot rule that takes precedence over the random ones, for a fault at a chosen point
   * ("the next PUT /send/: answer dropped, Synapse restarted meanwhile"). Not counted in the budget.
   */
  once(rule: Omit<FaultRule, "probability">): { fired: Promise<ProxiedRequest>; cancel(): boolean };
}

/**
 * Faults chosen per request by a seeded stream: the first rule whose matchers match and whose
 * chance comes up picks the fault.
 */
export function randomSchedule(rng: Rng, rules: FaultRule[], budget = Infinity): RandomSchedule {
  let chosen = 0;
  const pending: { rule: Omit<FaultRule, "probability">; fired: (r: ProxiedRequest) => void }[] = [];
  const matches = (rule: Omit<FaultRule, "probability">, req: ProxiedRequest) =>
    (!rule.method || rule.method.test(req.method)) && (!rule.path || rule.path.test(req.path));
  const result: RandomSchedule = {
    budget,
    get chosen() {
      return chosen;
    },
    schedule: (req) => {
      const armed = pending.findIndex((p) => matches(p.rule, req));
      if (armed >= 0) {
        const [p] = pending.splice(armed, 1);
        p!.fired(req);
        return p!.rule.action(rng);
      }
      if (chosen >= result.budget) return undefined;
      for (const rule of rules) {
        if (!matches(rule, req)) continue;
        // One draw per matching rule, whether or not it fires: the stream stays aligned with the requests.
        if (rng.chance(rule.probability)) {
          chosen++;
          return rule.action(rng);
        }
      }
      return undefined;
    },
    once: (rule) => {
      let entry!: (typeof pending)[number];
      const fired = new Promise<ProxiedRequest>((resolve) => pending.push((entry = { rule, fired: resolve })));
      return {
        fired,
        /** True when it had not fired yet (and now never will). */
        cancel: () => {
          const i = pending.indexOf(entry);
          if (i >= 0) pending.splice(i, 1);
          return i >= 0;
        },
      };
    },
  };
  return result;
}
