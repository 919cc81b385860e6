/** TargetService over the memory store and a homeserver in memory. */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { TargetError } from "../../src/app/targetService.js";
import { extraTarget, mainTarget } from "../../src/delivery/targets.js";
import { FakeBridge, MAIN_BOT } from "./fakeMatrix.js";

const ALICE = "@alice:localhost";
const ERIN = "@erin:localhost";
const invites = (b: FakeBridge) => b.hs.count("createRoom", { as: MAIN_BOT });

/** A room Alice made and the main bot joined, with these power levels. */
function groupRoom(b: FakeBridge, levels: Record<string, unknown>): string {
  const room = b.hs.createRoom(ALICE, [MAIN_BOT]);
  b.hs.setMembership(MAIN_BOT, room, "join");
  b.hs.setState(room, ALICE, "m.room.power_levels", "", levels);
  return room;
}

let bridge: FakeBridge | undefined;
afterEach(async () => {
  await bridge?.stop();
  bridge = undefined;
});

describe("TargetService", () => {
  it("invites an account once; a second add of the same address is refused", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    assert.match(await b.targets.add(ALICE, ERIN), /^Invited @erin:localhost/);
    const room = b.hs.roomOf(MAIN_BOT, ERIN);
    assert.ok(room, "a DM with the main bot, Erin invited");
    await assert.rejects(b.targets.add(ALICE, ERIN), (err: Error) => err instanceof TargetError && /already one of your targets/.test(err.message));
    await assert.rejects(b.targets.add(ALICE, ALICE), TargetError);
    const [target] = await b.targets.list(ALICE);
    assert.equal(target!.status, "invited");
    assert.equal(target!.roomId, room);
  });

  it("an invite that cannot be sent leaves no target behind", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    b.hs.failNext((r) => r.op === "createRoom", "refused");
    await assert.rejects(b.targets.add(ALICE, ERIN), /Could not invite/);
    assert.deepEqual(await b.targets.list(ALICE), []);
    assert.match(await b.targets.add(ALICE, ERIN), /^Invited/);
  });

  it("acceptance and refusal change the status; removal forgets it", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    await b.targets.add(ALICE, ERIN);
    const [target] = await b.targets.list(ALICE);
    assert.equal(await b.targets.onMembership(target!.roomId!, ERIN, "join"), true);
    assert.equal((await b.targets.list(ALICE))[0]!.status, "active");
    await b.targets.onMembership(target!.roomId!, ERIN, "leave");
    assert.equal((await b.targets.list(ALICE))[0]!.status, "refused");
    assert.equal(await b.targets.onMembership("!elsewhere:localhost", ERIN, "join"), false);
    assert.equal(await b.targets.remove(ALICE, ERIN), true);
    assert.equal(await b.targets.remove(ALICE, ERIN), false);
  });

  it("pending invites and targets are bounded per user", async () => {
    const b = (bridge = new FakeBridge(undefined, { maxPendingInvites: 2, maxTargets: 3 }));
    await b.start();
    await b.targets.add(ALICE, "@u1:localhost");
    await b.targets.add(ALICE, "@u2:localhost");
    await assert.rejects(b.targets.add(ALICE, "@u3:localhost"), (err: Error) => err instanceof TargetError && /not accepted yet, the most allowed/.test(err.message));
    assert.equal(invites(b), 2, "the third invite is not sent");
    const [first] = await b.targets.list(ALICE);
    await b.targets.onMembership(first!.roomId!, "@u1:localhost", "join");
    await b.targets.add(ALICE, "@u3:localhost");
    await b.targets.onMembership((await b.targets.list(ALICE))[2]!.roomId!, "@u3:localhost", "join");
    await assert.rejects(b.targets.add(ALICE, "@u4:localhost"), /You have 3 targets, the most allowed/);
    assert.equal(invites(b), 3);
  });

  it("a refused account stays refused after remove and add, until it opens a DM with the main bot itself", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    await b.targets.add(ALICE, ERIN);
    const [target] = await b.targets.list(ALICE);
    await b.targets.onMembership(target!.roomId!, ERIN, "leave");
    assert.equal(await b.targets.remove(ALICE, ERIN), true);
    assert.deepEqual(await b.targets.list(ALICE), [], "removed from the list");
    await assert.rejects(b.targets.add(ALICE, ERIN), (err: Error) => err instanceof TargetError && /declined/.test(err.message));
    await assert.rejects(b.targets.add(ALICE, ERIN), /declined/);
    assert.equal(invites(b), 1, "never invited again");
    assert.ok(b.log.has("info", /asked again for @erin:localhost, who declined: not invited/));
    // Erin invites the main bot into a direct chat of her own: she asked.
    await new Promise((r) => setTimeout(r, 2));
    await b.store.saveDmRoom({ userId: ERIN, botUserId: MAIN_BOT, roomId: "!erins-dm:localhost", userJoined: true, createdAt: Date.now() });
    assert.match(await b.targets.add(ALICE, ERIN), /^Invited/);
    assert.equal(invites(b), 2);
    assert.equal((await b.targets.list(ALICE))[0]!.status, "invited");
  });

  it("an invite withdrawn unanswered is not sent again before it would have expired", async () => {
    const b = (bridge = new FakeBridge(undefined, { inviteExpirySeconds: 3600 }));
    await b.start();
    await b.targets.add(ALICE, ERIN);
    await b.targets.remove(ALICE, ERIN);
    await assert.rejects(b.targets.add(ALICE, ERIN), /did not answer; you can invite them again after/);
    assert.equal(invites(b), 1);
  });

  it("a removed target's room is dropped from delivery", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    await b.link(ALICE);
    await b.targets.add(ALICE, ERIN);
    const [target] = await b.targets.list(ALICE);
    await b.targets.onMembership(target!.roomId!, ERIN, "join");
    await b.targets.remove(ALICE, ERIN);
    await b.mwi("1001", 1);
    await b.until(async () => (await b.store.outboxEntries(extraTarget(target!.id))).length === 0, "nothing for the removed target");
    assert.equal(b.hs.messages(target!.roomId!, MAIN_BOT).length, 0);
  });
});

describe("TargetService: room targets", () => {
  it("the owner needs the power to send messages there, not only state_default", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    const room = groupRoom(b, { users: { [ALICE]: 50 }, state_default: 50, events: { "m.room.message": 100 } });
    await assert.rejects(b.targets.add(ALICE, room), (err: Error) => err instanceof TargetError && /power level 100/.test(err.message));
    const other = groupRoom(b, { users: { [ALICE]: 50 }, state_default: 50, events_default: 75 });
    await assert.rejects(b.targets.add(ALICE, other), /power level 75/);
    const fine = groupRoom(b, { users: { [ALICE]: 100 }, state_default: 50, events_default: 0 });
    assert.match(await b.targets.add(ALICE, fine), /now go to/);
    assert.deepEqual((await b.targets.list(ALICE)).map((t) => [t.roomId, t.status]), [[fine, "active"]]);
  });

  it("stops posting when the owner loses the power, even unheard; the owner is told once", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    await b.link(ALICE);
    const room = groupRoom(b, { users: { [ALICE]: 100 }, state_default: 50 });
    await b.targets.add(ALICE, room);
    await b.mwi("1001", 1);
    await b.until(() => b.hs.messages(room, MAIN_BOT).length === 1, "the first notification in the room");
    // Alice is demoted; the bridge hears nothing of it.
    b.hs.setState(room, ALICE, "m.room.power_levels", "", { users: { [ALICE]: 0 }, state_default: 50 });
    await b.mwi("1001", 2);
    const [target] = await b.targets.list(ALICE);
    await b.until(async () => (await b.store.outboxEntries(extraTarget(target!.id))).length === 0, "the room's queue dropped");
    assert.equal(b.hs.messages(room, MAIN_BOT).length, 1, "nothing more posted");
    assert.equal((await b.store.getTarget(target!.id))!.status, "refused");
    assert.equal(b.log.lines.filter((l) => /stopped posting the voicemail of @alice:localhost/.test(l.message)).length, 1);
    // Alice has not accepted her DM with the main bot here: the notice waits there for her.
    const notices = (await b.store.outboxEntries(mainTarget(ALICE))).filter((e) => e.notice);
    assert.equal(notices.length, 1, "one notice for Alice's DM with the main bot");
    assert.match(notices[0]?.notice?.body ?? "", /no longer posted in .*power level there \(0\)/);
    await b.mwi("1001", 3);
    await b.until(async () => (await b.store.outboxEntries(extraTarget(target!.id))).length === 0, "nothing queued for a refused room");
    assert.equal(b.hs.messages(room, MAIN_BOT).length, 1);
  });

  it("a refusal while a batch is being delivered stays (the room's shown state does not bring it back)", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    await b.link(ALICE);
    const room = groupRoom(b, { users: { [ALICE]: 100 }, state_default: 50 });
    await b.targets.add(ALICE, room);
    const [target] = await b.targets.list(ALICE);
    // Alice leaves while the bot writes the room's summary.
    b.hs.failNext((r) => r.op === "state" && r.roomId === room && r.type === "org.voicemail.mwi.summary", "none", async () => {
      b.hs.setMembership(ALICE, room, "leave");
      await b.targets.onMembership(room, ALICE, "leave");
    });
    await b.mwi("1001", 1);
    await b.until(async () => (await b.store.outboxEntries(extraTarget(target!.id))).length === 0, "the batch done");
    assert.equal((await b.store.getTarget(target!.id))!.status, "refused");
    await b.mwi("1001", 2);
    await b.until(async () => (await b.store.outboxEntries(extraTarget(target!.id))).length === 0, "nothing for the refused room");
    assert.equal(b.hs.messages(room, MAIN_BOT).length, 1);
    assert.equal(b.log.lines.filter((l) => /stopped posting/.test(l.message)).length, 1, "one log line");
  });

  it("the owner leaving the room, or a power-level event, refuses it at once", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    const room = groupRoom(b, { users: { [ALICE]: 100 }, state_default: 50 });
    await b.targets.add(ALICE, room);
    b.hs.setMembership(ALICE, room, "leave");
    assert.equal(await b.targets.onMembership(room, ALICE, "leave"), true);
    assert.equal((await b.targets.list(ALICE))[0]!.status, "refused");
    assert.ok(b.log.has("info", /stopped posting .* you are no longer in the room/));

    const second = groupRoom(b, { users: { [ALICE]: 100 }, state_default: 50 });
    await b.targets.add(ALICE, second);
    b.hs.setState(second, ALICE, "m.room.power_levels", "", { users: { [ALICE]: 100 }, state_default: 50, events: { "m.room.message": 101 } });
    await b.targets.onPowerLevels(second);
    assert.equal((await b.targets.list(ALICE)).find((t) => t.roomId === second)!.status, "refused");
  });
});

describe("TargetService: rooms the main bot was invited to", () => {
  it("a room above the member limit is refused at once", async () => {
    const b = (bridge = new FakeBridge(undefined, { maxRoomMembers: 10 }));
    assert.equal(b.targets.invitedInto("!big:localhost", 11), false);
    assert.equal(b.targets.invitedInto("!small:localhost", 10), true);
  });

  it("a room that did not become a target in time is left; one that did is kept", async () => {
    const b = (bridge = new FakeBridge(undefined, { unusedRoomSeconds: 0.05 }));
    await b.start();
    const unused = groupRoom(b, {});
    const used = groupRoom(b, { users: { [ALICE]: 100 } });
    assert.equal(b.targets.invitedInto(unused, 3), true);
    assert.equal(b.targets.invitedInto(used, 3), true);
    await b.targets.add(ALICE, used);
    await b.until(() => b.log.has("info", /left .* did not become a target within 0.05 s/), "the unused room left", 2000);
    assert.equal(b.hs.rooms.get(unused)!.members.get(MAIN_BOT), "leave");
    assert.equal(b.hs.rooms.get(used)!.members.get(MAIN_BOT), "join");
  });

  it("after a restart, a joined room that is no target is left in time; targets and DMs are kept", async () => {
    const b = (bridge = new FakeBridge(undefined, { unusedRoomSeconds: 0.05 }));
    await b.start();
    const unused = groupRoom(b, {});
    const used = groupRoom(b, { users: { [ALICE]: 100 } });
    await b.targets.add(ALICE, used);
    await b.targets.add(ALICE, ERIN);
    const accountRoom = b.hs.roomOf(MAIN_BOT, ERIN)!;
    b.hs.setMembership(MAIN_BOT, accountRoom, "join");
    await b.restart(); // the bot joined `unused` before the restart: its timer is gone
    assert.equal(await b.targets.reviewJoinedRooms(), 1);
    await b.until(() => b.hs.rooms.get(unused)!.members.get(MAIN_BOT) === "leave", "the unused room left after the restart", 2000);
    assert.equal(b.hs.rooms.get(used)!.members.get(MAIN_BOT), "join");
    assert.equal(b.hs.rooms.get(accountRoom)!.members.get(MAIN_BOT), "join");
  });
});
