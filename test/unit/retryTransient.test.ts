import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { retryTransient } from "../../src/app/retryTransient.js";

const log = () => {
  const lines: string[] = [];
  return { lines, warn: (line: string) => void lines.push(line) };
};
const failing = (errors: unknown[], value = "ok") => {
  let calls = 0;
  return {
    calls: () => calls,
    run: async () => {
      calls++;
      const err = errors.shift();
      if (err) throw err;
      return value;
    },
  };
};
const slept: number[] = [];
const sleep = async (ms: number) => void slept.push(ms);

describe("retryTransient", () => {
  it("retries a homeserver that is down or rate limiting until it answers, one line each time", async () => {
    const l = log();
    const f = failing([Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }), { statusCode: 429, body: { errcode: "M_LIMIT_EXCEEDED", retry_after_ms: 2000 } }, { statusCode: 502 }]);
    assert.equal(await retryTransient("registering the bots", f.run, l, { sleep }), "ok");
    assert.equal(f.calls(), 4);
    assert.equal(l.lines.length, 3);
    assert.match(l.lines[1]!, /^registering the bots failed \(429 M_LIMIT_EXCEEDED\); retrying in 2 s$/);
  });
  it("a refusal is final at once", async () => {
    const f = failing([{ statusCode: 401, body: { errcode: "M_UNKNOWN_TOKEN", error: "Unrecognised access token" } }]);
    await assert.rejects(retryTransient("x", f.run, log(), { sleep }), (e: { statusCode?: number }) => e.statusCode === 401);
    assert.equal(f.calls(), 1);
  });
  it("gives up after the attempts it was given", async () => {
    const f = failing([{ statusCode: 502 }, { statusCode: 502 }, { statusCode: 502 }]);
    await assert.rejects(retryTransient("x", f.run, log(), { sleep, attempts: 2 }));
    assert.equal(f.calls(), 2);
  });
});
