/**
 * Fuzzing of the AMI input parsers: the frame parser (bytes from the PBX, split anywhere), the
 * mailbox names (they go into headers and dial strings) and caller IDs. Bounded runs; the seed
 * is printed and FC_SEED=<n> replays a failure.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { FrameParser, serializeAction, type Frame } from "../../src/gateway/ami/frame.js";
import { canonical, newestMessage, parseAmiMailbox, parseCallerId } from "../../src/gateway/ami/mailbox.js";

const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
console.log(`AMI fuzz properties: FC_SEED=${seed}`);
const runs = (numRuns: number) => ({ numRuns, seed, includeErrorInReport: true });

const LIMITS = { maxLineBytes: 256, maxHeaders: 16, maxPacketBytes: 1024 };
const BANNER = "Asterisk Call Manager/11.0.0\r\n";

const header = fc.tuple(fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/), fc.string({ maxLength: 40 }).map((s) => s.replace(/[\r\n]/g, "")));
const packetText = fc.array(header, { minLength: 1, maxLength: 8 }).map((hs) => hs.map(([k, v]) => `${k}: ${v}\r\n`).join("") + "\r\n");
/** Valid AMI, then randomly edited with the characters that matter to framing. */
const stream = fc.tuple(fc.array(packetText, { maxLength: 6 }), fc.array(fc.tuple(fc.nat(), fc.constantFrom("\r", "\n", ":", "\r\n\r\n", "\0", "é", "x".repeat(300))), { maxLength: 4 })).map(([ps, edits]) => {
  let s = BANNER + ps.join("");
  for (const [at, ins] of edits) {
    const i = at % (s.length + 1);
    s = s.slice(0, i) + ins + s.slice(i);
  }
  return Buffer.from(s);
});
const anyBytes = fc.oneof(stream, fc.uint8Array({ maxLength: 2000 }).map((a) => Buffer.concat([Buffer.from(BANNER), Buffer.from(a)])));

function feed(bytes: Buffer, cuts: number[]): Frame[] {
  const parser = new FrameParser(LIMITS);
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const frames: Frame[] = [];
  let last = 0;
  for (const p of [...points, bytes.length]) {
    frames.push(...parser.push(bytes.subarray(last, p)));
    last = p;
  }
  return frames;
}

describe("AMI fuzz", () => {
  it("frames: never throws, respects its limits, and gives the same frames however the bytes are split", () => {
    fc.assert(
      fc.property(anyBytes, fc.array(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
        const whole = feed(bytes, []);
        const split = feed(bytes, cuts);
        const view = (fs: Frame[]) => fs.map((f) => (f.type === "packet" ? { p: f.packet.headers } : f));
        assert.deepEqual(view(split), view(whole));
        let errors = 0;
        for (const f of whole) {
          if (f.type === "error") {
            errors++;
            assert.ok(!/[\r\n]/.test(f.reason));
          }
          if (f.type !== "packet") continue;
          assert.ok(f.packet.headers.length <= LIMITS.maxHeaders);
          for (const [k, v] of f.packet.headers) {
            assert.ok(k.length > 0 && !/[\r\n]/.test(k) && !/[\r\n]/.test(v));
            assert.ok(Buffer.byteLength(k) + Buffer.byteLength(v) <= LIMITS.maxLineBytes);
          }
        }
        assert.ok(errors <= 1, "nothing after an error");
        if (errors) assert.equal(whole.at(-1)!.type, "error");
      }),
      runs(400),
    );
  });

  it("mailbox names: whatever is accepted is safe in a header and a dial string", () => {
    const name = fc.oneof(fc.string({ maxLength: 100 }), fc.stringMatching(/^[0-9*#@a-z&,/|\r\n .+_-]{0,20}$/));
    fc.assert(
      fc.property(name, (n) => {
        const m = parseAmiMailbox(n, "default");
        if (!m) return;
        const key = canonical(m);
        assert.ok(!/[\r\n\0&,/|\s;]/.test(key), JSON.stringify(n));
        assert.equal(key.split("@").length, 2);
        serializeAction([["Mailbox", key]]); // never throws for an accepted name
        assert.deepEqual(parseAmiMailbox(key, "other"), m, "canonical form reads back the same");
      }),
      runs(1000),
    );
  });

  it("caller IDs and box details: bounded, never throw", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 700 }), fc.string({ maxLength: 40 }), fc.string({ maxLength: 20 }), (callerId, date, id) => {
        const { number, name } = parseCallerId(callerId);
        assert.ok((number?.length ?? 0) <= 64 && (name?.length ?? 0) <= 128);
        const info = newestMessage([{ folder: "INBOX", callerId, date, id, duration: date }], "1001");
        assert.equal(info?.dnis, "1001");
        if (info?.time) assert.ok(!Number.isNaN(Date.parse(info.time)));
        if (info?.duration !== undefined) assert.ok(Number.isFinite(info.duration) && info.duration >= 0);
      }),
      runs(1000),
    );
  });
});
