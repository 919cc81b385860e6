import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { atLeastDelay, backoffDelay } from "../../src/core/backoff.js";
import { withTimeout } from "../../src/util/timeout.js";

describe("backoffDelay", () => {
  it("doubles from the base up to the cap, with half of it jittered", () => {
    const opts = { baseMs: 1000, maxMs: 30_000 };
    assert.equal(backoffDelay(0, { ...opts, random: () => 0 }), 500);
    assert.equal(backoffDelay(0, { ...opts, random: () => 0.999999 }) < 1000, true);
    assert.equal(backoffDelay(3, { ...opts, random: () => 0 }), 4000);
    assert.equal(backoffDelay(10, { ...opts, random: () => 0 }), 15_000);
    assert.equal(backoffDelay(1e9, { ...opts, random: () => 0.5 }), 22_500);
    assert.equal(backoffDelay(-5, { ...opts, random: () => 0 }), 500);
  });
  it("atLeastDelay adds at most 10 %", () => {
    assert.equal(atLeastDelay(1000, () => 0), 1000);
    assert.equal(atLeastDelay(1000, () => 0.5), 1050);
  });
});

describe("withTimeout", () => {
  it("gives the value when it comes in time, the fallback when not", async () => {
    assert.equal(await withTimeout(Promise.resolve(1), 50, "late"), 1);
    assert.equal(await withTimeout(new Promise(() => undefined), 10, "late"), "late");
  });
  it("a rejection after the timeout is not unhandled", async () => {
    const late = new Promise((_, reject) => setTimeout(() => reject(new Error("x")), 20));
    assert.equal(await withTimeout(late, 5, "late"), "late");
    await new Promise((r) => setTimeout(r, 40));
  });
});
