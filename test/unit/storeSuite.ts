/**
 * What every store engine must do: one suite, run for each engine (nedb, memory, postgres). An
 * engine-specific test file calls `storeSuite` with how to open its store.
 */
import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { MailboxState } from "../../src/core/mwi.js";
import type { DmRoom, ExtraTarget, MailboxLink, OutboxBatch, OutboxEntry, VoicemailStore } from "../../src/store/store.js";

export interface StoreEngine {
  /** A fresh, empty store. */
  open(): Promise<VoicemailStore>;
  /** What the last open() opened, again, after it was closed (a restart). */
  reopen(): Promise<VoicemailStore>;
}

/** Fixtures, shared with the engine-specific tests. */
export const link = (overrides: Partial<MailboxLink> = {}): MailboxLink => ({
  userId: "@alice:localhost",
  systemId: "carrier",
  mailbox: "1001",
  mwiEnabled: true,
  linkedBy: "@alice:localhost",
  createdAt: 1000,
  ...overrides,
});

export const room = (overrides: Partial<DmRoom> = {}): DmRoom => ({
  userId: "@alice:localhost",
  botUserId: "@vm_carrier:localhost",
  roomId: "!one:localhost",
  userJoined: false,
  createdAt: 1000,
  ...overrides,
});

const mailboxState = (overrides: Partial<MailboxState> = {}): MailboxState => ({
  systemId: "carrier",
  mailbox: "1001",
  waiting: true,
  new: 2,
  old: 5,
  urgentNew: 1,
  urgentOld: 0,
  updated: 1_700_000_000_000,
  ...overrides,
});

const entry = (id: string, seq: number, overrides: Partial<OutboxEntry> = {}): OutboxEntry => ({
  id,
  seq,
  ownerId: "@alice:localhost",
  targetKey: '["sys","@alice:localhost","carrier"]',
  withMessage: true,
  change: { kind: "new-message", current: mailboxState() },
  createdAt: 1000 + seq,
  ...overrides,
});

const target = (overrides: Partial<ExtraTarget> = {}): ExtraTarget => ({
  id: "t1",
  ownerId: "@alice:localhost",
  kind: "account",
  address: "@erin:localhost",
  status: "invited",
  createdAt: 1000,
  ...overrides,
});

const batch = (overrides: Partial<OutboxBatch> = {}): OutboxBatch => ({
  id: "b1",
  targetKey: '["sys","@alice:localhost","carrier"]',
  entryIds: ["e1", "e2"],
  txnId: "vm.b1",
  roomId: "!one:localhost",
  createdAt: 1000,
  open: false,
  done: [],
  ...overrides,
});

export function storeSuite(name: string, engine: StoreEngine): void {
describe(`store engine ${name}`, () => {
  let store: VoicemailStore;
  beforeEach(async () => {
    store = await engine.open();
  });
  afterEach(async () => {
    await store.close();
  });

  describe("profiles", () => {
    it("none until written", async () => {
      assert.equal(await store.getProfile("@alice:localhost"), undefined);
    });

    it("updateProfile creates, then patches and keeps createdAt", async () => {
      const before = Date.now();
      const created = await store.updateProfile("@alice:localhost", { timezone: "Europe/Berlin" });
      assert.equal(created.userId, "@alice:localhost");
      assert.equal(created.timezone, "Europe/Berlin");
      assert.ok(created.createdAt >= before && created.createdAt <= Date.now());
      assert.deepEqual(await store.getProfile("@alice:localhost"), created);

      const patched = await store.updateProfile("@alice:localhost", { timezone: "America/New_York" });
      assert.deepEqual(patched, { userId: "@alice:localhost", timezone: "America/New_York", createdAt: created.createdAt });
      assert.deepEqual(await store.getProfile("@alice:localhost"), patched);
      assert.equal(await store.getProfile("@bob:localhost"), undefined);
    });

    it("listProfiles pages by user ID and finds a substring, ignoring case", async () => {
      for (const id of ["@carol:b.org", "@alice:a.org", "@Bob:a.org", "@dave(.*):a.org"]) await store.updateProfile(id, {});
      const ids = async (q: Parameters<VoicemailStore["listProfiles"]>[0]) => (await store.listProfiles(q)).map((p) => p.userId);
      assert.deepEqual(await ids({ limit: 10 }), ["@Bob:a.org", "@alice:a.org", "@carol:b.org", "@dave(.*):a.org"]);
      assert.deepEqual(await ids({ limit: 2 }), ["@Bob:a.org", "@alice:a.org"]);
      assert.deepEqual(await ids({ limit: 2, after: "@alice:a.org" }), ["@carol:b.org", "@dave(.*):a.org"]);
      assert.deepEqual(await ids({ limit: 10, contains: "A.ORG" }), ["@Bob:a.org", "@alice:a.org", "@dave(.*):a.org"]);
      assert.deepEqual(await ids({ limit: 10, contains: "bob" }), ["@Bob:a.org"]);
      // What the caller types is text, never a pattern.
      assert.deepEqual(await ids({ limit: 10, contains: "(.*)" }), ["@dave(.*):a.org"]);
      assert.deepEqual(await ids({ limit: 10, contains: ".*" }), ["@dave(.*):a.org"]);
      assert.deepEqual(await ids({ limit: 10, contains: "zzz" }), []);
      assert.ok((await store.listProfiles({ limit: 1 })).every((p) => !("_id" in p)));
    });

    it("no _id leaks out", async () => {
      await store.updateProfile("@alice:localhost", {});
      const profile = await store.getProfile("@alice:localhost");
      assert.ok(profile);
      assert.ok(!("_id" in profile));
    });
  });

  describe("links", () => {
    it("addLink stores a link once; the second time it says false", async () => {
      assert.equal(await store.addLink(link()), true);
      assert.equal(await store.addLink(link({ linkedBy: "@admin:localhost", createdAt: 2000 })), false);
      assert.deepEqual(await store.listLinks("@alice:localhost"), [link()]);
    });

    it("links come back exactly as stored, without internal keys", async () => {
      await store.addLink(link());
      const [stored] = await store.listLinks("@alice:localhost");
      assert.deepEqual(stored, link());
      assert.deepEqual(Object.keys(stored!).sort(), ["createdAt", "linkedBy", "mailbox", "mwiEnabled", "systemId", "userId"]);
    });

    it("listLinks, linksForMailbox and linksForSystem select the right links", async () => {
      const alice1 = link();
      const alice2 = link({ systemId: "office", mailbox: "22" });
      const alice3 = link({ mailbox: "1002" });
      const bob1 = link({ userId: "@bob:localhost", linkedBy: "@admin:localhost" });
      const bobOffice = link({ userId: "@bob:localhost", systemId: "office", mailbox: "23" });
      for (const l of [alice2, bob1, alice3, alice1, bobOffice]) assert.equal(await store.addLink(l), true);

      assert.deepEqual(await store.listLinks("@alice:localhost"), [alice1, alice3, alice2]);
      assert.deepEqual(await store.listLinks("@bob:localhost"), [bob1, bobOffice]);
      assert.deepEqual(await store.listLinks("@carol:localhost"), []);

      const byUser = (a: MailboxLink, b: MailboxLink) => a.userId.localeCompare(b.userId);
      assert.deepEqual((await store.linksForMailbox("carrier", "1001")).sort(byUser), [alice1, bob1]);
      assert.deepEqual(await store.linksForMailbox("carrier", "1002"), [alice3]);
      assert.deepEqual(await store.linksForMailbox("office", "1001"), []);

      const key = (l: MailboxLink) => `${l.userId}/${l.mailbox}`;
      assert.deepEqual(
        (await store.linksForSystem("carrier")).map(key).sort(),
        [alice1, alice3, bob1].map(key).sort(),
      );
      assert.deepEqual((await store.linksForSystem("office")).map(key).sort(), [alice2, bobOffice].map(key).sort());
      assert.deepEqual(await store.linksForSystem("nope"), []);
    });

    it("keys do not collide when IDs contain separators", async () => {
      assert.equal(await store.addLink(link({ systemId: "a", mailbox: "b/c" })), true);
      assert.equal(await store.addLink(link({ systemId: "a/b", mailbox: "c" })), true);
      assert.equal(await store.addLink(link({ systemId: "a\",\"b", mailbox: "c" })), true);
      assert.equal((await store.listLinks("@alice:localhost")).length, 3);
      assert.deepEqual((await store.linksForMailbox("a", "b/c")).map((l) => l.systemId), ["a"]);
    });

    it("removeLink removes one link and says whether there was one", async () => {
      await store.addLink(link());
      await store.addLink(link({ mailbox: "1002" }));
      await store.addLink(link({ userId: "@bob:localhost" }));
      assert.equal(await store.removeLink("@alice:localhost", "carrier", "1001"), true);
      assert.equal(await store.removeLink("@alice:localhost", "carrier", "1001"), false);
      assert.equal(await store.removeLink("@alice:localhost", "office", "1002"), false);
      assert.deepEqual((await store.listLinks("@alice:localhost")).map((l) => l.mailbox), ["1002"]);
      assert.deepEqual((await store.linksForMailbox("carrier", "1001")).map((l) => l.userId), ["@bob:localhost"]);
      // It can be linked again after removal.
      assert.equal(await store.addLink(link()), true);
    });

    it("setLinkMwi switches one link and counts the links changed", async () => {
      await store.addLink(link());
      await store.addLink(link({ userId: "@bob:localhost" }));
      assert.equal(await store.setLinkMwi("@alice:localhost", "carrier", "1001", false), 1);
      assert.equal(await store.setLinkMwi("@alice:localhost", "carrier", "9999", false), 0);
      assert.deepEqual(await store.listLinks("@alice:localhost"), [link({ mwiEnabled: false })]);
      assert.deepEqual(await store.listLinks("@bob:localhost"), [link({ userId: "@bob:localhost" })]);
      assert.equal(await store.setLinkMwi("@alice:localhost", "carrier", "1001", true), 1);
      assert.equal((await store.listLinks("@alice:localhost"))[0]!.mwiEnabled, true);
    });

    it("setLinkCredentials replaces the sealed credentials of one link and keeps the rest", async () => {
      await store.addLink(link({ sealedCredentials: "old" }));
      assert.equal(await store.setLinkCredentials("@alice:localhost", "carrier", "1001", "new"), true);
      assert.equal(await store.setLinkCredentials("@alice:localhost", "carrier", "9999", "new"), false);
      assert.deepEqual(await store.listLinks("@alice:localhost"), [link({ sealedCredentials: "new" })]);
    });
  });

  describe("DM rooms", () => {
    it("none until saved; then found by user and bot and by room ID", async () => {
      assert.equal(await store.getDmRoom("@alice:localhost", "@vm_carrier:localhost"), undefined);
      assert.equal(await store.getDmRoomById("!one:localhost"), undefined);
      await store.saveDmRoom(room());
      assert.deepEqual(await store.getDmRoom("@alice:localhost", "@vm_carrier:localhost"), room());
      assert.deepEqual(await store.getDmRoomById("!one:localhost"), room());
      assert.equal(await store.getDmRoom("@alice:localhost", "@voicemail:localhost"), undefined);
      assert.equal(await store.getDmRoom("@bob:localhost", "@vm_carrier:localhost"), undefined);
    });

    it("saving again for the same user and bot replaces the record", async () => {
      await store.saveDmRoom(room());
      const replacement = room({ roomId: "!two:localhost", userJoined: true, createdAt: 2000, lastName: "Carrier (2)", lastSummary: "{}" });
      await store.saveDmRoom(replacement);
      assert.deepEqual(await store.getDmRoom("@alice:localhost", "@vm_carrier:localhost"), replacement);
      assert.equal(await store.getDmRoomById("!one:localhost"), undefined);
      assert.deepEqual(await store.getDmRoomById("!two:localhost"), replacement);
    });

    it("an update of the same room keeps one record with the new fields", async () => {
      await store.saveDmRoom(room());
      await store.saveDmRoom(room({ userJoined: true, lastName: "Carrier Voicemail" }));
      assert.deepEqual(await store.getDmRoomById("!one:localhost"), room({ userJoined: true, lastName: "Carrier Voicemail" }));
    });

    it("each bot has its own DM with a user", async () => {
      const carrier = room();
      const main = room({ botUserId: "@voicemail:localhost", roomId: "!main:localhost" });
      await store.saveDmRoom(carrier);
      await store.saveDmRoom(main);
      assert.deepEqual(await store.getDmRoom("@alice:localhost", "@vm_carrier:localhost"), carrier);
      assert.deepEqual(await store.getDmRoom("@alice:localhost", "@voicemail:localhost"), main);
    });

    it("saving a room ID that another user and bot had drops the stale record", async () => {
      await store.saveDmRoom(room());
      const bobs = room({ userId: "@bob:localhost", botUserId: "@vm_office:localhost" });
      await store.saveDmRoom(bobs);
      assert.equal(await store.getDmRoom("@alice:localhost", "@vm_carrier:localhost"), undefined);
      assert.deepEqual(await store.getDmRoom("@bob:localhost", "@vm_office:localhost"), bobs);
      assert.deepEqual(await store.getDmRoomById("!one:localhost"), bobs);
    });

    it("forgetDmRoom removes the room, leaving others", async () => {
      await store.saveDmRoom(room());
      await store.saveDmRoom(room({ userId: "@bob:localhost", roomId: "!bob:localhost" }));
      await store.forgetDmRoom("!one:localhost");
      assert.equal(await store.getDmRoomById("!one:localhost"), undefined);
      assert.equal(await store.getDmRoom("@alice:localhost", "@vm_carrier:localhost"), undefined);
      assert.equal((await store.getDmRoomById("!bob:localhost"))?.userId, "@bob:localhost");
      await store.forgetDmRoom("!never:localhost");
      // The pair can get a new DM afterwards.
      await store.saveDmRoom(room({ roomId: "!three:localhost" }));
      assert.equal((await store.getDmRoom("@alice:localhost", "@vm_carrier:localhost"))?.roomId, "!three:localhost");
    });
  });

  describe("mailbox state", () => {
    it("none until saved; saved state comes back equal; saving again replaces it", async () => {
      assert.equal(await store.getMailboxState("carrier", "1001"), undefined);
      const first = mailboxState();
      await store.saveMailboxState(first);
      assert.deepEqual(await store.getMailboxState("carrier", "1001"), first);
      const second = mailboxState({
        new: 3,
        updated: 1_700_000_001_000,
        lastMessage: { ani: "+15551234567", dnis: "+15557654321", time: "2026-11-25T14:03:00.000Z", duration: 42 },
      });
      await store.saveMailboxState(second);
      assert.deepEqual(await store.getMailboxState("carrier", "1001"), second);
      assert.equal(await store.getMailboxState("carrier", "1002"), undefined);
      assert.equal(await store.getMailboxState("office", "1001"), undefined);
    });

    it("a state without lastMessage after one with it has none", async () => {
      await store.saveMailboxState(mailboxState({ lastMessage: { ani: "+1" } }));
      await store.saveMailboxState(mailboxState({ new: 0 }));
      const got = await store.getMailboxState("carrier", "1001");
      assert.deepEqual(got, mailboxState({ new: 0 }));
      assert.ok(got && !("lastMessage" in got));
    });
  });

  describe("handled events", () => {
    it("markEventHandled is true the first time, false after", async () => {
      assert.equal(await store.markEventHandled("$a", 100), true);
      assert.equal(await store.markEventHandled("$a", 200), false);
      assert.equal(await store.markEventHandled("$b", 100), true);
    });

    it("forgetHandledEventsBefore removes older events only and counts them", async () => {
      await store.markEventHandled("$old1", 100);
      await store.markEventHandled("$old2", 199);
      await store.markEventHandled("$edge", 200);
      await store.markEventHandled("$new", 300);
      assert.equal(await store.forgetHandledEventsBefore(200), 2);
      assert.equal(await store.forgetHandledEventsBefore(200), 0);
      assert.equal(await store.markEventHandled("$old1", 400), true);
      assert.equal(await store.markEventHandled("$edge", 400), false);
      assert.equal(await store.markEventHandled("$new", 400), false);
    });
  });

  it("everything survives close and reopen", async () => {
    await store.updateProfile("@alice:localhost", { timezone: "Europe/Berlin" });
    await store.addLink(link());
    await store.addLink(link({ mailbox: "1002", mwiEnabled: false }));
    await store.removeLink("@alice:localhost", "carrier", "1002");
    await store.addLink(link({ systemId: "office", mailbox: "22" }));
    await store.setLinkMwi("@alice:localhost", "office", "22", false);
    await store.saveDmRoom(room());
    await store.saveDmRoom(room({ roomId: "!two:localhost", userJoined: true }));
    await store.saveMailboxState(mailboxState({ lastMessage: { ani: "+1" } }));
    await store.markEventHandled("$seen", 100);
    const profile = await store.getProfile("@alice:localhost");
    await store.close();

    store = await engine.reopen();
    assert.deepEqual(await store.getProfile("@alice:localhost"), profile);
    assert.deepEqual(await store.listLinks("@alice:localhost"), [link(), link({ systemId: "office", mailbox: "22", mwiEnabled: false })]);
    assert.equal(await store.addLink(link()), false, "the unique index is back");
    assert.deepEqual(await store.getDmRoom("@alice:localhost", "@vm_carrier:localhost"), room({ roomId: "!two:localhost", userJoined: true }));
    assert.equal(await store.getDmRoomById("!one:localhost"), undefined);
    assert.deepEqual(await store.getMailboxState("carrier", "1001"), mailboxState({ lastMessage: { ani: "+1" } }));
    assert.equal(await store.markEventHandled("$seen", 500), false);
    assert.equal(await store.markEventHandled("$unseen", 500), true);
  });

  describe("outbox", () => {
    it("entries come back oldest first, all or of one target; removed ones are gone", async () => {
      const other = '["main","@alice:localhost"]';
      await store.addOutboxEntries([entry("e2", 2), entry("e1", 1), entry("e3", 3, { targetKey: other })]);
      assert.deepEqual((await store.outboxEntries()).map((e) => e.id), ["e1", "e2", "e3"]);
      assert.deepEqual((await store.outboxEntries(other)).map((e) => e.id), ["e3"]);
      assert.deepEqual(await store.outboxEntries(other), [entry("e3", 3, { targetKey: other })]);
      assert.equal(await store.maxOutboxSeq(), 3);
      await store.removeOutboxEntries(["e1", "e3", "nope"]);
      assert.deepEqual((await store.outboxEntries()).map((e) => e.id), ["e2"]);
      assert.equal(await store.maxOutboxSeq(), 2);
    });

    it("outboxStats: how many wait and since when (none waiting: no oldest)", async () => {
      assert.deepEqual(await store.outboxStats(), { depth: 0 });
      await store.addOutboxEntries([{ ...entry("e2", 2), createdAt: 5000 }, { ...entry("e1", 1), createdAt: 7000 }, { ...entry("e3", 3), createdAt: 6000 }]);
      assert.deepEqual(await store.outboxStats(), { depth: 3, oldestCreatedAt: 5000 });
      await store.removeOutboxEntries(["e2"]);
      assert.deepEqual(await store.outboxStats(), { depth: 2, oldestCreatedAt: 6000 });
    });

    it("outboxTargetKeys: the distinct keys of one owner's waiting entries", async () => {
      const main = '["main","@alice:localhost"]';
      await store.addOutboxEntries([
        entry("e1", 1),
        entry("e2", 2),
        entry("e3", 3, { targetKey: main }),
        entry("e4", 4, { ownerId: "@bob:localhost", targetKey: '["main","@bob:localhost"]' }),
      ]);
      assert.deepEqual((await store.outboxTargetKeys("@alice:localhost")).sort(), [main, '["sys","@alice:localhost","carrier"]'].sort());
      await store.removeOutboxEntries(["e3"]);
      assert.deepEqual(await store.outboxTargetKeys("@alice:localhost"), ['["sys","@alice:localhost","carrier"]']);
      assert.deepEqual(await store.outboxTargetKeys("@nobody:localhost"), []);
    });

    it("acceptChange stores the state and the entries together", async () => {
      const state = mailboxState({ new: 7 });
      await store.acceptChange(state, [entry("e1", 1, { change: { kind: "new-message", current: state } })]);
      assert.deepEqual(await store.getMailboxState("carrier", "1001"), state);
      assert.deepEqual((await store.outboxEntries()).map((e) => e.change?.current.new), [7]);
      // Without links there are no entries; the state is still stored.
      await store.acceptChange(mailboxState({ mailbox: "1002" }), []);
      assert.equal((await store.getMailboxState("carrier", "1002"))?.mailbox, "1002");
    });

    it("many acceptChange at once: each one's state and entries are kept, also after a restart", async () => {
      const states = Array.from({ length: 12 }, (_, i) => mailboxState({ mailbox: String(1001 + (i % 3)), new: i, updated: 2000 + i }));
      await Promise.all(states.map((state, i) => store.acceptChange(state, [entry(`e${i}`, i + 1, { change: { kind: "new-message", current: state } })])));
      const check = async () => {
        assert.deepEqual((await store.outboxEntries()).map((e) => e.id), states.map((_, i) => `e${i}`));
        for (const mailbox of ["1001", "1002", "1003"]) {
          assert.equal((await store.getMailboxState("carrier", mailbox))?.updated, Math.max(...states.filter((s) => s.mailbox === mailbox).map((s) => s.updated)));
        }
      };
      await check();
      await store.close();
      store = await engine.reopen();
      await check();
    });

    it("a target key with | in its user ID is kept as it is", async () => {
      const key = '["sys","@a|b:localhost","carrier"]';
      await store.addOutboxEntries([entry("e1", 1, { targetKey: key, ownerId: "@a|b:localhost" })]);
      assert.deepEqual((await store.outboxEntries(key)).map((e) => e.id), ["e1"]);
      assert.deepEqual(await store.outboxEntries('["sys","@a:localhost","b|carrier"]'), []);
    });

    it("one batch per target: saved, replaced, listed, completed with its entries", async () => {
      assert.equal(await store.getBatch(batch().targetKey), undefined);
      await store.addOutboxEntries([entry("e1", 1), entry("e2", 2), entry("e3", 3)]);
      await store.saveBatch(batch({ open: true }));
      await store.saveBatch(batch({ done: [{ step: "message", eventId: "$m" }] }));
      assert.deepEqual(await store.getBatch(batch().targetKey), batch({ done: [{ step: "message", eventId: "$m" }] }));
      const other = batch({ id: "b2", targetKey: '["main","@alice:localhost"]', entryIds: [] });
      await store.saveBatch(other);
      assert.deepEqual((await store.outboxBatches()).map((b) => b.id).sort(), ["b1", "b2"]);
      await store.completeBatch(batch());
      assert.equal(await store.getBatch(batch().targetKey), undefined);
      assert.deepEqual((await store.outboxEntries()).map((e) => e.id), ["e3"], "a later entry waits for the next batch");
      assert.deepEqual(await store.getBatch(other.targetKey), other);
    });

    it("batches and entries survive a restart", async () => {
      await store.addOutboxEntries([entry("e1", 1)]);
      await store.saveBatch(batch({ entryIds: ["e1"], done: [{ step: "message", eventId: "$m" }, { step: "state:org.voicemail.mwi:carrier/1001" }] }));
      await store.close();
      store = await engine.reopen();
      assert.deepEqual(await store.getBatch(batch().targetKey), batch({ entryIds: ["e1"], done: [{ step: "message", eventId: "$m" }, { step: "state:org.voicemail.mwi:carrier/1001" }] }));
      assert.deepEqual((await store.outboxEntries()).map((e) => e.id), ["e1"]);
    });
  });

  describe("targets", () => {
    it("one target per owner and address", async () => {
      assert.equal(await store.addTarget(target()), true);
      assert.equal(await store.addTarget(target({ id: "t2" })), false);
      assert.equal(await store.addTarget(target({ id: "t3", ownerId: "@bob:localhost" })), true);
      assert.equal(await store.addTarget(target({ id: "t4", address: "!room:localhost", kind: "room" })), true);
      assert.deepEqual((await store.listTargets("@alice:localhost")).map((t) => t.id), ["t1", "t4"]);
      assert.equal(await store.getTarget("t2"), undefined);
    });

    it("found by ID and room, updated, removed (then added again)", async () => {
      await store.addTarget(target());
      await store.updateTarget(target({ roomId: "!dm:localhost", status: "active", lastName: "x" }));
      assert.deepEqual(await store.getTarget("t1"), target({ roomId: "!dm:localhost", status: "active", lastName: "x" }));
      assert.deepEqual((await store.targetsByRoom("!dm:localhost")).map((t) => t.id), ["t1"]);
      assert.equal(await store.removeTarget("t1"), true);
      assert.equal(await store.removeTarget("t1"), false);
      assert.equal(await store.addTarget(target({ id: "t5" })), true);
    });
  });
});
}
