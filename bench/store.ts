/**
 * What the fsync before a 202 costs: NeDB acceptChange per second with and without it, one at a
 * time and many at once (concurrent accepts share an fsync). Run directly:
 * `node dist/bench/store.js [directory]` (default: a temporary directory; put it on the disk the
 * store will live on, a tmpfs makes fsync free).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";

import type { MailboxState } from "../src/core/mwi.js";
import { NedbStore } from "../src/store/nedbStore.js";
import type { OutboxEntry } from "../src/store/store.js";
import type { BenchResult } from "./parser.js";

const UPDATES = 400;
const quiet = { warn: () => {} };

async function run(root: string, syncAccepted: boolean, concurrency: number): Promise<number> {
  const dir = mkdtempSync(join(root, "vm-bench-store-"));
  const store = await NedbStore.open(dir, quiet, { syncAccepted });
  try {
    let seq = 0;
    const accept = () => {
      const n = ++seq;
      const state: MailboxState = { systemId: "carrier", mailbox: String(1000 + (n % 50)), waiting: true, new: n, old: 0, urgentNew: 0, urgentOld: 0, updated: n };
      const entry: OutboxEntry = { id: `e${n}`, seq: n, ownerId: "@alice:localhost", targetKey: '["main","@alice:localhost"]', withMessage: true, notice: { body: `You have ${n} new voicemails`, html: `You have ${n} new voicemails` }, createdAt: n };
      return store.acceptChange(state, [entry]);
    };
    const started = performance.now();
    const workers = Array.from({ length: concurrency }, async () => {
      while (seq < UPDATES) await accept();
    });
    await Promise.all(workers);
    return (seq / (performance.now() - started)) * 1000;
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchStore(root = tmpdir()): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  for (const concurrency of [1, 16]) {
    const synced = await run(root, true, concurrency);
    const unsynced = await run(root, false, concurrency);
    results.push(
      { name: `acceptChange, ${concurrency} at a time, fsynced`, value: synced, unit: "updates/s" },
      { name: `acceptChange, ${concurrency} at a time, not fsynced`, value: unsynced, unit: "updates/s" },
    );
  }
  return results;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const rows = await benchStore(process.argv[2]);
  for (let i = 0; i < rows.length; i += 2) {
    const [synced, unsynced] = [rows[i]!, rows[i + 1]!];
    const fmt = (r: BenchResult) => Math.round(r.value).toLocaleString("en").padStart(8);
    console.log(`${synced.name.replace(/, fsynced$/, "")}: ${fmt(synced)} updates/s fsynced, ${fmt(unsynced)} without fsync`);
  }
}
