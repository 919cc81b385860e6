/**
 * Delivery that never loses a notification, on a real Synapse: homeserver down, bridge killed,
 * invites not yet accepted, users offline, extra targets, flapping mailboxes, the aggregate.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { SetPresence } from "matrix-js-sdk/lib/sync.js";
import type { MatrixEvent } from "matrix-js-sdk";
import { MWI_EVENT_TYPE, MWI_SUMMARY_EVENT_TYPE } from "../../src/core/events.js";
import { postWebhook } from "../testbed/bridgeProcess.js";
import { freePort } from "../testbed/ports.js";
import { waitForEvent, waitForInvite, waitForState } from "../testbed/matrixClient.js";
import { botMessages, requireTestbed, sleep, World, type User } from "./world.js";

const SECRET = "delivery-webhook-secret-0123456789abcdef";
const CARRIER_BOT = "@vm_carrier:localhost";
const MAIN_BOT = "@voicemail:localhost";

describe("delivery that never loses a notification", { timeout: 900_000 }, () => {
  let world: World | undefined;
  let admin: User;
  let adminRoom: string;

  before(async (t) => {
    if (!(await requireTestbed(t as never))) return;
    world = await World.create({
      synapsePort: await freePort(),
      bridgePort: await freePort(),
      systems: [
        { id: "carrier", name: "Carrier Voicemail", botLocalpart: "vm_carrier", kind: "webhook", footer: "Dial *86 to listen", webhook: { secret: SECRET } },
        { id: "office", name: "Office Voicemail", botLocalpart: "vm_office", kind: "webhook", webhook: { secret: SECRET } },
      ],
    });
    admin = await world.user("admin");
    adminRoom = await world.openDm(admin, MAIN_BOT);
  });

  after(async () => {
    await world?.close();
  });

  const post = (system: string, body: Record<string, unknown>) => postWebhook(world!.bridgeUrl, system, body, { secret: SECRET });
  const mwi = (system: string, mailbox: string, n: number, old = 0) => post(system, { mailbox, waiting: n > 0, new: n, old });

  /** A new user whose mailbox an admin linked; they accept the system bot's DM. */
  async function linkedUser(name: string, system: string, mailbox: string, accept = true): Promise<{ user: User; room?: string }> {
    const user = await world!.user(name);
    const reply = await world!.command(admin, adminRoom, MAIN_BOT, `!admin link ${user.userId} ${system} ${mailbox}`);
    assert.match(reply.getContent().body, /^Linked/);
    if (!accept) return { user };
    const room = await world!.acceptDmFrom(user, `@vm_${system}:localhost`);
    await waitForEvent(user.client, room, (e) => /now linked/.test(e.getContent().body ?? ""));
    return { user, room };
  }

  const mwiMessages = (user: User, room: string, bot = CARRIER_BOT): MatrixEvent[] =>
    botMessages(user.client, room, bot).filter((e) => !/now linked|Hello/.test(e.getContent().body ?? ""));

  it("keeps what arrives while the homeserver is down and delivers it once, in order, when it is back", async (t) => {
    if (!world) return t.skip("no test bed");
    const { user, room } = await linkedUser("hsdown", "carrier", "3001");
    await world.hs.pause();
    for (const [n, old] of [[1, 0], [2, 0], [2, 1]] as const) assert.equal((await mwi("carrier", "3001", n, old)).status, 202);
    await sleep(1500);
    await world.hs.resume();
    const message = await waitForEvent(user.client, room!, (e) => e.getSender() === CARRIER_BOT && /3001: 2 new, 1 old/.test(e.getContent().body ?? ""), 90_000);
    assert.equal(message.getContent().msgtype, "m.text", "voicemail arrived while away: it must notify");
    await waitForState(user.client, room!, MWI_EVENT_TYPE, "carrier/3001", (e) => e.getContent().new === 2 && e.getContent().old === 1);
    await sleep(2000);
    const messages = mwiMessages(user, room!);
    assert.equal(messages.length, 1, `one catch-up message, not ${messages.length}: ${messages.map((m) => m.getContent().body).join(" | ")}`);
  });

  it("delivers exactly once what was accepted before the bridge was killed with SIGKILL", async (t) => {
    if (!world) return t.skip("no test bed");
    const { user, room } = await linkedUser("killed", "carrier", "3002");
    // Nothing can be sent while the homeserver is away: the update sits in the outbox.
    await world.hs.pause();
    assert.equal((await mwi("carrier", "3002", 4)).status, 202);
    await world.bridge.kill();
    await world.hs.resume();
    await world.bridge.start();
    const message = await waitForEvent(user.client, room!, (e) => e.getSender() === CARRIER_BOT && /3002: 4 new/.test(e.getContent().body ?? ""), 60_000);
    assert.equal(message.getContent().msgtype, "m.text");
    // And once more, killed right after the webhook was answered.
    assert.equal((await mwi("carrier", "3002", 5)).status, 202);
    await world.bridge.kill();
    await world.bridge.start();
    await waitForEvent(user.client, room!, (e) => e.getSender() === CARRIER_BOT && /3002: 5 new/.test(e.getContent().body ?? ""), 60_000);
    await sleep(2000);
    const bodies = mwiMessages(user, room!).map((e) => e.getContent().body as string);
    assert.equal(bodies.filter((b) => /3002: 4 new/.test(b)).length, 1, bodies.join(" | "));
    assert.equal(bodies.filter((b) => /3002: 5 new/.test(b)).length, 1, bodies.join(" | "));
  });

  it("keeps notifications for a user who has not accepted the invite and delivers them on join", async (t) => {
    if (!world) return t.skip("no test bed");
    const { user } = await linkedUser("late", "carrier", "3003", false);
    assert.equal((await mwi("carrier", "3003", 1)).status, 202);
    assert.equal((await mwi("carrier", "3003", 2)).status, 202);
    const room = await waitForInvite(user.client, CARRIER_BOT);
    await sleep(1500);
    const joinedAt = Date.now();
    await user.client.joinRoom(room);
    const message = await waitForEvent(user.client, room, (e) => e.getSender() === CARRIER_BOT && /3003: 2 new/.test(e.getContent().body ?? ""));
    assert.ok(message.getTs() >= joinedAt - 1000, "sent after the join, so that it notifies");
    await waitForEvent(user.client, room, (e) => /now linked/.test(e.getContent().body ?? ""));
    await sleep(1500);
    assert.equal(mwiMessages(user, room).length, 1);
  });

  it("holds notifications while a when-online user is offline and sends one catch-up when they are online", async (t) => {
    if (!world) return t.skip("no test bed");
    const { user, room } = await linkedUser("offline", "carrier", "3004");
    assert.match((await world.command(user, room!, CARRIER_BOT, "!set delivery when-online")).getContent().body, /wait until you are online/);
    await user.client.setSyncPresence(SetPresence.Offline);
    await user.client.setPresence({ presence: "offline" });
    await sleep(1000);
    const before = mwiMessages(user, room!).length;
    assert.equal((await mwi("carrier", "3004", 1)).status, 202);
    assert.equal((await mwi("carrier", "3004", 3)).status, 202);
    await sleep(4000);
    assert.equal(mwiMessages(user, room!).length, before, "nothing while offline");
    await user.client.setSyncPresence(SetPresence.Online);
    await user.client.setPresence({ presence: "online" });
    const message = await waitForEvent(user.client, room!, (e) => e.getSender() === CARRIER_BOT && /3004: 3 new/.test(e.getContent().body ?? ""), 40_000);
    assert.equal(message.getContent().msgtype, "m.text");
    await sleep(1500);
    assert.equal(mwiMessages(user, room!).length, before + 1, "one catch-up message");
  });

  it("a when-online user whose presence push was missed (online while the bridge was stopped) still gets the catch-up", async (t) => {
    if (!world) return t.skip("no test bed");
    const { user, room } = await linkedUser("missed", "carrier", "3009");
    assert.match((await world.command(user, room!, CARRIER_BOT, "!set delivery when-online")).getContent().body, /wait until you are online/);
    await user.client.setSyncPresence(SetPresence.Offline);
    await user.client.setPresence({ presence: "offline" });
    await sleep(1000);
    const before = mwiMessages(user, room!).length;
    assert.equal((await mwi("carrier", "3009", 2)).status, 202);
    await sleep(2000);
    assert.equal(mwiMessages(user, room!).length, before, "nothing while offline");
    // The user comes online while the bridge is away: the push goes nowhere. The user shares
    // no room with the main bot, so only the carrier bot may look at their presence.
    await world.bridge.stop();
    await user.client.setSyncPresence(SetPresence.Online);
    await user.client.setPresence({ presence: "online" });
    await sleep(2000);
    await world.bridge.start();
    const message = await waitForEvent(user.client, room!, (e) => e.getSender() === CARRIER_BOT && /3009: 2 new/.test(e.getContent().body ?? ""), 60_000);
    assert.equal(message.getContent().msgtype, "m.text");
    await sleep(1500);
    assert.equal(mwiMessages(user, room!).length, before + 1, "one catch-up message");
  });

  it("tells another account that accepted, nothing to one that refused, and a room added by its moderator", async (t) => {
    if (!world) return t.skip("no test bed");
    const { user: owner, room } = await linkedUser("owner", "carrier", "3005");
    const erin = await world.user("erin");
    const frank = await world.user("frank");
    assert.match((await world.command(owner, room!, CARRIER_BOT, `!target add ${erin.userId}`)).getContent().body, /Invited @erin:localhost/);
    assert.match((await world.command(owner, room!, CARRIER_BOT, `!target add ${frank.userId}`)).getContent().body, /Invited @frank:localhost/);
    const erinRoom = await waitForInvite(erin.client, MAIN_BOT);
    await erin.client.joinRoom(erinRoom);
    const frankRoom = await waitForInvite(frank.client, MAIN_BOT);
    await frank.client.leave(frankRoom);

    const { room_id: group } = await owner.client.createRoom({ name: "family", invite: [MAIN_BOT] });
    await waitForEvent(owner.client, group, (e) => e.getSender() === MAIN_BOT && /!target add/.test(e.getContent().body ?? ""));
    assert.match((await world.command(owner, room!, CARRIER_BOT, `!target add ${group}`)).getContent().body, /now go to/);
    // Someone without the power to change the room cannot send voicemail there.
    const { user: guest, room: guestRoom } = await linkedUser("guest", "carrier", "3006");
    await owner.client.invite(group, guest.userId);
    await guest.client.joinRoom(group);
    assert.match((await world.command(guest, guestRoom!, CARRIER_BOT, `!target add ${group}`)).getContent().body, /power level/);
    await sleep(1000);

    assert.equal((await mwi("carrier", "3005", 2)).status, 202);
    const toErin = await waitForEvent(erin.client, erinRoom, (e) => e.getSender() === MAIN_BOT && /^New voicemail\nCarrier Voicemail mailbox 3005: 2 new, 0 old$/m.test(e.getContent().body ?? ""));
    assert.equal(toErin.getContent().msgtype, "m.text");
    await waitForState(erin.client, erinRoom, MWI_SUMMARY_EVENT_TYPE, "", (e) => e.getContent().user_id === owner.userId && e.getContent().total_new === 2);
    await waitForEvent(owner.client, group, (e) => e.getSender() === MAIN_BOT && /^Carrier Voicemail mailbox 3005: 2 new/m.test(e.getContent().body ?? ""));
    const list = (await world.command(owner, room!, CARRIER_BOT, "!target list")).getContent().body as string;
    assert.match(list, /@erin:localhost \(account, active\)/);
    assert.match(list, /@frank:localhost \(account, declined\)/);
    assert.match(list, new RegExp(`${group.replace(/[!.]/g, "\\$&")} \\(room, active\\)`));
    assert.equal(frank.client.getRoom(frankRoom)?.getMyMembership(), "leave");
    assert.equal(botMessages(frank.client, frankRoom, MAIN_BOT).length, 0, "a declined account is sent nothing");
  });

  it("tells a flapping mailbox at about one message a second and ends with the true state", async (t) => {
    if (!world) return t.skip("no test bed");
    const { user, room } = await linkedUser("flappy", "carrier", "3007");
    const before = mwiMessages(user, room!).length;
    const started = Date.now();
    for (let i = 1; i <= 200; i++) {
      assert.equal((await mwi("carrier", "3007", i % 7, i)).status, 202);
      const due = started + i * 50;
      if (due > Date.now()) await sleep(due - Date.now());
    }
    const seconds = (Date.now() - started) / 1000;
    await waitForState(user.client, room!, MWI_EVENT_TYPE, "carrier/3007", (e) => e.getContent().old === 200 && e.getContent().new === 200 % 7, 30_000);
    await sleep(2500);
    const count = mwiMessages(user, room!).length - before;
    t.diagnostic(`200 updates in ${seconds.toFixed(1)} s gave ${count} messages`);
    assert.ok(count >= 2, `the user hears about it (${count})`);
    assert.ok(count <= Math.ceil(seconds) + 3, `at most about one message a second: ${count} in ${seconds.toFixed(1)} s`);
    const last = mwiMessages(user, room!).at(-1)!;
    assert.match(last.getContent().body, new RegExp(`3007: ${200 % 7} new, 200 old`));
  });

  it("puts one picture of all systems into the main bot's DM", async (t) => {
    if (!world) return t.skip("no test bed");
    const { user, room } = await linkedUser("many", "carrier", "3008");
    await world.command(admin, adminRoom, MAIN_BOT, `!admin link ${user.userId} office 4008`);
    const officeRoom = await world.acceptDmFrom(user, "@vm_office:localhost");
    assert.match((await world.command(user, room!, CARRIER_BOT, "!set notify both")).getContent().body, /each system's chat and the summary chat/);
    assert.equal((await mwi("carrier", "3008", 2)).status, 202);
    const mainRoom = await world.acceptDmFrom(user, MAIN_BOT);
    await waitForEvent(user.client, mainRoom, (e) => e.getSender() === MAIN_BOT && /^New voicemail\nCarrier Voicemail mailbox 3008: 2 new, 0 old$/m.test(e.getContent().body ?? ""));
    assert.equal((await mwi("office", "4008", 1)).status, 202);
    const both = await waitForEvent(user.client, mainRoom, (e) => e.getSender() === MAIN_BOT && /3 new voicemails in 2 mailboxes: Carrier Voicemail 2, Office Voicemail 1/.test(e.getContent().body ?? ""));
    assert.equal(both.getContent().msgtype, "m.text");
    const summary = await waitForState(user.client, mainRoom, MWI_SUMMARY_EVENT_TYPE, "", (e) => e.getContent().total_new === 3);
    assert.equal(summary.getContent().systems.carrier.new, 2);
    assert.equal(summary.getContent().systems.office.new, 1);
    await waitForState(user.client, mainRoom, "m.room.name", "", (e) => e.getContent().name === "Voicemail (3)");
    // The topic shows every mailbox side by side.
    await waitForState(user.client, mainRoom, "m.room.topic", "", (e) =>
      /Carrier Voicemail 3008: 2 new, 0 old · Office Voicemail 4008: 1 new, 0 old/.test(e.getContent().topic ?? ""),
    );
    await waitForState(user.client, mainRoom, MWI_EVENT_TYPE, "office/4008", (e) => e.getContent().new === 1);
    // The per-system chats still get their own message ("both").
    await waitForEvent(user.client, officeRoom, (e) => /4008: 1 new/.test(e.getContent().body ?? ""));
    // !list shows all mailboxes side by side.
    const list = (await world.command(user, room!, CARRIER_BOT, "!list")).getContent().body as string;
    assert.match(list, /Carrier Voicemail 3008: 2 new/);
    assert.match(list, /Office Voicemail 4008: 1 new/);
  });
});
