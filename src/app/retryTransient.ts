/**
 * Homeserver calls outside the outbox (start-up, command replies) retried while the failure is
 * transient: a homeserver that restarts, rate limits or sits behind a proxy that answers 502.
 * A refusal (4xx other than 429) is final and thrown at once.
 */
import type { Logger } from "matrix-appservice-bridge";
import { classifyFailure } from "../delivery/roomWriter.js";

export interface RetryOptions {
  /** Give up (throw the last error) after this many failures; unbounded when absent. */
  attempts?: number;
  /** Waits between tries; a test gives its own. */
  sleep?: (ms: number) => Promise<void>;
}

const wait = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function retryTransient<T>(what: string, run: () => Promise<T>, log: Pick<Logger, "warn">, options: RetryOptions = {}): Promise<T> {
  const sleep = options.sleep ?? wait;
  for (let failures = 1; ; failures++) {
    try {
      return await run();
    } catch (err) {
      const failure = classifyFailure(err, failures);
      if (failure.kind !== "retry" || (options.attempts !== undefined && failures >= options.attempts)) throw err;
      log.warn(`${what} failed (${failure.reason}); retrying in ${Math.round(failure.afterMs / 1000)} s`);
      await sleep(failure.afterMs);
    }
  }
}
