/**
 * SIP MWI (RFC 3842) end to end: a real Asterisk 22 (app_voicemail, res_pjsip_mwi) on loopback,
 * the bridge as a child process with `kind: sip` systems, a real Synapse and a user driven by
 * matrix-js-sdk. Users link their own mailboxes with the mailbox's SIP password; real
 * voicemails left in Asterisk reach the user's DM; `!mwi off` unsubscribes upstream; restarts of
 * Asterisk and of the bridge are survived; `!unlink` unsubscribes and forgets the credentials.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import type { MatrixEvent } from "matrix-js-sdk";
import { MWI_EVENT_TYPE } from "../../src/core/events.js";
import { freeSipPort, startAsterisk, type RunningAsterisk } from "../testbed/asterisk.js";
import { waitForEvent, waitForState } from "../testbed/matrixClient.js";
import { freePort } from "../testbed/synapse.js";
import { botMessages, requireTestbed, sleep, World, type User } from "./world.js";

const OFFICE_BOT = "@vm_office:localhost";
const PBX_BOT = "@vm_pbxtcp:localhost";
const FRONTDESK_BOT = "@vm_frontdesk:localhost";
const PASSWORD_1001 = "Sip-1001-Secret-pw";
const PASSWORD_1002 = "Sip-1002-Secret-pw";
const WRONG_PASSWORD = "Not-The-1001-Password";
const PASSWORD_1003 = "Sip-1003-Secret-pw";
/** The bridge's own PBX account (endpoint mwibridge), for mailboxes an admin linked. */
const SYSTEM_PASSWORD = "Bridge-Account-Secret-pw";
/** "Nothing happened" is judged over this window. */
const QUIET_MS = 2_500;
/** A voicemail must reach Matrix this fast once Asterisk has stored it. */
const ARRIVAL_MS = 10_000;

interface InboundMwi {
  mailbox: string;
  /** Seconds left before Asterisk drops the subscription. */
  expiry: number;
  callId: string;
}

/** MWI subscriptions in `pjsip show subscriptions inbound`: mailbox, seconds left, Call-ID. */
function inboundMwi(listing: string): InboundMwi[] {
  const found: InboundMwi[] = [];
  const re = /^Resource:\s+([^/\s]+)\/message-summary\s*\n\s*Expiry:\s+(\d+)\s+(\S+)/gm;
  for (const m of listing.matchAll(re)) found.push({ mailbox: m[1]!, expiry: Number(m[2]), callId: m[3]! });
  return found;
}

async function waitUntil<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 10_000, everyMs = 100): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

describe("SIP MWI (RFC 3842) against a real Asterisk", { timeout: 600_000 }, () => {
  let world: World | undefined;
  let asterisk: RunningAsterisk | undefined;
  let alice: User;
  let officeRoom: string;
  const started = Date.now();
  const timings: string[] = [];

  before(async (t) => {
    if (!(await requireTestbed(t as unknown as TestContext))) return;
    let t0 = Date.now();
    const sipPort = await freeSipPort();
    asterisk = await startAsterisk({
      sipPort,
      amiPort: await freePort(),
      mailboxes: [
        { mailbox: "1001", password: PASSWORD_1001 },
        { mailbox: "1002", password: PASSWORD_1002, authUser: "alice1002" },
        { mailbox: "1003", password: PASSWORD_1003 },
        // An endpoint of its own for the bridge: Asterisk lets an endpoint with allow_subscribe
        // subscribe to the mailboxes of any AOR.
        { mailbox: "mwibridge", password: SYSTEM_PASSWORD },
      ],
    });
    timings.push(`asterisk started in ${Date.now() - t0} ms`);
    const udpLocal = await freeSipPort();
    let tcpLocal = await freeSipPort();
    while (tcpLocal === udpLocal) tcpLocal = await freeSipPort();
    let frontdeskLocal = await freeSipPort();
    while (frontdeskLocal === udpLocal || frontdeskLocal === tcpLocal) frontdeskLocal = await freeSipPort();
    const spool = { dir: asterisk.spoolDir, context: "default" };
    t0 = Date.now();
    try {
      world = await World.create({
        synapsePort: await freePort(),
        bridgePort: await freePort(),
        systems: [
          {
            id: "office",
            name: "Office Voicemail",
            botLocalpart: "vm_office",
            kind: "sip",
            footer: "Dial *97 to listen",
            sip: {
              server: { host: "127.0.0.1", port: sipPort, transport: "udp" },
              local: { bindAddress: "127.0.0.1", port: udpLocal },
              expires: 60,
              asteriskSpool: spool,
            },
          },
          {
            id: "pbx-tcp",
            name: "PBX over TCP",
            botLocalpart: "vm_pbxtcp",
            kind: "sip",
            sip: {
              server: { host: "127.0.0.1", port: sipPort, transport: "tcp" },
              local: { bindAddress: "127.0.0.1", port: tcpLocal },
              // Asterisk's auth user of 1002 is alice1002: the admin allows --auth-user here.
              allowAuthUser: true,
              expires: 60,
              asteriskSpool: spool,
            },
          },
          {
            id: "frontdesk",
            name: "Front Desk",
            botLocalpart: "vm_frontdesk",
            kind: "sip",
            sip: {
              server: { host: "127.0.0.1", port: sipPort, transport: "udp" },
              local: { bindAddress: "127.0.0.1", port: frontdeskLocal },
              credentials: { username: "mwibridge", password: SYSTEM_PASSWORD },
              expires: 60,
            },
          },
        ],
      });
    } catch (err) {
      await asterisk.stop();
      asterisk = undefined;
      throw err;
    }
    timings.push(`synapse + bridge started in ${Date.now() - t0} ms`);
    alice = await world.user("alice");
    officeRoom = await world.openDm(alice, OFFICE_BOT);
  });

  after(async () => {
    if (timings.length) console.log(["timings:", ...timings, `whole suite: ${Date.now() - started} ms`].join("\n  "));
    // The bridge first (it unsubscribes politely), then Asterisk.
    await world?.close();
    await asterisk?.stop();
  });

  const w = () => world!;
  let admin: User | undefined;
  const adminUser = async () => (admin ??= await w().user("admin"));
  const ast = () => asterisk!;
  const linksDb = () => {
    const file = join(w().dir, "data", "links.db");
    return existsSync(file) ? readFileSync(file, "utf8") : "";
  };
  const subscribed = async (mailbox: string) => inboundMwi(await ast().inboundSubscriptions()).filter((s) => s.mailbox === mailbox);
  const officeMessages = () => botMessages(alice.client, officeRoom, OFFICE_BOT);
  /** The bot's next message in the room (after the ones there now) that matches. */
  const nextMessage = (room: string, bot: string, re: RegExp, timeoutMs = ARRIVAL_MS): Promise<MatrixEvent> => {
    const seen = new Set(botMessages(alice.client, room, bot).map((e) => e.getId()));
    return waitForEvent(
      alice.client,
      room,
      (e) => e.getSender() === bot && e.getType() === "m.room.message" && !seen.has(e.getId()) && re.test(e.getContent().body ?? ""),
      timeoutMs,
    );
  };
  const mwiState = (room = officeRoom, key = "office/1001") =>
    alice.client.getRoom(room)?.currentState.getStateEvents(MWI_EVENT_TYPE, key)?.getContent();
  /** The user's last message in the room must be redacted by the bot. */
  const assertLastUserMessageRedacted = async (room: string, bot: string) => {
    const mine = alice.client.getRoom(room)!.getLiveTimeline().getEvents().filter((e) => e.getSender() === alice.userId && e.getType() === "m.room.message");
    const eventId = mine[mine.length - 1]!.getId()!;
    const redaction = await waitForEvent(alice.client, room, (e) => e.getType() === "m.room.redaction" && e.event.redacts === eventId, 10_000);
    assert.equal(redaction.getSender(), bot);
    const original = alice.client.getRoom(room)!.findEventById(eventId);
    assert.equal(original?.isRedacted(), true, "the message with the password is redacted");
    assert.equal(original?.getContent().body, undefined);
  };

  it("(1) refuses a link with the wrong password, says why, stores nothing and redacts the password", async (t) => {
    if (!world) return t.skip("no test bed");
    const t0 = Date.now();
    const reply = await world.command(alice, officeRoom, OFFICE_BOT, `!link office 1001 --password ${WRONG_PASSWORD}`);
    timings.push(`refused link answered in ${Date.now() - t0} ms`);
    assert.equal(reply.getContent().msgtype, "m.notice");
    assert.match(
      reply.getContent().body,
      /^Could not link Office Voicemail mailbox 1001: the server refused the credentials\. Nothing was stored\.$/,
    );
    await assertLastUserMessageRedacted(officeRoom, OFFICE_BOT);
    assert.match((await world.command(alice, officeRoom, OFFICE_BOT, "!list")).getContent().body, /You have no linked mailboxes/);
    assert.doesNotMatch(linksDb(), /1001/, "links.db holds nothing about 1001");
    assert.deepEqual(await subscribed("1001"), [], "no subscription is left behind in Asterisk");
    assert.ok(!world.bridge.log().includes(WRONG_PASSWORD), "the log does not contain the password");
  });

  it("(2) links with the right password: current counts in the reply, Asterisk lists the subscription", async (t) => {
    if (!world) return t.skip("no test bed");
    const t0 = Date.now();
    const reply = await world.command(alice, officeRoom, OFFICE_BOT, `!link office 1001 --password ${PASSWORD_1001}`);
    timings.push(`successful link answered in ${Date.now() - t0} ms`);
    assert.equal(reply.getContent().msgtype, "m.notice");
    assert.match(reply.getContent().body, /^Linked Office Voicemail mailbox 1001: 0 new, 0 old\.$/);
    await assertLastUserMessageRedacted(officeRoom, OFFICE_BOT);

    const subs = await waitUntil("Asterisk to list the subscription of 1001", async () => {
      const s = await subscribed("1001");
      return s.length ? s : undefined;
    }, 5_000);
    assert.equal(subs.length, 1, `exactly one subscription for 1001: ${JSON.stringify(subs)}`);

    const state = await waitForState(alice.client, officeRoom, MWI_EVENT_TYPE, "office/1001", undefined, 10_000);
    assert.equal(state.getContent().new, 0);
    assert.equal(state.getContent().old, 0);
    assert.equal(state.getContent().waiting, false);
    assert.equal(state.getContent().system, "office");
    assert.match((await world.command(alice, officeRoom, OFFICE_BOT, "!list")).getContent().body, /Office Voicemail 1001: 0 new, 0 old/);

    const db = linksDb();
    assert.match(db, /"mailbox":"1001"/);
    assert.match(db, /"sealedCredentials":"v1:[A-Za-z0-9+/=]+"/, "the credentials are stored sealed");
    assert.ok(!db.includes(PASSWORD_1001), "links.db never holds the plain password");
    assert.doesNotMatch(db, /"password"/, "no plain password field");
    assert.ok(!world.bridge.log().includes(PASSWORD_1001), "the log does not contain the password");
  });

  it("(3) a real voicemail becomes an m.text with counts, caller and called number, and a state event", async (t) => {
    if (!world) return t.skip("no test bed");
    const next = nextMessage(officeRoom, OFFICE_BOT, /New voicemail/);
    const left = await ast().leaveVoicemail("1001", { number: "+15551234567" }, { rdnis: "+15557654321" });
    const stored = Date.now();
    const message = await next;
    timings.push(`voicemail stored -> Matrix message: ${Date.now() - stored} ms`);
    t.diagnostic(`spool: ${JSON.stringify(left.info)}`);
    const content = message.getContent();
    t.diagnostic(`message: ${JSON.stringify(content.body)}`);
    assert.equal(content.msgtype, "m.text", "a new voicemail must notify the phone");
    assert.deepEqual(content["m.mentions"], {}, "the caller's number or name in the body pings nobody");
    assert.match(content.body, /^New voicemail from \+1 555 123 4567(, \d+:\d\d)?\n/, "who called and how long first");
    assert.match(content.body, /^Office Voicemail mailbox 1001: 1 new, 0 old$/m);
    assert.match(content.body, /^To \+1 555 765 4321 · /m);
    assert.match(content.body, /Dial \*97 to listen/);
    assert.match(content.formatted_body, /<strong>New voicemail/);

    const state = await waitForState(alice.client, officeRoom, MWI_EVENT_TYPE, "office/1001", (e) => e.getContent().new === 1, 10_000);
    const sc = state.getContent();
    assert.equal(sc.user_id, alice.userId);
    assert.equal(sc.waiting, true);
    assert.equal(sc.old, 0);
    assert.equal(sc.last_message?.ani, "+15551234567");
    assert.equal(sc.last_message?.dnis, "+15557654321");
    assert.equal(sc.last_message?.time, new Date(Number(left.info.origtime) * 1000).toISOString());
    await waitForState(alice.client, officeRoom, "m.room.name", "", (e) => e.getContent().name === "Office Voicemail (1)", 10_000);
  });

  it("(4) a message listened to (moved to Old) updates the counts with an m.notice", async (t) => {
    if (!world) return t.skip("no test bed");
    const next = nextMessage(officeRoom, OFFICE_BOT, /^All voicemail heard in mailbox 1001: 1 old$/m);
    const t0 = Date.now();
    await ast().moveToOld("1001");
    const notice = await next;
    timings.push(`moveToOld -> Matrix message: ${Date.now() - t0} ms`);
    assert.equal(notice.getContent().msgtype, "m.notice");
    assert.doesNotMatch(notice.getContent().body, /New voicemail/);
    await waitForState(alice.client, officeRoom, MWI_EVENT_TYPE, "office/1001", (e) => e.getContent().new === 0 && e.getContent().old === 1, 10_000);
    await waitForState(alice.client, officeRoom, "m.room.name", "", (e) => e.getContent().name === "Office Voicemail", 10_000);
  });

  it("(5) !mwi off unsubscribes upstream and silences; !mwi on subscribes again and resyncs", async (t) => {
    if (!world) return t.skip("no test bed");
    const off = await world.command(alice, officeRoom, OFFICE_BOT, "!mwi off");
    assert.match(off.getContent().body, /MWI is now off for Office Voicemail 1001/);
    await waitUntil("the subscription of 1001 to end in Asterisk", async () => (await subscribed("1001")).length === 0, 5_000);

    const before = officeMessages().length;
    await ast().leaveVoicemail("1001", { number: "+15550002222" }, { seconds: 1 });
    assert.deepEqual(await ast().counts("1001"), { new: 1, old: 1, urgent: 0 });
    await sleep(QUIET_MS);
    assert.equal(officeMessages().length, before, "nothing reaches Matrix while MWI is off");
    assert.equal(mwiState()?.new, 0, "the state event is untouched while MWI is off");
    assert.deepEqual(await subscribed("1001"), [], "still not subscribed");
    assert.match((await world.command(alice, officeRoom, OFFICE_BOT, "!list")).getContent().body, /1001 \(MWI off\)/);

    const t0 = Date.now();
    const resync = nextMessage(officeRoom, OFFICE_BOT, /mailbox 1001: 1 new, 1 old/);
    const afterOn = officeMessages().length;
    const on = await world.command(alice, officeRoom, OFFICE_BOT, "!mwi on");
    assert.match(on.getContent().body, /MWI is now on for Office Voicemail 1001/);
    const subs = await waitUntil("the subscription of 1001 to come back", async () => {
      const s = await subscribed("1001");
      return s.length ? s : undefined;
    }, 10_000);
    assert.equal(subs.length, 1);
    const message = await resync;
    timings.push(`!mwi on -> true counts in Matrix: ${Date.now() - t0} ms`);
    assert.match(message.getContent().body, /from \+1 555 000 2222/, "the caller of the message left while MWI was off");
    await waitForState(alice.client, officeRoom, MWI_EVENT_TYPE, "office/1001", (e) => e.getContent().new === 1 && e.getContent().old === 1, 10_000);
    await sleep(1000);
    const shown = officeMessages().slice(afterOn).map((e) => e.getContent().body as string);
    t.diagnostic(`messages after !mwi on: ${JSON.stringify(shown)}`);
    assert.ok(
      !shown.some((b) => /mailbox 1001: (0 new, )?1 old$/m.test(b)),
      "!mwi on must not show the stale counts from before MWI was off",
    );
  });

  it("(6) survives an Asterisk restart: no repeat, and the next voicemail arrives", async (t) => {
    if (!world) return t.skip("no test bed");
    const [before] = await subscribed("1001");
    assert.ok(before, "subscribed before the restart");
    const count = officeMessages().length;
    const t0 = Date.now();
    await ast().restart();
    timings.push(`asterisk restart took ${Date.now() - t0} ms`);
    // Asterisk restores the subscription from astdb and sends a NOTIFY with the same counts.
    const [after] = await waitUntil("the subscription of 1001 after the restart", async () => {
      const s = await subscribed("1001");
      return s.length ? s : undefined;
    }, 10_000);
    t.diagnostic(`Call-ID before ${before.callId}, after ${after!.callId}`);
    await sleep(QUIET_MS);
    assert.equal(officeMessages().length, count, "the same counts after the restart produce no message");

    const next = nextMessage(officeRoom, OFFICE_BOT, /New voicemail/);
    await ast().leaveVoicemail("1001", { number: "+15553334444" }, { seconds: 1 });
    const stored = Date.now();
    const message = await next;
    timings.push(`after the Asterisk restart: voicemail stored -> Matrix message: ${Date.now() - stored} ms`);
    assert.equal(message.getContent().msgtype, "m.text");
    assert.match(message.getContent().body, /mailbox 1001: 2 new, 1 old/);
    assert.match(message.getContent().body, /from \+1 555 333 4444/);
    await waitForState(alice.client, officeRoom, MWI_EVENT_TYPE, "office/1001", (e) => e.getContent().new === 2, 10_000);
  });

  it("(6b) refreshes the subscription in its dialog before the 60 s expiry, without a message", async (t) => {
    if (!world) return t.skip("no test bed");
    const [first] = await subscribed("1001");
    assert.ok(first, "subscribed");
    const count = officeMessages().length;
    const t0 = Date.now();
    // Asterisk counts the expiry down from 60; the bridge's refresh (an in-dialog SUBSCRIBE)
    // sets it back. Without a refresh the subscription would vanish after `first.expiry` s.
    let last = first.expiry;
    const refreshed = await waitUntil(
      "a refresh of the subscription of 1001",
      async () => {
        const [s] = await subscribed("1001");
        if (!s) throw new Error(`the subscription of 1001 expired (last seen with ${last} s left)`);
        if (s.expiry > last) return s;
        last = s.expiry;
        return undefined;
      },
      (first.expiry + 10) * 1000,
      500,
    );
    timings.push(`refresh seen ${Date.now() - t0} ms into the wait (${first.expiry} s were left, ${last} s at the refresh)`);
    t.diagnostic(`expiry ${first.expiry} s -> ${last} s -> refreshed to ${refreshed.expiry} s; Call-ID ${first.callId} -> ${refreshed.callId}`);
    assert.equal(refreshed.callId, first.callId, "refreshed in the same dialog, not a new subscription");
    assert.ok(refreshed.expiry >= 50, `the refresh asked for the full 60 s again (${refreshed.expiry})`);
    await sleep(1000);
    assert.equal(officeMessages().length, count, "the NOTIFY after the refresh repeats the counts: no message");
  });

  it("(7) survives a bridge restart: subscribed again from the store, no duplicate, the next voicemail arrives", async (t) => {
    if (!world) return t.skip("no test bed");
    const [before] = await subscribed("1001");
    assert.ok(before, "subscribed before the restart");
    const count = officeMessages().length;
    const t0 = Date.now();
    await world.bridge.restart();
    timings.push(`bridge restart took ${Date.now() - t0} ms`);
    const [after] = await waitUntil("a new subscription of 1001 from the restarted bridge", async () => {
      const s = await subscribed("1001");
      return s.length === 1 && s[0]!.callId !== before.callId ? s : undefined;
    }, 10_000);
    timings.push(`bridge restart -> subscribed again: ${Date.now() - t0} ms`);
    t.diagnostic(`Call-ID before ${before.callId}, after ${after!.callId}`);
    await sleep(QUIET_MS);
    assert.equal(officeMessages().length, count, "the first NOTIFY repeats the known counts: no message");

    const next = nextMessage(officeRoom, OFFICE_BOT, /New voicemail/);
    await ast().leaveVoicemail("1001", { number: "+15556667777" }, { seconds: 1 });
    const stored = Date.now();
    const message = await next;
    timings.push(`after the bridge restart: voicemail stored -> Matrix message: ${Date.now() - stored} ms`);
    assert.match(message.getContent().body, /mailbox 1001: 3 new, 1 old/);
    assert.match(message.getContent().body, /from \+1 555 666 7777/);
    assert.equal(officeMessages().length, count + 1, "exactly one message for the one voicemail");
  });

  it("(8) !unlink unsubscribes and forgets the stored credentials", async (t) => {
    if (!world) return t.skip("no test bed");
    const db = linksDb();
    const sealed = [...db.matchAll(/"sealedCredentials":"v1:([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1]!, "base64"));
    assert.ok(sealed.length > 0, "links.db holds sealed credentials");
    assert.ok(!db.includes(PASSWORD_1001), "links.db never holds the plain password");
    for (const raw of sealed) assert.ok(!raw.includes(PASSWORD_1001), "the sealed bytes do not contain the password");

    const reply = await world.command(alice, officeRoom, OFFICE_BOT, "!unlink office 1001");
    assert.match(reply.getContent().body, /^Unlinked Office Voicemail mailbox 1001\.$/);
    await waitUntil("the subscription of 1001 to end in Asterisk", async () => (await subscribed("1001")).length === 0, 5_000);
    const lines = linksDb().split("\n").filter((l) => /"mailbox":"1001"/.test(l));
    assert.deepEqual(lines, [], "no line of links.db names the unlinked mailbox (nor holds its sealed credentials)");
    assert.match((await world.command(alice, officeRoom, OFFICE_BOT, "!list")).getContent().body, /You have no linked mailboxes/);

    const count = officeMessages().length;
    await ast().leaveVoicemail("1001", { number: "+15558889999" }, { seconds: 1 });
    await sleep(QUIET_MS);
    assert.equal(officeMessages().length, count, "nothing reaches Matrix after the unlink");
    assert.deepEqual(await subscribed("1001"), []);
  });

  it("(9) works over TCP with a separate auth user", async (t) => {
    if (!world) return t.skip("no test bed");
    const room = await world.openDm(alice, PBX_BOT);
    const reply = await world.command(alice, room, PBX_BOT, `!link 1002 --password ${PASSWORD_1002} --auth-user alice1002`);
    assert.match(reply.getContent().body, /^Linked PBX over TCP mailbox 1002: 0 new, 0 old\.$/);
    await assertLastUserMessageRedacted(room, PBX_BOT);
    const [sub] = await waitUntil("Asterisk to list the subscription of 1002", async () => {
      const s = await subscribed("1002");
      return s.length === 1 ? s : undefined;
    }, 5_000);
    // The dialog Asterisk lists was set up over TCP.
    const overTcp = new RegExp(`sip: -> SUBSCRIBE sip:1002@127\\.0\\.0\\.1 \\(CSeq \\d+ SUBSCRIBE, Call-ID ${sub!.callId}\\) to tcp:127\\.0\\.0\\.1:${ast().sipPort}\\b`);
    assert.match(world.bridge.log(), overTcp);

    const next = nextMessage(room, PBX_BOT, /New voicemail/);
    await ast().leaveVoicemail("1002", { number: "+15551110000" }, { seconds: 1 });
    const stored = Date.now();
    const message = await next;
    timings.push(`TCP: voicemail stored -> Matrix message: ${Date.now() - stored} ms`);
    assert.equal(message.getContent().msgtype, "m.text");
    assert.match(message.getContent().body, /mailbox 1002: 1 new, 0 old/);
    assert.match(message.getContent().body, /^New voicemail from \+1 555 111 0000/);
    assert.doesNotMatch(message.getContent().body, /To 1002/, "the called number is the mailbox: not said again");

    assert.match((await world.command(alice, room, PBX_BOT, "!unlink 1002")).getContent().body, /Unlinked PBX over TCP mailbox 1002/);
    await waitUntil("the subscription of 1002 to end in Asterisk", async () => (await subscribed("1002")).length === 0, 5_000);
  });

  it("(10) a system with credentials of its own keeps watching an admin-linked mailbox after the last self-linked user unlinks", async (t) => {
    if (!world) return t.skip("no test bed");
    const admin = await adminUser();
    const bob = await world.user("bob");
    const adminRoom = await world.openDm(admin, FRONTDESK_BOT);
    const aliceRoom = await world.openDm(alice, FRONTDESK_BOT);
    const linked = await world.command(alice, aliceRoom, FRONTDESK_BOT, `!link 1003 --password ${PASSWORD_1003}`);
    assert.match(linked.getContent().body, /^Linked Front Desk mailbox 1003: 0 new, 0 old\.$/);
    const [own] = await waitUntil("Asterisk to list the subscription of 1003", async () => {
      const s = await subscribed("1003");
      return s.length === 1 ? s : undefined;
    }, 5_000);

    const bobRoom = world.acceptDmFrom(bob, FRONTDESK_BOT);
    const reply = await world.command(admin, adminRoom, FRONTDESK_BOT, `!admin link ${bob.userId} 1003`);
    assert.equal(reply.getContent().body, `Linked Front Desk mailbox 1003 to ${bob.userId}: watched with the system's credentials.`);
    const room = await bobRoom;

    assert.match((await world.command(alice, aliceRoom, FRONTDESK_BOT, "!unlink 1003")).getContent().body, /^Unlinked Front Desk mailbox 1003\.$/);
    const [system] = await waitUntil("a subscription of 1003 with the system's account", async () => {
      const s = await subscribed("1003");
      return s.length === 1 && s[0]!.callId !== own!.callId ? s : undefined;
    }, 10_000);
    t.diagnostic(`Call-ID with Alice's credentials ${own!.callId}, with the system's ${system!.callId}`);
    assert.match(world.bridge.log(), new RegExp(`SUBSCRIBE sip:1003@127\\.0\\.0\\.1 \\(CSeq \\d+ SUBSCRIBE, Call-ID ${system!.callId}\\)`));

    const next = waitForEvent(bob.client, room, (e) => e.getSender() === FRONTDESK_BOT && /^Front Desk mailbox 1003: 1 new/m.test(e.getContent().body ?? ""), ARRIVAL_MS);
    await ast().leaveVoicemail("1003", { number: "+15554443333" }, { seconds: 1 });
    const message = await next;
    assert.equal(message.getContent().msgtype, "m.text");
    assert.deepEqual(message.getContent()["m.mentions"], {});
  });

  it("(10b) a system without credentials: !admin link says the user gets MWI only while someone who linked it with a password follows it", async (t) => {
    if (!world) return t.skip("no test bed");
    const admin = await adminUser();
    const adminRoom = await world.openDm(admin, OFFICE_BOT);
    // Alice unlinked 1001 in (8): nobody follows it with a password now.
    const reply = await world.command(admin, adminRoom, OFFICE_BOT, "!admin link @bob:localhost 1001");
    assert.equal(
      reply.getContent().body,
      "Linked Office Voicemail mailbox 1001 to @bob:localhost. This system has no credentials for admin links: the user gets MWI only while someone who linked it with a password follows it; " +
        "nobody does now (give the system credentials in its config, or have the user link it with !link and its password).",
    );
    assert.match(world.bridge.log(), /office: cannot watch 1001: nobody who follows it linked it with a password, and the system has no sip\.credentials/);
    assert.deepEqual(await subscribed("1001"), [], "no credentials, no subscription");
    assert.match((await world.command(admin, adminRoom, OFFICE_BOT, "!admin unlink @bob:localhost 1001")).getContent().body, /^Unlinked Office Voicemail mailbox 1001 from @bob:localhost\.$/);
  });

  it("(11) !link is no oracle: a missing mailbox reads like a wrong password, and the 6th failure is not tried", async (t) => {
    if (!world) return t.skip("no test bed");
    const carol = await world.user("carol");
    const room = await world.openDm(carol, OFFICE_BOT);
    const replies: string[] = [];
    for (const mailbox of ["1001", "4242", "4243", "4244", "4245"]) {
      replies.push((await world.command(carol, room, OFFICE_BOT, `!link ${mailbox} --password ${WRONG_PASSWORD}`)).getContent().body as string);
    }
    assert.deepEqual(replies.map((r) => r.replace(/mailbox \d+/, "mailbox N")), Array(5).fill("Could not link Office Voicemail mailbox N: the server refused the credentials. Nothing was stored."));
    const sixth = await world.command(carol, room, OFFICE_BOT, `!link 4246 --password ${WRONG_PASSWORD}`);
    assert.match(sixth.getContent().body, /^Too many tries: try again after \d\d:\d\d\.$/);
    const log = world.bridge.log();
    assert.doesNotMatch(log, /SUBSCRIBE sip:4246@/, "the server is not asked: its fail2ban sees no 6th failure");
    assert.equal(log.match(/link of (1001|424\d) for @carol:localhost refused: /g)?.length, 6, "each refusal is one log line");
    assert.match(log, /office: link of 4246 for @carol:localhost refused: too many failed tries \(the user's limit\)/);
  });

  it("never writes a mailbox password into its log", async (t) => {
    if (!world) return t.skip("no test bed");
    const log = world.bridge.log();
    assert.ok(log.length > 1000, "the log has content");
    assert.match(log, /sip: user agent listening/, "the log is the SIP-enabled bridge's");
    for (const secret of [PASSWORD_1001, PASSWORD_1002, PASSWORD_1003, SYSTEM_PASSWORD, WRONG_PASSWORD]) {
      assert.ok(!log.includes(secret), `the log must not contain a password (${secret.slice(0, 4)}…)`);
    }
  });
});
