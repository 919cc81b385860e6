import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";

import { StreamFramer, type FrameEvent } from "../../src/gateway/sip/framing.js";
import {
  canonicalName,
  formatVia,
  parseCSeq,
  parseNameAddr,
  parseParams,
  parseRetryAfter,
  parseSipUri,
  parseSubscriptionState,
  parseVia,
  splitTopLevel,
} from "../../src/gateway/sip/headers.js";
import {
  MAX_MESSAGE_BYTES,
  SipHeaders,
  bodyText,
  buildResponse,
  parseMessage,
  serializeMessage,
  type SipMessage,
  type SipRequest,
} from "../../src/gateway/sip/message.js";

const CRLF = (...lines: string[]): string => lines.map((l) => `${l}\r\n`).join("");

const NOTIFY = CRLF(
  "NOTIFY sip:mwi@10.0.0.2:5070 SIP/2.0",
  "v: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bK-abc",
  "Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bK-p1, SIP/2.0/UDP [2001:db8::1]:5062;received=192.0.2.7;branch=z9hG4bK-p2",
  'f: "Voice, Mail" <sip:1001@10.0.0.1>;tag=as123',
  "t: <sip:mwi@10.0.0.2>;tag=ua456",
  "i: 3848276298220188511@10.0.0.1",
  "CSeq: 102 NOTIFY",
  "o: message-summary",
  "Subscription-State: active;expires=3594",
  "c: application/simple-message-summary",
  "X-Folded: first",
  "  second",
  "l: 43",
  "",
  "Messages-Waiting: yes",
  "Voice-Message: 2/8",
);

function ok(data: string | Buffer): SipMessage {
  const r = parseMessage(data);
  if (!r.ok) assert.fail(`expected ok, got ${r.reason}`);
  return r.message;
}

function req(msg: SipMessage): SipRequest {
  assert.equal(msg.kind, "request");
  return msg as SipRequest;
}

describe("parseMessage", () => {
  it("parses a NOTIFY with compact headers, folding and a body", () => {
    const m = req(ok(NOTIFY));
    assert.equal(m.method, "NOTIFY");
    assert.equal(m.uri, "sip:mwi@10.0.0.2:5070");
    assert.equal(m.headers.get("Event"), "message-summary");
    assert.equal(m.headers.get("o"), "message-summary");
    assert.equal(m.headers.get("call-id"), "3848276298220188511@10.0.0.1");
    assert.equal(m.headers.get("CONTENT-TYPE"), "application/simple-message-summary");
    assert.equal(m.headers.get("x-folded"), "first second");
    assert.equal(bodyText(m), "Messages-Waiting: yes\r\nVoice-Message: 2/8\r\n");
    assert.equal(m.body.length, 43);
  });

  it("gives Via values one per element, in order, across lines and commas", () => {
    const m = ok(NOTIFY);
    const vias = m.headers.getList("via").map((v) => parseVia(v));
    assert.deepEqual(
      vias.map((v) => [v?.transport, v?.host, v?.port, v?.branch]),
      [
        ["UDP", "10.0.0.1", 5060, "z9hG4bK-abc"],
        ["TCP", "proxy.example.com", undefined, "z9hG4bK-p1"],
        ["UDP", "2001:db8::1", 5062, "z9hG4bK-p2"],
      ],
    );
    assert.equal(vias[0]?.params.get("rport"), "");
    assert.equal(vias[2]?.params.get("received"), "192.0.2.7");
    // A comma inside a quoted display name does not split the From.
    assert.deepEqual(m.headers.getList("from"), ['"Voice, Mail" <sip:1001@10.0.0.1>;tag=as123']);
  });

  it("parses responses", () => {
    const m = ok(CRLF("SIP/2.0 401 Unauthorized", "Via: SIP/2.0/UDP a;branch=z9hG4bK1", "Content-Length: 0", ""));
    assert.equal(m.kind, "response");
    if (m.kind === "response") {
      assert.equal(m.status, 401);
      assert.equal(m.reason, "Unauthorized");
    }
    const noReason = ok("SIP/2.0 200\r\nContent-Length: 0\r\n\r\n");
    assert.equal(noReason.kind === "response" && noReason.reason, "");
  });

  it("accepts bare LF line endings and leading CRLFs", () => {
    const m = req(ok("\r\nOPTIONS sip:x@y SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\nContent-Length: 2\n\nhi"));
    assert.equal(m.method, "OPTIONS");
    assert.equal(bodyText(m), "hi");
  });

  it("cuts the body at Content-Length and fails when the body is short", () => {
    const m = ok("MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabcdef");
    assert.equal(bodyText(m), "abc");
    const short = parseMessage("MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\nContent-Length: 30\r\n\r\nabc");
    assert.equal(short.ok, false);
    if (!short.ok) {
      assert.match(short.reason, /shorter than Content-Length/);
      assert.equal(short.partial?.headers.get("call-id"), "x");
    }
  });

  it("takes a datagram without Content-Length as all body", () => {
    assert.equal(bodyText(ok("NOTIFY sip:a@b SIP/2.0\r\nEvent: x\r\n\r\nbody")), "body");
  });

  it("rejects bad input with a reason, keeping what was readable", () => {
    const cases: Array<[string, RegExp]> = [
      ["", /empty message|bad start line/],
      ["HELLO\r\n\r\n", /bad start line/],
      ["INVITE sip:a@b SIP/3.0\r\n\r\n", /bad start line/],
      ["SIP/2.0 99 Too Low\r\n\r\n", /bad start line/],
      ["OPTIONS sip:a@b SIP/2.0\r\nNo colon here\r\n\r\n", /bad header line/],
      ["OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n", /bad header line/],
      ["OPTIONS sip:a@b SIP/2.0\r\n folded-first\r\n\r\n", /continuation/],
      ["OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n", /Content-Length/],
      ["OPTIONS sip:a@b SIP/2.0\r\nX: a\x00b\r\n\r\n", /control character/],
    ];
    for (const [input, pattern] of cases) {
      const r = parseMessage(input);
      assert.equal(r.ok, false, JSON.stringify(input));
      if (!r.ok) assert.match(r.reason, pattern);
    }
    const partial = parseMessage("NOTIFY sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKq\r\ngarbage\r\nCall-ID: c1\r\n\r\n");
    assert.equal(partial.ok, false);
    if (!partial.ok) {
      assert.equal(partial.partial?.kind, "request");
      assert.equal(partial.partial?.headers.get("call-id"), "c1");
    }
  });

  it("enforces the size limit", () => {
    const big = `NOTIFY sip:a@b SIP/2.0\r\nContent-Length: ${MAX_MESSAGE_BYTES}\r\n\r\n${"x".repeat(MAX_MESSAGE_BYTES)}`;
    const r = parseMessage(big);
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.reason, /too large/);
    assert.equal(parseMessage("OPTIONS sip:a@b SIP/2.0\r\n\r\n", 10).ok, false);
  });

  it("never throws, whatever the bytes (property)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), (bytes) => {
        const r = parseMessage(Buffer.from(bytes));
        assert.equal(typeof r.ok, "boolean");
      }),
      { numRuns: 500 },
    );
    const sipish = fc
      .array(
        fc.constantFrom("INVITE sip:a@b SIP/2.0", "SIP/2.0 200 OK", "Via: SIP/2.0/UDP h", "l: 5", "Content-Length: 99999999999", ":", " x", "\t", "\r\n", "\n", "\r", "\x00", "é", "v:", "CSeq: 1 NOTIFY"),
        { maxLength: 30 },
      )
      .map((a) => a.join(""));
    fc.assert(
      fc.property(sipish, (s) => {
        const r = parseMessage(s);
        if (!r.ok) assert.ok(r.reason.length > 0);
      }),
      { numRuns: 1000 },
    );
  });
});

describe("serializeMessage", () => {
  it("round-trips, writing long names and a correct Content-Length", () => {
    const m = ok(NOTIFY);
    const wire = serializeMessage(m).toString("utf8");
    assert.match(wire, /^NOTIFY sip:mwi@10\.0\.0\.2:5070 SIP\/2\.0\r\n/);
    assert.match(wire, /\r\nCall-ID: 3848276298220188511@10\.0\.0\.1\r\n/);
    assert.match(wire, /\r\nEvent: message-summary\r\n/);
    assert.match(wire, /\r\nContent-Length: 43\r\n\r\nMessages-Waiting/);
    const again = req(ok(wire));
    assert.deepEqual(again.headers.entries(), m.headers.entries());
    assert.deepEqual(again.body, m.body);
  });

  it("recomputes Content-Length from the body and keeps header lines single", () => {
    const headers = new SipHeaders([
      ["content-length", "999"],
      ["X-Evil", "a\r\nInjected: yes"],
    ]);
    const wire = serializeMessage({ kind: "response", status: 200, reason: "OK", headers, body: Buffer.from("ünï") }).toString();
    assert.match(wire, /Content-Length: 5\r\n\r\nünï$/);
    assert.doesNotMatch(wire, /999/);
    assert.doesNotMatch(wire, /\r\nInjected/);
  });

  it("round-trips generated messages (property)", () => {
    const token = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/);
    const value = fc.stringMatching(/^[!-~]([ -~]{0,40}[!-~])?$/);
    const message = fc.record({
      method: fc.constantFrom("SUBSCRIBE", "NOTIFY", "OPTIONS", "X-CUSTOM"),
      headers: fc.array(fc.tuple(token, value), { maxLength: 12 }),
      body: fc.uint8Array({ maxLength: 300 }),
    });
    fc.assert(
      fc.property(message, ({ method, headers, body }) => {
        const clean = headers.filter(([n]) => !/^(l|content-length)$/i.test(n));
        const m: SipRequest = { kind: "request", method, uri: "sip:u@h", headers: new SipHeaders(clean), body: Buffer.from(body) };
        const back = req(ok(serializeMessage(m)));
        assert.equal(back.method, method);
        assert.deepEqual(back.headers.entries().slice(0, -1), m.headers.entries());
        assert.deepEqual(back.body, m.body);
      }),
      { numRuns: 300 },
    );
  });
});

describe("SipHeaders", () => {
  it("looks up case-insensitively and by compact form", () => {
    const h = new SipHeaders([
      ["i", "abc"],
      ["U", "message-summary"],
      ["contact", "<sip:a@b>"],
    ]);
    assert.equal(h.get("Call-ID"), "abc");
    assert.equal(h.get("allow-events"), "message-summary");
    assert.equal(h.get("m"), "<sip:a@b>");
    assert.deepEqual(h.entries().map(([n]) => n), ["Call-ID", "Allow-Events", "Contact"]);
    h.set("call-id", "xyz").append("Route", "<sip:p1;lr>").append("route", "<sip:p2;lr>, <sip:p3;lr>");
    assert.equal(h.get("i"), "xyz");
    assert.deepEqual(h.getList("Route"), ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]);
    assert.deepEqual(h.getAll("route"), ["<sip:p1;lr>", "<sip:p2;lr>, <sip:p3;lr>"]);
    h.delete("ROUTE");
    assert.equal(h.has("route"), false);
  });

  it("canonical names", () => {
    assert.equal(canonicalName("www-authenticate"), "WWW-Authenticate");
    assert.equal(canonicalName("cseq"), "CSeq");
    assert.equal(canonicalName("subscription-state"), "Subscription-State");
    assert.equal(canonicalName("o"), "Event");
    assert.equal(canonicalName("x-my-header"), "X-My-Header");
  });
});

describe("header value parsers", () => {
  it("name-addr in all its forms", () => {
    assert.deepEqual(parseNameAddr('"A \\"B\\"" <sip:a@b;transport=tcp>;tag=1;x=y'), {
      display: 'A "B"',
      uri: "sip:a@b;transport=tcp",
      params: new Map([
        ["tag", "1"],
        ["x", "y"],
      ]),
      tag: "1",
    });
    assert.equal(parseNameAddr("Bob <sip:bob@h>")?.display, "Bob");
    const bare = parseNameAddr("sip:a@b;tag=77");
    assert.equal(bare?.uri, "sip:a@b");
    assert.equal(bare?.tag, "77");
    assert.equal(parseNameAddr("<sip:a@b"), undefined);
    assert.equal(parseNameAddr("not a uri"), undefined);
  });

  it("Via, with IPv6 and a round trip", () => {
    const v = parseVia("SIP / 2.0 / tls [::1]:5061 ;branch=z9hG4bKx;rport=5070;received=::1");
    assert.equal(v?.transport, "TLS");
    assert.equal(v?.host, "::1");
    assert.equal(v?.port, 5061);
    assert.equal(v?.params.get("rport"), "5070");
    assert.equal(parseVia(formatVia(v!))?.host, "::1");
    assert.equal(parseVia("SIP/2.0/UDP"), undefined);
    assert.equal(parseVia("SIP/2.0/UDP host:99999"), undefined);
  });

  it("CSeq, URIs, params, Subscription-State, Retry-After", () => {
    assert.deepEqual(parseCSeq(" 42  notify "), { seq: 42, method: "NOTIFY" });
    assert.equal(parseCSeq("2147483648 NOTIFY"), undefined);
    assert.equal(parseCSeq("x NOTIFY"), undefined);
    const u = parseSipUri("sips:1001:secret@[2001:db8::2]:5061;transport=tls;lr");
    assert.deepEqual([u?.scheme, u?.user, u?.host, u?.port, u?.params.has("lr")], ["sips", "1001", "2001:db8::2", 5061, true]);
    assert.equal(parseSipUri("tel:+123"), undefined);
    assert.deepEqual([...parseParams(';A=1;b;c="x;y"')], [["a", "1"], ["b", ""], ["c", "x;y"]]);
    assert.deepEqual(parseSubscriptionState("terminated;reason=Probation;retry-after=30"), {
      state: "terminated",
      reason: "probation",
      retryAfter: 30,
    });
    assert.deepEqual(parseSubscriptionState("active;expires=99999999999"), { state: "active", expires: 4294967295 });
    assert.equal(parseRetryAfter("120 (maintenance);duration=60"), 120);
    assert.deepEqual(splitTopLevel('a, "b,c" <sip:x,y>, d', ","), ["a", ' "b,c" <sip:x,y>', " d"]);
  });
});

describe("buildResponse", () => {
  it("copies the transaction headers and adds a To tag only when missing", () => {
    const m = req(ok(NOTIFY));
    const r = buildResponse(m, 200, { toTag: "zzz" });
    assert.deepEqual(r.headers.getAll("via"), m.headers.getAll("via"));
    assert.equal(r.headers.get("to"), "<sip:mwi@10.0.0.2>;tag=ua456");
    assert.equal(r.headers.get("cseq"), "102 NOTIFY");
    assert.equal(r.reason, "OK");
    m.headers.set("to", "<sip:mwi@10.0.0.2>");
    assert.equal(buildResponse(m, 481, { toTag: "zzz" }).headers.get("to"), "<sip:mwi@10.0.0.2>;tag=zzz");
  });
});

describe("StreamFramer", () => {
  const one = serializeMessage(req(ok(NOTIFY)));
  const two = Buffer.from(CRLF("OPTIONS sip:a@b SIP/2.0", "Call-ID: 2", "Content-Length: 0", ""));

  const messages = (evs: FrameEvent[]): SipMessage[] => evs.flatMap((e) => (e.kind === "message" ? [e.message] : []));

  it("frames messages split at every byte and glued together", () => {
    const f = new StreamFramer();
    const stream = Buffer.concat([one, two, one]);
    const events: FrameEvent[] = [];
    for (const b of stream) events.push(...f.push(Buffer.from([b])));
    const got = messages(events);
    assert.equal(got.length, 3);
    assert.equal(got[1]!.headers.get("call-id"), "2");
    assert.equal(bodyText(got[2]!), "Messages-Waiting: yes\r\nVoice-Message: 2/8\r\n");
    assert.equal(messages(new StreamFramer().push(stream)).length, 3);
  });

  it("answers keepalive pings and skips stray line breaks", () => {
    const f = new StreamFramer();
    assert.deepEqual(f.push(Buffer.from("\r\n\r\n")), [{ kind: "ping" }]);
    assert.deepEqual(f.push(Buffer.from("\r\n")), []);
    assert.equal(messages(f.push(two)).length, 1);
  });

  it("skips an oversized message without buffering it and stays in sync", () => {
    const f = new StreamFramer(1000);
    const head = Buffer.from(CRLF("NOTIFY sip:a@b SIP/2.0", "Via: SIP/2.0/TCP h;branch=z9hG4bKbig", "Content-Length: 5000", ""));
    const events = f.push(head);
    assert.equal(events.length, 1);
    const ev = events[0]!;
    assert.equal(ev.kind, "invalid");
    if (ev.kind === "invalid") {
      assert.equal(ev.tooLarge, true);
      assert.equal(ev.partial?.headers.get("via"), "SIP/2.0/TCP h;branch=z9hG4bKbig");
    }
    for (let i = 0; i < 5; i++) assert.deepEqual(f.push(Buffer.alloc(1000, 0x41)), []);
    assert.equal(messages(f.push(two)).length, 1);
  });

  it("gives up on a header block that never ends", () => {
    const f = new StreamFramer(100);
    const evs = f.push(Buffer.alloc(200, 0x41));
    assert.equal(evs[0]?.kind, "fatal");
    assert.deepEqual(f.push(two), []);
  });

  it("never throws on arbitrary chunks (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.constant(new Uint8Array(one)), fc.constant(new Uint8Array(two))), { maxLength: 10 }), (chunks) => {
        const f = new StreamFramer(2000);
        for (const c of chunks) f.push(Buffer.from(c));
      }),
      { numRuns: 300 },
    );
  });
});

/**
 * Bytes the framer reads or copies, counted at the Buffer and TextDecoder methods it can use:
 * the work of framing, without a clock.
 */
function countingWork<T>(fn: () => T): { result: T; work: number } {
  let work = 0;
  const proto = Buffer.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
  const saved = { indexOf: proto["indexOf"]!, includes: proto["includes"]!, copy: proto["copy"]!, concat: Buffer.concat, from: Buffer.from, decode: TextDecoder.prototype.decode };
  const from = (offset: unknown, length: number): number => {
    const o = typeof offset === "number" ? (offset < 0 ? Math.max(0, length + offset) : offset) : 0;
    return Math.max(0, length - o);
  };
  proto["indexOf"] = function (this: Buffer, value: unknown, offset?: unknown, enc?: unknown) {
    work += from(offset, this.length);
    return saved.indexOf.call(this, value, offset, enc);
  };
  proto["includes"] = function (this: Buffer, value: unknown, offset?: unknown, enc?: unknown) {
    work += from(offset, this.length);
    return saved.includes.call(this, value, offset, enc);
  };
  proto["copy"] = function (this: Buffer, ...a: unknown[]) {
    const n = saved.copy.apply(this, a) as number;
    work += n;
    return n;
  };
  Buffer.concat = ((list: readonly Uint8Array[], total?: number) => {
    const out = saved.concat(list, total);
    work += out.length;
    return out;
  }) as typeof Buffer.concat;
  Buffer.from = ((...args: unknown[]) => {
    const out = (saved.from as (...a: unknown[]) => Buffer)(...args);
    if (typeof args[0] !== "string") work += out.length;
    return out;
  }) as typeof Buffer.from;
  TextDecoder.prototype.decode = function (this: unknown, input?: Uint8Array, options?: { stream?: boolean }) {
    work += input ? input.byteLength : 0;
    return saved.decode.call(this, input, options);
  };
  try {
    return { result: fn(), work };
  } finally {
    proto["indexOf"] = saved.indexOf;
    proto["includes"] = saved.includes;
    proto["copy"] = saved.copy;
    Buffer.concat = saved.concat;
    Buffer.from = saved.from;
    TextDecoder.prototype.decode = saved.decode;
  }
}

describe("StreamFramer: work is linear in the bytes received", () => {
  const messages = (evs: FrameEvent[]): SipMessage[] => evs.flatMap((e) => (e.kind === "message" ? [e.message] : []));
  // 64 KiB minus a little: a message just within the limit, with a long header block.
  const filler = Array.from({ length: 600 }, (_, i) => `X-Filler-${i}: ${"f".repeat(90)}`);
  const big = Buffer.from(CRLF("NOTIFY sip:a@b SIP/2.0", "Via: SIP/2.0/TCP h;branch=z9hG4bKlin", ...filler, "Content-Length: 4", "", "abcd"));

  it("a 60 KiB message sent one byte at a time costs a few passes over it, not one per byte", () => {
    assert.ok(big.length > 60_000 && big.length < 65_536, String(big.length));
    const f = new StreamFramer();
    const chunks = [...big].map((b) => Buffer.from([b]));
    const { result: events, work } = countingWork(() => chunks.flatMap((c) => f.push(c)));
    assert.equal(messages(events).length, 1);
    assert.equal(bodyText(messages(events)[0]!), "abcd");
    // A few bytes of search per byte pushed, one copy in, one parse: a constant per byte (it was
    // one pass over everything so far per byte: about 10^5 times the message).
    assert.ok(work < 32 * big.length, `framing read or copied ${work} bytes for a ${big.length}-byte message`);
  });

  it("the body of a message sent one byte at a time is not rescanned either", () => {
    const body = "b".repeat(60_000);
    const msg = Buffer.from(CRLF("NOTIFY sip:a@b SIP/2.0", "Via: SIP/2.0/TCP h;branch=z9hG4bKbody", `Content-Length: ${body.length}`, "", body));
    const f = new StreamFramer();
    const chunks = [...msg].map((b) => Buffer.from([b]));
    const { result: events, work } = countingWork(() => chunks.flatMap((c) => f.push(c)));
    assert.equal(messages(events).length, 1);
    assert.ok(work < 32 * msg.length, `framing read or copied ${work} bytes for a ${msg.length}-byte message`);
  });

  it("a header block that never ends is given up after the limit, in linear work", () => {
    const f = new StreamFramer(20_000);
    const chunks = Array.from({ length: 20_001 }, () => Buffer.from("A"));
    const { result: events, work } = countingWork(() => chunks.flatMap((c) => f.push(c)));
    assert.equal(events.at(-1)?.kind, "fatal");
    assert.ok(work < 32 * 20_001, `framing read or copied ${work} bytes`);
  });
});
