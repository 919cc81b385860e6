/**
 * Seeded random tests of the messages code: hostile VoicemailBoxSummary details never become a
 * message whose ID could add an AMI header, nor break newest-first; a random interleaving of
 * `!delete`, `!delete confirm`, new messages and time never removes anything but the message the
 * last `!delete` named, while it is still the newest, within its minute. The seed is printed.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { MESSAGE_ID, messagesOf, type BoxDetail } from "../../src/gateway/ami/mailbox.js";
import type { MessagesCapability, VoicemailMessage } from "../../src/gateway/gateway.js";
import { DELETE_CONFIRM_MS, VoicemailService } from "../../src/app/voicemailService.js";
import type { MailboxService } from "../../src/app/mailboxService.js";
import type { MailboxLink } from "../../src/store/store.js";

const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
console.log(`messages fuzz properties: FC_SEED=${seed}`);
const runs = (numRuns: number) => ({ numRuns, seed, includeErrorInReport: true });

const hostile = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom("1796129450-00000000", "1796129450-0000000a", "x\r\nAction: Logoff", "", " 1796129450-1 ", "../../etc", "1".repeat(80)),
);
const detail: fc.Arbitrary<BoxDetail> = fc.record(
  {
    folder: fc.constantFrom("INBOX", "Old", "Urgent", "Work", "inbox", "", "Deleted"),
    callerId: fc.oneof(fc.string({ maxLength: 60 }), fc.constant('"Grace" <5551234>')),
    date: fc.string({ maxLength: 40 }),
    duration: fc.oneof(fc.string({ maxLength: 6 }), fc.nat({ max: 10_000 }).map(String)),
    id: hostile,
  },
  { requiredKeys: ["folder"] },
);

describe("messagesOf (fuzz)", () => {
  it("keeps only INBOX/Urgent/Old messages with a safe ID, newest first, never throws", () => {
    fc.assert(
      fc.property(fc.array(detail, { maxLength: 30 }), (details) => {
        const out = messagesOf(details);
        for (const m of out) {
          assert.match(m.id, MESSAGE_ID);
          assert.ok(!/[\r\n]/.test(m.id));
          assert.equal(m.urgent, m.urgent && m.fresh, "urgent only while unheard");
          if (m.duration !== undefined) assert.ok(Number.isInteger(m.duration) && m.duration >= 0);
        }
        const times = out.map((m) => m.time ?? 0);
        assert.deepEqual(times, [...times].sort((a, b) => b - a));
        assert.ok(out.length <= details.filter((d) => /^(inbox|urgent|old)$/i.test(d.folder)).length);
      }),
      runs(500),
    );
  });
});

describe("!delete confirmation (fuzz)", () => {
  type Step = { kind: "ask" } | { kind: "confirm" } | { kind: "arrive" } | { kind: "wait"; ms: number } | { kind: "unlink" } | { kind: "relink" };
  const step: fc.Arbitrary<Step> = fc.oneof(
    fc.constant({ kind: "ask" } as const),
    fc.constant({ kind: "confirm" } as const),
    fc.constant({ kind: "arrive" } as const),
    fc.constant({ kind: "unlink" } as const),
    fc.constant({ kind: "relink" } as const),
    fc.integer({ min: 0, max: 90_000 }).map((ms) => ({ kind: "wait", ms }) as const),
  );

  it("removes only what the last !delete named, while newest, linked and within the minute", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 25 }), async (steps) => {
        let now = 1_000_000;
        let n = 0;
        let box: VoicemailMessage[] = [{ id: `m${n++}`, fresh: true, urgent: false, time: now }];
        let linked = true;
        const removed: string[] = [];
        const link = { userId: "@a:x", systemId: "pbx", mailbox: "1001", mwiEnabled: true } as MailboxLink;
        const messages: MessagesCapability = {
          list: async () => [...box],
          markHeard: async () => undefined,
          remove: async (_m, id) => {
            removed.push(id);
            box = box.filter((m) => m.id !== id);
          },
        };
        const mailboxes = {
          selectLinks: async () => (linked ? [link] : []),
          gateway: () => ({ messages }),
          credentialsOfLink: async () => undefined,
        } as unknown as MailboxService;
        const service = new VoicemailService(mailboxes, () => now);
        let armed: { id: string; until: number } | undefined;
        for (const s of steps) {
          if (s.kind === "ask") {
            if (!linked) continue;
            const r = await service.askDelete(link.userId, link);
            armed = r.ok && r.value ? { id: r.value.message.id, until: now + DELETE_CONFIRM_MS } : undefined;
          } else if (s.kind === "confirm") {
            const before = removed.length;
            const newest = box[0]?.id;
            const r = await service.confirmDelete(link.userId);
            const allowed: boolean = armed !== undefined && now <= armed.until && linked && newest === armed.id;
            assert.equal(r.ok, allowed, JSON.stringify({ r, armed, now, linked, newest }));
            assert.equal(removed.length - before, allowed ? 1 : 0);
            if (allowed) assert.equal(removed.at(-1), armed!.id);
            armed = undefined;
          } else if (s.kind === "arrive") {
            box = [{ id: `m${n++}`, fresh: true, urgent: false, time: now }, ...box];
          } else if (s.kind === "wait") now += s.ms;
          else if (s.kind === "unlink") linked = false;
          else linked = true;
        }
      }),
      runs(300),
    );
  });
});
