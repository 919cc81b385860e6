/** What migrate-store compares: the counts of a store's contents, and the contents themselves. */
import { CONTENT_KINDS, type StoreContents, type StoreCounts } from "./store.js";

export function countsOf(contents: StoreContents): StoreCounts {
  return Object.fromEntries(CONTENT_KINDS.map((kind) => [kind, contents[kind].length])) as StoreCounts;
}

/** JSON with object keys sorted: two records are the same when these are equal. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

/** The kinds whose records differ between two stores' contents (order within a kind aside). */
export function differingKinds(a: StoreContents, b: StoreContents): string[] {
  const records = (list: unknown[]) => list.map(canonical).sort();
  return CONTENT_KINDS.filter((kind) => {
    const x = records(a[kind]);
    const y = records(b[kind]);
    return x.length !== y.length || x.some((r, i) => r !== y[i]);
  });
}
