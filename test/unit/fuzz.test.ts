/**
 * Fuzzing of every parser of outside input (issue 8, "Tests and proof"): each one must never
 * throw anything but its own clear error, never hang (the test runner's timeout), and never
 * return something that breaks its own invariants. Bounded runs; the seed is printed and
 * FC_SEED=<n> replays a failure.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import yaml from "js-yaml";

import { MAX_COUNT, parseMessageSummary, type ParseResult } from "../../src/gateway/sip/messageSummary.js";
import { MAX_MESSAGE_BYTES, parseMessage, serializeMessage, type MessageParseResult } from "../../src/gateway/sip/message.js";
import { StreamFramer, type FrameEvent } from "../../src/gateway/sip/framing.js";
import { buildAuthorization, parseChallenges, selectChallenge } from "../../src/gateway/sip/digest.js";
import { parseWebhookPayload } from "../../src/gateway/webhook/payload.js";
import { checkSignature, signedHeaders, signRequest } from "../../src/gateway/webhook/signature.js";
import { ConfigError, parseConfigYaml } from "../../src/config/load.js";
import { parseCallerId } from "../../src/gateway/ami/mailbox.js";
import { messageInfoFrom, parseMessageFile } from "../../src/gateway/sip/asteriskSpool.js";
import { parseCommand } from "../../src/app/commands/parser.js";
import { COMMANDS } from "../../src/app/commands/commands.js";
import { MAILBOX_PATTERN } from "../../src/core/mwi.js";
import { ALICE, world } from "./commandHarness.js";

const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
console.log(`fuzz properties: FC_SEED=${seed}`);
const runs = (numRuns: number) => ({ numRuns, seed, includeErrorInReport: true });

/** Line breaks of every kind a log or a room would show as a new line. */
const LINE_BREAKS = /[\r\n\u0085\u2028\u2029]/;

// ---------------------------------------------------------------- generic mutators

/** Random edits of a valid text: the inputs that get furthest into a parser. */
function mutated(valid: fc.Arbitrary<string>, alphabet: fc.Arbitrary<string>): fc.Arbitrary<string> {
  const edit = fc.tuple(fc.nat(), fc.nat({ max: 8 }), fc.array(alphabet, { maxLength: 6 }).map((a) => a.join("")));
  return fc.tuple(valid, fc.array(edit, { maxLength: 6 })).map(([text, edits]) => {
    let s = text;
    for (const [at, del, ins] of edits) {
      const i = s.length === 0 ? 0 : at % (s.length + 1);
      s = s.slice(0, i) + ins + s.slice(i + del);
    }
    return s;
  });
}

const anyText = fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: "binary", maxLength: 200 }), fc.string({ unit: "grapheme", maxLength: 60 }));
const bytes = fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a));

// ---------------------------------------------------------------- RFC 3842 body

function checkSummary(r: ParseResult): void {
  if (!r.ok) {
    assert.ok(typeof r.reason === "string" && r.reason.length > 0 && !LINE_BREAKS.test(r.reason), JSON.stringify(r.reason));
    return;
  }
  const isCount = (n: number) => Number.isInteger(n) && n >= 0 && n <= MAX_COUNT;
  for (const c of [...Object.values(r.summary.classes), r.summary.voice]) {
    assert.ok(isCount(c.newCount) && isCount(c.oldCount) && isCount(c.urgentNew) && isCount(c.urgentOld), JSON.stringify(c));
  }
  assert.ok(r.summary.account === undefined || /^[A-Za-z][A-Za-z0-9+.\-]*:[\x21-\x7E]+$/.test(r.summary.account));
  // Informational headers keep Unicode line separators (only their users, e.g. partyOf, read them); no CR/LF.
  for (const m of r.summary.messages) for (const v of Object.values(m.headers)) assert.ok(!/[\r\n]/.test(v), JSON.stringify(v));
}

const summaryAlphabet = fc.constantFrom("\r\n", "\n", "\r", " ", "\t", ":", "/", "(", ")", "0", "9", "4294967296", "yes", "no", "Voice-Message", "Messages-Waiting", "__proto__", "\u0000", "\u2028", "\uFEFF", "\uFFFD");
const validSummary = fc
  .tuple(fc.boolean(), fc.nat({ max: 99 }), fc.nat({ max: 99 }), fc.boolean())
  .map(([waiting, n, o, extra]) =>
    [`Messages-Waiting: ${waiting ? "yes" : "no"}`, "Message-Account: sip:1001@pbx", `Voice-Message: ${n}/${o} (0/0)`, "Fax-Message: 1/2", ...(extra ? ["", "From: a", "Subject: b", " folded"] : []), ""].join("\r\n"),
  );

describe("fuzz: RFC 3842 message-summary", () => {
  it("never throws; any result keeps its invariants, whether given as text or bytes", () => {
    fc.assert(
      fc.property(fc.oneof(mutated(validSummary, summaryAlphabet), anyText), (body) => {
        const fromText = parseMessageSummary(body);
        checkSummary(fromText);
        checkSummary(parseMessageSummary(Buffer.from(body, "utf8")));
      }),
      runs(400),
    );
  });

  it("the counts it reports are those of the one Voice-Message line, however the body is folded and spaced", () => {
    const ws = fc.constantFrom("", " ", "\t", "  ");
    fc.assert(
      fc.property(fc.nat(), fc.nat(), ws, ws, fc.constantFrom("\r\n", "\n"), (n, o, a, b, eol) => {
        const r = parseMessageSummary(`Messages-Waiting:${a}yes${eol}Voice-Message${b}:${a}${n}${b}/${a}${o}${eol}`);
        assert.ok(r.ok, JSON.stringify(r));
        assert.deepEqual([r.summary.voice.newCount, r.summary.voice.oldCount], [Math.min(n, MAX_COUNT), Math.min(o, MAX_COUNT)]);
      }),
      runs(200),
    );
  });
});

// ---------------------------------------------------------------- SIP message and stream framer

function checkSip(r: MessageParseResult): void {
  if (!r.ok) {
    assert.ok(typeof r.reason === "string" && r.reason.length > 0 && !LINE_BREAKS.test(r.reason), JSON.stringify(r.reason));
    return;
  }
  const m = r.message;
  if (m.kind === "request") assert.match(m.method, /^[A-Z0-9\-.!%*_+`'~]+$/);
  else assert.ok(Number.isInteger(m.status) && m.status >= 100 && m.status <= 699);
  for (const [name, value] of m.headers.entries()) {
    assert.ok(name.length > 0 && !/[\r\n:]/.test(name), JSON.stringify(name));
    assert.ok(!/[\r\n]/.test(value), JSON.stringify(value));
  }
  const cl = m.headers.get("content-length");
  if (cl !== undefined) assert.equal(m.body.length, Number(cl.trim()));
  assert.ok(m.body.length <= MAX_MESSAGE_BYTES);
}

const sipAlphabet = fc.constantFrom("\r\n", "\n", "\r\n\r\n", " ", "\t", ":", ";", ",", "<", ">", '"', "=", "0", "99999", "SIP/2.0", "Content-Length: ", "l: ", "Via: ", "\u0000", "\u00ff", "\uFFFD");
const validSip = fc
  .tuple(fc.constantFrom("NOTIFY", "OPTIONS", "SUBSCRIBE", "INVITE", "SIP/2.0 200 OK"), fc.string({ unit: fc.constantFrom("a", "1", " ", "\n"), maxLength: 40 }))
  .map(([start, body]) => {
    const line = start.startsWith("SIP/") ? start : `${start} sip:1001@127.0.0.1 SIP/2.0`;
    return (
      `${line}\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\n` +
      `CSeq: 1 ${start.split(" ")[0]}\r\nEvent: message-summary\r\n Folded: yes\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
    );
  });

describe("fuzz: SIP message parser", () => {
  it("never throws; an accepted message has a sane start line, one-line headers and the body its Content-Length says", () => {
    fc.assert(
      fc.property(fc.oneof(mutated(validSip, sipAlphabet), anyText), bytes, (text, raw) => {
        checkSip(parseMessage(text));
        checkSip(parseMessage(raw));
        checkSip(parseMessage(Buffer.concat([Buffer.from(text), raw])));
      }),
      runs(400),
    );
  });

  it("what it accepts serializes to a message that parses to the same thing", () => {
    fc.assert(
      fc.property(mutated(validSip, sipAlphabet), (text) => {
        const r = parseMessage(text);
        if (!r.ok) return;
        const again = parseMessage(serializeMessage(r.message));
        assert.ok(again.ok, `${JSON.stringify(text)}: ${again.ok ? "" : again.reason}`);
        assert.deepEqual(again.message.headers.entries().filter(([n]) => n !== "Content-Length"), r.message.headers.entries().filter(([n]) => n !== "Content-Length"));
        assert.deepEqual(again.message.body, r.message.body);
      }),
      runs(300),
    );
  });

  it("a message over the size limit is refused with a reason, never parsed", () => {
    const big = Buffer.concat([Buffer.from("NOTIFY sip:a@b SIP/2.0\r\nContent-Length: 70000\r\n\r\n"), Buffer.alloc(70000, 0x41)]);
    const r = parseMessage(big);
    assert.equal(r.ok, false);
    checkSip(r);
  });
});

/** Cuts `data` into pieces at the given (sorted, deduplicated) offsets. */
function chunks(data: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => (data.length === 0 ? 0 : c % data.length)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const c of at) {
    out.push(data.subarray(from, c));
    from = c;
  }
  out.push(data.subarray(from));
  return out;
}

// Pings are left out: a run of CRLFs cut in two is two keepalives, each answered with a CRLF.
const summarize = (events: FrameEvent[]) => events.filter((e) => e.kind !== "ping").map((e) => (e.kind === "message" ? `message ${serializeMessage(e.message).toString("latin1")}` : e.kind === "invalid" ? `invalid ${e.reason}` : e.kind));

describe("fuzz: SIP stream framer", () => {
  it("never throws; however a stream is chunked it yields the same events, and nothing after a fatal one", () => {
    const piece = fc.oneof(validSip, mutated(validSip, sipAlphabet), fc.constant("\r\n\r\n"), fc.constant("\r\n"), anyText);
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 12 }), (pieces, cuts) => {
        const stream = Buffer.from(pieces.join(""), "utf8");
        const whole = new StreamFramer(2048);
        const once = whole.push(stream);
        const split = new StreamFramer(2048);
        const events = chunks(stream, cuts).flatMap((c) => split.push(c));
        const fatal = once.findIndex((e) => e.kind === "fatal");
        assert.ok(fatal < 0 || fatal === once.length - 1, "a fatal event is the last one");
        if (fatal >= 0) assert.deepEqual(whole.push(Buffer.from("OPTIONS sip:a@b SIP/2.0\r\n\r\n")), []);
        for (const e of once) {
          if (e.kind === "message") checkSip({ ok: true, message: e.message });
          if (e.kind === "invalid" || e.kind === "fatal") assert.ok(e.reason.length > 0 && !LINE_BREAKS.test(e.reason), e.reason);
        }
        // Up to the first fatal or oversized message, chunking changes nothing: a head over the
        // limit whose end is in view is skipped as too large, one cut before its end is fatal.
        const a = summarize(events);
        const b = summarize(once);
        const stop = (l: string[]) => { const i = l.findIndex((e) => e === "fatal" || e.startsWith("invalid message too large")); return i < 0 ? l.length : i; };
        const k = Math.min(stop(a), stop(b));
        assert.deepEqual(a.slice(0, k), b.slice(0, k));
        if (k === a.length && k === b.length) assert.equal(a.length, b.length);
      }),
      runs(300),
    );
  });

  it("an endless header block is fatal once over the limit, without growing without bound", () => {
    const framer = new StreamFramer(4096);
    let fatal = false;
    for (let i = 0; i < 100 && !fatal; i++) fatal = framer.push(Buffer.from("X-Junk: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")).some((e) => e.kind === "fatal");
    assert.ok(fatal);
  });
});

// ---------------------------------------------------------------- Digest challenges

describe("fuzz: Digest challenge parser", () => {
  const alphabet = fc.constantFrom('"', "\\", ",", "=", " ", "Digest", "realm", "nonce", "qop", "auth", "auth-int", "algorithm", "MD5", "SHA-256", "opaque", "stale", "true", "\u0000", "\uFFFD");
  const valid = fc.constantFrom(
    'Digest realm="asterisk", nonce="abc", algorithm=MD5, qop="auth"',
    'Digest realm="a,b", nonce="x\\"y", opaque="o", algorithm=SHA-256, qop="auth,auth-int", stale=TRUE',
    'Basic realm="x", Digest realm="y", nonce="n"',
  );

  it("never throws; a selected challenge is one we can answer, and answering it never throws", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(mutated(valid, alphabet), anyText), { maxLength: 3 }), fc.boolean(), (values, proxy) => {
        for (const c of parseChallenges(values)) {
          assert.match(c.scheme, /^[a-z0-9\-.!%*_+`'~]+$/);
          for (const name of c.params.keys()) assert.match(name, /^[a-z0-9\-.!%*_+`'~]+$/);
        }
        const chosen = selectChallenge(values, proxy);
        if (!chosen) return;
        assert.ok(chosen.nonce.length > 0 && chosen.proxy === proxy);
        assert.ok(chosen.qop.length === 0 || chosen.qop.includes("auth") || chosen.qop.includes("auth-int"));
        const header = buildAuthorization({ challenge: chosen, username: "1001", password: "pw", method: "SUBSCRIBE", uri: "sip:1001@pbx", body: Buffer.alloc(0) });
        assert.ok(header.startsWith("Digest ") && !/[\r\n]/.test(header), header);
      }),
      runs(400),
    );
  });
});

// ---------------------------------------------------------------- webhook payload and signature

describe("fuzz: webhook payload", () => {
  const good = fc.record(
    {
      mailbox: fc.oneof(fc.constantFrom("1001", "a@b", "", "x".repeat(129)), fc.string({ maxLength: 10 })),
      waiting: fc.oneof(fc.boolean(), fc.jsonValue()),
      new: fc.oneof(fc.nat(), fc.integer(), fc.double(), fc.jsonValue()),
      old: fc.oneof(fc.nat(), fc.double()),
      urgent_new: fc.oneof(fc.nat(), fc.double({ min: 0 })),
      urgent_old: fc.nat(),
      message: fc.oneof(
        fc.record({ ani: fc.oneof(fc.string({ maxLength: 70 }), fc.jsonValue()), dnis: fc.string({ maxLength: 10 }), time: fc.oneof(fc.date({ noInvalidDate: true }).map((d) => d.toISOString()), fc.string()), duration: fc.oneof(fc.double(), fc.nat()) }, { requiredKeys: [] }),
        fc.jsonValue(),
      ),
      extra: fc.jsonValue(),
    },
    { requiredKeys: [] },
  );

  it("never throws on any JSON value or object; an accepted update has a valid mailbox and clamped counts", () => {
    fc.assert(
      fc.property(fc.oneof(good, fc.jsonValue(), fc.anything()), (raw) => {
        const r = parseWebhookPayload("office", raw, 1);
        if (!r.ok) {
          assert.ok(r.reason.length > 0 && !LINE_BREAKS.test(r.reason), r.reason);
          return;
        }
        assert.match(r.update.mailbox, MAILBOX_PATTERN);
        assert.equal(typeof r.update.counts.waiting, "boolean");
        for (const n of [r.update.counts.new, r.update.counts.old, r.update.counts.urgentNew, r.update.counts.urgentOld]) assert.ok(Number.isInteger(n) && n >= 0 && n <= MAX_COUNT);
        const m = r.update.message;
        if (m?.time !== undefined) assert.ok(!Number.isNaN(Date.parse(m.time)));
        if (m?.duration !== undefined) assert.ok(Number.isInteger(m.duration) && m.duration >= 0);
        assert.ok((m?.ani ?? "").length <= 64 && (m?.dnis ?? "").length <= 64);
      }),
      runs(500),
    );
  });
});

describe("fuzz: webhook signature", () => {
  const secret = "0123456789abcdef0123456789abcdef";
  const header = fc.oneof(fc.constant(undefined), anyText, fc.stringMatching(/^[0-9a-f]{64}$/).map((h) => `sha256=${h}`), fc.constantFrom("sha256=", "sha256=zz", ""));
  const stamp = fc.oneof(fc.constant(undefined), anyText, fc.nat().map(String), fc.constantFrom("1e9", "-1", "+1", "1.0", " 1", "999999999999999"));

  it("never throws; random headers are never accepted; a signature made now is accepted once checked", () => {
    const now = 1_700_000_000_000;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), header, stamp, fc.boolean(), (body, signature, timestamp, legacy) => {
        const v = checkSignature(secret, body, { signature, timestamp }, { nowMs: now, legacy });
        assert.equal(v.ok, false, `${signature} ${timestamp}`);
        if (!v.ok) assert.ok(v.reason.length > 0 && !LINE_BREAKS.test(v.reason));
        const h = signedHeaders(secret, body, now);
        const good = checkSignature(secret, body, { signature: h["x-signature-256"], timestamp: h["x-signature-timestamp"] }, { nowMs: now, legacy });
        assert.ok(good.ok && good.replay !== undefined && good.replay.refuseUntilMs > now);
        // The same signature on another body, or another time stamp, is refused.
        const other = checkSignature(secret, Buffer.concat([body, Buffer.from("x")]), { signature: h["x-signature-256"], timestamp: h["x-signature-timestamp"] }, { nowMs: now, legacy });
        assert.equal(other.ok, false);
        const moved = String(Number(h["x-signature-timestamp"]) + 1);
        assert.equal(checkSignature(secret, body, { signature: h["x-signature-256"], timestamp: moved }, { nowMs: now, legacy }).ok, false);
        assert.ok(signRequest(secret, moved, body) !== h["x-signature-256"]);
      }),
      runs(300),
    );
  });
});

// ---------------------------------------------------------------- config loader

describe("fuzz: config loader", () => {
  const sample = [
    "homeserver:",
    "  url: http://localhost:8008",
    "  domain: localhost",
    "appservice:",
    "  port: 9000",
    "database:",
    "  path: ./data",
    "defaultTimezone: UTC",
    "systems:",
    "  - id: office",
    "    name: Office",
    "    kind: webhook",
    "    botLocalpart: vm_office",
    "    webhook:",
    "      port: 9001",
    "      secret: 0123456789abcdef0123456789abcdef",
    "  - id: pbx",
    "    kind: sip",
    "    sip: { server: 127.0.0.1, transport: udp, local: { port: 5070 } }",
    "",
  ].join("\n");
  const yamlAlphabet = fc.constantFrom("\n", "  ", ": ", "- ", "[", "]", "{", "}", ",", "'", '"', "&a", "*a", "!!binary", "!!js/function", "~", "null", "0x1F", "1e999", "__proto__", "<<: *a", "\t", "#");
  // Any value YAML can carry, at every depth of a config, where the schema expects something else.
  const value = fc.oneof(fc.jsonValue(), fc.anything({ maxDepth: 2, withNullPrototype: true, withMap: false, withSet: false, withBigInt: false, withDate: true, withTypedArray: false, withSparseArray: true }));
  // fc.anything makes invalid Dates too, which YAML cannot write (js-yaml's dump throws
  // "RangeError: Invalid time value"): the generator's own failure, not the loader's.
  const dumpOptions: yaml.DumpOptions = { skipInvalid: true, replacer: (_key, v: unknown) => (v instanceof Date && Number.isNaN(v.getTime()) ? "not a date" : v) };
  const structured = fc.tuple(value, fc.constantFrom("homeserver", "appservice", "systems", "database", "defaultTimezone", "logging", "metrics"), value).map(([top, key, v]) => {
    const base = yaml.load(sample) as Record<string, unknown>;
    base[key] = v;
    return [yaml.dump(top, dumpOptions), yaml.dump(base, dumpOptions)];
  });

  const mustBeConfigError = (text: string): void => {
    try {
      parseConfigYaml(text);
    } catch (err) {
      assert.ok(err instanceof ConfigError, `${JSON.stringify(text.slice(0, 300))} threw ${String(err)}`);
      for (const p of err.problems) assert.ok(p.length > 0 && !/[\r\n]/.test(p), JSON.stringify(p));
    }
  };

  it("random YAML, random JSON and random values in the sample config give ConfigError, never another error", () => {
    fc.assert(
      fc.property(fc.oneof(mutated(fc.constant(sample), yamlAlphabet), anyText, fc.jsonValue().map((v) => JSON.stringify(v)), structured.map((s) => s.join("\n---\n")), structured.map((s) => s[1])), (text) => mustBeConfigError(text)),
      runs(250),
    );
  });
});

// ---------------------------------------------------------------- Asterisk spool

describe("fuzz: Asterisk spool message file", () => {
  const keys = fc.constantFrom("callerid", "origtime", "duration", "rdnis", "exten", "CALLERID", "x");
  const values = fc.oneof(anyText, fc.constantFrom("1e20", "8.64e12", "-1", "Infinity", "NaN", "0x10", "Unknown", '"A" <+1555>', "<>", "<", '""'), fc.double().map(String), fc.nat().map(String));
  const file = fc.oneof(
    fc.array(fc.tuple(keys, fc.constantFrom("=", " = ", "="), values).map(([k, e, v]) => `${k}${e}${v}`), { maxLength: 8 }).map((lines) => ["[message]", ...lines].join("\n")),
    anyText,
  );

  it("an origtime past the last Date (1e20) gives no time instead of a RangeError", () => {
    const info = messageInfoFrom(parseMessageFile("[message]\norigtime=1e20\ncallerid=<+15551234567>"), "1001");
    assert.deepEqual(info, { ani: "+15551234567", dnis: "1001" });
  });

  it("never throws; what it reads is at most 64 characters per number, a valid time and a whole duration", () => {
    fc.assert(
      fc.property(file, fc.constantFrom("1001", "x".repeat(80)), (text, mailbox) => {
        const fields = parseMessageFile(text);
        for (const [k, v] of Object.entries(fields)) assert.ok(/^[a-z_]+$/.test(k) && !/[\r\n]/.test(v));
        parseCallerId(fields.callerid);
        const info = messageInfoFrom(fields, mailbox);
        assert.ok((info.ani ?? "").length <= 64 && (info.dnis ?? "").length <= 64);
        if (info.time !== undefined) assert.ok(!Number.isNaN(Date.parse(info.time)), info.time);
        if (info.duration !== undefined) assert.ok(Number.isInteger(info.duration) && info.duration >= 0);
      }),
      runs(400),
    );
  });
});

// ---------------------------------------------------------------- command line

const commandWord = fc.oneof(
  fc.constantFrom("!link", "!LINK", "!mwi", "!set", "!admin", "!unlink", "!target", "!help", "!list", "!", "!!", "--password", "--password=", "--", "-", '"', "'", "\u201c", "\u2014", "\\", "on", "off", "office", "1001", "--auth-user", "--no-x", "--__proto__", "constructor", "timezone", "Europe/Berlin"),
  fc.string({ maxLength: 8 }),
  fc.string({ unit: "grapheme", maxLength: 4 }),
);
const commandLine = fc.oneof(fc.array(commandWord, { maxLength: 8 }).map((w) => w.join(" ")), anyText.map((s) => `!${s}`));

describe("fuzz: command line", () => {
  it("parseCommand never throws and always gives a command, a one-line error or not-a-command", () => {
    fc.assert(
      fc.property(commandLine, (text) => {
        const r = parseCommand(text, COMMANDS);
        if (r.ok) assert.ok(COMMANDS.some((c) => c.name === r.name));
        else if (!("notACommand" in r)) assert.ok(r.error.length > 0, JSON.stringify(text));
        else assert.ok(!text.trim().startsWith("!") || /^!\s|^!$/.test(text.trim()));
      }),
      runs(400),
    );
  });

  it("the router never throws and answers every command with exactly one reply", async () => {
    const w = await world();
    try {
      await fc.assert(
        fc.asyncProperty(commandLine.filter((t) => /^![^\s!]/.test(t.trim())), async (text) => {
          w.bots.sent.length = 0;
          await w.send(ALICE, w.rooms.aliceCarrier, text);
          assert.equal(w.bots.sent.length, 1, `${JSON.stringify(text)} got ${JSON.stringify(w.bots.sent.map((s) => s.body))}`);
          assert.ok(w.bots.sent[0]!.body.length > 0);
        }),
        runs(150),
      );
    } finally {
      await w.close();
    }
  });
});
