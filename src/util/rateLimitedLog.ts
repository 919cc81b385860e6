/**
 * Rate-limited log lines, for what strangers can make happen at will (a refused datagram, a bad
 * request): one line per kind of event and window instead of one per event, so that a flood
 * cannot flood the log too. What was held back is counted and told in one line when the next
 * window opens (or at flush()).
 */

export interface RateLimitedLogOptions {
  /** Length of a window, in ms (default 60 s). */
  intervalMs?: number;
  /** Distinct keys logged per window (default 20): spoofed sources cannot mint new lines. */
  maxKeys?: number;
  /** Clock, for tests. */
  now?: () => number;
}

export interface RateLimitedLog {
  /** Writes `line` unless a line with this `key` was written in the current window. */
  (key: string, line: string): void;
  /** Writes the count of held-back lines now (at shutdown), and starts a new window. */
  flush(): void;
  /** Lines held back in the current window. */
  readonly suppressed: number;
}

/** `write` is the logger's method for the level these lines deserve (warn, info, ...). */
export function rateLimitedLog(write: (line: string) => void, options: RateLimitedLogOptions = {}): RateLimitedLog {
  const intervalMs = options.intervalMs ?? 60_000;
  const maxKeys = options.maxKeys ?? 20;
  const now = options.now ?? Date.now;
  let windowStart = now();
  // Keys stay strings in a Map: never object keys (the key may come from outside).
  let seen = new Map<string, number>();
  let suppressed = 0;
  let top: { line: string; count: number } | undefined;

  const flush = (): void => {
    if (suppressed > 0) {
      const seconds = Math.max(1, Math.round((now() - windowStart) / 1000));
      const most = top ? `; most often (${top.count}x): ${top.line}` : "";
      write(`${suppressed} repeated log line(s) held back in the last ${seconds} s${most}`);
    }
    windowStart = now();
    seen = new Map();
    suppressed = 0;
    top = undefined;
  };

  const log = (key: string, line: string): void => {
    if (now() - windowStart >= intervalMs) flush();
    const count = seen.get(key);
    if (count === undefined && seen.size < maxKeys) {
      seen.set(key, 0);
      write(line);
      return;
    }
    suppressed++;
    if (count !== undefined) {
      seen.set(key, count + 1);
      if (!top || count + 1 > top.count) top = { line, count: count + 1 };
    }
  };

  return Object.defineProperties(log, {
    flush: { value: flush },
    suppressed: { get: () => suppressed },
  }) as RateLimitedLog;
}
