/** The one timeout helper: bounds how long the bridge waits for anything outside it. */

/**
 * Resolves with the promise's value, or with `fallback` once `ms` have passed (the promise goes on
 * unobserved; its rejection is swallowed so that it never becomes an unhandled one).
 */
export function withTimeout<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<F>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
  });
  promise.catch(() => undefined);
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
