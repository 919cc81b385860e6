/**
 * Hostile users on a real Synapse (issue 8): invite spam and refusals that stay, room targets
 * that follow their owner's power, and rooms the main bot does not stay in.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { postWebhook } from "../testbed/bridgeProcess.js";
import { freePort } from "../testbed/ports.js";
import { waitForEvent, waitForInvite } from "../testbed/matrixClient.js";
import { botMessages, requireTestbed, sleep, World, type User } from "./world.js";

const SECRET = "security-matrix-webhook-secret-0123456789";
const MAIN_BOT = "@voicemail:localhost";

describe("security: targets, invites and rooms on a real Synapse", { timeout: 600_000 }, () => {
  let world: World | undefined;
  let admin: User;
  let adminRoom: string;

  before(async (t) => {
    if (!(await requireTestbed(t as never))) return;
    world = await World.create({
      synapsePort: await freePort(),
      bridgePort: await freePort(),
      systems: [{ id: "carrier", name: "Carrier Voicemail", botLocalpart: "vm_carrier", kind: "webhook", webhook: { secret: SECRET } }],
      config: { limits: { maxPendingInvites: 2, unusedRoomSeconds: 4, maxRoomMembers: 3 } },
    });
    admin = await world.user("admin");
    adminRoom = await world.openDm(admin, MAIN_BOT);
  });

  after(async () => {
    await world?.close();
  });

  const say = async (user: User, room: string, body: string) => String((await world!.command(user, room, MAIN_BOT, body)).getContent().body);
  const mwi = (mailbox: string, n: number) => postWebhook(world!.bridgeUrl, "carrier", { mailbox, waiting: n > 0, new: n, old: 0 }, { secret: SECRET });

  it("pending invites are bounded; a declined account is not invited again after remove and add, until it asks", async (t) => {
    if (!world) return t.skip("no test bed");
    const owner = await world.user("spammer");
    const dm = await world.openDm(owner, MAIN_BOT);
    const victim = await world.user("victim");
    const other = await world.user("other");
    assert.match(await say(owner, dm, `!target add ${victim.userId}`), /^Invited/);
    const invited = await waitForInvite(victim.client, MAIN_BOT);
    assert.match(await say(owner, dm, `!target add ${other.userId}`), /^Invited/);
    assert.match(await say(owner, dm, "!target add @third:localhost"), /not accepted yet, the most allowed/);
    // The victim declines, then the owner removes and adds them again.
    await victim.client.leave(invited);
    await sleep(1500);
    assert.match(await say(owner, dm, "!target list"), new RegExp(`${victim.userId} \\(account, declined\\)`));
    assert.match(await say(owner, dm, `!target remove ${victim.userId}`), /^Removed/);
    assert.match(await say(owner, dm, `!target add ${victim.userId}`), /declined to be told about your voicemail/);
    await assert.rejects(waitForInvite(victim.client, MAIN_BOT, 3000), "no second invite");
    // The victim asks: a direct chat of their own with the main bot.
    await world.openDm(victim, MAIN_BOT);
    assert.match(await say(owner, dm, `!target add ${victim.userId}`), /^Invited/);
    await waitForInvite(victim.client, MAIN_BOT);
  });

  it("a room target needs the power to send messages, and stops when the owner loses it", async (t) => {
    if (!world) return t.skip("no test bed");
    const owner = await world.user("roomowner");
    const boss = await world.user("boss");
    const linked = await say(admin, adminRoom, `!admin link ${owner.userId} carrier 7001`);
    assert.match(linked, /^Linked/);
    const dm = await world.openDm(owner, MAIN_BOT);
    const { room_id: room } = await boss.client.createRoom({
      invite: [owner.userId, MAIN_BOT],
      power_level_content_override: { users: { [boss.userId]: 100, [owner.userId]: 50, [MAIN_BOT]: 75 }, state_default: 50, events: { "m.room.message": 75 } },
    } as never);
    await owner.client.joinRoom(room);
    await waitForEvent(boss.client, room, (e) => e.getSender() === MAIN_BOT && /!target add/.test(e.getContent().body ?? ""));
    assert.match(await say(owner, dm, `!target add ${room}`), /power level 75/);
    await boss.client.setPowerLevel(room, owner.userId, 75);
    await sleep(1000);
    assert.match(await say(owner, dm, `!target add ${room}`), /now go to/);
    assert.equal((await mwi("7001", 1)).status, 202);
    await waitForEvent(boss.client, room, (e) => e.getSender() === MAIN_BOT && /7001: 1 new/.test(e.getContent().body ?? ""), 60_000);
    // Demoted: the power-level event reaches the bridge, which stops and tells the owner.
    await boss.client.setPowerLevel(room, owner.userId, 0);
    await waitForEvent(owner.client, dm, (e) => e.getSender() === MAIN_BOT && /no longer posted in/.test(e.getContent().body ?? ""), 60_000);
    assert.equal((await mwi("7001", 2)).status, 202);
    await sleep(3000);
    const posted = botMessages(boss.client, room, MAIN_BOT).filter((e) => /7001:/.test(e.getContent().body ?? ""));
    assert.equal(posted.length, 1, posted.map((e) => e.getContent().body).join(" | "));
    assert.equal(world.bridge.log().split("\n").filter((l) => /stopped posting the voicemail of @roomowner/.test(l)).length, 1);
  });

  it("the main bot leaves a room above the member limit at once, and an unused one after a while", async (t) => {
    if (!world) return t.skip("no test bed");
    const host = await world.user("host");
    const guests = [await world.user("guest1"), await world.user("guest2"), await world.user("guest3")];
    const { room_id: big } = await host.client.createRoom({ invite: [...guests.map((g) => g.userId)] });
    for (const g of guests) await g.client.joinRoom(big);
    await host.client.invite(big, MAIN_BOT);
    await waitForEvent(host.client, big, (e) => e.getType() === "m.room.member" && e.getStateKey() === MAIN_BOT && e.getContent().membership === "leave", 30_000);
    const { room_id: small } = await host.client.createRoom({ invite: [MAIN_BOT] });
    await waitForEvent(host.client, small, (e) => e.getType() === "m.room.member" && e.getStateKey() === MAIN_BOT && e.getContent().membership === "join", 30_000);
    await waitForEvent(host.client, small, (e) => e.getType() === "m.room.member" && e.getStateKey() === MAIN_BOT && e.getContent().membership === "leave", 30_000);
    assert.match(world.bridge.log(), /left .* did not become a target within 4 s/);
  });
});
