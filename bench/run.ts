/**
 * `npm run bench`: every benchmark, one figure a line. Figures, not pass/fail: compare runs on
 * the same machine.
 */
import { benchParser, type BenchResult } from "./parser.js";

const benches: [string, () => Promise<BenchResult[]>][] = [["RFC 3842 parser", benchParser]];

for (const [title, bench] of benches) {
  for (const result of await bench()) {
    console.log(`${title}: ${result.name}: ${Math.round(result.value).toLocaleString("en")} ${result.unit}`);
  }
}
