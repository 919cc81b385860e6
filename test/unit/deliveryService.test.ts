/**
 * DeliveryService against a homeserver in memory: exactly once across lost answers, homeserver
 * and bridge restarts; workers that never die; invites and presence looked at by the bridge.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { MWI_EVENT_TYPE } from "../../src/core/events.js";
import { OUTBOX_ID_FIELD } from "../../src/matrix/content.js";
import { CARRIER_BOT, FakeBridge, MAIN_BOT, QUICK, type FakeRequest } from "./fakeMatrix.js";

const ALICE = "@alice:localhost";
const isMessage = (r: FakeRequest) => r.op === "send" && r.as === CARRIER_BOT && r.txnId?.startsWith("vm.") === true;
const isMwiState = (r: FakeRequest) => r.op === "state" && r.type === MWI_EVENT_TYPE;

let bridge: FakeBridge | undefined;
afterEach(async () => {
  await bridge?.stop();
  bridge = undefined;
});

/** Alice, linked to carrier 1001, has accepted her DM with the carrier bot; returns the room. */
async function aliceReady(b: FakeBridge): Promise<string> {
  await b.start();
  await b.link(ALICE);
  await b.mwi("1001", 0);
  const room = await b.accept(ALICE);
  await b.until(async () => (await b.store.outboxEntries()).length === 0, "the first state delivered");
  return room;
}

const bodies = (b: FakeBridge, room: string) => b.hs.messages(room, CARRIER_BOT).map((e) => String(e.content.body));
const messageTxns = (b: FakeBridge) => b.hs.requests.filter(isMessage).map((r) => r.txnId);

describe("DeliveryService: order across a restart", () => {
  it("an update accepted after a restart but before the delivery started is numbered after what waits, and told last", async () => {
    const b = (bridge = new FakeBridge());
    const room = await aliceReady(b);
    b.hs.failNext(isMessage, "refused", async () => {
      await b.mwi("1001", 2, 1);
    });
    await b.mwi("1001", 1);
    // Killed while both wait; the new process takes the third before its delivery starts.
    await b.restart(() => b.mwi("1001", 3, 2));
    const seqs = (await b.store.outboxEntries()).map((e) => e.change?.current.new);
    assert.deepEqual(seqs.slice(-1), [3], `the newest update is the last entry: ${seqs.join(", ")}`);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "everything delivered");
    assert.match(bodies(b, room).at(-1)!, /1001: 3 new, 2 old/);
    assert.equal(b.hs.stateEvents(room, MWI_EVENT_TYPE).at(-1)!.content.new, 3);
  });
});

describe("DeliveryService: exactly once", () => {
  it("a batch once attempted is frozen: its retry has the same transaction ID and a later change is the next batch", async () => {
    const b = (bridge = new FakeBridge());
    const room = await aliceReady(b);
    const before = messageTxns(b).length;
    const shown = bodies(b, room).length;
    // The first send is answered 502 (not stored); meanwhile a second voicemail arrives.
    b.hs.failNext(isMessage, "502", () => b.mwi("1001", 2));
    await b.mwi("1001", 1);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "everything delivered");
    const txns = messageTxns(b).slice(before);
    assert.equal(txns.length, 3, `three sends: ${txns.join(", ")}`);
    assert.equal(txns[0], txns[1], "the retry keeps the transaction ID");
    assert.notEqual(txns[1], txns[2], "the later change is another batch");
    const told = bodies(b, room).slice(shown);
    assert.equal(told.length, 2, told.join(" | "));
    assert.match(told[0]!, /1001: 1 new/);
    assert.match(told[1]!, /1001: 2 new/);
  });

  it("while no request reached the homeserver, a later change joins the batch, under the same transaction ID", async () => {
    const b = (bridge = new FakeBridge());
    const room = await aliceReady(b);
    const before = messageTxns(b).length;
    const shown = bodies(b, room).length;
    b.hs.failNext(isMessage, "refused", () => b.mwi("1001", 2));
    await b.mwi("1001", 1);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "everything delivered");
    const txns = messageTxns(b).slice(before);
    assert.equal(txns.length, 2);
    assert.equal(txns[0], txns[1]);
    const told = bodies(b, room).slice(shown);
    assert.equal(told.length, 1, "one message for what waited together");
    assert.match(told[0]!, /1001: 2 new/);
  });

  it("every message carries its outbox ID", async () => {
    const b = (bridge = new FakeBridge());
    const room = await aliceReady(b);
    await b.mwi("1001", 1);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "delivered");
    const last = b.hs.messages(room, CARRIER_BOT).at(-1)!;
    assert.equal(typeof last.content[OUTBOX_ID_FIELD], "string");
    assert.equal(last.txnId, `vm.${String(last.content[OUTBOX_ID_FIELD])}`);
  });

  it("a lost answer, then a homeserver restart: the bridge finds its message in the room and does not send it again", async () => {
    const b = (bridge = new FakeBridge());
    const room = await aliceReady(b);
    const before = bodies(b, room).length;
    b.hs.failNext(isMessage, "lost", async () => b.hs.restart());
    // The restart happens after the message was stored: Synapse has forgotten the transaction ID.
    b.hs.failNext(isMwiState, "refused", async () => b.hs.restart());
    await b.mwi("1001", 1);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "delivered");
    assert.deepEqual(bodies(b, room).slice(before).filter((x) => /1001: 1 new/.test(x)).length, 1, "told once");
    assert.equal(b.hs.count("messages", { roomId: room }), 1, "looked before sending again");
    assert.equal(b.hs.requests.filter(isMessage).length - before, 1, "the message was not sent again");
    assert.equal(b.hs.stateEvents(room, MWI_EVENT_TYPE).at(-1)!.content.new, 1);
  });

  it("a lost answer of a send that did not arrive: the bridge looks, finds nothing, sends again with the same transaction ID", async () => {
    const b = (bridge = new FakeBridge());
    const room = await aliceReady(b);
    const before = messageTxns(b).length;
    b.hs.failNext(isMessage, "502");
    b.hs.restart();
    await b.mwi("1001", 1);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "delivered");
    const txns = messageTxns(b).slice(before);
    assert.equal(txns.length, 2);
    assert.equal(txns[0], txns[1]);
    assert.equal(b.hs.count("messages", { roomId: room }), 1, "looked first");
    assert.equal(bodies(b, room).filter((x) => /1001: 1 new/.test(x)).length, 1);
  });

  it("a crash after the message but before the state events: the next bridge sends only the state events", async () => {
    const b = (bridge = new FakeBridge());
    const room = await aliceReady(b);
    let crashed = false;
    // The homeserver goes away after taking the message; the bridge is killed while it retries.
    b.hs.failNext(isMwiState, "refused", async () => {
      crashed = true;
    });
    await b.mwi("1001", 3);
    await b.until(() => crashed, "the state event attempted");
    const messagesBefore = bodies(b, room).length;
    const sendsBefore = b.hs.requests.filter(isMessage).length;
    b.hs.restart();
    await b.restart();
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "delivered after the restart");
    assert.equal(bodies(b, room).length, messagesBefore, "no second message");
    assert.equal(b.hs.requests.filter(isMessage).length, sendsBefore, "the message was not even sent again");
    assert.equal(b.hs.count("messages"), 0, "nor looked for: the store knew it was accepted");
    assert.equal(b.hs.stateEvents(room, MWI_EVENT_TYPE).at(-1)!.content.new, 3);
    assert.equal(bodies(b, room).filter((x) => /1001: 3 new/.test(x)).length, 1);
  });

  it("a crash with a request in flight: the next bridge looks before sending", async () => {
    const b = (bridge = new FakeBridge());
    const room = await aliceReady(b);
    let restarted: Promise<void> | undefined;
    // The message is stored, and the bridge dies before it hears so.
    b.hs.failNext(isMessage, "lost", async () => {
      b.hs.restart();
    });
    await b.mwi("1001", 4);
    restarted = b.restart();
    await restarted;
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "delivered after the restart");
    assert.equal(bodies(b, room).filter((x) => /1001: 4 new/.test(x)).length, 1);
  });
});

describe("DeliveryService: no error ends a worker", () => {
  it("a DM that cannot be opened (the homeserver went away during createRoom) is tried again", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    await b.link(ALICE);
    b.hs.failNext((r) => r.op === "createRoom", "refused");
    b.hs.failNext((r) => r.op === "createRoom", "refused");
    await b.mwi("1001", 1);
    const room = await b.accept(ALICE);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "delivered");
    assert.ok(bodies(b, room).some((x) => /1001: 1 new/.test(x)));
    assert.ok(b.log.has("warn", /delivery interrupted/), "said what happened");
    assert.ok(!b.log.has("error", /stopped/));
  });

  it("a store that fails for a moment does not stop delivery", async () => {
    const b = (bridge = new FakeBridge());
    const room = await aliceReady(b);
    const original = b.store.getBatch.bind(b.store);
    let failures = 2;
    b.store.getBatch = async (key: string) => {
      if (failures-- > 0) throw new Error("EMFILE: too many open files");
      return original(key);
    };
    await b.mwi("1001", 5);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "delivered");
    assert.ok(bodies(b, room).some((x) => /1001: 5 new/.test(x)));
  });
});

describe("DeliveryService: what the bridge looks at itself", () => {
  it("an invite accepted without the bridge hearing of it is noticed by the recheck", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    await b.link(ALICE);
    await b.mwi("1001", 1);
    await b.until(() => b.hs.roomOf(CARRIER_BOT, ALICE) !== undefined, "the invite");
    const room = b.hs.roomOf(CARRIER_BOT, ALICE)!;
    // The join event is late (Synapse backs off from an appservice that was down): no kick.
    b.hs.setMembership(ALICE, room, "join");
    await b.until(() => bodies(b, room).some((x) => /1001: 1 new/.test(x)), "the message after the join");
  });

  it("an extra account that accepted without the bridge hearing of it becomes active", async () => {
    const b = (bridge = new FakeBridge());
    await aliceReady(b);
    await b.targets.add(ALICE, "@erin:localhost");
    const erinRoom = b.hs.roomOf(MAIN_BOT, "@erin:localhost")!;
    await b.mwi("1001", 2);
    await b.delivery.idle();
    assert.equal((await b.store.listTargets(ALICE))[0]!.status, "invited", "held while invited");
    b.hs.setMembership("@erin:localhost", erinRoom, "join");
    await b.until(() => b.hs.messages(erinRoom, MAIN_BOT).some((e) => /^New voicemail\nCarrier mailbox 1001: 2 new/.test(String(e.content.body))), "erin is told");
    assert.equal((await b.store.listTargets(ALICE))[0]!.status, "active");
  });

  it("presence is asked as the DM's bot, which shares a room with the user", async () => {
    const b = (bridge = new FakeBridge());
    const room = await aliceReady(b);
    await b.store.updateProfile(ALICE, { delivery: "when-online" });
    b.hs.presence.set(ALICE, "online");
    // No presence was pushed; the main bot shares no room with Alice and would be refused.
    await b.mwi("1001", 1);
    await b.until(() => bodies(b, room).some((x) => /1001: 1 new/.test(x)), "the message");
    const asked = b.hs.requests.filter((r) => r.op === "presence");
    assert.ok(asked.length >= 1);
    assert.ok(asked.every((r) => r.as === CARRIER_BOT), asked.map((r) => r.as).join(", "));
  });

  it("a failed presence look-up is unknown: looked at again, and the catch-up comes", async () => {
    const b = (bridge = new FakeBridge());
    const room = await aliceReady(b);
    await b.store.updateProfile(ALICE, { delivery: "when-online" });
    b.presence.update(ALICE, "offline"); // pushed long ago; the "online" push was dropped
    b.hs.presence.set(ALICE, "offline");
    b.hs.failNext((r) => r.op === "presence", "refused");
    await b.mwi("1001", 1);
    await b.delivery.idle();
    assert.ok(!bodies(b, room).some((x) => /1001: 1 new/.test(x)), "held while offline");
    b.hs.presence.set(ALICE, "online");
    // The pushed "offline" is trusted only for a while: a fresh tracker models that it expired.
    (b.presence as unknown as { known: Map<string, unknown> }).known.clear();
    await b.until(() => bodies(b, room).some((x) => /1001: 1 new/.test(x)), "the catch-up");
  });
});

describe("DeliveryService: the summary in the user's other system DMs", () => {
  const OFFICE_BOT = "@vm_office:localhost";
  it("a change on one system reaches the other system's DM summary through the outbox, even when the first try fails", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    await b.link(ALICE, "1001", "carrier");
    await b.link(ALICE, "2001", "office");
    await b.mwi("1001", 0);
    await b.mwi("2001", 0, 0, "office");
    await b.accept(ALICE);
    const office = await b.accept(ALICE, OFFICE_BOT);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "the first states delivered");
    const isOfficeSummary = (r: FakeRequest) => r.op === "state" && r.as === OFFICE_BOT && r.type === "org.voicemail.mwi.summary";
    const officeMessages = b.hs.messages(office, OFFICE_BOT).length;
    b.hs.failNext(isOfficeSummary, "refused");
    await b.mwi("1001", 3);
    const officeTotal = () => {
      const last = b.hs.stateEvents(office, "org.voicemail.mwi.summary").at(-1);
      return (last?.content as { total_new?: number } | undefined)?.total_new;
    };
    await b.until(() => officeTotal() === 3, "the office DM's summary shows the carrier's 3 new");
    assert.equal(b.hs.messages(office, OFFICE_BOT).length, officeMessages, "no message in the office DM about the carrier's mailbox");
  });
});

describe("DeliveryService: the room's summary after a retried batch", () => {
  it("a summary sent on an earlier try, before another mailbox changed, is sent again with the newer counts", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    await b.link(ALICE, "1001", "carrier");
    await b.link(ALICE, "2001", "office");
    await b.mwi("1001", 0);
    await b.mwi("2001", 0, 0, "office");
    const room = await b.accept(ALICE);
    await b.accept(ALICE, "@vm_office:localhost");
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "the first states delivered");
    // State only in the system DMs (summary mode): the carrier DM's batch sends its mailbox's
    // state, the summary, then the rename, whose answer is lost (it stays the same batch) while
    // the office mailbox changes: the retry computes the summary afresh.
    await b.store.updateProfile(ALICE, { notify: "summary" });
    const isCarrierName = (r: FakeRequest) => r.op === "state" && r.as === CARRIER_BOT && r.type === "m.room.name";
    b.hs.failNext(isCarrierName, "lost", () => b.mwi("2001", 5, 0, "office"));
    await b.mwi("1001", 2);
    const systemKeys = [JSON.stringify(["sys", ALICE, "carrier"]), JSON.stringify(["sys", ALICE, "office"])];
    await b.until(async () => (await Promise.all(systemKeys.map((k) => b.store.outboxEntries(k)))).every((e) => e.length === 0), "the system DMs' state delivered");
    const summary = b.hs.stateEvents(room, "org.voicemail.mwi.summary").at(-1)!.content as { total_new?: number };
    assert.equal(summary.total_new, 7, "the carrier DM's summary shows both mailboxes' newest counts");
  });
});

describe("DeliveryService: bounded work and queues", () => {
  it("a presence change or join looks only at that user's keys, never reads the whole outbox", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    await b.link(ALICE);
    await b.link("@bob:localhost");
    await b.mwi("1001", 1);
    const reads: (string | undefined)[] = [];
    const original = b.store.outboxEntries.bind(b.store);
    b.store.outboxEntries = (key?: string) => {
      reads.push(key);
      return original(key);
    };
    await b.delivery.kickPerson(ALICE);
    await b.delivery.idle();
    assert.ok(reads.length > 0, "the user's targets were looked at");
    assert.ok(reads.every((k) => k !== undefined), `whole-outbox reads: ${reads.filter((k) => k === undefined).length}`);
  });

  it("a DM not accepted within inviteExpirySeconds keeps one entry per mailbox (one log line), and shows the current counts on join", async () => {
    const b = (bridge = new FakeBridge(undefined, { inviteExpirySeconds: 0.05 }));
    await b.start();
    await b.link(ALICE);
    await b.link(ALICE, "1002");
    await b.mwi("1001", 1);
    await b.mwi("1002", 1);
    await new Promise((r) => setTimeout(r, 60));
    for (let n = 2; n <= 6; n++) await b.mwi("1001", n);
    await b.until(async () => {
      const waiting = await b.store.outboxEntries('["sys","@alice:localhost","carrier"]');
      return waiting.length === 2 && waiting.every((e) => e.change?.kind === "counts" && !e.change.previous);
    }, "the queue cut to a resync of the two mailboxes");
    assert.ok(b.log.has("info", /dropped \d+ notification\(s\) for .*not accepted within 0 s; the current counts are shown on join/));
    const room = await b.accept(ALICE);
    await b.until(async () => (await b.store.outboxEntries()).filter((e) => e.targetKey.includes('"sys"')).length === 0, "delivered on join");
    const told = bodies(b, room);
    assert.equal(told.length, 1, told.join(" | "));
    assert.match(told[0]!, /1001: 6 new/);
    assert.match(told[0]!, /1002: 1 new/);
  });
});


describe("DeliveryService: a homeserver that is back", () => {
  it("a target backing off from a failure goes again as soon as another target was delivered", async () => {
    const BOB = "@bob:localhost";
    const b = (bridge = new FakeBridge({ ...QUICK, retry: { baseMs: 20_000, maxMs: 20_000 } }));
    const alice = await aliceReady(b);
    await b.link(BOB, "2002");
    await b.mwi("2002", 0);
    await b.until(() => b.hs.roomOf(CARRIER_BOT, BOB) !== undefined, "bob's invite");
    const bob = await b.accept(BOB);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "both rooms up to date");
    // Alice's next message meets a homeserver that is away (refused): she backs off 10-20 s.
    b.hs.failNext((r) => isMessage(r) && r.roomId === alice, "refused");
    await b.mailboxes.acceptUpdate({ systemId: "carrier", mailbox: "1001", counts: { waiting: true, new: 1, old: 0, urgentNew: 0, urgentOld: 0 }, receivedAt: Date.now() });
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(b.log.has("warn", /delivery failed/), "alice's delivery failed once");
    // Bob's mailbox changes and is delivered: the homeserver is well again, so alice goes now.
    const started = Date.now();
    await b.mwi("2002", 1);
    await b.until(() => bodies(b, alice).some((x) => /1001: 1 new/.test(x)), "alice's notification");
    // Without the wake-up she would sleep out her 10-20 s backoff (`until` waits for idle workers).
    assert.ok(Date.now() - started < 5000, `alice waited ${Date.now() - started} ms`);
    assert.ok(bodies(b, bob).some((x) => /2002: 1 new/.test(x)));
  });
});

describe("DeliveryService: the room's look before its message", () => {
  const order = (b: FakeBridge, room: string, from: number) =>
    b.hs.requests
      .slice(from)
      .filter((r) => r.roomId === room && (r.op === "send" || r.op === "state"))
      .map((r) => (r.op === "send" ? "message" : r.type!));

  it("a system DM is renamed with the count before the message goes out", async () => {
    const b = (bridge = new FakeBridge());
    const room = await aliceReady(b);
    const from = b.hs.requests.length;
    await b.mwi("1001", 2);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "delivered");
    const steps = order(b, room, from);
    assert.ok(steps.includes("m.room.name") && steps.includes("message"), steps.join(", "));
    assert.ok(steps.indexOf("m.room.name") < steps.indexOf("message"), `the rename first: ${steps.join(", ")}`);
    assert.equal(steps.filter((s) => s === "m.room.name").length, 1, "renamed once, not again after the message");
    assert.equal(b.hs.stateEvents(room, "m.room.name").at(-1)!.content.name, "Carrier (2)");
    assert.equal((await b.store.getDmRoom(ALICE, CARRIER_BOT))?.lastName, "Carrier (2)", "what the room shows is recorded");
  });

  it("the main bot's DM gets its name and topic before the aggregate", async () => {
    const b = (bridge = new FakeBridge());
    await aliceReady(b);
    await b.store.updateProfile(ALICE, { notify: "both" });
    await b.mwi("1001", 1);
    await b.until(() => b.hs.roomOf(MAIN_BOT, ALICE) !== undefined, "the main DM's invite");
    const main = b.hs.roomOf(MAIN_BOT, ALICE)!;
    b.hs.setMembership(ALICE, main, "join");
    await b.delivery.kickPerson(ALICE);
    const from = b.hs.requests.length;
    await b.mwi("1001", 3);
    await b.until(() => b.hs.messages(main, MAIN_BOT).some((e) => /1001: 3 new/.test(String(e.content.body))), "the aggregate");
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "delivered");
    const steps = order(b, main, from);
    assert.ok(steps.indexOf("m.room.name") < steps.indexOf("message"), steps.join(", "));
    assert.ok(steps.indexOf("m.room.topic") < steps.indexOf("message"), steps.join(", "));
  });

  it("a message that could not reach the homeserver: the batch stays open and the name follows what it finally says", async () => {
    const b = (bridge = new FakeBridge());
    const room = await aliceReady(b);
    const shown = bodies(b, room).length;
    // The rename went through; the message was refused; meanwhile another voicemail arrived.
    b.hs.failNext(isMessage, "refused", () => b.mwi("1001", 2));
    await b.mwi("1001", 1);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "delivered");
    const told = bodies(b, room).slice(shown);
    assert.equal(told.length, 1, `one message for both: ${told.join(" | ")}`);
    assert.match(told[0]!, /1001: 2 new/);
    assert.equal(b.hs.stateEvents(room, "m.room.name").at(-1)!.content.name, "Carrier (2)");
    assert.equal((await b.store.getDmRoom(ALICE, CARRIER_BOT))?.lastName, "Carrier (2)");
  });
});
