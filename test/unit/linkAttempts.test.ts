import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LinkAttempts } from "../../src/app/linkAttempts.js";

const MIN = 60_000;
const limits = { userFailures: 3, userWindowMinutes: 15, mailboxFailures: 2, mailboxWindowMinutes: 60 };

describe("LinkAttempts", () => {
  it("counts a user's failures in a sliding window and says when the next try may start", () => {
    let now = 1_000_000;
    const tries = new LinkAttempts(limits, () => now);
    for (const [mailbox, at] of [["1", 0], ["2", 5], ["3", 10]] as const) {
      now = 1_000_000 + at * MIN;
      assert.equal(tries.begin("@a:x", "s", mailbox).ok, true);
    }
    now = 1_000_000 + 12 * MIN;
    assert.deepEqual(tries.begin("@a:x", "s", "4"), { ok: false, limit: "user", until: 1_000_000 + 15 * MIN });
    assert.equal(tries.begin("@b:x", "s", "4").ok, true, "another user is not held up");
    now = 1_000_000 + 15 * MIN;
    assert.equal(tries.begin("@a:x", "s", "4").ok, true, "the oldest failure left the window");
    assert.deepEqual(tries.begin("@a:x", "s", "5"), { ok: false, limit: "user", until: 1_000_000 + 20 * MIN });
  });

  it("counts a mailbox's failures by anyone, per system", () => {
    let now = 0;
    const tries = new LinkAttempts(limits, () => now);
    assert.equal(tries.begin("@a:x", "s", "1001").ok, true);
    now = 10 * MIN;
    assert.equal(tries.begin("@b:x", "s", "1001").ok, true);
    assert.deepEqual(tries.begin("@c:x", "s", "1001"), { ok: false, limit: "mailbox", until: 60 * MIN });
    assert.equal(tries.begin("@c:x", "other", "1001").ok, true, "the same number on another system is another mailbox");
  });

  it("a forgotten try (proven, or no verdict) does not count; a try under way does", () => {
    const tries = new LinkAttempts(limits, () => 0);
    const first = tries.begin("@a:x", "s", "1001");
    assert.ok(first.ok);
    const second = tries.begin("@b:x", "s", "1001");
    assert.ok(second.ok);
    assert.equal(tries.begin("@c:x", "s", "1001").ok, false, "two tries under way at once hold the mailbox's limit");
    first.attempt.forget();
    assert.equal(tries.begin("@c:x", "s", "1001").ok, true);
  });

  it("forgets expired tries of many keys (memory stays bounded)", () => {
    let now = 0;
    const tries = new LinkAttempts(limits, () => now);
    for (let i = 0; i < 1_500; i++) tries.begin(`@u${i}:x`, "s", String(i));
    now = 2 * 60 * MIN;
    tries.begin("@late:x", "s", "late");
    const sizes = (tries as unknown as { users: { keys: Map<string, unknown> }; mailboxes: { keys: Map<string, unknown> } });
    assert.deepEqual([sizes.users.keys.size, sizes.mailboxes.keys.size], [1, 1]);
  });
});
