/**
 * `!voicemails`, `!heard` and `!delete` on voicemail e-mail (kind: imap) end to end: a real
 * Dovecot 2.4 with a shared voicemail account holding mails of mailboxes 2001 (Alice's) and 2002
 * (someone else's), the bridge as a child process, a real Synapse. `!heard` sets `\Seen` on
 * exactly the newest mail of 2001; `!delete confirm` expunges exactly that one mail; the mail of
 * 2002 is never touched; the DM shows the counts the watching session reads afterwards.
 */
import assert from "node:assert/strict";
import { after, before, describe, it, type TestContext } from "node:test";
import type { MatrixEvent } from "matrix-js-sdk";
import { MWI_EVENT_TYPE } from "../../src/core/events.js";
import { startDovecot, type RunningDovecot } from "../testbed/dovecot.js";
import { waitForState } from "../testbed/matrixClient.js";
import { freePort } from "../testbed/synapse.js";
import { requireTestbed, World, type User } from "./world.js";

const MAIL_BOT = "@vm_mail:localhost";
const OWN_BOT = "@vm_ownmail:localhost";
const GRACE = "grace@example.org";
const GRACE_PASSWORD = "Grace-Heard-Mail-pw";
const SHARED_PASSWORD = "Shared-Heard-Account-pw";
const ARRIVAL_MS = 30_000;

/** A mail as Asterisk's default template writes it. */
function asteriskStyleMail(mailbox: string, number: string, name: string, n: number, minutesAgo: number): string {
  return [
    `Date: ${new Date(Date.now() - minutesAgo * 60_000).toUTCString()}`,
    'From: "Asterisk PBX" <asterisk@localhost>',
    `To: "Mailbox ${mailbox}" <voicemail@localhost>`,
    `Subject: [PBX]: New message ${n} in mailbox ${mailbox}`,
    `Message-ID: <Asterisk-${mailbox}-${n}-${Date.now()}@localhost>`,
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

describe("!voicemails, !heard and !delete against a real Dovecot", { timeout: 110_000 }, () => {
  let world: World | undefined;
  let dovecot: RunningDovecot | undefined;
  let alice: User;
  let room: string;
  const started = Date.now();

  before(async (t) => {
    if (!(await requireTestbed(t as unknown as TestContext))) return;
    dovecot = await startDovecot({ users: [{ user: "voicemail", password: SHARED_PASSWORD }, { user: GRACE, password: GRACE_PASSWORD }] });
    try {
      await dovecot.append("voicemail", asteriskStyleMail("2001", "5551111", "Ada Older", 1, 30));
      await dovecot.append("voicemail", asteriskStyleMail("2002", "5552222", "Not Alices", 1, 20));
      await dovecot.append("voicemail", asteriskStyleMail("2001", "5553333", "Grace Newer", 2, 10));
      world = await World.create({
        synapsePort: await freePort(),
        bridgePort: await freePort(),
        systems: [
          {
            id: "mail",
            name: "Voicemail Mail",
            botLocalpart: "vm_mail",
            kind: "imap",
            imap: { host: "127.0.0.1", port: dovecot.port, username: "voicemail", password: SHARED_PASSWORD, folder: "INBOX", pollSeconds: 30 },
          },
          { id: "ownmail", name: "My Mail", botLocalpart: "vm_ownmail", kind: "imap", imap: { host: "127.0.0.1", port: dovecot.port } },
        ],
      });
    } catch (err) {
      await dovecot.stop();
      dovecot = undefined;
      throw err;
    }
    alice = await world.user("alice");
    room = await world.openDm(alice, MAIL_BOT);
  });

  after(async () => {
    console.log(`whole suite: ${Date.now() - started} ms`);
    if (world) assert.ok(!world.bridge.log().includes(SHARED_PASSWORD) && !world.bridge.log().includes(GRACE_PASSWORD), "no IMAP password is ever logged");
    await world?.close();
    await dovecot?.stop();
  });

  const w = () => world!;
  const say = async (body: string) => (await w().command(alice, room, MAIL_BOT, body)).getContent().body as string;
  const state = (predicate: (c: Record<string, unknown>) => boolean) =>
    waitForState(alice.client, room, MWI_EVENT_TYPE, "mail/2001", (e: MatrixEvent) => predicate(e.getContent()), ARRIVAL_MS).then((e) => e.getContent());
  /** Subject and flags of every mail in the shared account, as another mail client sees them. */
  const mails = async (user = "voicemail") => {
    const c = await dovecot!.client(user);
    try {
      await c.mailboxOpen("INBOX", { readOnly: true });
      const out: { subject: string; seen: boolean }[] = [];
      for (const m of await c.fetchAll("1:*", { envelope: true, flags: true })) out.push({ subject: m.envelope?.subject ?? "", seen: m.flags?.has("\\Seen") ?? false });
      return out;
    } finally {
      await c.logout();
    }
  };

  it("(1) !voicemails lists only the linked mailbox's mails, newest first", async (t) => {
    if (!world) return t.skip("no test bed");
    const admin = await w().user("admin");
    const adminRoom = await w().openDm(admin, MAIL_BOT);
    await w().command(admin, adminRoom, MAIL_BOT, `!admin link ${alice.userId} 2001`);
    await state((c) => c.new === 2);
    const list = await say("!voicemails");
    assert.match(list, /^Voicemail Mail mailbox 2001:\n- new: from Grace Newer \(5553333\), .*\n- new: from Ada Older \(5551111\), /, list);
    assert.doesNotMatch(list, /Not Alices|5552222/);
    assert.match(await say("!voicemails mail 2002"), /None of your linked mailboxes matches/);
  });

  it("(2) !heard sets \\Seen on exactly the newest mail of 2001", async (t) => {
    if (!world) return t.skip("no test bed");
    assert.match(await say("!heard"), /^Marked heard in Voicemail Mail mailbox 2001: the voicemail from Grace Newer/);
    await state((c) => c.new === 1 && c.old === 1);
    const flags = Object.fromEntries((await mails()).map((m) => [m.subject, m.seen]));
    assert.deepEqual(flags, {
      "[PBX]: New message 1 in mailbox 2001": false,
      "[PBX]: New message 1 in mailbox 2002": false,
      "[PBX]: New message 2 in mailbox 2001": true,
    });
  });

  it("(3) !delete expunges nothing until !delete confirm, then exactly that one mail", async (t) => {
    if (!world) return t.skip("no test bed");
    assert.match(await say("!delete"), /^This deletes the newest voicemail of Voicemail Mail mailbox 2001, for good: from Grace Newer/);
    assert.equal((await mails()).length, 3);
    assert.match(await say("!delete confirm"), /^Deleted from Voicemail Mail mailbox 2001: the voicemail from Grace Newer/);
    await state((c) => c.new === 1 && c.old === 0);
    assert.deepEqual((await mails()).map((m) => m.subject).sort(), ["[PBX]: New message 1 in mailbox 2001", "[PBX]: New message 1 in mailbox 2002"]);
  });

  it("(4) a per-user account: !heard all sets \\Seen with the account's own login, in its own session", async (t) => {
    if (!world) return t.skip("no test bed");
    await dovecot!.append(GRACE, asteriskStyleMail("3001", "5554444", "Hedy Lamarr", 1, 5));
    await dovecot!.append(GRACE, asteriskStyleMail("3001", "5555555", "Max Planck", 2, 4));
    const own = await w().openDm(alice, OWN_BOT);
    const linked = await w().command(alice, own, OWN_BOT, `!link ${GRACE} --password ${GRACE_PASSWORD}`);
    assert.match(linked.getContent().body, /^Linked My Mail mailbox grace@example\.org/);
    await waitForState(alice.client, own, MWI_EVENT_TYPE, `ownmail/${GRACE}`, (e: MatrixEvent) => e.getContent().new === 2, ARRIVAL_MS);
    const reply = (await w().command(alice, own, OWN_BOT, "!heard all")).getContent().body as string;
    assert.match(reply, /^Marked heard in My Mail mailbox grace@example\.org: 2 voicemails\./, reply);
    await waitForState(alice.client, own, MWI_EVENT_TYPE, `ownmail/${GRACE}`, (e: MatrixEvent) => e.getContent().new === 0 && e.getContent().old === 2, ARRIVAL_MS);
    assert.deepEqual((await mails(GRACE)).map((m) => m.seen), [true, true]);
    // The shared account's mails were not touched by it.
    assert.deepEqual((await mails()).map((m) => m.seen), [false, false]);
  });
});
