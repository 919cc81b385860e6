/**
 * The imap kind's messages capability in-process against a real Dovecot 2.4 (no Matrix): IDs of
 * another mailbox's mails, of a mail already gone, or under another UIDVALIDITY change nothing;
 * the watching session sees the change by itself and reports the new counts.
 */
import assert from "node:assert/strict";
import { after, before, describe, it, type TestContext } from "node:test";
import { Logger } from "matrix-appservice-bridge";
import type { MwiUpdate } from "../../src/core/mwi.js";
import { ImapGateway } from "../../src/gateway/imap/imapGateway.js";
import { changeMails } from "../../src/gateway/imap/mailWrite.js";
import { DEFAULT_RULES } from "../../src/gateway/imap/settings.js";
import { startDovecot, type RunningDovecot } from "../testbed/dovecot.js";
import { ASTERISK_MAIL } from "../unit/mailSamples.js";
import { requireTestbed, sleep } from "./world.js";

const PASSWORD = "Messages-Test-pw";
const voicemail = (mailbox: string, n: number) => ASTERISK_MAIL.replaceAll("mailbox 2001", `mailbox ${mailbox}`).replace("New message 1", `New message ${n}`);

describe("imap messages capability against a real Dovecot", { timeout: 60_000 }, () => {
  let dc: RunningDovecot | undefined;
  let gateway: ImapGateway | undefined;
  const updates: MwiUpdate[] = [];
  const last = (mailbox: string) => updates.filter((u) => u.mailbox === mailbox).at(-1);
  const flags = async () => {
    const c = await dc!.client("voicemail");
    try {
      await c.mailboxOpen("INBOX", { readOnly: true });
      return (await c.fetchAll("1:*", { uid: true, flags: true, envelope: true })).map((m) => ({ uid: m.uid, subject: m.envelope?.subject ?? "", seen: m.flags?.has("\\Seen") ?? false }));
    } finally {
      await c.logout();
    }
  };

  before(async (t) => {
    if (!(await requireTestbed(t as unknown as TestContext))) return;
    dc = await startDovecot({ users: [{ user: "voicemail", password: PASSWORD }] });
    for (const [box, n] of [["2001", 1], ["2002", 1], ["2001", 2]] as const) await dc.append("voicemail", voicemail(box, n));
    gateway = new ImapGateway(
      {
        id: "mail",
        kind: "imap",
        imap: { host: "127.0.0.1", port: dc.port, tls: false, rejectUnauthorized: true, username: "voicemail", password: PASSWORD, folder: "INBOX", pollSeconds: 60, maxMessages: 100, maxFetchBytes: 65536, senders: [], rules: DEFAULT_RULES },
      },
      { acceptUpdate: async (u) => void updates.push(u), log: new Logger("test") },
    );
    await gateway.start();
    await gateway.watching.watch("2001");
    await gateway.watching.watch("2002");
  });

  after(async () => {
    await gateway?.stop();
    await dc?.stop();
  });

  it("IDs not of this mailbox, gone, or under another UIDVALIDITY change nothing", async (t) => {
    if (!gateway) return t.skip("no test bed");
    const mine = await gateway.messages.list("2001");
    const theirs = await gateway.messages.list("2002");
    assert.equal(mine.length, 2);
    assert.equal(theirs.length, 1);
    const [validity, uid] = theirs[0]!.id.split(":");
    await gateway.messages.markHeard("2001", [theirs[0]!.id, `${BigInt(validity!) + 1n}:${uid}`, "1:99999", "junk"]);
    await assert.rejects(gateway.messages.remove("2001", theirs[0]!.id), /no such message/);
    await sleep(500);
    assert.deepEqual((await flags()).map((m) => m.seen), [false, false, false]);
    await assert.rejects(gateway.messages.list("2003"), /not reading this mailbox/);
    // The write session itself checks the folder's UIDVALIDITY before it changes anything.
    const server = { host: "127.0.0.1", port: dc!.port, tls: false, rejectUnauthorized: true };
    const lines: string[] = [];
    await assert.rejects(
      changeMails(server, { username: "voicemail", password: PASSWORD }, "INBOX", BigInt(validity!) + 1n, { kind: "delete", uid: Number(uid) }, (l) => lines.push(l)),
      /folder changed meanwhile; nothing was changed/,
    );
    await assert.rejects(changeMails(server, { username: "voicemail", password: "wrong" }, "INBOX", BigInt(validity!), { kind: "seen", uids: [Number(uid)] }, (l) => lines.push(l)), /refused the login/);
    await assert.rejects(changeMails(server, { username: "voicemail", password: PASSWORD }, "NoSuchFolder", BigInt(validity!), { kind: "seen", uids: [Number(uid)] }, (l) => lines.push(l)), /^Error: the mail server refused it$/);
    assert.equal((await flags()).length, 3);
    assert.ok(!lines.join("\n").includes(PASSWORD));
  });

  it("markHeard and remove change exactly the mail named; the watching session reports the counts", async (t) => {
    if (!gateway) return t.skip("no test bed");
    const [newest, older] = await gateway.messages.list("2001");
    assert.ok(newest && older && newest.id !== older.id);
    await gateway.messages.markHeard("2001", [older.id]);
    const seen = await flags();
    assert.deepEqual(seen.map((m) => [m.subject.includes("2002"), m.seen]), [[false, true], [true, false], [false, false]]);
    for (let i = 0; i < 100 && !(last("2001")?.counts.old === 1); i++) await sleep(100);
    assert.deepEqual(last("2001")!.counts, { waiting: true, new: 1, old: 1, urgentNew: 0, urgentOld: 0 });
    await gateway.messages.remove("2001", newest.id);
    assert.equal((await flags()).length, 2);
    for (let i = 0; i < 100 && !(last("2001")?.counts.new === 0); i++) await sleep(100);
    assert.deepEqual(last("2001")!.counts, { waiting: false, new: 0, old: 1, urgentNew: 0, urgentOld: 0 });
    assert.deepEqual(last("2002")!.counts, { waiting: true, new: 1, old: 0, urgentNew: 0, urgentOld: 0 });
  });
});
