import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";

import { buildSummary, mailboxStateContent, type LinkedMailbox } from "../../src/core/summary.js";
import { MWI_EVENT_TYPE, MWI_SUMMARY_EVENT_TYPE, mailboxStateKey } from "../../src/core/events.js";
import type { MailboxState } from "../../src/core/mwi.js";

function state(systemId: string, mailbox: string, n: number, o: number, un = 0, uo = 0, waiting = n > 0): MailboxState {
  return { systemId, mailbox, waiting, new: n, old: o, urgentNew: un, urgentOld: uo, updated: 1_700_000_000_000 };
}

const linked = (systemId: string, systemName: string, mailbox: string, s?: MailboxState): LinkedMailbox => ({
  systemId,
  systemName,
  mailbox,
  ...(s ? { state: s } : {}),
});

const MAILBOXES: LinkedMailbox[] = [
  linked("office", "Office", "22", state("office", "22", 0, 3)),
  linked("carrier", "Carrier Voicemail", "1001", state("carrier", "1001", 2, 5, 1, 0)),
  linked("carrier", "Carrier Voicemail", "1002", state("carrier", "1002", 1, 0, 0, 2)),
  linked("home", "Home", "9"),
];

describe("buildSummary", () => {
  it("aggregates per system and in total", () => {
    assert.deepEqual(buildSummary("@alice:localhost", MAILBOXES), {
      user_id: "@alice:localhost",
      total_new: 3,
      systems: {
        carrier: {
          name: "Carrier Voicemail",
          waiting: true,
          new: 3,
          old: 5,
          urgent_new: 1,
          urgent_old: 2,
          mailboxes: {
            "1001": { waiting: true, new: 2, old: 5, urgent_new: 1, urgent_old: 0 },
            "1002": { waiting: true, new: 1, old: 0, urgent_new: 0, urgent_old: 2 },
          },
        },
        home: {
          name: "Home",
          waiting: false,
          new: 0,
          old: 0,
          urgent_new: 0,
          urgent_old: 0,
          mailboxes: { "9": { waiting: false, new: 0, old: 0, urgent_new: 0, urgent_old: 0 } },
        },
        office: {
          name: "Office",
          waiting: false,
          new: 0,
          old: 3,
          urgent_new: 0,
          urgent_old: 0,
          mailboxes: { "22": { waiting: false, new: 0, old: 3, urgent_new: 0, urgent_old: 0 } },
        },
      },
    });
  });

  it("a system is waiting when any of its mailboxes is", () => {
    const summary = buildSummary("@a:x", [
      linked("s", "S", "1", state("s", "1", 0, 0, 0, 0, false)),
      linked("s", "S", "2", state("s", "2", 0, 1, 0, 0, true)),
      linked("s", "S", "3", state("s", "3", 0, 0, 0, 0, false)),
    ]);
    assert.equal(summary.systems.s!.waiting, true);
    assert.equal(summary.total_new, 0);
  });

  it("nothing linked: an empty summary", () => {
    assert.deepEqual(buildSummary("@a:x", []), { user_id: "@a:x", total_new: 0, systems: {} });
  });

  it("keys come out sorted: systems, then mailboxes, then the fixed field order", () => {
    const summary = buildSummary("@a:x", MAILBOXES);
    assert.deepEqual(Object.keys(summary), ["user_id", "total_new", "systems"]);
    assert.deepEqual(Object.keys(summary.systems), ["carrier", "home", "office"]);
    assert.deepEqual(Object.keys(summary.systems.carrier!), ["name", "waiting", "new", "old", "urgent_new", "urgent_old", "mailboxes"]);
    assert.deepEqual(Object.keys(summary.systems.carrier!.mailboxes), ["1001", "1002"]);
    assert.deepEqual(Object.keys(summary.systems.carrier!.mailboxes["1001"]!), ["waiting", "new", "old", "urgent_new", "urgent_old"]);
  });

  it("the same mailboxes in another order serialise identically (also non-numeric mailbox names)", () => {
    const named: LinkedMailbox[] = [
      ...MAILBOXES,
      linked("carrier", "Carrier Voicemail", "sales", state("carrier", "sales", 4, 0)),
      linked("carrier", "Carrier Voicemail", "0123", state("carrier", "0123", 0, 1)),
      linked("carrier", "Carrier Voicemail", "alice@pbx", state("carrier", "alice@pbx", 1, 1)),
    ];
    const expected = JSON.stringify(buildSummary("@a:x", named));
    for (const order of [[...named].reverse(), [named[3]!, named[0]!, named[5]!, named[2]!, named[6]!, named[1]!, named[4]!]]) {
      assert.equal(JSON.stringify(buildSummary("@a:x", order)), expected);
    }
  });

  it("does not reorder the caller's array", () => {
    const input = [...MAILBOXES];
    buildSummary("@a:x", input);
    assert.deepEqual(input, MAILBOXES);
  });

  it(
    "mailbox names that collate equal but differ still serialise identically in any order",
    () => {
      const a = linked("s", "S", "\u00C5", state("s", "\u00C5", 1, 0));
      const b = linked("s", "S", "\u212B", state("s", "\u212B", 2, 0));
      assert.equal(JSON.stringify(buildSummary("@a:x", [a, b])), JSON.stringify(buildSummary("@a:x", [b, a])));
    },
  );

  const mailboxArb = fc.record({
    systemId: fc.constantFrom("carrier", "office", "home", "a-b", "a_b"),
    mailbox: fc.stringMatching(/^[0-9a-z@.+*#-]{1,6}$/),
    counts: fc.option(
      fc.record({ waiting: fc.boolean(), n: fc.nat(1000), o: fc.nat(1000), un: fc.nat(10), uo: fc.nat(10) }),
      { nil: undefined },
    ),
  });
  /** Unique (system, mailbox) pairs, as the store guarantees for one user. */
  const linksArb = fc
    .uniqueArray(mailboxArb, { selector: (m) => `${m.systemId}/${m.mailbox}`, maxLength: 12 })
    .map((list) =>
      list.map((m) =>
        linked(
          m.systemId,
          m.systemId.toUpperCase(),
          m.mailbox,
          m.counts ? state(m.systemId, m.mailbox, m.counts.n, m.counts.o, m.counts.un, m.counts.uo, m.counts.waiting) : undefined,
        ),
      ),
    );

  it("property: total_new is the sum of every mailbox's new count, and each system sums its mailboxes", () => {
    fc.assert(
      fc.property(linksArb, (links) => {
        const summary = buildSummary("@a:x", links);
        assert.equal(
          summary.total_new,
          links.reduce((sum, l) => sum + (l.state?.new ?? 0), 0),
        );
        const systemIds = new Set(links.map((l) => l.systemId));
        assert.deepEqual(Object.keys(summary.systems).sort(), [...systemIds].sort());
        for (const [id, system] of Object.entries(summary.systems)) {
          const mine = links.filter((l) => l.systemId === id);
          assert.equal(Object.keys(system.mailboxes).length, mine.length);
          assert.equal(system.old, mine.reduce((s, l) => s + (l.state?.old ?? 0), 0));
          assert.equal(system.urgent_new, mine.reduce((s, l) => s + (l.state?.urgentNew ?? 0), 0));
          assert.equal(system.urgent_old, mine.reduce((s, l) => s + (l.state?.urgentOld ?? 0), 0));
          assert.equal(system.waiting, mine.some((l) => l.state?.waiting === true));
        }
      }),
    );
  });

  it("property: any permutation of the input gives the same JSON", () => {
    fc.assert(
      fc.property(
        linksArb.chain((links) => fc.tuple(fc.constant(links), fc.shuffledSubarray(links, { minLength: links.length, maxLength: links.length }))),
        ([links, shuffled]) => {
          assert.equal(JSON.stringify(buildSummary("@a:x", shuffled)), JSON.stringify(buildSummary("@a:x", links)));
        },
      ),
    );
  });
});

describe("mailboxStateContent", () => {
  it("holds the user, system, mailbox, counts and update time", () => {
    const content = mailboxStateContent("@alice:localhost", "Carrier Voicemail", state("carrier", "1001", 2, 5, 1, 0));
    assert.deepEqual(content, {
      user_id: "@alice:localhost",
      system: "carrier",
      system_name: "Carrier Voicemail",
      mailbox: "1001",
      waiting: true,
      new: 2,
      old: 5,
      urgent_new: 1,
      urgent_old: 0,
      updated: 1_700_000_000_000,
    });
    assert.ok(!("last_message" in content));
  });

  it("adds last_message only when the message is known, as a copy", () => {
    const lastMessage = { ani: "+15551234567", dnis: "+15557654321", time: "2026-11-25T14:03:00.000Z", duration: 42 };
    const s: MailboxState = { ...state("carrier", "1001", 1, 0), lastMessage };
    const content = mailboxStateContent("@alice:localhost", "Carrier Voicemail", s);
    assert.deepEqual(content.last_message, lastMessage);
    assert.notEqual(content.last_message, lastMessage);
    assert.deepEqual(Object.keys(content), [
      "user_id",
      "system",
      "system_name",
      "mailbox",
      "waiting",
      "new",
      "old",
      "urgent_new",
      "urgent_old",
      "updated",
      "last_message",
    ]);
  });

  it("the caller's name is last_message.caller_name", () => {
    const s: MailboxState = { ...state("carrier", "1001", 1, 0), lastMessage: { ani: "5551234", callerName: "Grace Caller" } };
    assert.deepEqual(mailboxStateContent("@alice:localhost", "Carrier Voicemail", s).last_message, { ani: "5551234", caller_name: "Grace Caller" });
  });

  it("the state key and event types", () => {
    assert.equal(mailboxStateKey("carrier", "1001"), "carrier/1001");
    assert.equal(mailboxStateKey("carrier", "a/b"), "carrier/a/b");
    assert.equal(MWI_EVENT_TYPE, "org.voicemail.mwi");
    assert.equal(MWI_SUMMARY_EVENT_TYPE, "org.voicemail.mwi.summary");
  });
});

describe("keys from outside", () => {
  const state = (systemId: string, mailbox: string, n: number): MailboxState => ({
    systemId, mailbox, waiting: n > 0, new: n, old: 0, urgentNew: 0, urgentOld: 0, updated: 1,
  });
  it("a system or mailbox named __proto__ or constructor is kept like any other", () => {
    const summary = buildSummary("@u:x", [
      { systemId: "__proto__", systemName: "P", mailbox: "__proto__", state: state("__proto__", "__proto__", 2) },
      { systemId: "constructor", systemName: "C", mailbox: "toString", state: state("constructor", "toString", 1) },
    ]);
    const json = JSON.parse(JSON.stringify(summary)) as { total_new: number; systems: Record<string, { new: number; mailboxes: Record<string, { new: number }> }> };
    assert.equal(json.total_new, 3);
    assert.deepEqual(Object.keys(json.systems).sort(), ["__proto__", "constructor"]);
    assert.equal(json.systems["__proto__"]!.mailboxes["__proto__"]!.new, 2);
    assert.equal(json.systems["constructor"]!.mailboxes["toString"]!.new, 1);
  });
});
