import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { rateLimitedLog } from "../../src/util/rateLimitedLog.js";

describe("rateLimitedLog", () => {
  it("writes one line per key and window, then one line with the count of what it held back", () => {
    let t = 0;
    const lines: string[] = [];
    const log = rateLimitedLog((l) => lines.push(l), { intervalMs: 1000, now: () => t });
    for (let i = 0; i < 500; i++) log("refused 10.0.0.1", "refused a NOTIFY from 10.0.0.1");
    log("bad 10.0.0.2", "bad datagram from 10.0.0.2");
    assert.deepEqual(lines, ["refused a NOTIFY from 10.0.0.1", "bad datagram from 10.0.0.2"]);
    assert.equal(log.suppressed, 499);
    t = 1000;
    log("refused 10.0.0.1", "refused a NOTIFY from 10.0.0.1");
    assert.equal(lines.length, 4);
    assert.match(lines[2]!, /^499 repeated log line\(s\) held back in the last 1 s; most often \(499x\): refused a NOTIFY from 10\.0\.0\.1$/);
    assert.equal(lines[3], "refused a NOTIFY from 10.0.0.1");
    assert.equal(log.suppressed, 0);
  });

  it("caps the distinct keys of a window: new keys (spoofed sources) are counted, not written", () => {
    const lines: string[] = [];
    const log = rateLimitedLog((l) => lines.push(l), { maxKeys: 3, now: () => 0 });
    for (let i = 0; i < 1000; i++) log(`from 10.0.${i >> 8}.${i & 255}`, `refused 10.0.${i >> 8}.${i & 255}`);
    assert.deepEqual(lines, ["refused 10.0.0.0", "refused 10.0.0.1", "refused 10.0.0.2"]);
    log.flush();
    assert.equal(lines.length, 4);
    assert.match(lines[3]!, /^997 repeated log line\(s\) held back/);
    log.flush();
    assert.equal(lines.length, 4, "nothing held back: flush writes nothing");
  });

  it("keys like __proto__ are plain keys", () => {
    const lines: string[] = [];
    const log = rateLimitedLog((l) => lines.push(l), { now: () => 0 });
    log("__proto__", "a");
    log("__proto__", "a");
    log("constructor", "b");
    assert.deepEqual(lines, ["a", "b"]);
  });
});
