import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import fc from "fast-check";

import { parseWebhookPayload, type PayloadResult } from "../../src/gateway/webhook/payload.js";
import { SeenSignatures } from "../../src/gateway/webhook/replay.js";
import {
  checkSignature,
  SIGNATURE_HEADER,
  SIGNATURE_WINDOW_SECONDS,
  signBody,
  signedHeaders,
  signRequest,
  TIMESTAMP_HEADER,
  verifySignature,
} from "../../src/gateway/webhook/signature.js";
import type { MwiUpdate } from "../../src/core/mwi.js";

const DOCUMENTED =
  '{"mailbox":"1001","waiting":true,"new":2,"old":5,"urgent_new":0,"urgent_old":0,"message":{"ani":"+15551234567","dnis":"+15557654321","time":"2026-11-25T14:03:00Z","duration":42}}';

const parse = (raw: unknown): PayloadResult => parseWebhookPayload("carrier", raw, 1234);

function accepted(raw: unknown): MwiUpdate {
  const r = parse(raw);
  if (!r.ok) assert.fail(`expected ${JSON.stringify(raw)} to be accepted, got: ${r.reason}`);
  return r.update;
}

function reason(raw: unknown): string {
  const r = parse(raw);
  if (r.ok) assert.fail(`expected ${JSON.stringify(raw)} to be rejected`);
  assert.equal(typeof r.reason, "string");
  return r.reason;
}

const minimal = () => ({ mailbox: "1001", waiting: false, new: 0, old: 0 }) as Record<string, unknown>;

describe("parseWebhookPayload: accepted bodies", () => {
  it("the documented body", () => {
    assert.deepEqual(accepted(JSON.parse(DOCUMENTED)), {
      systemId: "carrier",
      mailbox: "1001",
      counts: { waiting: true, new: 2, old: 5, urgentNew: 0, urgentOld: 0 },
      message: { ani: "+15551234567", dnis: "+15557654321", time: "2026-11-25T14:03:00.000Z", duration: 42 },
      receivedAt: 1234,
    });
  });

  it("a minimal body: urgent counts default to 0, no message", () => {
    const update = accepted(minimal());
    assert.deepEqual(update, {
      systemId: "carrier",
      mailbox: "1001",
      counts: { waiting: false, new: 0, old: 0, urgentNew: 0, urgentOld: 0 },
      receivedAt: 1234,
    });
    assert.ok(!("message" in update));
  });

  it("the system ID and the receive time come from the caller", () => {
    const r = parseWebhookPayload("office", minimal(), 99);
    assert.ok(r.ok);
    assert.equal(r.update.systemId, "office");
    assert.equal(r.update.receivedAt, 99);
  });

  it("message null, empty, or with only empty fields counts as no message", () => {
    for (const message of [null, {}, { ani: "", dnis: null, time: null, duration: null }]) {
      const update = accepted({ ...minimal(), message });
      assert.ok(!("message" in update), JSON.stringify(message));
    }
  });

  it("only the message fields that are given", () => {
    assert.deepEqual(accepted({ ...minimal(), message: { ani: "alice" } }).message, { ani: "alice" });
    assert.deepEqual(accepted({ ...minimal(), message: { dnis: "sip:1001@pbx.example" } }).message, { dnis: "sip:1001@pbx.example" });
    assert.deepEqual(accepted({ ...minimal(), message: { duration: 0 } }).message, { duration: 0 });
  });

  it("message.caller_name is the caller's name", () => {
    const update = accepted({ ...minimal(), message: { ani: "5551234", caller_name: "Grace Caller" } });
    assert.deepEqual(update.message, { ani: "5551234", callerName: "Grace Caller" });
    assert.match(reason({ ...minimal(), message: { caller_name: 7 } }), /caller_name/);
    assert.match(reason({ ...minimal(), message: { caller_name: "x".repeat(129) } }), /caller_name/);
  });

  it("the message time is normalised to ISO 8601 in UTC, duration rounded", () => {
    const update = accepted({ ...minimal(), message: { time: "2026-11-25T15:03:00+01:00", duration: 41.6 } });
    assert.deepEqual(update.message, { time: "2026-11-25T14:03:00.000Z", duration: 42 });
  });

  it("mailboxes with letters and the allowed signs", () => {
    for (const mailbox of ["1001", "0123", "alice@pbx.example", "*97", "#1", "a_b.c+d:e-f", "Ärger", "x".repeat(128)]) {
      assert.equal(accepted({ ...minimal(), mailbox }).mailbox, mailbox);
    }
  });

  it("counts above 2^32 - 1 are clamped", () => {
    const update = accepted({ mailbox: "1", waiting: true, new: 2 ** 40, old: 4294967296, urgent_new: 4294967295, urgent_old: 2 ** 53 });
    assert.deepEqual(update.counts, { waiting: true, new: 4294967295, old: 4294967295, urgentNew: 4294967295, urgentOld: 4294967295 });
  });

  it("waiting is taken as given even when the counts disagree", () => {
    assert.equal(accepted({ mailbox: "1", waiting: true, new: 0, old: 0 }).counts.waiting, true);
    assert.equal(accepted({ mailbox: "1", waiting: false, new: 3, old: 0 }).counts.waiting, false);
  });
});

describe("parseWebhookPayload: rejected bodies", () => {
  it("not an object", () => {
    for (const raw of [null, undefined, [], [minimal()], "1001", 42, true]) {
      assert.equal(reason(raw), "body must be a JSON object", JSON.stringify(raw));
    }
  });

  it("missing fields", () => {
    const without = (key: string) => {
      const body = minimal();
      delete body[key];
      return body;
    };
    assert.equal(reason(without("mailbox")), "mailbox must be a string of 1 to 128 letters, digits or @._+:*#-");
    assert.equal(reason(without("waiting")), "waiting must be true or false");
    assert.equal(reason(without("new")), "new must be a non-negative integer");
    assert.equal(reason(without("old")), "old must be a non-negative integer");
    assert.equal(reason({}), "mailbox must be a string of 1 to 128 letters, digits or @._+:*#-");
  });

  it("bad mailboxes", () => {
    for (const mailbox of ["", " ", "10 01", "a/b", "<1>", "x".repeat(129), 1001, null]) {
      assert.equal(reason({ ...minimal(), mailbox }), "mailbox must be a string of 1 to 128 letters, digits or @._+:*#-", String(mailbox));
    }
  });

  it("waiting that is not a boolean", () => {
    for (const waiting of ["true", 1, 0, null]) {
      assert.equal(reason({ ...minimal(), waiting }), "waiting must be true or false", String(waiting));
    }
  });

  it("negative, fractional, string, null and non-finite counts", () => {
    for (const key of ["new", "old", "urgent_new", "urgent_old"]) {
      for (const value of [-1, 1.5, "2", null, Number.NaN, Number.POSITIVE_INFINITY, true, [1], { n: 1 }]) {
        assert.equal(reason({ ...minimal(), [key]: value }), `${key} must be a non-negative integer`, `${key}=${String(value)}`);
      }
    }
  });

  it("unknown top-level keys", () => {
    assert.equal(reason({ ...minimal(), colour: "red" }), "colour is not a known field");
    assert.equal(reason({ ...minimal(), urgentNew: 1 }), "urgentNew is not a known field");
    assert.equal(reason(JSON.parse('{"mailbox":"1","waiting":true,"new":0,"old":0,"__proto__":{"x":1}}')), "__proto__ is not a known field");
  });

  it("a message that is not an object", () => {
    for (const message of ["hi", 1, [], [{ ani: "1" }], true]) {
      assert.equal(reason({ ...minimal(), message }), "message must be an object", JSON.stringify(message));
    }
  });

  it("unknown message fields", () => {
    assert.equal(reason({ ...minimal(), message: { ani: "1", caller: "x" } }), "message.caller is not a known field");
  });

  it("bad ANI and DNIS", () => {
    for (const key of ["ani", "dnis"]) {
      for (const value of [123, "<script>", "x".repeat(65), "a\nb", true, {}]) {
        assert.equal(
          reason({ ...minimal(), message: { [key]: value } }),
          `message.${key} must be a phone number or SIP user of at most 64 characters`,
          `${key}=${JSON.stringify(value)}`,
        );
      }
    }
  });

  it("bad time and duration", () => {
    for (const time of ["yesterday", "", 1700000000, "2026-13-45T99:99:99Z", "2026-11-25T14:03:00Z" + " ".repeat(50)]) {
      assert.equal(reason({ ...minimal(), message: { time } }), "message.time must be an ISO 8601 time stamp", JSON.stringify(time));
    }
    for (const duration of [-1, "42", Number.POSITIVE_INFINITY, Number.NaN, true]) {
      assert.equal(reason({ ...minimal(), message: { duration } }), "message.duration must be a number of seconds", String(duration));
    }
  });

  it(
    "a time that is not ISO 8601 is refused",
    () => {
      assert.equal(reason({ ...minimal(), message: { time: "1" } }), "message.time must be an ISO 8601 time stamp");
      assert.equal(reason({ ...minimal(), message: { time: "Wednesday 25 November 2026" } }), "message.time must be an ISO 8601 time stamp");
    },
  );
});

describe("parseWebhookPayload: properties", () => {
  it("never throws on any JSON value, and an accepted update has clamped integer counts", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const r = parseWebhookPayload("s", value, 1);
        if (r.ok) {
          for (const c of [r.update.counts.new, r.update.counts.old, r.update.counts.urgentNew, r.update.counts.urgentOld]) {
            assert.ok(Number.isInteger(c) && c >= 0 && c <= 4294967295);
          }
        } else {
          assert.ok(r.reason.length > 0);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("never throws on objects close to a valid body", () => {
    const field = fc.oneof(fc.jsonValue(), fc.constant(undefined), fc.integer(), fc.double(), fc.string());
    const body = fc.record(
      {
        mailbox: fc.oneof(fc.stringMatching(/^[0-9a-z]{1,5}$/), field),
        waiting: fc.oneof(fc.boolean(), field),
        new: fc.oneof(fc.nat(), field),
        old: fc.oneof(fc.nat(), field),
        urgent_new: fc.oneof(fc.nat(), field),
        urgent_old: fc.oneof(fc.nat(), field),
        message: fc.oneof(
          fc.record({ ani: field, dnis: field, time: fc.oneof(fc.date().map((d) => d.toString()), field), duration: field }, { requiredKeys: [] }),
          field,
        ),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(body, (raw) => {
        const r = parseWebhookPayload("s", raw, 1);
        assert.equal(typeof r.ok, "boolean");
        if (r.ok) {
          assert.equal(r.update.mailbox, raw.mailbox);
          assert.equal(r.update.counts.waiting, raw.waiting);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("a valid body round-trips its counts", () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[0-9]{1,10}$/),
        fc.boolean(),
        fc.nat(),
        fc.nat(),
        fc.nat(),
        fc.nat(),
        (mailbox, waiting, n, o, un, uo) => {
          const update = accepted(JSON.parse(JSON.stringify({ mailbox, waiting, new: n, old: o, urgent_new: un, urgent_old: uo })));
          assert.deepEqual(update.counts, { waiting, new: n, old: o, urgentNew: un, urgentOld: uo });
          assert.equal(update.mailbox, mailbox);
        },
      ),
    );
  });
});

describe("webhook signature", () => {
  const SECRET = "change-me-to-a-long-random-string";
  const BODY = Buffer.from(DOCUMENTED);

  it("the header name", () => {
    assert.equal(SIGNATURE_HEADER, "x-signature-256");
  });

  it("signBody is sha256=<hex HMAC-SHA256>", () => {
    const expected = createHmac("sha256", SECRET).update(BODY).digest("hex");
    assert.equal(signBody(SECRET, BODY), `sha256=${expected}`);
    assert.equal(signBody(SECRET, DOCUMENTED), `sha256=${expected}`);
    // A known vector: HMAC-SHA256 with key "key" over the pangram.
    assert.equal(
      signBody("key", "The quick brown fox jumps over the lazy dog"),
      "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
    );
  });

  it("a signature verifies against its body and secret", () => {
    assert.equal(verifySignature(SECRET, BODY, signBody(SECRET, BODY)), true);
  });

  it("a wrong secret fails", () => {
    assert.equal(verifySignature(SECRET, BODY, signBody("another-secret", BODY)), false);
  });

  it("a tampered body fails", () => {
    const header = signBody(SECRET, BODY);
    const tampered = Buffer.from(DOCUMENTED.replace('"new":2', '"new":3'));
    assert.equal(verifySignature(SECRET, tampered, header), false);
    assert.equal(verifySignature(SECRET, Buffer.concat([BODY, Buffer.from(" ")]), header), false);
  });

  it("a missing or malformed header fails", () => {
    const good = signBody(SECRET, BODY);
    const hex = good.slice(7);
    for (const header of [
      undefined,
      "",
      hex,
      `sha1=${hex}`,
      `SHA256=${hex}`,
      `sha256:${hex}`,
      `sha256= ${hex}`,
      `sha256=${hex.slice(1)}`,
      `sha256=${hex}0`,
      `sha256=${hex.slice(0, 63)}g`,
      `${good} `,
      `${good},${good}`,
    ]) {
      assert.equal(verifySignature(SECRET, BODY, header), false, String(header));
    }
  });

  it("upper-case hex is accepted", () => {
    const hex = signBody(SECRET, BODY).slice(7);
    assert.equal(verifySignature(SECRET, BODY, `sha256=${hex.toUpperCase()}`), true);
  });

  it("property: round trip for any secret and body; flipping one bit of the body fails", () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 40 }),
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
        fc.nat(),
        (secret, body, bit) => {
          const header = signBody(secret, body);
          assert.equal(verifySignature(secret, body, header), true);
          const flipped = Uint8Array.from(body);
          const i = bit % (flipped.length * 8);
          flipped[i >> 3] ^= 1 << (i & 7);
          assert.equal(verifySignature(secret, flipped, header), false);
        },
      ),
    );
  });
});

describe("webhook signature with a timestamp", () => {
  const SECRET = "change-me-to-a-long-random-string";
  const BODY = Buffer.from(DOCUMENTED);
  const NOW = Date.UTC(2026, 10, 25, 14, 3, 0);
  const T = String(NOW / 1000);
  const check = (headers: { signature?: string; timestamp?: string }, options: { nowMs?: number; legacy?: boolean } = {}) =>
    checkSignature(SECRET, BODY, { signature: headers.signature, timestamp: headers.timestamp }, { nowMs: options.nowMs ?? NOW, legacy: options.legacy ?? false });

  it("the header names and the window", () => {
    assert.equal(TIMESTAMP_HEADER, "x-signature-timestamp");
    assert.equal(SIGNATURE_WINDOW_SECONDS, 300);
  });

  it('signRequest is sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">', () => {
    const expected = createHmac("sha256", SECRET).update(`${T}.${DOCUMENTED}`).digest("hex");
    assert.equal(signRequest(SECRET, T, BODY), `sha256=${expected}`);
    assert.equal(signRequest(SECRET, Number(T), DOCUMENTED), `sha256=${expected}`);
    assert.deepEqual(signedHeaders(SECRET, BODY, NOW + 999), { [TIMESTAMP_HEADER]: T, [SIGNATURE_HEADER]: `sha256=${expected}` });
  });

  it("accepts a fresh signature and says until when its repeat must be refused", () => {
    const signature = signRequest(SECRET, T, BODY);
    assert.deepEqual(check({ signature, timestamp: T }), {
      ok: true,
      replay: { key: signature.slice(7), refuseUntilMs: NOW + (SIGNATURE_WINDOW_SECONDS + 1) * 1000 },
    });
  });

  it("accepts within five minutes either way, refuses beyond", () => {
    const signature = signRequest(SECRET, T, BODY);
    for (const [offset, ok] of [[-300, true], [300, true], [-301, false], [301, false], [86400, false]] as const) {
      assert.equal(check({ signature, timestamp: T }, { nowMs: NOW + offset * 1000 }).ok, ok, `clock off by ${offset} s`);
    }
  });

  it("the body-only signature only with legacy on; then with no timestamp", () => {
    const legacy = signBody(SECRET, BODY);
    assert.equal(check({ signature: legacy }).ok, false);
    assert.equal(check({ signature: legacy }, { legacy: true }).ok, true);
    assert.equal(check({ signature: legacy, timestamp: T }, { legacy: true }).ok, false, "a timestamp means the new scheme");
    assert.deepEqual(check({ signature: legacy }, { legacy: true }), { ok: true }, "nothing to refuse a repeat by");
  });

  it("property: a request verifies with its own timestamp and body only", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), fc.integer({ min: -300, max: 300 }), fc.integer({ min: 1, max: 1000 }), (body, offset, other) => {
        const t = String(NOW / 1000 + offset);
        const signature = signRequest(SECRET, t, body);
        const verdict = (b: Uint8Array, timestamp: string) => checkSignature(SECRET, b, { signature, timestamp }, { nowMs: NOW, legacy: true }).ok;
        assert.equal(verdict(body, t), true);
        assert.equal(verdict(body, String(Number(t) - other)), false);
        assert.equal(verdict(Buffer.concat([body, Buffer.from("x")]), t), false);
        // "<t>.<body>" must not be re-cut into another timestamp and body.
        assert.equal(verdict(Buffer.concat([Buffer.from("1."), body]), t.slice(0, -1) || "0"), false);
      }),
    );
  });
});

describe("seen signatures", () => {
  it("a signature once; again after it left the window; released ones at once", () => {
    const seen = new SeenSignatures();
    assert.equal(seen.claim("a", 1000, 0), "claimed");
    assert.equal(seen.claim("a", 1000, 999), "seen");
    assert.equal(seen.claim("a", 2000, 1000), "claimed", "its window is over");
    assert.equal(seen.claim("b", 5000, 1000), "claimed");
    seen.release("b");
    assert.equal(seen.claim("b", 5000, 1001), "claimed");
  });

  it("is bounded: when full of live signatures it refuses rather than forgets, and sweeps the expired", () => {
    const seen = new SeenSignatures(3);
    for (const key of ["a", "b", "c"]) assert.equal(seen.claim(key, 60_000, 0), "claimed");
    assert.equal(seen.claim("d", 60_000, 10), "full");
    assert.equal(seen.claim("a", 60_000, 20), "seen", "nothing was forgotten");
    assert.equal(seen.claim("d", 120_000, 60_000), "claimed", "the expired were swept");
    assert.equal(seen.size, 1);
  });
});
