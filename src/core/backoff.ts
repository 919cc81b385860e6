/** The one retry schedule of the bridge: exponential backoff with jitter. No I/O here. */

export interface BackoffOptions {
  /** The first wait, in ms. */
  baseMs: number;
  /** No wait is longer than this. */
  maxMs: number;
  /** A number in [0, 1): Math.random unless a test gives its own. */
  random?: () => number;
}

/**
 * The wait before retry number `attempt` (0 for the first retry): base * 2^attempt, capped, with
 * "equal jitter" (half fixed, half random), so that many clients retrying do not arrive in step.
 */
export function backoffDelay(attempt: number, { baseMs, maxMs, random = Math.random }: BackoffOptions): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  return ceiling / 2 + (ceiling / 2) * random();
}

/** A wait of at least `ms`, up to 10% more: a server's Retry-After, without everyone in step. */
export function atLeastDelay(ms: number, random: () => number = Math.random): number {
  return ms * (1 + 0.1 * random());
}
