/** MailboxService over the memory store and a homeserver in memory. */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import type { MailboxState } from "../../src/core/mwi.js";
import type { OutboxEntry } from "../../src/store/store.js";
import { CARRIER_BOT, FakeBridge } from "./fakeMatrix.js";

const ALICE = "@alice:localhost";
const BOB = "@bob:localhost";

let bridge: FakeBridge | undefined;
afterEach(async () => {
  await bridge?.stop();
  bridge = undefined;
});

describe("MailboxService", () => {
  it("stores an MWI change and its outbox entries in one step, never the state alone", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    await b.link(ALICE);
    await b.link(BOB);
    const calls: string[] = [];
    const store = b.store;
    const accept = store.acceptChange.bind(store);
    store.acceptChange = async (state: MailboxState, entries: OutboxEntry[]) => {
      calls.push(`acceptChange ${state.new} ${entries.map((e) => e.ownerId).sort().join(",")}`);
      return accept(state, entries);
    };
    store.saveMailboxState = async () => {
      calls.push("saveMailboxState");
    };
    store.addOutboxEntries = async () => {
      calls.push("addOutboxEntries");
    };
    await b.mwi("1001", 2);
    assert.deepEqual(calls, [`acceptChange 2 ${ALICE},${BOB}`]);
    assert.equal((await store.getMailboxState("carrier", "1001"))?.new, 2);
  });

  it("a repeated update is no change: nothing more is queued", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    await b.link(ALICE);
    await b.mwi("1001", 2);
    const queued = (await b.store.outboxEntries()).length;
    await b.mwi("1001", 2);
    assert.equal((await b.store.outboxEntries()).length, queued);
  });

  it("!mwi off drops what is still queued for that mailbox, and nothing arrives after it", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    await b.link(ALICE);
    await b.link(ALICE, "2002");
    // Alice has not accepted the invite yet: the notifications wait.
    await b.mwi("1001", 1);
    await b.mwi("1001", 2);
    await b.mwi("2002", 1);
    await b.delivery.idle();
    const links = await b.mailboxes.selectLinks(ALICE, "carrier", "1001");
    assert.equal((await b.mailboxes.setMwi(ALICE, links, false)).length, 1);
    const left = await b.store.outboxEntries();
    assert.deepEqual([...new Set(left.map((e) => e.change?.current.mailbox))], ["2002"], "the other mailbox keeps its own");
    const room = await b.accept(ALICE);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "the rest delivered");
    const bodies = b.hs.messages(room, CARRIER_BOT).map((e) => String(e.content.body));
    assert.ok(bodies.every((x) => !/mailbox 1001/.test(x)), bodies.join(" | "));
    assert.ok(bodies.some((x) => /2002: 1 new/.test(x)));
    // And nothing new is queued for it while it is off.
    await b.mwi("1001", 3);
    assert.deepEqual(await b.store.outboxEntries(), []);
  });
});
