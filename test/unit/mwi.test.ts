import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";

import {
  MAX_COUNT,
  applyUpdate,
  clampCount,
  emptyCounts,
  sameCounts,
  type MailboxState,
  type MessageInfo,
  type MwiCounts,
  type MwiUpdate,
} from "../../src/core/mwi.js";

const counts = (n: number, o: number, un = 0, uo = 0, waiting = n > 0): MwiCounts => ({
  waiting,
  new: n,
  old: o,
  urgentNew: un,
  urgentOld: uo,
});

const update = (c: MwiCounts, receivedAt: number, message?: MessageInfo): MwiUpdate => ({
  systemId: "carrier",
  mailbox: "1001",
  counts: c,
  ...(message ? { message } : {}),
  receivedAt,
});

const CALLER: MessageInfo = { ani: "+15551234567", dnis: "+15557654321", time: "2026-11-25T14:03:00.000Z", duration: 42 };
const OTHER_CALLER: MessageInfo = { ani: "+4930123456" };

/** Applies updates in turn, as the bridge does with the stored state. */
function run(updates: MwiUpdate[]): { state: MailboxState | undefined; kinds: (string | undefined)[] } {
  let state: MailboxState | undefined;
  const kinds: (string | undefined)[] = [];
  for (const u of updates) {
    const change = applyUpdate(state, u);
    kinds.push(change?.kind);
    if (change) state = change.current;
  }
  return { state, kinds };
}

describe("applyUpdate", () => {
  it("the first update with new messages is a new-message change with the full state", () => {
    const change = applyUpdate(undefined, update(counts(2, 5, 1, 0), 1000, CALLER));
    assert.deepEqual(change, {
      kind: "new-message",
      previous: undefined,
      current: {
        systemId: "carrier",
        mailbox: "1001",
        waiting: true,
        new: 2,
        old: 5,
        urgentNew: 1,
        urgentOld: 0,
        updated: 1000,
        lastMessage: CALLER,
      },
    });
  });

  it("the first update with nothing new is a counts change (a sync)", () => {
    const change = applyUpdate(undefined, update(counts(0, 3), 1000));
    assert.ok(change);
    assert.equal(change.kind, "counts");
    assert.equal(change.previous, undefined);
    assert.deepEqual(change.current, {
      systemId: "carrier",
      mailbox: "1001",
      waiting: false,
      new: 0,
      old: 3,
      urgentNew: 0,
      urgentOld: 0,
      updated: 1000,
    });
    assert.ok(!("lastMessage" in change.current));
  });

  it("a repeat of the same counts is no change, even with other message details or time", () => {
    const first = applyUpdate(undefined, update(counts(2, 5), 1000, CALLER))!;
    assert.equal(applyUpdate(first.current, update(counts(2, 5), 2000)), undefined);
    assert.equal(applyUpdate(first.current, update(counts(2, 5), 3000, OTHER_CALLER)), undefined);
  });

  it("any single field that differs is a change", () => {
    const base = applyUpdate(undefined, update(counts(2, 5, 1, 1, true), 1000))!.current;
    const variants: MwiCounts[] = [
      counts(2, 5, 1, 1, false),
      counts(2, 6, 1, 1, true),
      counts(2, 5, 2, 1, true),
      counts(2, 5, 1, 0, true),
      counts(1, 5, 1, 1, true),
    ];
    for (const v of variants) {
      const change = applyUpdate(base, update(v, 2000));
      assert.ok(change, JSON.stringify(v));
      assert.equal(change.kind, "counts", JSON.stringify(v));
      assert.equal(change.previous, base);
      assert.equal(change.current.updated, 2000);
    }
  });

  it("a rise of the new count is a new-message change with the new caller", () => {
    const first = applyUpdate(undefined, update(counts(1, 0), 1000, OTHER_CALLER))!;
    const change = applyUpdate(first.current, update(counts(2, 0), 2000, CALLER));
    assert.ok(change);
    assert.equal(change.kind, "new-message");
    assert.equal(change.previous, first.current);
    assert.deepEqual(change.current.lastMessage, CALLER);
    assert.equal(change.current.new, 2);
    assert.equal(change.current.updated, 2000);
  });

  it("a new message without message details clears the older caller", () => {
    const first = applyUpdate(undefined, update(counts(1, 0), 1000, CALLER))!;
    const change = applyUpdate(first.current, update(counts(2, 0), 2000));
    assert.ok(change);
    assert.equal(change.kind, "new-message");
    assert.equal(change.current.lastMessage, undefined);
    assert.ok(!("lastMessage" in change.current));
  });

  it("a drop of the counts is a counts change and keeps the previous caller", () => {
    const first = applyUpdate(undefined, update(counts(2, 0), 1000, CALLER))!;
    const change = applyUpdate(first.current, update(counts(1, 1), 2000));
    assert.ok(change);
    assert.equal(change.kind, "counts");
    assert.deepEqual(change.current.lastMessage, CALLER);
    assert.equal(change.current.new, 1);
    assert.equal(change.current.old, 1);
  });

  it("a counts change that brings message details uses them", () => {
    const first = applyUpdate(undefined, update(counts(2, 0), 1000, CALLER))!;
    const change = applyUpdate(first.current, update(counts(0, 2), 2000, OTHER_CALLER));
    assert.ok(change);
    assert.equal(change.kind, "counts");
    assert.deepEqual(change.current.lastMessage, OTHER_CALLER);
  });

  it("only the new count decides new-message: old or urgent rising alone is counts", () => {
    const first = applyUpdate(undefined, update(counts(1, 0), 1000))!;
    assert.equal(applyUpdate(first.current, update(counts(1, 4), 2000))!.kind, "counts");
    assert.equal(applyUpdate(first.current, update(counts(1, 0, 1, 0), 2000))!.kind, "counts");
    assert.equal(applyUpdate(first.current, update(counts(1, 0, 0, 0, false), 2000))!.kind, "counts");
  });

  it("does not change the previous state object", () => {
    const first = applyUpdate(undefined, update(counts(1, 0), 1000, CALLER))!;
    const snapshot = structuredClone(first.current);
    applyUpdate(first.current, update(counts(3, 0), 2000));
    applyUpdate(first.current, update(counts(0, 0), 3000));
    assert.deepEqual(first.current, snapshot);
  });

  it("a sequence: sync, repeat, new, repeat, listen, new without details", () => {
    const { state, kinds } = run([
      update(counts(0, 2), 1),
      update(counts(0, 2), 2),
      update(counts(1, 2), 3, CALLER),
      update(counts(1, 2), 4),
      update(counts(0, 3), 5),
      update(counts(1, 3), 6),
    ]);
    assert.deepEqual(kinds, ["counts", undefined, "new-message", undefined, "counts", "new-message"]);
    assert.deepEqual(state, {
      systemId: "carrier",
      mailbox: "1001",
      waiting: true,
      new: 1,
      old: 3,
      urgentNew: 0,
      urgentOld: 0,
      updated: 6,
    });
  });

  it("property: applying the same update twice gives no second change; kind follows the new count", () => {
    const countsArb = fc.record({
      waiting: fc.boolean(),
      new: fc.nat(20),
      old: fc.nat(20),
      urgentNew: fc.nat(3),
      urgentOld: fc.nat(3),
    });
    fc.assert(
      fc.property(fc.option(countsArb, { nil: undefined }), countsArb, (prevCounts, nextCounts) => {
        const previous = prevCounts ? applyUpdate(undefined, update(prevCounts, 1))?.current : undefined;
        const change = applyUpdate(previous, update(nextCounts, 2));
        if (previous && sameCounts(previous, nextCounts)) {
          assert.equal(change, undefined);
          return;
        }
        assert.ok(change);
        assert.equal(change.kind, nextCounts.new > (previous?.new ?? 0) ? "new-message" : "counts");
        assert.ok(sameCounts(change.current, nextCounts));
        assert.equal(applyUpdate(change.current, update(nextCounts, 3)), undefined);
      }),
    );
  });
});

describe("sameCounts and emptyCounts", () => {
  it("emptyCounts is all zero and not waiting, a fresh object each time", () => {
    assert.deepEqual(emptyCounts(), { waiting: false, new: 0, old: 0, urgentNew: 0, urgentOld: 0 });
    assert.notEqual(emptyCounts(), emptyCounts());
  });

  it("sameCounts compares the five fields only", () => {
    assert.equal(sameCounts(counts(1, 2, 3, 4), { ...counts(1, 2, 3, 4) }), true);
    assert.equal(sameCounts(counts(1, 2, 3, 4, true), counts(1, 2, 3, 4, false)), false);
    assert.equal(sameCounts(counts(1, 2, 3, 4), counts(1, 2, 3, 5)), false);
    const state: MailboxState = { ...counts(1, 2), systemId: "a", mailbox: "b", updated: 9 };
    assert.equal(sameCounts(state, counts(1, 2)), true);
  });
});

describe("clampCount", () => {
  it("keeps ordinary counts", () => {
    assert.equal(clampCount(0), 0);
    assert.equal(clampCount(7), 7);
    assert.equal(clampCount(MAX_COUNT), 4294967295);
  });

  it("clamps counts above 2^32 - 1", () => {
    assert.equal(MAX_COUNT, 4294967295);
    assert.equal(clampCount(4294967296), 4294967295);
    assert.equal(clampCount(2 ** 40), 4294967295);
    assert.equal(clampCount(Number.MAX_SAFE_INTEGER), 4294967295);
    assert.equal(clampCount(1e300), 4294967295);
  });

  it("turns negatives, NaN and infinities into 0", () => {
    assert.equal(clampCount(-1), 0);
    assert.equal(clampCount(-1e9), 0);
    assert.equal(clampCount(Number.NaN), 0);
    assert.equal(clampCount(Number.POSITIVE_INFINITY), 0);
    assert.equal(clampCount(Number.NEGATIVE_INFINITY), 0);
  });

  it("rounds fractions down", () => {
    assert.equal(clampCount(2.9), 2);
    assert.equal(clampCount(0.5), 0);
  });

  it("property: the result is an integer in [0, MAX_COUNT]", () => {
    fc.assert(
      fc.property(fc.double(), (value) => {
        const c = clampCount(value);
        assert.ok(Number.isInteger(c), String(value));
        assert.ok(c >= 0 && c <= MAX_COUNT, String(value));
        if (Number.isInteger(value) && value >= 0 && value <= MAX_COUNT) assert.equal(c, value);
      }),
    );
  });
});

describe("caller fields from outside", () => {
  const update = (message: MessageInfo) => ({
    systemId: "s", mailbox: "1001", counts: { waiting: true, new: 1, old: 0, urgentNew: 0, urgentOld: 0 }, message, receivedAt: 1,
  });
  it("lose control and bidi characters before they are stored or shown", () => {
    const change = applyUpdate(undefined, update({ ani: "+1555\u202e0001\u0000\n@room", dnis: "\u2066 1001 \u2069", duration: 4 }));
    assert.deepEqual(change?.current.lastMessage, { ani: "+1555 0001 @room", dnis: "1001", duration: 4 });
  });
  it("a field that is nothing but such characters is left out", () => {
    const change = applyUpdate(undefined, update({ ani: "\u200e\u200f\u2028", dnis: "1001" }));
    assert.deepEqual(change?.current.lastMessage, { dnis: "1001" });
  });
  it("no output ever holds an unsafe character (property)", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 80 }), (ani) => {
        const shown = applyUpdate(undefined, update({ ani }))?.current.lastMessage?.ani ?? "";
        assert.doesNotMatch(shown, /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/);
      }),
    );
  });
});
