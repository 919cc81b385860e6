/**
 * Throughput of the RFC 3842 message-summary parser over a realistic mix of
 * NOTIFY bodies. Run directly: `node dist/bench/parser.js`.
 */

import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";

import { parseMessageSummary } from "../src/gateway/sip/messageSummary.js";

export interface BenchResult {
  name: string;
  value: number;
  unit: string;
}

const encoder = new TextEncoder();

// What voicemail servers actually send: mostly small summaries, some with
// per-message headers, a few with LF endings, some arriving as raw bytes,
// and the occasional broken one.
const BODIES: (string | Uint8Array)[] = [
  "Messages-Waiting: no\r\nMessage-Account: sip:*97@pbx.example.com\r\nVoice-Message: 0/0\r\n",
  "Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\nVoice-Message: 2/8 (0/2)\r\n",
  "Messages-Waiting: yes\r\nVoice-Message: 1/0\r\nFax-Message: 0/2\r\n",
  "Messages-Waiting: yes\nMessage-Account: sip:1001@10.0.0.5\nVoice-Message: 3/12 (1/0)\n",
  encoder.encode("Messages-Waiting: yes\r\nMessage-Account: sip:bob@example.org\r\nVoice-Message: 5/1\r\n"),
  [
    "Messages-Waiting: yes",
    "Message-Account: sip:alice@vmail.example.com",
    "Voice-Message: 4/8 (1/2)",
    "",
    "To: <alice@atlanta.example.com>",
    "From: <bob@biloxi.example.com>",
    "Subject: carpool tomorrow?",
    "Date: Sun, 09 Feb 2003 12:34:56 -0600",
    "Priority: normal",
    "Message-ID: 13784434989@vmail.example.com",
    "",
  ].join("\r\n"),
  "Messages-Waiting: maybe\r\nVoice-Message: x/1\r\n",
];

export async function benchParser(): Promise<BenchResult[]> {
  // Sanity: a benchmark of a parser that rejects everything is meaningless.
  const accepted = BODIES.filter((b) => parseMessageSummary(b).ok).length;
  if (accepted !== BODIES.length - 1) throw new Error(`bench bodies: ${accepted} accepted, expected ${BODIES.length - 1}`);

  // Warm up so the JIT has settled before timing.
  for (let i = 0; i < 20_000; i++) parseMessageSummary(BODIES[i % BODIES.length]!);

  const budgetMs = 1000;
  let parsed = 0;
  let sink = 0; // consumed results, so the calls cannot be optimised away
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < budgetMs) {
    for (let i = 0; i < 1000; i++) {
      const r = parseMessageSummary(BODIES[(parsed + i) % BODIES.length]!);
      sink += r.ok ? r.summary.voice.newCount : r.reason.length;
    }
    parsed += 1000;
    elapsed = performance.now() - start;
  }
  if (sink < 0) console.log(sink);
  return [{ name: "parser", value: Math.round((parsed * 1000) / elapsed), unit: "bodies/s" }];
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await benchParser()) console.log(`${r.name}: ${r.value} ${r.unit}`);
}
