/**
 * Fuzzing of the voicemail-mail reader and rules (kind: imap): random edits of a real Asterisk
 * mail, random headers, random bytes. The reader never throws, never hangs, and what it yields
 * keeps its bounds; a mailbox it names always matches MAILBOX_PATTERN and a caller field is
 * one clean line. The seed is printed; FC_SEED=<n> replays a failure.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { MAILBOX_PATTERN } from "../../src/core/mwi.js";
import { MAX_BODY_CHARS, MAX_FIELD_CHARS, readMailFields } from "../../src/gateway/imap/mailFields.js";
import { DEFAULT_RULES } from "../../src/gateway/imap/settings.js";
import { compileRules, parseDuration, voicemailOf } from "../../src/gateway/imap/voicemailRules.js";
import { ASTERISK_MAIL } from "./mailSamples.js";

const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
console.log(`mail fuzz properties: FC_SEED=${seed}`);
const runs = (numRuns: number) => ({ numRuns, seed, includeErrorInReport: true });

const rules = compileRules(DEFAULT_RULES);
const LINE_BREAKS = /[\r\n\u0085\u2028\u2029]/;

/** Characters that matter to a mail parser, and some that matter to people. */
const nasty = fc.constantFrom("\r\n", "\n", "\r", ":", ";", "=", "?", "=?UTF-8?B?", "?=", "=?ISO-8859-1?Q?", "--", "\t", " ", "\u0000", "\u202e", "\u00ff", "\uffff", "<", ">", "\"", "\\", "Subject: ", "Content-Type: multipart/mixed; boundary=x\r\n", "--x\r\n", "base64", "8bit", "\u{1F600}");

function mutated(text: string): fc.Arbitrary<string> {
  const edit = fc.tuple(fc.nat(), fc.nat({ max: 12 }), fc.array(fc.oneof(nasty, fc.string({ maxLength: 4 })), { maxLength: 6 }).map((a) => a.join("")));
  return fc.array(edit, { maxLength: 8 }).map((edits) => {
    let s = text;
    for (const [at, del, ins] of edits) {
      const i = at % (s.length + 1);
      s = s.slice(0, i) + ins + s.slice(i + del);
    }
    return s;
  });
}

async function checkInvariants(raw: Buffer, withBody: boolean): Promise<void> {
  const fields = await readMailFields(raw, withBody);
  assert.ok(fields.subject.length <= MAX_FIELD_CHARS);
  for (const v of fields.headers.values()) assert.ok(v.length <= MAX_FIELD_CHARS);
  assert.ok(fields.headers.size <= 200);
  assert.ok((fields.body ?? "").length <= MAX_BODY_CHARS);
  const vm = voicemailOf(rules, fields);
  if (!vm) return;
  assert.match(vm.mailbox, MAILBOX_PATTERN);
  for (const key of ["ani", "callerName", "dnis", "time"] as const) {
    const v = vm.info[key];
    if (v !== undefined) {
      assert.ok(!LINE_BREAKS.test(v), `${key} is one line: ${JSON.stringify(v)}`);
      assert.ok(v.length <= 256);
    }
  }
  if (vm.info.ani !== undefined) assert.match(vm.info.ani, /^\+?[0-9*#]{1,32}$/);
  if (vm.info.duration !== undefined) assert.ok(Number.isFinite(vm.info.duration) && vm.info.duration >= 0);
  if (vm.info.time !== undefined) assert.ok(!Number.isNaN(Date.parse(vm.info.time)));
}

describe("fuzzing the voicemail mail reader", () => {
  it("random edits of Asterisk's mail", async () => {
    await fc.assert(fc.asyncProperty(mutated(ASTERISK_MAIL), fc.boolean(), (mail, withBody) => checkInvariants(Buffer.from(mail, "utf8"), withBody)), runs(300));
  });

  it("random headers in front of Asterisk's mail", async () => {
    const header = fc.tuple(fc.stringMatching(/^[A-Za-z-]{1,20}$/), fc.string({ maxLength: 200, unit: "binary" })).map(([k, v]) => `${k}: ${v}`);
    await fc.assert(
      fc.asyncProperty(fc.array(header, { maxLength: 30 }), (headers) => checkInvariants(Buffer.from(headers.join("\r\n") + "\r\n" + ASTERISK_MAIL, "utf8"), true)),
      runs(200),
    );
  });

  it("random bytes", async () => {
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 4096 }), fc.boolean(), (bytes, withBody) => checkInvariants(Buffer.from(bytes), withBody)), runs(200));
  });

  it("durations: only digits and colons, and every result is a whole number of seconds", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), (s) => {
        const d = parseDuration(s);
        if (d !== undefined) assert.ok(Number.isInteger(d) && d >= 0 && /^\s*[\d:]+\s*$/.test(s));
      }),
      runs(2000),
    );
  });
});
