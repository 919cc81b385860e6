/**
 * migrate-store: everything one store holds, copied into another (NeDB to PostgreSQL, or back).
 * The target must be empty unless told to replace what it holds. Afterwards the counts of both
 * sides are compared, and what the target holds is read back and compared record by record: a
 * difference is an error, never a quiet loss. Run it with the bridge stopped.
 */
import { countsOf, differingKinds } from "./contents.js";
import { openStore } from "./openStore.js";
import { CONTENT_KINDS, type StoreCounts, type StoreLog, type TransferableStore } from "./store.js";
import { redactUri } from "./postgresStore.js";

export interface MigrationReport {
  source: StoreCounts;
  target: StoreCounts;
}

export class MigrationError extends Error {}

const total = (counts: StoreCounts) => CONTENT_KINDS.reduce((sum, kind) => sum + counts[kind], 0);
const sameCounts = (a: StoreCounts, b: StoreCounts) => CONTENT_KINDS.every((kind) => a[kind] === b[kind]);
const listed = (counts: StoreCounts) =>
  CONTENT_KINDS.filter((kind) => counts[kind])
    .map((kind) => `${kind} ${counts[kind]}`)
    .join(", ");

/** Copies `from` into `to`; `replace`: a target that holds records is emptied first. */
export async function copyStore(from: TransferableStore, to: TransferableStore, options: { replace: boolean }): Promise<MigrationReport> {
  const before = await to.counts();
  if (total(before) && !options.replace) {
    throw new MigrationError(`the target is not empty (${listed(before)}): pass --force to replace what it holds`);
  }
  const contents = await from.readAll();
  const source = await from.counts();
  if (!sameCounts(countsOf(contents), source)) throw new MigrationError("the source changed while it was read: stop the bridge and run it again");
  await to.writeAll(contents, { replace: options.replace });
  const target = await to.counts();
  if (!sameCounts(source, target)) throw new MigrationError(`the counts differ after the copy: source ${listed(source)}; target ${listed(target)}`);
  const differing = differingKinds(contents, await to.readAll());
  if (differing.length) throw new MigrationError(`the target reads back differently from the source in: ${differing.join(", ")}`);
  return { source, target };
}

/** Opens both URIs (running their migrations), copies, closes both. */
export async function migrateStore(fromUri: string, toUri: string, options: { force: boolean; log?: StoreLog }): Promise<MigrationReport> {
  if (fromUri === toUri) throw new MigrationError("--from and --to name the same store");
  if (fromUri === "memory:" || toUri === "memory:") throw new MigrationError("memory: keeps nothing: migrate between nedb: and postgres:// stores");
  const from = await openStore(fromUri, options.log);
  try {
    const to = await openStore(toUri, options.log);
    try {
      return await copyStore(from, to, { replace: options.force });
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
}

/** The report as lines for a terminal: each kind with both counts. */
export function formatReport(report: MigrationReport, fromUri: string, toUri: string): string[] {
  const name = (uri: string) => (uri.startsWith("postgres") ? redactUri(uri) : uri);
  const width = Math.max(...CONTENT_KINDS.map((k) => k.length));
  return [
    `copied ${name(fromUri)} -> ${name(toUri)}`,
    `${"".padEnd(width)}  ${"source".padStart(8)}  ${"target".padStart(8)}`,
    ...CONTENT_KINDS.map((kind) => `${kind.padEnd(width)}  ${String(report.source[kind]).padStart(8)}  ${String(report.target[kind]).padStart(8)}`),
    `${"total".padEnd(width)}  ${String(total(report.source)).padStart(8)}  ${String(total(report.target)).padStart(8)}`,
  ];
}
