/**
 * The fault and soak scenarios check what each room was told by reading the counts back out of
 * the notification texts: that reader must understand every text format.ts writes, or the
 * invariant check reports "tells nothing" for a room that is right.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { renderNotification } from "../../src/core/format.js";
import { applyUpdate, type MailboxState } from "../../src/core/mwi.js";
import { toldCounts } from "../soak/scenario.js";

const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
console.log(`scenario counts: FC_SEED=${seed}`);

const counts = fc.record({ new: fc.nat(6), old: fc.nat(9) });

function told(previous: { new: number; old: number } | undefined, next: { new: number; old: number }, since?: number) {
  const before: MailboxState | undefined = previous && { systemId: "carrier", mailbox: "f00", waiting: previous.new > 0, ...previous, urgentNew: 0, urgentOld: 0, updated: 1 };
  const change = applyUpdate(before, { systemId: "carrier", mailbox: "f00", counts: { waiting: next.new > 0, ...next, urgentNew: 0, urgentOld: 0 }, receivedAt: 2, message: { ani: "+15551234567", duration: 42 } });
  if (!change) return undefined;
  const text = renderNotification({ change, systemName: "Carrier Voicemail", timeZone: "UTC", others: [], footer: "Dial *86", ...(since !== undefined ? { since } : {}) });
  return toldCounts(text.body);
}

describe("toldCounts reads what the notifications tell", () => {
  it("every change between random counts, delayed or not, reads back as its new counts", () => {
    fc.assert(
      fc.property(fc.option(counts, { nil: undefined }), counts, fc.boolean(), (previous, next, delayed) => {
        const got = told(previous, next, delayed ? 0 : undefined);
        if (previous && previous.new === next.new && previous.old === next.old) return assert.equal(got, undefined);
        assert.deepEqual(got, { mailbox: "f00", ...next });
      }),
      { numRuns: 400, seed },
    );
  });

  it("the texts the issue names: heard, deleted, a new voicemail", () => {
    assert.deepEqual(told({ new: 2, old: 5 }, { new: 0, old: 7 }), { mailbox: "f00", new: 0, old: 7 });
    assert.deepEqual(told({ new: 2, old: 5 }, { new: 0, old: 0 }), { mailbox: "f00", new: 0, old: 0 });
    assert.deepEqual(told({ new: 2, old: 5 }, { new: 3, old: 5 }), { mailbox: "f00", new: 3, old: 5 });
  });
});
