/**
 * `npm run bench`: every benchmark, one figure a line. Figures, not pass/fail: compare runs on
 * the same machine.
 */
import { benchEndToEnd } from "./e2e.js";
import { benchParser, type BenchResult } from "./parser.js";
import { benchSip } from "./sip.js";
import { benchStore } from "./store.js";

const benches: [string, () => Promise<BenchResult[]>][] = [
  ["RFC 3842 parser", benchParser],
  ["SIP user agent", benchSip],
  ["NeDB store", () => benchStore()],
  ["end-to-end", benchEndToEnd],
];

for (const [title, bench] of benches) {
  for (const result of await bench()) {
    console.log(`${title}: ${result.name}: ${Math.round(result.value).toLocaleString("en")} ${result.unit}`);
  }
}
