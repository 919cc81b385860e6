import assert from "node:assert/strict";
import { createServer, type AddressInfo } from "node:net";
import { afterEach, describe, it } from "node:test";
import { AmiClient, AmiError, type AmiClientOptions } from "../../src/gateway/ami/client.js";
import { FakeAmi, until } from "./amiServer.js";

const lines: string[] = [];
const log = { debug: (l: string) => lines.push(l), info: (l: string) => lines.push(l), warn: (l: string) => lines.push(l) };
const clients: AmiClient[] = [];
const servers: FakeAmi[] = [];

function client(port: number, o: Partial<AmiClientOptions> = {}): AmiClient {
  const c = new AmiClient({ host: "127.0.0.1", port, username: "bridge", secret: "s3cret", events: "call", name: "pbx", log, backoff: { baseMs: 20, maxMs: 100 }, ...o });
  clients.push(c);
  c.start();
  return c;
}

async function fake(): Promise<FakeAmi> {
  const f = await FakeAmi.start();
  servers.push(f);
  return f;
}

afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  for (const s of servers.splice(0)) await s.close();
  lines.length = 0;
});

describe("AMI client", () => {
  it("logs in, matches answers by ActionID, and collects event lists", async () => {
    const ami = await fake();
    let ready = 0;
    const c = client(ami.port, { onReady: () => ready++ });
    await until("login", () => c.connected);
    assert.equal(ready, 1);
    const login = ami.actions[0]!;
    assert.deepEqual([login.Action, login.Username, login.Secret, login.Events], ["Login", "bridge", "s3cret", "call"]);
    ami.mailbox("1001@default").details.push({ Folder: "INBOX", CallerID: '"G" <1>' }, { Folder: "Old", CallerID: "2" });
    const [count, summary] = await Promise.all([
      c.action({ Action: "MailboxCount", Mailbox: "1001@default" }),
      c.action({ Action: "VoicemailBoxSummary", Context: "default", Mailbox: "1001" }),
    ]);
    assert.equal(count.response.get("Message"), "Mailbox Message Count");
    assert.deepEqual(summary.events.map((e) => e.get("Folder")), ["INBOX", "Old"]);
    await assert.rejects(c.action({ Action: "Nonsense" }), (e: AmiError) => !e.transient && /Invalid\/unknown command/.test(e.message));
  });

  it("never logs the secret, also when the login is refused; retries with backoff", async () => {
    const ami = await fake();
    ami.secret = "another";
    const c = client(ami.port);
    await until("a few refused logins", () => ami.actions.filter((a) => a.Action === "Login").length >= 3);
    assert.equal(c.connected, false);
    assert.ok(lines.some((l) => /login failed: AMI Login: Authentication failed/.test(l)), lines.join("\n"));
    assert.ok(!lines.some((l) => l.includes("s3cret")));
  });

  it("an action that gets no answer fails after its timeout; one sent while disconnected fails at once", async () => {
    const ami = await fake();
    ami.silent.add("MailboxCount");
    const c = client(ami.port);
    await until("login", () => c.connected);
    await assert.rejects(c.action({ Action: "MailboxCount", Mailbox: "1@d" }, 100), (e: AmiError) => e.transient && /no answer within 100 ms/.test(e.message));
    await c.stop();
    await assert.rejects(c.action({ Action: "Ping" }), (e: AmiError) => e.transient && /not connected/.test(e.message));
  });

  it("a list without end fails its action, bounded in events and bytes", async () => {
    const ami = await fake();
    const c = client(ami.port, { maxListEvents: 50, maxListBytes: 2_000 });
    await until("login", () => c.connected);
    const box = ami.mailbox("1001@default");
    for (let i = 0; i < 60; i++) box.details.push({ Folder: "INBOX", ID: String(i) });
    await assert.rejects(c.action({ Action: "VoicemailBoxSummary", Context: "default", Mailbox: "1001" }), /a list longer than 50 events or 2000 bytes/);
    box.details.splice(0, 60, { Folder: "INBOX", CallerID: "x".repeat(2_500) });
    await assert.rejects(c.action({ Action: "VoicemailBoxSummary", Context: "default", Mailbox: "1001" }), /a list longer/);
    box.details.splice(0, 1, { Folder: "INBOX" });
    assert.equal((await c.action({ Action: "VoicemailBoxSummary", Context: "default", Mailbox: "1001" })).events.length, 1, "the connection goes on");
  });

  it("refuses action fields that would inject a header, before anything is sent", async () => {
    const ami = await fake();
    const c = client(ami.port);
    await until("login", () => c.connected);
    const before = ami.actions.length;
    await assert.rejects(c.action({ Action: "MailboxCount", Mailbox: "1001\r\nAction: Originate" }), /line break/);
    assert.equal(ami.actions.length, before);
  });

  it("reconnects after the server drops it, and calls onReady again", async () => {
    const ami = await fake();
    let ready = 0;
    const c = client(ami.port, { onReady: () => ready++ });
    await until("login", () => ready === 1);
    const pending = c.action({ Action: "Originate" }).catch((e: AmiError) => e);
    ami.silent.add("Originate");
    ami.dropAll();
    await until("second login", () => ready === 2);
    assert.ok(c.connected);
    void pending;
  });

  it("a Ping without answer drops the connection and reconnects", async () => {
    const ami = await fake();
    ami.silent.add("Ping");
    const c = client(ami.port, { keepAliveMs: 30, actionTimeoutMs: 50 });
    await until("two logins", () => ami.logins >= 2, 5_000);
    assert.ok(lines.some((l) => /keep-alive: AMI Ping: no answer within 50 ms/.test(l)), lines.join("\n"));
    void c;
  });

  it("drops a peer that sends an endless line, and one that is not AMI", async () => {
    let connections = 0;
    const server = createServer((s) => {
      connections++;
      s.on("error", () => undefined);
      s.write("Asterisk Call Manager/11.0.0\r\n");
      const junk = Buffer.alloc(64 * 1024, 0x41);
      const flood = () => s.writable && s.write(junk) && setImmediate(flood);
      flood();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const c = client((server.address() as AddressInfo).port);
    await until("a reconnect", () => connections >= 2);
    assert.ok(lines.some((l) => /bad data from the server: a line longer than 8192 bytes/.test(l)), lines.join("\n"));
    await c.stop();
    await new Promise((r) => server.close(r));
  });
});
