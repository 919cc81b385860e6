/**
 * The imap kind's session against a real Dovecot 2.4, without Matrix: what it costs (one parse
 * per mail, a flag change none), that it changes nothing on the server, expunges, a new
 * UIDVALIDITY, a hostile mail among thousands, and a server that goes away and comes back.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { Logger } from "matrix-appservice-bridge";
import type { MessageInfo, MwiCounts } from "../../src/core/mwi.js";
import { MailSession } from "../../src/gateway/imap/mailSession.js";
import { DEFAULT_RULES } from "../../src/gateway/imap/settings.js";
import { compileRules } from "../../src/gateway/imap/voicemailRules.js";
import { startDovecot, type RunningDovecot } from "../testbed/dovecot.js";
import { ASTERISK_MAIL } from "../unit/mailSamples.js";
import { requireTestbed, sleep } from "./world.js";

const PASSWORD = "Session-Test-pw";

function voicemail(mailbox: string, n: number, caller = "5551234"): string {
  return ASTERISK_MAIL.replaceAll("mailbox 2001", `mailbox ${mailbox}`).replace("New message 1", `New message ${n}`).replace("X-Asterisk-CallerID: 5551234", `X-Asterisk-CallerID: ${caller}`);
}

/** A private CA and a certificate for 127.0.0.1 signed by it (openssl). */
function privateCa(): { caFile: string; certFile: string; keyFile: string } {
  const dir = mkdtempSync(join(tmpdir(), "imap-ca-"));
  const file = (name: string) => join(dir, name);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  writeFileSync(file("ext.cnf"), "subjectAltName=IP:127.0.0.1\n");
  for (const args of [
    ["req", "-x509", ...ec, "-keyout", file("ca.key"), "-out", file("ca.pem"), "-days", "1", "-subj", "/CN=Test Mail CA"],
    ["req", ...ec, "-keyout", file("server.key"), "-out", file("server.csr"), "-subj", "/CN=mail.test"],
    ["x509", "-req", "-in", file("server.csr"), "-CA", file("ca.pem"), "-CAkey", file("ca.key"), "-CAcreateserial", "-out", file("server.pem"), "-days", "1", "-extfile", file("ext.cnf")],
  ]) {
    const run = spawnSync("openssl", args, { encoding: "utf8" });
    assert.equal(run.status, 0, `openssl ${args[0]}: ${run.stderr}`);
  }
  return { caFile: file("ca.pem"), certFile: file("server.pem"), keyFile: file("server.key") };
}

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe("IMAP session against a real Dovecot", { timeout: 110_000 }, () => {
  let dc: RunningDovecot | undefined;
  const reports: { mailbox: string; counts: MwiCounts; message?: MessageInfo }[] = [];
  const last = (mailbox: string) => reports.filter((r) => r.mailbox === mailbox).at(-1);
  const sessions: MailSession[] = [];
  const session = (folder = "INBOX", watched = new Set(["2001", "2002"]), maxMessages = 5000) => {
    const s = new MailSession({
      label: "test",
      server: { host: "127.0.0.1", port: dc!.port, tls: false, rejectUnauthorized: true },
      credentials: { username: "voicemail", password: PASSWORD },
      folder,
      pollSeconds: 30,
      maxMessages,
      maxFetchBytes: 65_536,
      rules: compileRules(DEFAULT_RULES),
      watched,
      report: async (mailbox, counts, message) => void reports.push({ mailbox, counts, ...(message ? { message } : {}) }),
      log: new Logger("imap-session-test"),
    });
    sessions.push(s);
    return s;
  };

  before(async (t) => {
    if (!(await requireTestbed(t as unknown as TestContext))) return;
    dc = await startDovecot({ users: [{ user: "voicemail", password: PASSWORD }] });
  });
  after(async () => {
    for (const s of sessions) await s.stop();
    await dc?.stop();
  });

  it("reads each mail once; a flag change and a restart of Dovecot cost no re-parse; nothing is marked seen", async (t) => {
    if (!dc) return t.skip("no test bed");
    await dc.append("voicemail", voicemail("2001", 1));
    await dc.append("voicemail", voicemail("2002", 1), ["\\Seen"]);
    await dc.append("voicemail", "From: a@example.org\r\nSubject: not a voicemail\r\n\r\nhi\r\n");
    const s = session();
    s.start();
    await s.whenSynced();
    assert.deepEqual(last("2001")?.counts, { waiting: true, new: 1, old: 0, urgentNew: 0, urgentOld: 0 });
    assert.deepEqual(last("2002")?.counts, { waiting: false, new: 0, old: 1, urgentNew: 0, urgentOld: 0 });
    assert.equal(last("2001")?.message?.duration, 11);
    assert.equal(s.stats.mailsRead, 3);

    await dc.setSeen("voicemail", "mailbox 2001");
    await until("2001 to be old", () => (last("2001")?.counts.old === 1 ? true : undefined));
    assert.equal(s.stats.mailsRead, 3, "a flag change is no re-parse");

    await dc.restart();
    await dc.append("voicemail", voicemail("2001", 2, "5559999"));
    await until("the voicemail after the restart", () => (last("2001")?.counts.new === 1 ? true : undefined), 20_000);
    assert.equal(last("2001")?.message?.ani, "5559999");
    assert.equal(s.stats.mailsRead, 4, "after a reconnect (same UIDVALIDITY) only the new mail is read");

    const c = await dc.client("voicemail");
    try {
      await c.mailboxOpen("INBOX", { readOnly: true });
      const unseen = await c.search({ seen: false }, { uid: true });
      assert.equal(Array.isArray(unseen) ? unseen.length : -1, 2, "the bridge marked nothing seen");
    } finally {
      await c.logout();
    }
  });

  it("an expunged mail leaves the counts; a folder made anew (new UIDVALIDITY) is read afresh", async (t) => {
    if (!dc) return t.skip("no test bed");
    const c = await dc.client("voicemail");
    await c.mailboxCreate("Voicemail");
    await c.append("Voicemail", voicemail("2001", 1));
    await c.append("Voicemail", voicemail("2001", 2));
    const s = session("Voicemail");
    reports.length = 0;
    s.start();
    await s.whenSynced();
    assert.equal(last("2001")?.counts.new, 2);
    await c.mailboxOpen("Voicemail");
    await c.messageDelete("1:1");
    await until("an expunged mail to leave the counts", () => (last("2001")?.counts.new === 1 ? true : undefined));
    // A new folder of the same name: UIDVALIDITY changes and UIDs start again at 1.
    await c.mailboxClose();
    await c.mailboxDelete("Voicemail");
    await c.mailboxCreate("Voicemail");
    // UID 2 again, now another mail: a cache that ignored UIDVALIDITY would count it for 2001.
    await c.append("Voicemail", voicemail("2002", 1));
    await c.append("Voicemail", voicemail("2002", 2));
    await c.logout();
    await dc.restart(); // the session reopens the folder and finds the new UIDVALIDITY
    await until("the new folder's counts", () => (last("2002")?.counts.new === 2 && last("2001")?.counts.new === 0 ? true : undefined), 20_000);
    assert.equal(s.stats.mailsRead, 4, "both mails of the new folder were read");
  });

  it("a hostile mail among 1500 costs a bounded fetch; only the newest maxMessages are read", async (t) => {
    if (!dc) return t.skip("no test bed");
    const c = await dc.client("voicemail");
    await c.mailboxCreate("Many");
    await c.append("Many", `Subject: [PBX]: New message 1 in mailbox 2001 ${"X".repeat(3_000_000)}\r\n\r\nhuge\r\n`);
    await c.append("Many", `Subject: =?UTF-8?B?${Buffer.from("\u202e\u0000".repeat(1000)).toString("base64")}?=\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n--x\r\n`);
    for (let i = 0; i < 1500; i++) await c.append("Many", voicemail(i % 2 ? "2001" : "2002", i));
    await c.logout();
    const s = session("Many", new Set(["2001", "2002"]), 1000);
    reports.length = 0;
    const t0 = Date.now();
    const heap0 = process.memoryUsage().heapUsed;
    s.start();
    await s.whenSynced();
    const took = Date.now() - t0;
    t.diagnostic(`1000 of 1502 mails read in ${took} ms, heap +${Math.round((process.memoryUsage().heapUsed - heap0) / 1e6)} MB`);
    assert.equal(s.stats.mailsRead, 1000);
    assert.equal(last("2001")!.counts.new + last("2002")!.counts.new, 1000);
    assert.ok(took < 30_000, `took ${took} ms`);
  });

  it("TLS: implicit TLS and STARTTLS with the server's private CA; without it the certificate is refused", async (t) => {
    if (!dc) return t.skip("no test bed");
    const ca = privateCa();
    const tlsDc = await startDovecot({ users: [{ user: "voicemail", password: PASSWORD }], tls: { certFile: ca.certFile, keyFile: ca.keyFile } });
    try {
      tlsDc.deliver("voicemail", voicemail("2001", 1));
      const run = async (port: number, tls: boolean, caFile?: string) => {
        const got: MwiCounts[] = [];
        const s = new MailSession({
          label: "tls-test",
          server: { host: "127.0.0.1", port, tls, rejectUnauthorized: true, ...(caFile ? { caFile } : {}) },
          credentials: { username: "voicemail", password: PASSWORD },
          folder: "INBOX",
          pollSeconds: 30,
          maxMessages: 100,
          maxFetchBytes: 65_536,
          rules: compileRules(DEFAULT_RULES),
          watched: new Set(["2001"]),
          report: async (_m, counts) => void got.push(counts),
          log: new Logger("imap-tls-test"),
        });
        s.start();
        await Promise.race([s.whenSynced(), sleep(8_000)]);
        await s.stop();
        return got;
      };
      assert.equal((await run(tlsDc.tlsPort!, true, ca.caFile)).at(-1)?.new, 1, "implicit TLS with the CA");
      assert.equal((await run(tlsDc.port, false, ca.caFile)).at(-1)?.new, 1, "STARTTLS with the CA");
      const log = readFileSync(tlsDc.logFile, "utf8");
      const logins = log.split("\n").filter((l) => /Logged in: user=<voicemail>/.test(l));
      assert.equal(logins.length, 2);
      assert.ok(logins.every((l) => /, TLS, /.test(l)), `both logins (implicit TLS, STARTTLS) went over TLS: ${logins.join("\n")}`);
      assert.deepEqual(await run(tlsDc.tlsPort!, true), [], "a certificate of an unknown CA is refused");
    } finally {
      await tlsDc.stop();
    }
  });

  it("a server without IDLE: changes arrive by the poll", async (t) => {
    if (!dc) return t.skip("no test bed");
    const plain = await startDovecot({ users: [{ user: "voicemail", password: PASSWORD }], noIdle: true });
    const c = await plain.client("voicemail");
    try {
      assert.equal(c.capabilities.has("IDLE"), false, "Dovecot offers no IDLE");
      const got: MwiCounts[] = [];
      const s = new MailSession({
        label: "noidle-test",
        server: { host: "127.0.0.1", port: plain.port, tls: false, rejectUnauthorized: true },
        credentials: { username: "voicemail", password: PASSWORD },
        folder: "INBOX",
        pollSeconds: 5,
        maxMessages: 100,
        maxFetchBytes: 65_536,
        rules: compileRules(DEFAULT_RULES),
        watched: new Set(["2001"]),
        report: async (_m, counts) => void got.push(counts),
        log: new Logger("imap-noidle-test"),
      });
      sessions.push(s);
      s.start();
      await s.whenSynced();
      assert.equal(got.at(-1)?.new, 0);
      plain.deliver("voicemail", voicemail("2001", 1));
      await until("the poll to find the new mail", () => (got.at(-1)?.new === 1 ? true : undefined), 15_000);
      await plain.setSeen("voicemail", "mailbox 2001");
      await until("the poll to find it seen", () => (got.at(-1)?.old === 1 ? true : undefined), 15_000);
    } finally {
      await c.logout().catch(() => undefined);
      await plain.stop();
    }
  });
});
