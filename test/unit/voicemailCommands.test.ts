/**
 * `!voicemails`, `!heard` and `!delete` through the real router and services, with a fake
 * system that keeps its messages in memory: only the sender's linked mailboxes, exactly the
 * messages named, a delete only after its confirmation within a minute.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import type { MessagesCapability, VoicemailMessage } from "../../src/gateway/gateway.js";
import { VoicemailService } from "../../src/app/voicemailService.js";
import { ALICE, BOB, world, type World } from "./commandHarness.js";

let w: World;
afterEach(async () => w?.close());
const lastReply = () => w.bots.sent.at(-1)?.body ?? "";

/** Messages per mailbox, newest first, as a kind with the capability keeps them. */
class FakeMessages implements MessagesCapability {
  readonly boxes = new Map<string, VoicemailMessage[]>();
  readonly calls: string[] = [];
  failWith?: string;

  async list(mailbox: string): Promise<VoicemailMessage[]> {
    this.calls.push(`list ${mailbox}`);
    if (this.failWith) throw new Error(this.failWith);
    return [...(this.boxes.get(mailbox) ?? [])];
  }

  async markHeard(mailbox: string, ids: readonly string[]): Promise<void> {
    this.calls.push(`heard ${mailbox} ${ids.join(",")}`);
    this.boxes.set(mailbox, (this.boxes.get(mailbox) ?? []).map((m) => (ids.includes(m.id) ? { ...m, fresh: false, urgent: false } : m)));
  }

  async remove(mailbox: string, id: string): Promise<void> {
    this.calls.push(`remove ${mailbox} ${id}`);
    this.boxes.set(mailbox, (this.boxes.get(mailbox) ?? []).filter((m) => m.id !== id));
  }
}

const T = Date.UTC(2026, 11, 1, 9, 10);
const grace: VoicemailMessage = { id: "m3", fresh: true, urgent: true, callerNumber: "+15551234567", callerName: "Grace Caller", time: T, duration: 11 };
const bob: VoicemailMessage = { id: "m2", fresh: true, urgent: false, callerNumber: "5550002", time: T - 3600_000, duration: 65 };
const old: VoicemailMessage = { id: "m1", fresh: false, urgent: false, time: T - 86_400_000 };

async function setup(options: { now?: () => number } = {}) {
  let clock = T + 60_000;
  const now = options.now ?? (() => clock);
  w = await world();
  const messages = new FakeMessages();
  Object.assign(w.gateway, { messages });
  // A service with a clock of the test's: the router takes it instead of making one.
  const voicemails = new VoicemailService(w.mailboxes, now);
  (w.router as unknown as { voicemails: VoicemailService }).voicemails = voicemails;
  messages.boxes.set("1001", [grace, bob, old]);
  messages.boxes.set("2002", [{ id: "b1", fresh: true, urgent: false, callerName: "Secret" }]);
  await w.mailboxes.link(ALICE, "carrier", "1001", ALICE);
  await w.mailboxes.link(BOB, "carrier", "2002", BOB);
  return { messages, tick: (ms: number) => (clock += ms) };
}

describe("!voicemails", () => {
  it("lists the sender's messages newest first with caller, time and length; urgent ones marked", async () => {
    await setup();
    await w.send(ALICE, w.rooms.aliceCarrier, "!voicemails");
    const body = lastReply();
    assert.match(body, /Carrier mailbox 1001:\n- new: URGENT, from Grace Caller \(\+1 555 123 4567\), 1 Dec 2026, 09:10 UTC, 0:11\n- new: from 5550002, 1 Dec 2026, 08:10 UTC, 1:05\n- heard: from an unknown caller, 30 Nov 2026, 09:10 UTC/);
    assert.match(w.bots.sent.at(-1)!.html, /<strong>new: URGENT, from Grace Caller/);
    assert.doesNotMatch(body, /Secret|2002/);
  });

  it("caller fields from outside are cleaned: no line breaks, no bidirectional overrides", async () => {
    const { messages } = await setup();
    messages.boxes.set("1001", [{ id: "x", fresh: true, urgent: false, callerName: "Eve\n- heard: fake\u202Eevil", callerNumber: "555\r\n0000" }]);
    await w.send(ALICE, w.rooms.aliceCarrier, "!voicemails");
    assert.equal(lastReply().split("\n").length, 2, lastReply());
    assert.doesNotMatch(lastReply(), /\u202E/);
  });

  it("another user's mailbox is not found, however it is named", async () => {
    const { messages } = await setup();
    await w.send(ALICE, w.rooms.aliceCarrier, "!voicemails carrier 2002");
    assert.match(lastReply(), /None of your linked mailboxes matches/);
    assert.ok(!messages.calls.some((c) => c.includes("2002")));
  });

  it("a system without the capability says so once", async () => {
    await setup();
    Object.assign(w.gateway, { messages: undefined });
    await w.send(ALICE, w.rooms.aliceCarrier, "!voicemails");
    assert.equal(lastReply(), "Carrier mailbox 1001: the voice mail system only reports counts to the bridge; it cannot list its messages.");
    await w.send(ALICE, w.rooms.aliceCarrier, "!heard");
    assert.match(lastReply(), /^Carrier mailbox 1001: .*cannot mark messages heard\.$/);
    await w.send(ALICE, w.rooms.aliceCarrier, "!delete");
    assert.match(lastReply(), /^Carrier mailbox 1001: .*cannot delete messages\.$/);
  });

  it("a failing system is one clear line", async () => {
    const { messages } = await setup();
    messages.failWith = "the voice mail system could not be reached; try again later";
    await w.send(ALICE, w.rooms.aliceCarrier, "!voicemails");
    assert.equal(lastReply(), "Carrier mailbox 1001: the voice mail system could not be reached; try again later.");
  });
});

describe("!help", () => {
  it("lists the three commands only where some system offers its messages", async () => {
    await setup();
    await w.send(ALICE, w.rooms.aliceCarrier, "!help");
    assert.match(lastReply(), /!voicemails \[<system> \[<mailbox>\]\]: .*\n!heard .*\n!delete /);
    Object.assign(w.gateway, { messages: undefined });
    await w.send(ALICE, w.rooms.aliceCarrier, "!help");
    assert.doesNotMatch(lastReply(), /!voicemails|!heard|!delete/);
  });
});

describe("!heard", () => {
  it("marks only the newest unheard message; again the next; all marks the rest", async () => {
    const { messages } = await setup();
    await w.send(ALICE, w.rooms.aliceCarrier, "!heard");
    assert.match(lastReply(), /^Marked heard in Carrier mailbox 1001: the voicemail URGENT, from Grace Caller/);
    assert.deepEqual(messages.calls.filter((c) => c.startsWith("heard")), ["heard 1001 m3"]);
    await w.send(ALICE, w.rooms.aliceCarrier, "!heard carrier 1001");
    assert.deepEqual(messages.calls.filter((c) => c.startsWith("heard")), ["heard 1001 m3", "heard 1001 m2"]);
    await w.send(ALICE, w.rooms.aliceCarrier, "!heard all");
    assert.equal(lastReply(), "Carrier mailbox 1001 has no unheard voicemail.");
    await w.send(ALICE, w.rooms.aliceCarrier, "!heard");
    assert.equal(lastReply(), "You have no unheard voicemail.");
  });

  it("!heard all marks every unheard one of the mailbox in one call", async () => {
    const { messages } = await setup();
    await w.send(ALICE, w.rooms.aliceCarrier, "!heard all 1001");
    assert.match(lastReply(), /^Marked heard in Carrier mailbox 1001: 2 voicemails\./);
    assert.deepEqual(messages.calls.filter((c) => c.startsWith("heard")), ["heard 1001 m3,m2"]);
  });

  it("never touches another user's mailbox", async () => {
    const { messages } = await setup();
    await w.send(ALICE, w.rooms.aliceCarrier, "!heard all carrier 2002");
    assert.match(lastReply(), /None of your linked mailboxes matches/);
    assert.ok(!messages.calls.some((c) => c.includes("2002")));
  });
});

describe("!delete", () => {
  it("names the newest message, and removes it only on !delete confirm", async () => {
    const { messages } = await setup();
    await w.send(ALICE, w.rooms.aliceCarrier, "!delete");
    assert.match(lastReply(), /^This deletes the newest voicemail of Carrier mailbox 1001, for good: URGENT, from Grace Caller .*Say !delete confirm within a minute/);
    assert.ok(!messages.calls.some((c) => c.startsWith("remove")));
    await w.send(ALICE, w.rooms.aliceCarrier, "!delete confirm");
    assert.match(lastReply(), /^Deleted from Carrier mailbox 1001: the voicemail URGENT, from Grace Caller \(\+1 555 123 4567\), 1 Dec 2026, 09:10 UTC, 0:11\.$/);
    assert.deepEqual(messages.calls.filter((c) => c.startsWith("remove")), ["remove 1001 m3"]);
    await w.send(ALICE, w.rooms.aliceCarrier, "!delete confirm");
    assert.match(lastReply(), /no delete waiting/);
    assert.equal(messages.calls.filter((c) => c.startsWith("remove")).length, 1);
  });

  it("a confirmation after a minute deletes nothing", async () => {
    const { messages, tick } = await setup();
    await w.send(ALICE, w.rooms.aliceCarrier, "!delete");
    tick(60_001);
    await w.send(ALICE, w.rooms.aliceCarrier, "!delete confirm");
    assert.match(lastReply(), /more than a minute ago; nothing was deleted/);
    assert.ok(!messages.calls.some((c) => c.startsWith("remove")));
  });

  it("deletes nothing when a newer message arrived meanwhile", async () => {
    const { messages } = await setup();
    await w.send(ALICE, w.rooms.aliceCarrier, "!delete");
    messages.boxes.get("1001")!.unshift({ id: "m4", fresh: true, urgent: false, time: T + 1000 });
    await w.send(ALICE, w.rooms.aliceCarrier, "!delete confirm");
    assert.match(lastReply(), /no longer the one I named; nothing was deleted/);
    assert.ok(!messages.calls.some((c) => c.startsWith("remove")));
  });

  it("deletes nothing once the mailbox is unlinked, and another user's confirmation does nothing", async () => {
    const { messages } = await setup();
    await w.send(ALICE, w.rooms.aliceCarrier, "!delete");
    await w.send(BOB, w.rooms.bobCarrier, "!delete confirm");
    assert.match(lastReply(), /no delete waiting/);
    await w.mailboxes.unlink(ALICE, "carrier", "1001", ALICE);
    await w.send(ALICE, w.rooms.aliceCarrier, "!delete confirm");
    assert.match(lastReply(), /no longer linked; nothing was deleted/);
    assert.ok(!messages.calls.some((c) => c.startsWith("remove")));
  });

  it("an empty mailbox has nothing to delete", async () => {
    const { messages } = await setup();
    messages.boxes.set("1001", []);
    await w.send(ALICE, w.rooms.aliceCarrier, "!delete");
    assert.equal(lastReply(), "Carrier mailbox 1001 has no voicemail to delete.");
  });
});
