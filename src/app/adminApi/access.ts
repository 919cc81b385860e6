/** Who may use the admin API, and how often: the bearer token, and a request budget per client address. */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";

const digest = (value: string) => createHash("sha256").update(value, "utf8").digest();

/**
 * Checks `Authorization: Bearer <token>`. Digests are compared, in constant time: neither the
 * token's length nor how much of it a guess got right shows in the answer's timing.
 */
export class BearerToken {
  private readonly expected: Buffer;

  constructor(token: string) {
    this.expected = digest(token);
  }

  /** "missing": no bearer token given; "wrong": one that is not ours; "ok". */
  check(req: IncomingMessage): "ok" | "missing" | "wrong" {
    const header = req.headers.authorization;
    const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header);
    if (!match) return "missing";
    return timingSafeEqual(digest(match[1]!), this.expected) ? "ok" : "wrong";
  }
}

export interface RateLimit {
  requests: number;
  windowSeconds: number;
}

/** Addresses tracked at most: beyond this, windows that are over are dropped at once. */
const MAX_TRACKED = 10_000;

/**
 * A fixed window per client address: `requests` in `windowSeconds`, then refusals until the
 * window ends (what Retry-After says). Counted before the token is checked, so that guessing
 * the token is throttled too.
 */
export class ClientRateLimit {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number = Date.now,
  ) {}

  /** Undefined: go ahead; else the seconds until the client may try again. */
  take(client: string): number | undefined {
    const now = this.now();
    const windowMs = this.limit.windowSeconds * 1000;
    let window = this.windows.get(client);
    if (!window || now - window.start >= windowMs) {
      if (!window && this.windows.size >= MAX_TRACKED) this.sweep(now, windowMs);
      window = { start: now, count: 0 };
      this.windows.set(client, window);
    }
    window.count++;
    if (window.count <= this.limit.requests) return undefined;
    return Math.max(1, Math.ceil((window.start + windowMs - now) / 1000));
  }

  private sweep(now: number, windowMs: number): void {
    for (const [client, window] of this.windows) if (now - window.start >= windowMs) this.windows.delete(client);
  }
}
