/**
 * kind: ami end to end: a real Asterisk 22 with AMI on loopback and a manager user with exactly
 * the README's rights (read = call, write = reporting,originate,user), the bridge as a child process, a
 * real Synapse. A real voicemail with caller ID reaches the DM with its caller, caller name and
 * called number; moving it to Old updates the counts; an Asterisk restart while a voicemail
 * arrives ends with the right counts; ring-to-verify rings a SIPp phone whose INVITE carries
 * the code as caller name, and `!verify` with it (not with a wrong one) links the mailbox.
 */
import assert from "node:assert/strict";
import { connect, createServer, type Server, type Socket } from "node:net";
import { after, before, describe, it, type TestContext } from "node:test";
import type { MatrixEvent } from "matrix-js-sdk";
import { MWI_EVENT_TYPE } from "../../src/core/events.js";
import { freeSipPort, startAsterisk, type RunningAsterisk } from "../testbed/asterisk.js";
import { sendText, waitForEvent, waitForState } from "../testbed/matrixClient.js";
import { freePort } from "../testbed/synapse.js";
import { ensureSipp, runSipp } from "./sipp.js";
import { requireTestbed, World, type User } from "./world.js";

const PBX_BOT = "@vm_pbx:localhost";
const OFFICE_BOT = "@vm_office:localhost";
const PASSWORD_1003 = "Sip-1003-Secret-pw";
/** A manager user for caller details only (a SIP system's sip.ami). */
const ENRICH_USER = "caller-details";
const ENRICH_SECRET = "Ami-Enrich-Secret-2b9d";
const AMI_USER = "voicemail-bridge";
const AMI_SECRET = "Ami-Bridge-Secret-7c1e";
/** A voicemail must reach Matrix this fast once Asterisk has stored it (a slow, shared machine). */
const ARRIVAL_MS = 15_000;

/**
 * A TCP gate between the bridge and AMI: while shut, connections are dropped at once, so a
 * MessageWaiting sent meanwhile reaches nobody and only the resync on reconnect can tell.
 */
class Gate {
  private shut = false;
  private readonly pairs = new Set<Socket>();
  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async open(port: number, upstream: number): Promise<Gate> {
    const server = createServer();
    const gate = new Gate(server, port);
    server.on("connection", (down) => {
      if (gate.shut) return void down.destroy();
      const up = connect(upstream, "127.0.0.1");
      for (const s of [down, up]) {
        gate.pairs.add(s);
        s.on("error", () => undefined);
        s.on("close", () => {
          gate.pairs.delete(s);
          down.destroy();
          up.destroy();
        });
      }
      down.pipe(up);
      up.pipe(down);
    });
    await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
    return gate;
  }

  close(): void {
    this.shut = true;
    for (const s of this.pairs) s.destroy();
  }

  reopen(): void {
    this.shut = false;
  }

  async stop(): Promise<void> {
    this.close();
    await new Promise((r) => this.server.close(r));
  }
}

describe("kind: ami against a real Asterisk", { timeout: 110_000 }, () => {
  let world: World | undefined;
  let asterisk: RunningAsterisk | undefined;
  let alice: User;
  let aliceRoom: string;
  let phonePort = 0;
  let gate: Gate | undefined;
  let newVoicemailBody = "";
  const started = Date.now();

  before(async (t) => {
    if (!(await requireTestbed(t as unknown as TestContext))) return;
    phonePort = await freeSipPort();
    const amiPort = await freePort();
    const sipPort = await freeSipPort();
    let officeLocal = await freeSipPort();
    while (officeLocal === phonePort || officeLocal === sipPort) officeLocal = await freeSipPort();
    asterisk = await startAsterisk({
      sipPort,
      amiPort,
      mailboxes: [
        { mailbox: "1001", password: "unused-1001" },
        { mailbox: "1002", password: "unused-1002" },
        { mailbox: "1003", password: PASSWORD_1003 },
      ],
      amiUsers: [
        // As the README suggests for a busy PBX: of the call events only MessageWaiting.
        { username: AMI_USER, secret: AMI_SECRET, read: "call", write: "reporting,originate,user", eventFilters: ["Event: MessageWaiting"] },
        { username: ENRICH_USER, secret: ENRICH_SECRET, read: "reporting", write: "reporting" },
      ],
      phones: [{ mailbox: "1002", contact: `sip:1002@127.0.0.1:${phonePort}` }],
      sipTrace: false,
    });
    try {
      gate = await Gate.open(await freePort(), amiPort);
      world = await World.create({
        synapsePort: await freePort(),
        bridgePort: await freePort(),
        systems: [
          {
            id: "pbx",
            name: "Office PBX",
            botLocalpart: "vm_pbx",
            kind: "ami",
            ami: {
              host: "127.0.0.1",
              port: gate.port,
              username: AMI_USER,
              secret: AMI_SECRET,
              context: "default",
              keepAliveSeconds: 5,
              verifyCall: { dialString: "PJSIP/{mailbox}", ringSeconds: 10 },
            },
          },
          {
            // SIP for MWI, AMI for the caller details (no shared spool).
            id: "office",
            name: "Office SIP",
            botLocalpart: "vm_office",
            kind: "sip",
            sip: {
              server: { host: "127.0.0.1", port: sipPort, transport: "udp" },
              local: { bindAddress: "127.0.0.1", port: officeLocal },
              expires: 60,
              ami: { host: "127.0.0.1", port: amiPort, username: ENRICH_USER, secret: ENRICH_SECRET },
            },
          },
        ],
      });
    } catch (err) {
      await gate?.stop();
      await asterisk.stop();
      asterisk = undefined;
      throw err;
    }
    alice = await world.user("alice");
    aliceRoom = await world.openDm(alice, PBX_BOT);
  });

  after(async () => {
    console.log(`whole suite: ${Date.now() - started} ms`);
    if (world) for (const secret of [AMI_SECRET, ENRICH_SECRET]) assert.ok(!world.bridge.log().includes(secret), "no AMI secret is ever logged");
    await world?.close();
    await gate?.stop();
    await asterisk?.stop();
  });

  const w = () => world!;
  const ast = () => asterisk!;
  const state = (room: string, key: string, predicate: (c: Record<string, unknown>) => boolean, timeoutMs = ARRIVAL_MS, user = alice) =>
    waitForState(user.client, room, MWI_EVENT_TYPE, key, (e: MatrixEvent) => predicate(e.getContent()), timeoutMs).then((e) => e.getContent());

  it("(1) an admin links 1001; a real voicemail shows its caller, caller name and called number", async (t) => {
    if (!world) return t.skip("no test bed");
    const admin = await w().user("admin");
    const adminRoom = await w().openDm(admin, PBX_BOT);
    const reply = await w().command(admin, adminRoom, PBX_BOT, `!admin link ${alice.userId} 1001`);
    assert.match(reply.getContent().body, /^Linked Office PBX mailbox 1001 to @alice:localhost: watched with the system's credentials\.$/);
    await state(aliceRoom, "pbx/1001", (c) => c.new === 0);

    const seen = new Set((alice.client.getRoom(aliceRoom)?.getLiveTimeline().getEvents() ?? []).map((e) => e.getId()));
    await ast().leaveVoicemail("1001", { name: "Grace Caller", number: "5551234" }, { seconds: 2 });
    const content = await state(aliceRoom, "pbx/1001", (c) => c.new === 1);
    const last = content.last_message as Record<string, unknown>;
    assert.equal(last.ani, "5551234");
    assert.equal(last.caller_name, "Grace Caller");
    assert.equal(last.dnis, "1001");
    assert.equal(typeof last.time, "string");
    const message = await waitForEvent(
      alice.client,
      aliceRoom,
      (e) => e.getSender() === PBX_BOT && e.getType() === "m.room.message" && !seen.has(e.getId()) && /\b1 new\b/.test(e.getContent().body ?? ""),
      ARRIVAL_MS,
    );
    newVoicemailBody = message.getContent().body;
    // The wording is someone else's (format.ts); the caller's number must be in it.
    assert.match(newVoicemailBody.replace(/\D/g, ""), /5551234/, newVoicemailBody);
  });

  it("(1b) the notification names the caller", (t) => {
    if (!world) return t.skip("no test bed");
    assert.match(newVoicemailBody, /Grace Caller/);
  });

  it("(2) moving the message to Old updates the counts", async (t) => {
    if (!world) return t.skip("no test bed");
    await ast().moveToOld("1001");
    const content = await state(aliceRoom, "pbx/1001", (c) => c.new === 0 && c.old === 1);
    assert.equal(content.urgent_new, 0);
  });

  it("(3) an urgent voicemail counts as new and as urgent", async (t) => {
    if (!world) return t.skip("no test bed");
    await ast().leaveVoicemail("1001", { name: "Urgent Ursula", number: "5550001" }, { urgent: true, seconds: 1 });
    const content = await state(aliceRoom, "pbx/1001", (c) => c.new === 1 && c.urgent_new === 1);
    assert.equal(content.old, 1);
    assert.equal((content.last_message as Record<string, unknown>).caller_name, "Urgent Ursula");
  });

  it("(4) Asterisk restarted while a voicemail arrives: after the reconnect the counts are right", async (t) => {
    if (!world) return t.skip("no test bed");
    const reconnectsBefore = (w().bridge.log().match(/logged in as voicemail-bridge/g) ?? []).length;
    // The bridge stays cut off until the voicemail is in: its MessageWaiting goes to nobody.
    gate!.close();
    await ast().restart();
    await ast().leaveVoicemail("1001", { name: "Restart Rita", number: "5550002" }, { seconds: 1 });
    await new Promise((r) => setTimeout(r, 1_000));
    const before = alice.client.getRoom(aliceRoom)?.currentState.getStateEvents(MWI_EVENT_TYPE, "pbx/1001")?.getContent();
    assert.equal(before?.new, 1, "nothing reached the bridge while it was cut off");
    gate!.reopen();
    const content = await state(aliceRoom, "pbx/1001", (c) => c.new === 2 && c.old === 1, 45_000);
    assert.equal(content.urgent_new, 1);
    assert.equal((content.last_message as Record<string, unknown>).caller_name, "Restart Rita");
    const log = w().bridge.log();
    assert.ok((log.match(/logged in as voicemail-bridge/g) ?? []).length > reconnectsBefore, "the bridge logged in again");
    assert.match(log, /resync of 1 mailbox/);
  });

  it("(6) a SIP system with sip.ami takes the caller details over AMI", async (t) => {
    if (!world) return t.skip("no test bed");
    const carol = await w().user("carol");
    const room = await w().openDm(carol, OFFICE_BOT);
    const reply = await w().command(carol, room, OFFICE_BOT, `!link office 1003 --password ${PASSWORD_1003}`);
    assert.match(reply.getContent().body, /^Linked Office SIP mailbox 1003/);
    await ast().leaveVoicemail("1003", { name: "Enrich Eve", number: "5550003" }, { seconds: 1 });
    const content = await state(room, "office/1003", (c) => c.new === 1, ARRIVAL_MS, carol);
    assert.deepEqual(
      (({ ani, caller_name, dnis }) => ({ ani, caller_name, dnis }))(content.last_message as Record<string, unknown>),
      { ani: "5550003", caller_name: "Enrich Eve", dnis: "1003" },
    );
    assert.match(w().bridge.log(), /office \(caller details\): AMI 127\.0\.0\.1:\d+: logged in as caller-details/);
  });

  it("(5) ring-to-verify: !link rings the phone with the code as caller name; a wrong code does not link, the right one does", async (t) => {
    if (!world) return t.skip("no test bed");
    const sipp = ensureSipp();
    if (!sipp.ok) return t.skip(sipp.reason);
    const bob = await w().user("bob");
    const bobRoom = await w().openDm(bob, PBX_BOT);
    const phone = await runSipp("uas-verify-call.xml", { transport: "udp", calls: 1, timeoutS: 40, port: phonePort });
    const ringing = await w().command(bob, bobRoom, PBX_BOT, "!link pbx 1002");
    assert.match(ringing.getContent().body, /^Ringing the phone of Office PBX mailbox 1002: .*!verify <code> before \d\d:\d\d\.$/);
    const { code: exit, diagnostics } = await phone.done;
    assert.equal(exit, 0, diagnostics);
    const code = /caller name: (\d{6})\b/.exec(diagnostics)?.[1];
    assert.ok(code, `the phone saw a six-digit caller name:\n${diagnostics}`);

    const wrong = code === "000000" ? "111111" : "000000";
    const refused = await w().command(bob, bobRoom, PBX_BOT, `!verify ${wrong}`);
    assert.equal(refused.getContent().body, "That is not the code. Nothing was linked.");
    assert.match((await w().command(bob, bobRoom, PBX_BOT, "!list")).getContent().body, /no linked mailboxes/i);

    // The counts of the new link may come before the reply: wait for the reply itself.
    const sent = await sendText(bob.client, bobRoom, `!verify ${code}`);
    const timeline = () => bob.client.getRoom(bobRoom)!.getLiveTimeline().getEvents();
    await waitForEvent(
      bob.client,
      bobRoom,
      (e) => e.getSender() === PBX_BOT && e.getContent().body === "Linked Office PBX mailbox 1002." && timeline().indexOf(e) > timeline().findIndex((x) => x.getId() === sent),
      ARRIVAL_MS,
    );
    await state(bobRoom, "pbx/1002", (c) => c.new === 0, ARRIVAL_MS, bob);
    // Single use: the same code again finds nothing.
    assert.match((await w().command(bob, bobRoom, PBX_BOT, `!verify ${code}`)).getContent().body, /^There is no code waiting for you/);
    // Alice's code cannot be Bob's: she has none.
    assert.match((await w().command(alice, aliceRoom, PBX_BOT, `!verify ${code}`)).getContent().body, /^There is no code waiting for you/);
  });
});
