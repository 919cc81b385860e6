/**
 * The bridge on a real Synapse: bots, DM rooms, admin linking, webhook MWI as message and state
 * events, commands, restarts. Everything here is real but the voice mail system, which is the
 * test posting signed webhooks.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { readFileSync } from "node:fs";
import { createServer, request, type Server } from "node:http";
import { MWI_EVENT_TYPE, MWI_SUMMARY_EVENT_TYPE } from "../../src/core/events.js";
import { postWebhook } from "../testbed/bridgeProcess.js";
import { freePort } from "../testbed/ports.js";
import { waitForEvent, waitForInvite, waitForState } from "../testbed/matrixClient.js";
import { botMessages, requireTestbed, sleep, timelineOf, World, type User } from "./world.js";

const CARRIER_SECRET = "carrier-webhook-secret-0123456789abcdef";
const OFFICE_SECRET = "office-webhook-secret-0123456789abcdef";
const CARRIER_BOT = "@vm_carrier:localhost";
const OFFICE_BOT = "@vm_office:localhost";
const MAIN_BOT = "@voicemail:localhost";
const OFFICE_WEBHOOK = "http://127.0.0.1:19211";

/**
 * A proxy between the bridge and Synapse that passes everything, except that it forwards the
 * first createRoom inviting `victim` and then drops its answer (the connection is reset): the
 * homeserver made the room and sent the invite, the bridge never learns the room ID.
 */
async function createRoomAnswerDropper(port: number, synapseUrl: string, victim: string): Promise<{ server: Server; dropped: () => number }> {
  let dropped = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const drop = dropped === 0 && req.method === "POST" && (req.url ?? "").startsWith("/_matrix/client/v3/createRoom") && body.includes(victim);
      const upstream = request(`${synapseUrl}${req.url}`, { method: req.method, headers: req.headers }, (answer) => {
        if (drop) {
          answer.resume();
          answer.on("end", () => {
            dropped++;
            res.socket?.destroy();
          });
          return;
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      upstream.on("error", () => res.destroy());
      upstream.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { server, dropped: () => dropped };
}

describe("bridge on a real homeserver", { timeout: 600_000 }, () => {
  let world: World | undefined;
  let admin: User;
  let alice: User;
  let bob: User;
  let adminRoom: string;
  let aliceCarrierRoom: string;
  let proxy: Awaited<ReturnType<typeof createRoomAnswerDropper>> | undefined;

  before(async (t) => {
    if (!(await requireTestbed(t as never))) return;
    const synapsePort = await freePort();
    const proxyPort = await freePort();
    proxy = await createRoomAnswerDropper(proxyPort, `http://127.0.0.1:${synapsePort}`, "@carol:localhost");
    world = await World.create({
      synapsePort,
      homeserverUrl: `http://127.0.0.1:${proxyPort}`,
      bridgePort: await freePort(),
      permissions: { localhost: "user", "@admin:localhost": "admin", "@mallory:localhost": "none" },
      systems: [
        { id: "carrier", name: "Carrier Voicemail", botLocalpart: "vm_carrier", kind: "webhook", footer: "Dial *86 to listen", webhook: { secret: CARRIER_SECRET, maxBodyBytes: 2048 } },
        { id: "office", name: "Office Voicemail", botLocalpart: "vm_office", kind: "webhook", webhook: { secret: OFFICE_SECRET, port: 19211 } },
      ],
    });
    [admin, alice, bob] = [await world.user("admin"), await world.user("alice"), await world.user("bob")];
  });

  after(async () => {
    await world?.close();
    proxy?.server.closeAllConnections();
    await new Promise((r) => (proxy ? proxy.server.close(r) : r(undefined)));
  });

  const w = () => {
    if (!world) throw new Error("no test bed");
    return world;
  };
  const carrier = (body: Record<string, unknown> | string, opts: { secret?: string; signature?: string | null } = { secret: CARRIER_SECRET }) =>
    postWebhook(w().bridgeUrl, "carrier", body, opts);

  it("serves /health and /metrics and gives each bot its display name", async (t) => {
    if (!world) return t.skip("no test bed");
    assert.equal((await fetch(`${world.bridgeUrl}/health`)).status, 200);
    const metrics = await (await fetch(`${world.bridgeUrl}/metrics`)).text();
    assert.match(metrics, /voicemail_webhook_requests_total|# HELP/);
    for (const [bot, name] of [[CARRIER_BOT, "Carrier Voicemail"], [OFFICE_BOT, "Office Voicemail"], [MAIN_BOT, "Voicemail"]]) {
      const profile = await alice.client.getProfileInfo(bot!);
      assert.equal(profile.displayname, name);
    }
  });

  it("pings the homeserver at start and answers the homeserver's ping only with its token", async (t) => {
    if (!world) return t.skip("no test bed");
    assert.match(world.bridge.log(), /homeserver ping succeeded/);
    const hsToken = /hs_token: (\S+)/.exec(readFileSync(world.bridge.files.registrationPath, "utf8"))![1]!;
    const ping = (headers: Record<string, string>) =>
      fetch(`${world!.bridgeUrl}/_matrix/app/v1/ping`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ transaction_id: "t" }) });
    assert.ok([401, 403].includes((await ping({})).status), "no token: refused");
    assert.ok([401, 403].includes((await ping({ authorization: "Bearer wrong-token" })).status), "wrong token: refused");
    const good = await ping({ authorization: `Bearer ${hsToken}` });
    assert.equal(good.status, 200);
    assert.deepEqual(await good.json(), {});
  });

  it("lets an admin link a mailbox from a DM with the main bot; the user gets a DM from the system's bot", async (t) => {
    if (!world) return t.skip("no test bed");
    adminRoom = await world.openDm(admin, MAIN_BOT);
    const reply = await world.command(admin, adminRoom, MAIN_BOT, "!admin link @alice:localhost carrier 1001");
    assert.equal(reply.getContent().msgtype, "m.notice");
    assert.match(reply.getContent().body, /Linked Carrier Voicemail mailbox 1001 to @alice:localhost/);
    assert.match(reply.getContent().formatted_body, /Linked/);

    aliceCarrierRoom = await world.acceptDmFrom(alice, CARRIER_BOT);
    const welcome = await waitForEvent(alice.client, aliceCarrierRoom, (e) => e.getSender() === CARRIER_BOT && /now linked/.test(e.getContent().body));
    assert.equal(welcome.getContent().msgtype, "m.notice");
    const create = alice.client.getRoom(aliceCarrierRoom)!.currentState.getStateEvents("m.room.member", alice.userId);
    assert.equal(create?.getPrevContent()?.is_direct ?? create?.getContent().is_direct ?? true, true);
  });

  it("turns a webhook MWI into a message, a mailbox state event, a summary and a room name", async (t) => {
    if (!world) return t.skip("no test bed");
    const response = await carrier({
      mailbox: "1001",
      waiting: true,
      new: 2,
      old: 5,
      urgent_new: 1,
      urgent_old: 0,
      message: { ani: "+15551234567", dnis: "+15557654321", time: "2026-11-25T14:03:00Z", duration: 42 },
    });
    assert.deepEqual(response, { status: 202, body: { status: "accepted" } });

    const message = await waitForEvent(alice.client, aliceCarrierRoom, (e) => e.getSender() === CARRIER_BOT && /New voicemail/.test(e.getContent().body ?? ""));
    const content = message.getContent();
    assert.equal(content.msgtype, "m.text", "a new voicemail must notify the phone: m.text, not m.notice");
    assert.match(content.body, /mailbox 1001: 2 new, 5 old/);
    assert.match(content.body, /1 urgent new/);
    assert.match(content.body, /^New voicemail from \+1 555 123 4567, 0:42, urgent\n/, "who called and how long first");
    assert.match(content.body, /^To \+1 555 765 4321 · 25 Nov 2026, 14:03 UTC$/m);
    assert.match(content.body, /25 Nov 2026, 14:03 UTC/);
    assert.match(content.body, /Dial \*86 to listen/);
    assert.equal(content.format, "org.matrix.custom.html");
    assert.match(content.formatted_body, /<strong>New voicemail/);

    const state = await waitForState(alice.client, aliceCarrierRoom, MWI_EVENT_TYPE, "carrier/1001", (e) => e.getContent().new === 2);
    const sc = state.getContent();
    assert.equal(sc.user_id, alice.userId);
    assert.equal(sc.system, "carrier");
    assert.equal(sc.mailbox, "1001");
    assert.equal(sc.waiting, true);
    assert.equal(sc.old, 5);
    assert.equal(sc.urgent_new, 1);
    assert.equal(sc.urgent_old, 0);
    assert.equal(typeof sc.updated, "number");
    assert.deepEqual(sc.last_message, { ani: "+15551234567", dnis: "+15557654321", time: "2026-11-25T14:03:00.000Z", duration: 42 });

    const summary = await waitForState(alice.client, aliceCarrierRoom, MWI_SUMMARY_EVENT_TYPE, "", (e) => e.getContent().total_new === 2);
    assert.equal(summary.getContent().user_id, alice.userId);
    assert.equal(summary.getContent().systems.carrier.new, 2);
    assert.equal(summary.getContent().systems.carrier.mailboxes["1001"].old, 5);

    await waitForState(alice.client, aliceCarrierRoom, "m.room.name", "", (e) => e.getContent().name === "Carrier Voicemail (2)");
    // The rename goes first: a client's room list and notification title already show the count.
    const timeline = alice.client.getRoom(aliceCarrierRoom)!.getLiveTimeline().getEvents();
    const renamed = timeline.findIndex((e) => e.getType() === "m.room.name" && e.getContent().name === "Carrier Voicemail (2)");
    assert.ok(renamed >= 0 && renamed < timeline.indexOf(message), `the rename (${renamed}) before the message (${timeline.indexOf(message)})`);
  });

  it("sends nothing for a repeated MWI and only what changed for a new one", async (t) => {
    if (!world) return t.skip("no test bed");
    const before = botMessages(alice.client, aliceCarrierRoom, CARRIER_BOT).length;
    const namesBefore = timelineOf(alice.client, aliceCarrierRoom, "m.room.name").length;
    const summariesBefore = timelineOf(alice.client, aliceCarrierRoom, MWI_SUMMARY_EVENT_TYPE).length;
    const repeat = await carrier({ mailbox: "1001", waiting: true, new: 2, old: 5, urgent_new: 1 });
    assert.equal(repeat.status, 202);
    // One message listened to: the old count changes; the new count (and so the room name) does not.
    assert.equal((await carrier({ mailbox: "1001", waiting: true, new: 2, old: 6, urgent_new: 1 })).status, 202);
    const notice = await waitForEvent(alice.client, aliceCarrierRoom, (e) => e.getSender() === CARRIER_BOT && /2 new, 6 old/.test(e.getContent().body ?? ""));
    assert.equal(notice.getContent().msgtype, "m.notice");
    await waitForState(alice.client, aliceCarrierRoom, MWI_EVENT_TYPE, "carrier/1001", (e) => e.getContent().old === 6);
    await sleep(500);
    assert.equal(botMessages(alice.client, aliceCarrierRoom, CARRIER_BOT).length, before + 1, "the repeat must not produce a message");
    assert.equal(timelineOf(alice.client, aliceCarrierRoom, "m.room.name").length, namesBefore, "the new count did not change: no room name event");
    assert.equal(timelineOf(alice.client, aliceCarrierRoom, MWI_SUMMARY_EVENT_TYPE).length, summariesBefore + 1);
  });

  it("refuses bad webhook requests with a clear status and changes nothing", async (t) => {
    if (!world) return t.skip("no test bed");
    const good = { mailbox: "1001", waiting: true, new: 9, old: 9 };
    assert.equal((await carrier(good, { signature: null })).status, 401);
    assert.equal((await carrier(good, { secret: "wrong-secret-123" })).status, 401);
    assert.equal((await carrier(good, { signature: "sha256=" + "0".repeat(64) })).status, 401);
    const badJson = await carrier("{not json", { secret: CARRIER_SECRET });
    assert.equal(badJson.status, 400);
    assert.match(String(badJson.body.error), /JSON/);
    const negative = await carrier({ mailbox: "1001", waiting: true, new: -1, old: 0 });
    assert.equal(negative.status, 400);
    assert.match(String(negative.body.error), /new must be a non-negative integer/);
    const unknownField = await carrier({ ...good, colour: "red" });
    assert.equal(unknownField.status, 400);
    const huge = await carrier({ ...good, message: { ani: "1".repeat(5000) } });
    assert.equal(huge.status, 413);
    assert.equal((await postWebhook(w().bridgeUrl, "nosuchsystem", good, { secret: CARRIER_SECRET })).status, 404);
    // The office system listens on its own port, with its own secret.
    assert.equal((await postWebhook(OFFICE_WEBHOOK, "office", good, { secret: CARRIER_SECRET })).status, 401);
    assert.equal((await postWebhook(OFFICE_WEBHOOK, "carrier", good, { secret: CARRIER_SECRET })).status, 404);

    await sleep(1000);
    const state = alice.client.getRoom(aliceCarrierRoom)!.currentState.getStateEvents(MWI_EVENT_TYPE, "carrier/1001");
    assert.equal(state?.getContent().new, 2);
    assert.equal(state?.getContent().old, 6);
    const reply = await world.command(alice, aliceCarrierRoom, CARRIER_BOT, "!list");
    assert.match(reply.getContent().body, /Carrier Voicemail 1001: 2 new, 6 old/);
    const metrics = await (await fetch(`${world.bridgeUrl}/metrics`)).text();
    assert.match(metrics, /voicemail_webhook_requests_total\{system="carrier",status="401"\} 3/);
  });

  it("answers commands with clear replies and errors", async (t) => {
    if (!world) return t.skip("no test bed");
    const ask = (body: string) => world!.command(alice, aliceCarrierRoom, CARRIER_BOT, body).then((e) => e.getContent());
    const help = await ask("!help");
    assert.equal(help.msgtype, "m.notice");
    assert.match(help.body, /!list/);
    assert.match(help.body, /!mwi on\|off/);
    assert.doesNotMatch(help.body, /!admin/, "!help shows only what the sender may use");
    assert.match(help.formatted_body, /<code>/);
    assert.match((await ask("!frobnicate")).body, /Unknown command !frobnicate\. Say !help/);
    assert.match((await ask("!unlink")).body, /Usage: !unlink <system> <mailbox>/);
    assert.match((await ask("!admin link @alice:localhost carrier 1002")).body, /for admins only/);
    assert.match((await ask("!link 1002")).body, /linked by an admin/);
    assert.match((await ask("!set timezone Mars/Olympus_Mons")).body, /not a time zone/);
    assert.match((await ask("!set timezone Europe/Berlin")).body, /Europe\/Berlin/);
    assert.match((await ask("!mwi sideways")).body, /Choices: "on", "off"/);
    // Still answering after all those errors.
    assert.match((await ask("!list")).body, /1001: 2 new, 6 old/);
  });

  it("redacts a message that carries a password at once", async (t) => {
    if (!world) return t.skip("no test bed");
    const reply = world.command(alice, aliceCarrierRoom, CARRIER_BOT, "!link carrier 1001 --password hunter2-secret");
    assert.match((await reply).getContent().body, /linked by an admin/);
    const sent = alice.client.getRoom(aliceCarrierRoom)!.getLiveTimeline().getEvents().filter((e) => e.getSender() === alice.userId);
    const eventId = sent[sent.length - 1]!.getId()!;
    const redaction = await waitForEvent(alice.client, aliceCarrierRoom, (e) => e.getType() === "m.room.redaction" && e.event.redacts === eventId);
    assert.equal(redaction.getSender(), CARRIER_BOT);
    const original = alice.client.getRoom(aliceCarrierRoom)!.findEventById(eventId);
    assert.equal(original?.isRedacted(), true);
    assert.equal(original?.getContent().body, undefined);
    assert.doesNotMatch(world.bridge.log(), /hunter2-secret/);
  });

  it("stops delivery on !mwi off and resyncs on !mwi on, in the user's time zone", async (t) => {
    if (!world) return t.skip("no test bed");
    const off = await world.command(alice, aliceCarrierRoom, CARRIER_BOT, "!mwi off");
    assert.match(off.getContent().body, /MWI is now off for Carrier Voicemail 1001/);
    const count = botMessages(alice.client, aliceCarrierRoom, CARRIER_BOT).length;
    assert.equal((await carrier({ mailbox: "1001", waiting: true, new: 3, old: 6 })).status, 202);
    await sleep(1500);
    assert.equal(botMessages(alice.client, aliceCarrierRoom, CARRIER_BOT).length, count, "nothing while MWI is off");
    assert.match((await world.command(alice, aliceCarrierRoom, CARRIER_BOT, "!list")).getContent().body, /1001 \(MWI off\): 3 new/);

    await world.command(alice, aliceCarrierRoom, CARRIER_BOT, "!mwi on");
    const resync = await waitForEvent(alice.client, aliceCarrierRoom, (e) => e.getSender() === CARRIER_BOT && /mailbox 1001: 3 new, 6 old/.test(e.getContent().body ?? ""));
    assert.match(resync.getContent().body, /CET|GMT\+1/, "time stamps follow !set timezone");
    await waitForState(alice.client, aliceCarrierRoom, "m.room.name", "", (e) => e.getContent().name === "Carrier Voicemail (3)");
  });

  it("never shows one user another user's mailboxes", async (t) => {
    if (!world) return t.skip("no test bed");
    const bobRoom = await world.openDm(bob, MAIN_BOT);
    assert.match((await world.command(bob, bobRoom, MAIN_BOT, "!list")).getContent().body, /no linked mailboxes/);
    assert.match((await world.command(bob, bobRoom, MAIN_BOT, "!unlink carrier 1001")).getContent().body, /You have no linked mailbox 1001/);
    assert.match((await world.command(bob, bobRoom, MAIN_BOT, "!mwi off carrier 1001")).getContent().body, /None of your linked mailboxes/);
    assert.match((await world.command(bob, bobRoom, MAIN_BOT, "!admin unlink @alice:localhost carrier 1001")).getContent().body, /for admins only/);
    assert.match((await world.command(alice, aliceCarrierRoom, CARRIER_BOT, "!list")).getContent().body, /1001: 3 new/);

    // Someone without permission gets one clear line and nothing else.
    const mallory = await world.user("mallory");
    const { room_id: malloryRoom } = await mallory.client.createRoom({ is_direct: true, invite: [MAIN_BOT] });
    await waitForState(mallory.client, malloryRoom, "m.room.member", MAIN_BOT, (e) => e.getContent().membership === "leave");
  });

  it("opens exactly one DM under concurrent updates and keeps it across a bridge restart", async (t) => {
    if (!world) return t.skip("no test bed");
    await world.command(admin, adminRoom, MAIN_BOT, "!admin link @bob:localhost office 2001");
    const results = await Promise.all(
      [1, 2, 3, 4, 5].map((n) => postWebhook(OFFICE_WEBHOOK, "office", { mailbox: "2001", waiting: true, new: n, old: 0 }, { secret: OFFICE_SECRET })),
    );
    assert.deepEqual(results.map((r) => r.status), [202, 202, 202, 202, 202]);
    const officeRoom = await world.acceptDmFrom(bob, OFFICE_BOT);
    await sleep(2000);
    const invites = bob.client.getRooms().filter((r) => r.getDMInviter() === OFFICE_BOT || r.getMember(OFFICE_BOT));
    assert.equal(invites.length, 1, "one DM per user and bot");

    await world.bridge.restart();
    assert.equal((await postWebhook(OFFICE_WEBHOOK, "office", { mailbox: "2001", waiting: true, new: 7, old: 0 }, { secret: OFFICE_SECRET })).status, 202);
    await waitForEvent(bob.client, officeRoom, (e) => e.getSender() === OFFICE_BOT && /mailbox 2001: 7 new/.test(e.getContent().body ?? ""));
    assert.equal(bob.client.getRooms().filter((r) => r.getMember(OFFICE_BOT)).length, 1, "no second room after a restart");
  });

  it("opens one DM even when the answer to createRoom was lost (the homeserver made the room all the same)", async (t) => {
    if (!world) return t.skip("no test bed");
    const carol = await world.user("carol");
    const reply = await world.command(admin, adminRoom, MAIN_BOT, "!admin link @carol:localhost carrier 3001");
    assert.match(reply.getContent().body, /Linked Carrier Voicemail mailbox 3001 to @carol:localhost/);
    while (proxy!.dropped() === 0) await sleep(100);
    // A new MWI wakes the delivery of that user again (whether or not a failed attempt retries on its own).
    assert.equal((await carrier({ mailbox: "3001", waiting: true, new: 1, old: 0 })).status, 202);
    const room = await world.acceptDmFrom(carol, CARRIER_BOT);
    await waitForEvent(carol.client, room, (e) => e.getSender() === CARRIER_BOT && /mailbox 3001: 1 new/.test(e.getContent().body ?? ""));
    assert.equal(proxy!.dropped(), 1, "the proxy dropped the answer to the first createRoom");
    await sleep(1500);
    const withBot = carol.client.getRooms().filter((r) => r.getDMInviter() === CARRIER_BOT || r.getMember(CARRIER_BOT));
    assert.deepEqual(withBot.map((r) => r.roomId), [room], "one DM, one invite");
    assert.match(world.bridge.log(), /made by an earlier attempt whose answer was lost/);
  });

  it("stops posting into a DM the user left and opens a fresh one next time", async (t) => {
    if (!world) return t.skip("no test bed");
    await alice.client.leave(aliceCarrierRoom);
    await sleep(1000);
    assert.equal((await carrier({ mailbox: "1001", waiting: true, new: 4, old: 6 })).status, 202);
    const fresh = await waitForInvite(alice.client, CARRIER_BOT);
    assert.notEqual(fresh, aliceCarrierRoom);
    await alice.client.joinRoom(fresh);
    await waitForState(alice.client, fresh, MWI_EVENT_TYPE, "carrier/1001", (e) => e.getContent().new === 4);
  });

  it("takes no commands in a room with other people", async (t) => {
    if (!world) return t.skip("no test bed");
    const { room_id: group } = await alice.client.createRoom({ invite: [bob.userId, CARRIER_BOT] });
    await waitForState(alice.client, group, "m.room.member", CARRIER_BOT, (e) => e.getContent().membership === "leave");
    const notice = await waitForEvent(alice.client, group, (e) => e.getSender() === CARRIER_BOT && e.getType() === "m.room.message");
    assert.match(notice.getContent().body, /only work in direct chats/);
  });

  it("logs nothing at ERROR and no stack traces: restarts, a lost answer and refused requests are no one's to act on", async (t) => {
    if (!world) return t.skip("no test bed");
    const log = world.bridge.log();
    assert.match(log, /^INFO .*ready:/m);
    assert.doesNotMatch(log, /Error registering user/);
    // The delivery worker's own "stopped" line after the lost answer belongs to the delivery work
    // (a worker that no error may end); everything else must be quiet.
    const errors = log.split("\n").filter((l) => l.startsWith("ERROR") && !/^ERROR \S+ \[Delivery\] delivery to \S+ stopped/.test(l));
    assert.deepEqual(errors, [], "no ERROR lines");
    assert.doesNotMatch(log, /^\s+at .*:\d+:\d+\)?$/m, "no stack traces");
  });

  it("never writes a secret into its log", async (t) => {
    if (!world) return t.skip("no test bed");
    const registration = readFileSync(world.bridge.files.registrationPath, "utf8");
    const tokens = [...registration.matchAll(/(as_token|hs_token): (\S+)/g)].map((m) => m[2]!);
    assert.equal(tokens.length, 2);
    const log = world.bridge.log();
    assert.ok(log.length > 1000, "the log has content");
    for (const secret of [...tokens, CARRIER_SECRET, OFFICE_SECRET, "hunter2-secret"]) {
      assert.ok(!log.includes(secret), `the log must not contain a secret (${secret.slice(0, 4)}…)`);
    }
  });
});
