import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";

import {
  MAX_BODY_BYTES,
  MAX_COUNT,
  formatMessageSummary,
  parseMessageSummary,
  type MessageClassCounts,
  type MessageSummary,
  type ParseResult,
} from "../../src/gateway/sip/messageSummary.js";

// ---------------------------------------------------------------- helpers

const CRLF = (...lines: string[]): string => lines.map((l) => `${l}\r\n`).join("");
const counts = (newCount: number, oldCount: number, urgentNew = 0, urgentOld = 0): MessageClassCounts => ({
  newCount,
  oldCount,
  urgentNew,
  urgentOld,
});
const ZERO = counts(0, 0);
const LINE_BREAKS = /[\r\n\u0085\u2028\u2029]/;

function ok(body: string | Uint8Array): MessageSummary {
  const r = parseMessageSummary(body);
  if (!r.ok) assert.fail(`expected ok, got reason: ${r.reason}`);
  return r.summary;
}

function bad(body: string | Uint8Array, pattern?: RegExp): string {
  const r = parseMessageSummary(body);
  if (r.ok) assert.fail(`expected failure, got ${JSON.stringify(r.summary)}`);
  assert.equal(typeof r.reason, "string");
  assert.ok(r.reason.length > 0, "reason must not be empty");
  assert.ok(!LINE_BREAKS.test(r.reason), `reason must be one line: ${JSON.stringify(r.reason)}`);
  if (pattern) assert.match(r.reason, pattern);
  return r.reason;
}

/** Invariants every result must satisfy, ok or not. */
function checkResultShape(r: ParseResult): void {
  assert.equal(typeof r.ok, "boolean");
  if (!r.ok) {
    assert.equal(typeof r.reason, "string");
    assert.ok(r.reason.length > 0);
    assert.ok(!LINE_BREAKS.test(r.reason), r.reason);
    return;
  }
  const s = r.summary;
  assert.equal(typeof s.waiting, "boolean");
  const isCount = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= MAX_COUNT;
  for (const c of [...Object.values(s.classes), s.voice]) {
    assert.ok(isCount(c.newCount) && isCount(c.oldCount) && isCount(c.urgentNew) && isCount(c.urgentOld));
  }
  assert.deepEqual(s.voice, s.classes["voice"] ?? ZERO);
  assert.ok(Array.isArray(s.messages));
}

// ---------------------------------------------------------------- RFC 3842 examples

describe("parseMessageSummary: RFC 3842 examples", () => {
  it("parses the example notification of the message flow (Voice-Message: 2/8 (0/2))", () => {
    const s = ok(CRLF("Messages-Waiting: yes", "Message-Account: sip:alice@vmail.example.com", "Voice-Message: 2/8 (0/2)"));
    assert.deepEqual(s, {
      waiting: true,
      account: "sip:alice@vmail.example.com",
      classes: { voice: counts(2, 8, 0, 2) },
      voice: counts(2, 8, 0, 2),
      messages: [],
    });
  });

  it("parses the body-format example with the optional message headers", () => {
    const body = CRLF(
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
      "To: <alice@atlanta.example.com>",
      "From: <carol@chicago.example.com>",
      "Subject: running late",
      "Priority: urgent",
    );
    const s = ok(body);
    assert.equal(s.waiting, true);
    assert.deepEqual(s.voice, counts(4, 8, 1, 2));
    assert.equal(s.messages.length, 2);
    assert.deepEqual(s.messages[0], {
      to: "<alice@atlanta.example.com>",
      from: "<bob@biloxi.example.com>",
      subject: "carpool tomorrow?",
      date: "Sun, 09 Feb 2003 12:34:56 -0600",
      priority: "normal",
      messageId: "13784434989@vmail.example.com",
      headers: {
        to: "<alice@atlanta.example.com>",
        from: "<bob@biloxi.example.com>",
        subject: "carpool tomorrow?",
        date: "Sun, 09 Feb 2003 12:34:56 -0600",
        priority: "normal",
        "message-id": "13784434989@vmail.example.com",
      },
    });
    assert.equal(s.messages[1]!.from, "<carol@chicago.example.com>");
    assert.equal(s.messages[1]!.priority, "urgent");
    assert.equal(s.messages[1]!.date, undefined);
    assert.equal(s.messages[1]!.messageId, undefined);
  });

  it("parses the boolean-only form (Messages-Waiting: no)", () => {
    assert.deepEqual(ok("Messages-Waiting: no\r\n"), {
      waiting: false,
      classes: {},
      voice: ZERO,
      messages: [],
    });
  });

  it("parses several message-context classes in one body", () => {
    const s = ok(CRLF("Messages-Waiting: yes", "Voice-Message: 1/0", "Fax-Message: 0/2", "Pager-Message: 3/4 (1/1)"));
    assert.deepEqual(s.classes, { voice: counts(1, 0), fax: counts(0, 2), pager: counts(3, 4, 1, 1) });
    assert.equal(s.account, undefined);
    assert.ok(!("account" in s), "account key absent when no Message-Account");
  });
});

// ---------------------------------------------------------------- header syntax

describe("parseMessageSummary: syntax variants", () => {
  it("treats header names and the yes/no value case-insensitively", () => {
    const s = ok(CRLF("MESSAGES-WAITING: YES", "message-account: sip:a@b", "vOiCe-MeSsAgE: 3/1"));
    assert.equal(s.waiting, true);
    assert.equal(s.account, "sip:a@b");
    assert.deepEqual(s.voice, counts(3, 1));
    assert.deepEqual(Object.keys(s.classes), ["voice"]);
    assert.equal(ok("messages-waiting: No\n").waiting, false);
  });

  it("accepts white space around the colon, the slash and inside the parentheses", () => {
    for (const line of [
      "Voice-Message:5/6(7/8)",
      "Voice-Message : 5 / 6 ( 7 / 8 )",
      "Voice-Message\t:\t5\t/\t6\t(\t7\t/\t8\t)\t",
      "Voice-Message:   5/6   (7/8)   ",
    ]) {
      assert.deepEqual(ok(CRLF("Messages-Waiting :yes", line)).voice, counts(5, 6, 7, 8), line);
    }
  });

  it("accepts bare LF line endings and a body without a final line break", () => {
    const crlf = ok(CRLF("Messages-Waiting: yes", "Voice-Message: 2/3", "", "From: <sip:bob@x>"));
    const lf = ok("Messages-Waiting: yes\nVoice-Message: 2/3\n\nFrom: <sip:bob@x>\n");
    const noFinal = ok("Messages-Waiting: yes\nVoice-Message: 2/3\n\nFrom: <sip:bob@x>");
    assert.deepEqual(lf, crlf);
    assert.deepEqual(noFinal, crlf);
    // Old-Mac bare CR too: it is a line break, never a stray control character.
    assert.deepEqual(ok("Messages-Waiting: yes\rVoice-Message: 2/3\r\rFrom: <sip:bob@x>\r"), crlf);
    assert.equal(crlf.messages[0]!.from, "<sip:bob@x>");
  });

  it("unfolds continuation lines (space or tab) in the summary part", () => {
    const s = ok("Messages-Waiting:\r\n  yes\r\nVoice-Message: 4/8\r\n\t(1/2)\r\n");
    assert.equal(s.waiting, true);
    assert.deepEqual(s.voice, counts(4, 8, 1, 2));
  });

  it("ignores unknown headers in the summary part", () => {
    const s = ok(CRLF("X-Vendor: whatever : with colons", "Messages-Waiting: no", "Content-Thing:"));
    assert.deepEqual(s, { waiting: false, classes: {}, voice: ZERO, messages: [] });
  });

  it("does not require Messages-Waiting to be the first line", () => {
    const s = ok(CRLF("Message-Account: sip:alice@example.com", "Voice-Message: 1/0", "Messages-Waiting: yes"));
    assert.equal(s.waiting, true);
    assert.equal(s.account, "sip:alice@example.com");
  });

  it("skips leading blank lines", () => {
    assert.equal(ok("\r\n\r\nMessages-Waiting: yes\r\n").waiting, true);
  });

  it("strips a UTF-8 byte order mark from strings and bytes", () => {
    assert.equal(ok("\uFEFFMessages-Waiting: yes\r\n").waiting, true);
    const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode("Messages-Waiting: no\r\n")]);
    assert.equal(ok(bytes).waiting, false);
  });

  it("accepts Uint8Array (and Buffer) input the same as a string", () => {
    const body = CRLF("Messages-Waiting: yes", "Message-Account: sips:bob@example.org", "Fax-Message: 9/10 (2/3)");
    const expected = ok(body);
    assert.deepEqual(ok(new TextEncoder().encode(body)), expected);
    assert.deepEqual(ok(Buffer.from(body, "utf8")), expected);
    assert.deepEqual(expected.classes, { fax: counts(9, 10, 2, 3) });
    assert.deepEqual(expected.voice, ZERO);
  });

  it("accepts a name-addr style <uri> Message-Account and unwraps it", () => {
    assert.equal(ok(CRLF("Messages-Waiting: yes", "Message-Account: <sip:alice@example.com>")).account, "sip:alice@example.com");
  });
});

// ---------------------------------------------------------------- classes and counts

describe("parseMessageSummary: classes and counts", () => {
  it("accepts every RFC 3458 class and unknown ones like video", () => {
    const classes = ["voice", "fax", "pager", "multimedia", "text", "none", "video", "x-carrier.pigeon"];
    const body = CRLF("Messages-Waiting: yes", ...classes.map((c, i) => `${c}-Message: ${i}/${i + 1}`));
    const s = ok(body);
    assert.deepEqual(Object.keys(s.classes).sort(), [...classes].sort());
    classes.forEach((c, i) => assert.deepEqual(s.classes[c], counts(i, i + 1), c));
    assert.deepEqual(s.voice, counts(0, 1));
  });

  it("reports voice as zeros when only other classes are present", () => {
    const s = ok(CRLF("Messages-Waiting: yes", "Video-Message: 3/0"));
    assert.deepEqual(s.voice, ZERO);
    assert.deepEqual(s.classes, { video: counts(3, 0) });
  });

  it("returns a voice object that is not shared with classes.voice", () => {
    const s = ok(CRLF("Messages-Waiting: yes", "Voice-Message: 1/1"));
    s.voice.newCount = 42;
    assert.equal(s.classes["voice"]!.newCount, 1);
  });

  it("reads urgent counts, and zero when the parenthesised part is absent", () => {
    assert.deepEqual(ok(CRLF("Messages-Waiting: yes", "Voice-Message: 10/20 (3/4)")).voice, counts(10, 20, 3, 4));
    assert.deepEqual(ok(CRLF("Messages-Waiting: yes", "Voice-Message: 10/20")).voice, counts(10, 20, 0, 0));
  });

  it("clamps counts above 2^32-1 without losing precision", () => {
    const cases: [string, number][] = [
      ["4294967295", MAX_COUNT],
      ["4294967294", 4294967294],
      ["4294967296", MAX_COUNT],
      ["9999999999", MAX_COUNT],
      ["99999999999999999999", MAX_COUNT],
      ["1" + "0".repeat(400), MAX_COUNT],
      ["0000000000000000000000000007", 7],
      ["00000000000004294967295", MAX_COUNT],
      ["0", 0],
    ];
    for (const [digits, want] of cases) {
      const s = ok(CRLF("Messages-Waiting: yes", `Voice-Message: ${digits}/${digits} (${digits}/${digits})`));
      assert.deepEqual(s.voice, counts(want, want, want, want), digits);
    }
  });

  it("rejects malformed counts with a reason naming the line and the header", () => {
    for (const value of [
      "x/1",
      "1",
      "1/",
      "/1",
      "-1/2",
      "+1/2",
      "1.5/2",
      "1/2 (3)",
      "1/2 (3/4",
      "1/2 3/4)",
      "1/2 (3/4) trailing",
      "1/2/3",
      "",
      "１/2", // full-width digit
      "1 2/3",
    ]) {
      const reason = bad(CRLF("Messages-Waiting: yes", `Voice-Message: ${value}`), /^line 2: malformed Voice-Message counts/);
      assert.ok(reason.includes(JSON.stringify(value)), reason);
    }
  });

  it("rejects a duplicate message-context class (case-insensitively)", () => {
    bad(CRLF("Messages-Waiting: yes", "Voice-Message: 1/2", "voice-message: 3/4"), /^line 3: duplicate voice-message/);
  });

  it("rejects a message-context line with an empty class", () => {
    bad(CRLF("Messages-Waiting: yes", "-Message: 1/2"), /^line 2: .*empty class/);
  });

  it("keeps __proto__ and constructor classes as plain own keys", () => {
    const s = ok(CRLF("Messages-Waiting: yes", "__proto__-Message: 1/2", "constructor-Message: 3/4"));
    assert.deepEqual(Object.keys(s.classes).sort(), ["__proto__", "constructor"]);
    assert.deepEqual(s.classes["__proto__"], counts(1, 2));
    assert.equal(Object.getPrototypeOf(s.classes), Object.prototype);
  });
});

// ---------------------------------------------------------------- errors

describe("parseMessageSummary: errors", () => {
  it("requires Messages-Waiting", () => {
    bad(CRLF("Message-Account: sip:a@b", "Voice-Message: 1/2"), /missing required Messages-Waiting/);
    bad("", /empty body/);
    bad("\r\n \r\n", /empty body/);
    // A status line after the blank line belongs to the message headers.
    bad(CRLF("Voice-Message: 1/2", "", "Messages-Waiting: yes"), /missing required Messages-Waiting/);
  });

  it("rejects a value other than yes or no", () => {
    for (const v of ["maybe", "", "yes no", "true", "1", "yes;x"]) {
      bad(`Messages-Waiting: ${v}\r\n`, /^line 1: Messages-Waiting must be "yes" or "no"/);
    }
  });

  it("rejects a duplicate Messages-Waiting, even with the same value", () => {
    bad(CRLF("Messages-Waiting: yes", "Messages-Waiting: yes"), /^line 2: duplicate Messages-Waiting/);
    bad(CRLF("Messages-Waiting: yes", "Voice-Message: 1/1", "messages-waiting: NO"), /^line 3: duplicate/);
  });

  it("rejects a duplicate or non-URI Message-Account", () => {
    bad(CRLF("Messages-Waiting: yes", "Message-Account: sip:a@b", "Message-Account: sip:c@d"), /^line 3: duplicate Message-Account/);
    for (const v of ["", "alice", "sip alice@example.com", "sip:", "sip:al ice@example.com", "1sip:a@b", "sip:é@x"]) {
      bad(CRLF("Messages-Waiting: yes", `Message-Account: ${v}`), /^line 2: Message-Account is not a URI/);
    }
  });

  it("rejects summary lines that are not headers, naming the line", () => {
    bad(CRLF("Messages-Waiting: yes", "this is not a header"), /^line 2: expected "Name: value"/);
    bad(CRLF("Messages-Waiting: yes", "Bad Name: 1"), /^line 2: invalid header name "Bad Name"/);
    bad(CRLF("Messages-Waiting: yes", ": value"), /^line 2: invalid header name ""/);
    bad(" Messages-Waiting: yes\r\n", /^line 1: continuation line with no header/);
  });

  it("counts physical lines in reasons, including folded and skipped ones", () => {
    bad("\r\nMessages-Waiting: yes\r\nX-A: 1\r\n 2\r\nVoice-Message: z\r\n", /^line 5: /);
    bad("Messages-Waiting: yes\nVoice-Message:\n  1/x\n", /^line 2: malformed Voice-Message counts "1\/x"/);
  });

  it("rejects control characters (NUL and friends) in the summary part", () => {
    bad("Messages-Waiting: yes\r\nVoice-Message: 1/2\u0000\r\n", /^line 2: control character/);
    bad("Messages-Waiting: y\u0007es\r\n", /^line 1: control character/);
  });

  it("escapes the quoted input so that a reason stays on one line and short", () => {
    const reason = bad(`Messages-Waiting: yes\r\nVoice-Message: ${"\u2028x\u0085".repeat(100)}\r\n`);
    assert.ok(reason.length < 400, reason); // 40 input chars at most, each escaped to 6
    assert.ok(!/[\u0085\u2028]/.test(reason), "U+2028 and U+0085 escaped");
    assert.ok(reason.includes("\\u2028x\\u0085"), reason);
  });

  it("rejects bodies over the size limit, as strings and as bytes", () => {
    const filler = "X-Pad: " + "a".repeat(MAX_BODY_BYTES) + "\r\n";
    bad("Messages-Waiting: yes\r\n" + filler, /too large/);
    bad(new Uint8Array(MAX_BODY_BYTES + 1), /too large/);
    // Multi-byte characters: under the limit in UTF-16 units, over it in bytes.
    bad("Messages-Waiting: yes\r\nX-Pad: " + "é".repeat(MAX_BODY_BYTES / 2) + "\r\n", /too large/);
    bad("x".repeat(50 * 1024 * 1024), /too large/);
    // Just under the limit is fine.
    const head = "Messages-Waiting: yes\r\nX-Pad: ";
    assert.equal(ok(head + "a".repeat(MAX_BODY_BYTES - head.length)).waiting, true);
  });

  it("rejects input that is neither a string nor bytes instead of throwing", () => {
    for (const v of [null, undefined, 42, {}, ["Messages-Waiting: yes"]]) {
      bad(v as unknown as string, /must be a string or a Uint8Array/);
    }
  });

  it("does not throw on invalid UTF-8 and rejects it where the summary needs ASCII", () => {
    const enc = new TextEncoder();
    const withBadByte = (before: string, after: string): Uint8Array =>
      new Uint8Array([...enc.encode(before), 0xff, 0xfe, ...enc.encode(after)]);
    bad(withBadByte("Messages-Waiting: ", "yes\r\n"), /^line 1: Messages-Waiting must be/);
    bad(withBadByte("Messages-Waiting: yes\r\nVoice", "-Message: 1/2\r\n"), /^line 2: invalid header name/);
    // In an ignored header or in the optional part it is harmless.
    assert.equal(ok(withBadByte("Messages-Waiting: yes\r\nX-Junk: ", "\r\n")).waiting, true);
    const s = ok(withBadByte("Messages-Waiting: yes\r\n\r\nSubject: hi ", "\r\n"));
    assert.equal(s.messages[0]!.subject, "hi \uFFFD\uFFFD");
  });
});

// ---------------------------------------------------------------- optional message headers

describe("parseMessageSummary: optional message headers", () => {
  it("parses blocks separated by one or more blank lines, in order", () => {
    const s = ok(
      "Messages-Waiting: yes\n\n\nTo: <sip:alice@x>\nFrom: <sip:bob@x>\n\n\n\nFrom: <sip:carol@x>\nX-Extra: 1\n\n",
    );
    assert.deepEqual(s.messages, [
      { to: "<sip:alice@x>", from: "<sip:bob@x>", headers: { to: "<sip:alice@x>", from: "<sip:bob@x>" } },
      { from: "<sip:carol@x>", headers: { from: "<sip:carol@x>", "x-extra": "1" } },
    ]);
  });

  it("treats a whitespace-only line as a separator, not as a fold", () => {
    const s = ok("Messages-Waiting: yes\r\nVoice-Message: 1/2\r\n \t\r\nTo: <sip:a@x>\r\n  \r\nTo: <sip:b@x>\r\n");
    assert.deepEqual(s.voice, counts(1, 2));
    assert.deepEqual(
      s.messages.map((m) => m.to),
      ["<sip:a@x>", "<sip:b@x>"],
    );
  });

  it("matches header names case-insensitively and keeps the first duplicate", () => {
    const s = ok(CRLF("Messages-Waiting: yes", "", "SUBJECT : first", "subject: second", "message-id:<1@x>"));
    assert.equal(s.messages[0]!.subject, "first");
    assert.equal(s.messages[0]!.headers["subject"], "first");
    assert.equal(s.messages[0]!.messageId, "<1@x>");
  });

  it("unfolds continuation lines in message headers", () => {
    const s = ok(CRLF("Messages-Waiting: yes", "", "Subject: a long", "  subject line", "\tcontinued", "To: <sip:a@x>"));
    assert.equal(s.messages[0]!.subject, "a long subject line continued");
    assert.equal(s.messages[0]!.to, "<sip:a@x>");
  });

  it("ignores garbage lines there without failing the body", () => {
    const s = ok(
      CRLF(
        "Messages-Waiting: yes",
        "Voice-Message: 1/0",
        "",
        "garbage without colon",
        "  continuation of garbage",
        "Bad Name: x",
        "Subject: kept\u0000broken",
        " continuation of a dropped line",
        "From: <sip:bob@x>",
        ": no name",
        "",
        "only garbage here",
      ),
    );
    assert.deepEqual(s.voice, counts(1, 0));
    assert.deepEqual(s.messages, [{ from: "<sip:bob@x>", headers: { from: "<sip:bob@x>" } }]);
  });

  it("treats summary-looking lines after the blank line as plain headers", () => {
    const s = ok(CRLF("Messages-Waiting: no", "", "Voice-Message: 5/5", "Messages-Waiting: yes"));
    assert.equal(s.waiting, false);
    assert.deepEqual(s.voice, ZERO);
    assert.deepEqual(s.messages[0]!.headers, { "voice-message": "5/5", "messages-waiting": "yes" });
  });

  it("keeps a __proto__ message header as an own property", () => {
    const s = ok(CRLF("Messages-Waiting: yes", "", "__proto__: x"));
    assert.equal(Object.getOwnPropertyDescriptor(s.messages[0]!.headers, "__proto__")?.value, "x");
    assert.equal(Object.getPrototypeOf(s.messages[0]!.headers), Object.prototype);
  });
});

// ---------------------------------------------------------------- formatMessageSummary

describe("formatMessageSummary", () => {
  it("builds the RFC style body with CRLF endings", () => {
    assert.equal(
      formatMessageSummary({ waiting: true, account: "sip:alice@vmail.example.com", voice: counts(2, 8, 0, 2) }),
      "Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\nVoice-Message: 2/8 (0/2)\r\n",
    );
    assert.equal(formatMessageSummary({ waiting: false, voice: ZERO }), "Messages-Waiting: no\r\nVoice-Message: 0/0\r\n");
  });

  it("refuses counts and accounts no valid body can carry", () => {
    for (const bad of [-1, 1.5, MAX_COUNT + 1, Number.NaN, Infinity]) {
      assert.throws(() => formatMessageSummary({ waiting: true, voice: counts(bad, 0) }), RangeError);
      assert.throws(() => formatMessageSummary({ waiting: true, voice: counts(0, 0, 0, bad) }), RangeError);
    }
    assert.throws(() => formatMessageSummary({ waiting: true, account: "sip:a@b\r\nMessages-Waiting: no", voice: ZERO }), RangeError);
  });
});

// ---------------------------------------------------------------- properties

const countArb = fc.oneof(fc.nat({ max: 20 }), fc.integer({ min: 0, max: MAX_COUNT }), fc.constant(MAX_COUNT));
const countsArb = fc.record({ newCount: countArb, oldCount: countArb, urgentNew: countArb, urgentOld: countArb });
const uriArb = fc
  .tuple(
    fc.constantFrom("sip", "sips", "tel", "mailto", "urn"),
    fc.stringMatching(/^[A-Za-z0-9._~%+\-]{1,12}(@[a-z0-9.\-]{1,12})?$/),
  )
  .map(([scheme, rest]) => `${scheme}:${rest}`);
const summaryArb = fc.record(
  { waiting: fc.boolean(), account: uriArb, voice: countsArb },
  { requiredKeys: ["waiting", "voice"] },
);

describe("properties", () => {
  it("(a) parse(format(x)) round-trips", () => {
    fc.assert(
      fc.property(summaryArb, (x) => {
        const s = ok(formatMessageSummary(x));
        // fast-check records have a null prototype; deepEqual compares prototypes.
        const voice = { ...x.voice };
        const expected: MessageSummary = { waiting: x.waiting, classes: { voice }, voice, messages: [] };
        if (x.account !== undefined) expected.account = x.account;
        assert.deepEqual(s, expected);
      }),
      { numRuns: 500 },
    );
  });

  it("(a) round-trips through bytes and bare LF as well", () => {
    fc.assert(
      fc.property(summaryArb, (x) => {
        const body = formatMessageSummary(x);
        const want = ok(body);
        assert.deepEqual(ok(new TextEncoder().encode(body)), want);
        assert.deepEqual(ok(body.replaceAll("\r\n", "\n")), want);
      }),
    );
  });

  it("clamps any digit string exactly like a big-integer oracle", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9]{1,40}$/), (digits) => {
        const want = BigInt(digits) > BigInt(MAX_COUNT) ? MAX_COUNT : Number(BigInt(digits));
        assert.equal(ok(`Messages-Waiting: yes\nFax-Message: ${digits}/0\n`).classes["fax"]!.newCount, want);
      }),
    );
  });

  it("(b) never throws on arbitrary strings", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 300 }), (s) => {
        checkResultShape(parseMessageSummary(s));
      }),
      { numRuns: 1000 },
    );
  });

  it("(b) never throws on strings built from the body's own alphabet", () => {
    const piece = fc.constantFrom(
      "Messages-Waiting", "Message-Account", "Voice-Message", "-message", ":", "/", "(", ")", " ", "\t",
      "\r\n", "\n", "\r", "yes", "no", "sip:a@b", "0", "7", "4294967296", "\u0000", "\uFFFD", "\uD800", "<", ">",
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 60 }), (pieces) => {
        checkResultShape(parseMessageSummary(pieces.join("")));
      }),
      { numRuns: 1000 },
    );
  });

  it("(b) never throws on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        checkResultShape(parseMessageSummary(bytes));
      }),
      { numRuns: 1000 },
    );
  });

  it("(b) never throws on random insertions and deletions in a valid body", () => {
    const base = CRLF(
      "Messages-Waiting: yes",
      "Message-Account: sip:alice@vmail.example.com",
      "Voice-Message: 4/8 (1/2)",
      "Fax-Message: 1/0",
      "",
      "To: <sip:alice@x>",
      "From: <sip:bob@x>",
      "Subject: hi",
    );
    const edit = fc.record({
      at: fc.nat(),
      del: fc.nat({ max: 6 }),
      ins: fc.oneof(fc.string({ unit: "binary", maxLength: 6 }), fc.constantFrom("\r\n", "\n", ":", "/", " ", "(", "\u0000", "9".repeat(30))),
    });
    fc.assert(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 8 }), fc.boolean(), (edits, asBytes) => {
        let body = base;
        for (const e of edits) {
          const at = e.at % (body.length + 1);
          body = body.slice(0, at) + e.ins + body.slice(at + e.del);
        }
        const r = parseMessageSummary(asBytes ? new TextEncoder().encode(body) : body);
        checkResultShape(r);
      }),
      { numRuns: 2000 },
    );
  });

  it("(c) random case changes and spaces around colons do not change the result", () => {
    const classArb = fc.constantFrom("voice", "fax", "pager", "multimedia", "text", "none", "video");
    const bodyArb = fc.record({
      waiting: fc.boolean(),
      account: fc.option(uriArb, { nil: undefined }),
      classes: fc.uniqueArray(fc.tuple(classArb, countsArb), { selector: ([c]) => c, maxLength: 4 }),
      messages: fc.array(fc.array(fc.tuple(fc.constantFrom("To", "From", "Subject", "Priority", "Message-ID"), uriArb), { minLength: 1, maxLength: 3 }), { maxLength: 2 }),
    });
    type Body = typeof bodyArb extends fc.Arbitrary<infer T> ? T : never;
    type Style = { upper: (i: number) => boolean; space: (i: number) => string; slash: (i: number) => string };

    const render = (b: Body, st: Style): string => {
      let k = 0;
      const name = (n: string): string =>
        [...n].map((ch) => (st.upper(k++) ? ch.toUpperCase() : ch.toLowerCase())).join("");
      const header = (n: string, v: string): string => `${name(n)}${st.space(k++)}:${st.space(k++)}${v}\r\n`;
      const sl = (): string => `${st.slash(k++)}/${st.slash(k++)}`;
      let out = header("Messages-Waiting", name(b.waiting ? "yes" : "no"));
      if (b.account !== undefined) out += header("Message-Account", b.account);
      for (const [c, n] of b.classes) {
        out += header(`${c}-Message`, `${n.newCount}${sl()}${n.oldCount} (${n.urgentNew}${sl()}${n.urgentOld})`);
      }
      for (const block of b.messages) {
        out += "\r\n";
        for (const [h, v] of block) out += header(h, v);
      }
      return out;
    };
    const plain: Style = { upper: () => false, space: () => "", slash: () => "" };
    const wsArb = fc.constantFrom("", " ", "\t", "  ", " \t ");

    fc.assert(
      fc.property(
        bodyArb,
        fc.array(fc.boolean(), { minLength: 1, maxLength: 64 }),
        fc.array(wsArb, { minLength: 1, maxLength: 64 }),
        fc.array(wsArb, { minLength: 1, maxLength: 64 }),
        (b, ups, spaces, slashes) => {
          const canonical = parseMessageSummary(render(b, plain));
          assert.equal(canonical.ok, true);
          const style: Style = {
            upper: (i) => ups[i % ups.length]!,
            space: (i) => spaces[i % spaces.length]!,
            slash: (i) => slashes[i % slashes.length]!,
          };
          assert.deepEqual(parseMessageSummary(render(b, style)), canonical);
        },
      ),
      { numRuns: 500 },
    );
  });
});
