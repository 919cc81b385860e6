/**
 * Voicemail as e-mail (kind: imap) end to end: a real Asterisk 22 mails each voicemail with its
 * own default template (attach=yes) through `mailcmd` = dovecot-lda into a real Dovecot 2.4; the
 * bridge reads that Dovecot over IMAP; a real Synapse and users driven by matrix-js-sdk. A shared
 * account (system `username`) serves mailboxes an admin links; a per-user account is linked with
 * its password. The wording of notifications is someone else's: only names and numbers are pinned.
 */
import assert from "node:assert/strict";
import { after, before, describe, it, type TestContext } from "node:test";
import type { MatrixEvent } from "matrix-js-sdk";
import { MWI_EVENT_TYPE } from "../../src/core/events.js";
import { freeSipPort, startAsterisk, type RunningAsterisk } from "../testbed/asterisk.js";
import { startDovecot, type RunningDovecot } from "../testbed/dovecot.js";
import { waitForEvent, waitForState } from "../testbed/matrixClient.js";
import { freePort } from "../testbed/synapse.js";
import { botMessages, requireTestbed, sleep, World, type User } from "./world.js";

const MAIL_BOT = "@vm_mail:localhost";
const OWN_BOT = "@vm_ownmail:localhost";
const SHARED_PASSWORD = "Shared-Voicemail-Account-pw";
const GRACE_PASSWORD = "Grace-Mail-Account-pw";
const WRONG_PASSWORD = "Not-Graces-Mail-pw";
const GRACE = "grace@example.org";
const QUIET_MS = 3_000;
/** Asterisk records, mails, Dovecot delivers, the bridge hears it by IDLE: generous on a busy machine. */
const ARRIVAL_MS = 30_000;

/** A mail as Asterisk's default template writes it (for the per-user account, which Asterisk does not mail). */
function asteriskStyleMail(mailbox: string, number: string, name: string, n: number): string {
  return [
    `Date: ${new Date().toUTCString()}`,
    'From: "Asterisk PBX" <asterisk@localhost>',
    `To: "Mailbox ${mailbox}" <${GRACE}>`,
    `Subject: [PBX]: New message ${n} in mailbox ${mailbox}`,
    `Message-ID: <Asterisk-${n}-${Date.now()}@localhost>`,
    `X-Asterisk-CallerID: ${number}`,
    `X-Asterisk-CallerIDName: ${name}`,
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=UTF-8",
    "",
    `Dear Mailbox ${mailbox}:`,
    "",
    `\tjust wanted to let you know you were just left a 0:07 long message (number ${n})`,
    `in mailbox ${mailbox} from ${name} <${number}>, on Tuesday, December 01, 2026 at 09:10:08 AM`,
    "",
  ].join("\r\n");
}

describe("voicemail e-mail (IMAP) against a real Dovecot fed by a real Asterisk", { timeout: 110_000 }, () => {
  let world: World | undefined;
  let asterisk: RunningAsterisk | undefined;
  let dovecot: RunningDovecot | undefined;
  let alice: User;
  let aliceRoom: string;
  let ownRoom: string;
  const timings: string[] = [];

  before(async (t) => {
    if (!(await requireTestbed(t as unknown as TestContext))) return;
    let t0 = Date.now();
    dovecot = await startDovecot({ users: [{ user: "voicemail", password: SHARED_PASSWORD }, { user: GRACE, password: GRACE_PASSWORD }] });
    timings.push(`dovecot started in ${Date.now() - t0} ms`);
    t0 = Date.now();
    try {
      asterisk = await startAsterisk({
        sipPort: await freeSipPort(),
        amiPort: await freePort(),
        sipTrace: false,
        mailboxes: [{ mailbox: "2001", password: "Sip-2001-pw", email: "2001@localhost", fullName: "Alice Example" }],
        voicemailMail: { mailcmd: dovecot.deliveryCommand("voicemail") },
      });
      timings.push(`asterisk started in ${Date.now() - t0} ms`);
      t0 = Date.now();
      world = await World.create({
        synapsePort: await freePort(),
        bridgePort: await freePort(),
        systems: [
          {
            id: "mail",
            name: "Carrier Voicemail",
            botLocalpart: "vm_mail",
            kind: "imap",
            imap: { host: "127.0.0.1", port: dovecot.port, username: "voicemail", password: SHARED_PASSWORD, folder: "INBOX", pollSeconds: 30 },
          },
          {
            id: "ownmail",
            name: "My Mail Voicemail",
            botLocalpart: "vm_ownmail",
            kind: "imap",
            imap: { host: "127.0.0.1", port: dovecot.port },
          },
        ],
      });
      timings.push(`synapse + bridge started in ${Date.now() - t0} ms`);
    } catch (err) {
      await asterisk?.stop();
      await dovecot.stop();
      asterisk = dovecot = undefined;
      throw err;
    }
    alice = await world.user("alice");
  });

  after(async () => {
    if (timings.length) console.log(["timings:", ...timings].join("\n  "));
    await world?.close();
    await asterisk?.stop();
    await dovecot?.stop();
  });

  const w = () => world!;
  const state = (room: string, key: string) => alice.client.getRoom(room)?.currentState.getStateEvents(MWI_EVENT_TYPE, key)?.getContent();
  const nextMessage = (room: string, bot: string, re: RegExp, timeoutMs = ARRIVAL_MS): Promise<MatrixEvent> => {
    const seen = new Set(botMessages(alice.client, room, bot).map((e) => e.getId()));
    return waitForEvent(alice.client, room, (e) => e.getSender() === bot && e.getType() === "m.room.message" && !seen.has(e.getId()) && re.test(e.getContent().body ?? ""), timeoutMs);
  };

  it("(1) an admin links mailbox 2001 of the shared account: watched with the system's credentials, 0 new, 0 old", async (t) => {
    if (!world) return t.skip("no test bed");
    const admin = await w().user("admin");
    const adminRoom = await w().openDm(admin, MAIL_BOT);
    const dm = w().acceptDmFrom(alice, MAIL_BOT);
    const reply = await w().command(admin, adminRoom, MAIL_BOT, `!admin link ${alice.userId} 2001`);
    assert.equal(reply.getContent().body, `Linked Carrier Voicemail mailbox 2001 to ${alice.userId}: watched with the system's credentials.`);
    aliceRoom = await dm;
    const s = await waitForState(alice.client, aliceRoom, MWI_EVENT_TYPE, "mail/2001", undefined, 20_000);
    assert.equal(s.getContent().new, 0);
    assert.equal(s.getContent().old, 0);
  });

  it("(2) a real voicemail left in Asterisk arrives as its e-mail: the caller in the DM; caller, caller name and called number in the state event", async (t) => {
    if (!world) return t.skip("no test bed");
    const next = nextMessage(aliceRoom, MAIL_BOT, /New voicemail/);
    const t0 = Date.now();
    await asterisk!.leaveVoicemail("2001", { name: "Grace Caller", number: "5551234" }, { seconds: 2 });
    const message = await next;
    timings.push(`voicemail left -> Matrix message: ${Date.now() - t0} ms`);
    const content = message.getContent();
    t.diagnostic(`message: ${JSON.stringify(content.body)}`);
    assert.equal(content.msgtype, "m.text", "a new voicemail notifies the phone");
    // The caller's name in the text comes with the notification's rewrite (src/core/format.ts); its number is there already.
    assert.match(content.body, /555.?1234/);
    const s = await waitForState(alice.client, aliceRoom, MWI_EVENT_TYPE, "mail/2001", (e) => e.getContent().new === 1, 10_000);
    const sc = s.getContent();
    assert.equal(sc.waiting, true);
    assert.equal(sc.old, 0);
    assert.equal(sc.last_message?.ani, "5551234");
    assert.equal(sc.last_message?.caller_name, "Grace Caller");
    assert.equal(sc.last_message?.dnis, "2001");
    assert.equal(typeof sc.last_message?.duration, "number");
    assert.ok(!w().bridge.log().includes(SHARED_PASSWORD), "the log never holds the account's password");
  });

  it("(3) a mail that is not a voicemail changes nothing", async (t) => {
    if (!world) return t.skip("no test bed");
    const before = botMessages(alice.client, aliceRoom, MAIL_BOT).length;
    dovecot!.deliver("voicemail", ["From: bob@example.org", "To: voicemail@localhost", "Subject: Lunch on Friday?", `Date: ${new Date().toUTCString()}`, "", "In mailbox 2001 or not, lunch is at noon.", ""].join("\r\n"));
    await dovecot!.append("voicemail", "From: x@example.org\r\nSubject: =?UTF-8?B?8J+SgA==?= newsletter\r\nX-Priority: 1\r\n\r\nhello\r\n");
    await sleep(QUIET_MS);
    assert.equal(botMessages(alice.client, aliceRoom, MAIL_BOT).length, before, "no message for a mail that is no voicemail");
    assert.equal(state(aliceRoom, "mail/2001")?.new, 1);
  });

  it("(4) marking the mail seen in another mail client makes it old: 0 new, 1 old", async (t) => {
    if (!world) return t.skip("no test bed");
    const t0 = Date.now();
    assert.equal(await dovecot!.setSeen("voicemail", "New message"), 1);
    const s = await waitForState(alice.client, aliceRoom, MWI_EVENT_TYPE, "mail/2001", (e) => e.getContent().new === 0, 15_000);
    timings.push(`\\Seen set -> state event: ${Date.now() - t0} ms`);
    assert.equal(s.getContent().old, 1);
    assert.equal(s.getContent().waiting, false);
  });

  it("(5) Dovecot restarts: an urgent voicemail mailed after the restart shows up; nothing was marked seen by the bridge", async (t) => {
    if (!world) return t.skip("no test bed");
    await dovecot!.restart();
    const next = nextMessage(aliceRoom, MAIL_BOT, /555.?9876/);
    await asterisk!.leaveVoicemail("2001", { name: "Jörg Müller", number: "5559876" }, { seconds: 1, urgent: true });
    await next;
    const s = await waitForState(alice.client, aliceRoom, MWI_EVENT_TYPE, "mail/2001", (e) => e.getContent().new === 1, 15_000);
    assert.equal(s.getContent().old, 1);
    // Asterisk says "New Urgent message" in the subject, and sets no priority header.
    assert.equal(s.getContent().urgent_new, 1, "the urgent voicemail counts as urgent");
    assert.equal(s.getContent().last_message?.ani, "5559876");
    // Asterisk drops the umlauts from X-Asterisk-CallerIDName; its body has them (UTF-8 under charset=ISO-8859-1).
    assert.equal(s.getContent().last_message?.caller_name, "Jörg Müller");
    assert.match(w().bridge.log(), /reconnecting/);
    // The bridge read the new mail: it is still unseen on the server.
    const c = await dovecot!.client("voicemail");
    try {
      await c.mailboxOpen("INBOX", { readOnly: true });
      const unseen = await c.search({ seen: false, subject: "in mailbox 2001" }, { uid: true });
      assert.equal(Array.isArray(unseen) ? unseen.length : 0, 1, "the voicemail the bridge read is still unseen");
    } finally {
      await c.logout();
    }
  });

  it("(6) a per-user account: a wrong password is refused, the right one links it, and its voicemail mails count", async (t) => {
    if (!world) return t.skip("no test bed");
    const room = (ownRoom = await w().openDm(alice, OWN_BOT));
    const refused = await w().command(alice, room, OWN_BOT, `!link ${GRACE} --password ${WRONG_PASSWORD}`);
    assert.match(refused.getContent().body, /^Could not link My Mail Voicemail mailbox grace@example\.org: the mail server refused the login\. Nothing was stored\.$/);
    const linked = await w().command(alice, room, OWN_BOT, `!link ${GRACE} --password ${GRACE_PASSWORD}`);
    assert.match(linked.getContent().body, /^Linked My Mail Voicemail mailbox grace@example\.org/);
    const key = `ownmail/${GRACE}`;
    await waitForState(alice.client, room, MWI_EVENT_TYPE, key, (e) => e.getContent().new === 0, 20_000);
    const next = nextMessage(room, OWN_BOT, /555.?4321/);
    dovecot!.deliver(GRACE, asteriskStyleMail("3001", "5554321", "Hedy Lamarr", 1));
    await next;
    const s = await waitForState(alice.client, room, MWI_EVENT_TYPE, key, (e) => e.getContent().new === 1, 10_000);
    assert.equal(s.getContent().last_message?.ani, "5554321");
    assert.equal(s.getContent().last_message?.dnis, "3001");
    const log = w().bridge.log();
    assert.ok(!log.includes(GRACE_PASSWORD) && !log.includes(WRONG_PASSWORD), "the log never holds a password");
    // The shared account's mailbox is not touched by Grace's mails.
    assert.equal(state(aliceRoom, "mail/2001")?.new, 1);
  });

  it("(7) !mwi off stops reading the per-user account (its session logs out); !mwi on reads it again", async (t) => {
    if (!world) return t.skip("no test bed");
    const room = ownRoom;
    const key = `ownmail/${GRACE}`;
    await w().command(alice, room, OWN_BOT, `!mwi off ownmail ${GRACE}`);
    assert.match(w().bridge.log(), /stopped watching the account of grace@example\.org/);
    const before = botMessages(alice.client, room, OWN_BOT).length;
    dovecot!.deliver(GRACE, asteriskStyleMail("3001", "5550001", "Max Planck", 2));
    await sleep(QUIET_MS);
    assert.equal(botMessages(alice.client, room, OWN_BOT).length, before, "nothing while MWI is off");
    await w().command(alice, room, OWN_BOT, `!mwi on ownmail ${GRACE}`);
    const s = await waitForState(alice.client, room, MWI_EVENT_TYPE, key, (e) => e.getContent().new === 2, 20_000);
    assert.equal(s.getContent().last_message?.ani, "5550001");
  });
});
