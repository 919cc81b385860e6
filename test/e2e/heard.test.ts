/**
 * `!voicemails`, `!heard` and `!delete` end to end: a real Asterisk 22 with AMI and a manager
 * user with exactly the README's rights (read = call, write = reporting,originate,user: `user` is the class
 * of VoicemailMove and VoicemailRemove), the bridge as a child process, a real Synapse. Real
 * voicemails are listed newest first with the urgent one marked; `!heard` moves only the newest
 * to Old in Asterisk's spool and the DM shows the counts Asterisk then reports; `!delete` removes
 * nothing until `!delete confirm`, then exactly the newest message.
 */
import assert from "node:assert/strict";
import { after, before, describe, it, type TestContext } from "node:test";
import type { MatrixEvent } from "matrix-js-sdk";
import { Logger } from "matrix-appservice-bridge";
import { MWI_EVENT_TYPE } from "../../src/core/events.js";
import { AmiGateway } from "../../src/gateway/ami/amiGateway.js";
import { freeSipPort, startAsterisk, type LeftVoicemail, type RunningAsterisk } from "../testbed/asterisk.js";
import { waitForState } from "../testbed/matrixClient.js";
import { freePort } from "../testbed/synapse.js";
import { requireTestbed, World, type User } from "./world.js";

const PBX_BOT = "@vm_pbx:localhost";
const AMI_USER = "voicemail-bridge";
const AMI_SECRET = "Ami-Heard-Secret-41f0";
const ARRIVAL_MS = 20_000;
/** A manager user without the class `user`: Asterisk must refuse it VoicemailMove and VoicemailRemove. */
const READER_USER = "reader-only";
const READER_SECRET = "Ami-Reader-Secret-9a2c";

describe("!voicemails, !heard and !delete against a real Asterisk", { timeout: 110_000 }, () => {
  let world: World | undefined;
  let asterisk: RunningAsterisk | undefined;
  let alice: User;
  let room: string;
  let first: LeftVoicemail;
  let urgent: LeftVoicemail;
  const started = Date.now();

  before(async (t) => {
    if (!(await requireTestbed(t as unknown as TestContext))) return;
    asterisk = await startAsterisk({
      sipPort: await freeSipPort(),
      amiPort: await freePort(),
      mailboxes: [{ mailbox: "1001", password: "unused-1001" }],
      amiUsers: [
        { username: AMI_USER, secret: AMI_SECRET, read: "call", write: "reporting,originate,user", eventFilters: ["Event: MessageWaiting"] },
        { username: READER_USER, secret: READER_SECRET, read: "call", write: "reporting" },
      ],
      sipTrace: false,
    });
    try {
      world = await World.create({
        synapsePort: await freePort(),
        bridgePort: await freePort(),
        systems: [
          {
            id: "pbx",
            name: "Office PBX",
            botLocalpart: "vm_pbx",
            kind: "ami",
            ami: { host: "127.0.0.1", port: asterisk.amiPort, username: AMI_USER, secret: AMI_SECRET, context: "default", keepAliveSeconds: 5 },
          },
        ],
      });
    } catch (err) {
      await asterisk.stop();
      asterisk = undefined;
      throw err;
    }
    alice = await world.user("alice");
    room = await world.openDm(alice, PBX_BOT);
  });

  after(async () => {
    console.log(`whole suite: ${Date.now() - started} ms`);
    if (world) assert.ok(!world.bridge.log().includes(AMI_SECRET), "the AMI secret is never logged");
    await world?.close();
    await asterisk?.stop();
  });

  const w = () => world!;
  const ast = () => asterisk!;
  const say = async (body: string) => (await w().command(alice, room, PBX_BOT, body)).getContent().body as string;
  const state = (predicate: (c: Record<string, unknown>) => boolean) =>
    waitForState(alice.client, room, MWI_EVENT_TYPE, "pbx/1001", (e: MatrixEvent) => predicate(e.getContent()), ARRIVAL_MS).then((e) => e.getContent());

  it("(0) the manager class of VoicemailMove and VoicemailRemove is `user`", async (t) => {
    if (!world) return t.skip("no test bed");
    for (const action of ["VoicemailMove", "VoicemailRemove", "VoicemailBoxSummary"]) {
      const out = await ast().cli(`manager show command ${action}`);
      console.log(`${action}: privilege ${(/\[Privilege\]\s*(\S+)/.exec(out) ?? [])[1] ?? "?"}`);
    }
    assert.match(await ast().cli("manager show command VoicemailMove"), /\[Privilege\]\s*user,all/);
    assert.match(await ast().cli("manager show command VoicemailRemove"), /\[Privilege\]\s*user,all/);
  });

  it("(1) an admin links 1001; two real voicemails are listed newest first, the urgent one marked", async (t) => {
    if (!world) return t.skip("no test bed");
    const admin = await w().user("admin");
    const adminRoom = await w().openDm(admin, PBX_BOT);
    await w().command(admin, adminRoom, PBX_BOT, `!admin link ${alice.userId} 1001`);
    await state((c) => c.new === 0);
    first = await ast().leaveVoicemail("1001", { name: "Grace Caller", number: "5551234" }, { seconds: 1 });
    // msg_ids begin with the second they were made: the second one must be newer.
    await new Promise((r) => setTimeout(r, 1_100));
    urgent = await ast().leaveVoicemail("1001", { name: "Urgent Ursula", number: "5550001" }, { urgent: true, seconds: 1 });
    await state((c) => c.new === 2);
    const list = await say("!voicemails");
    assert.match(list, /^Office PBX mailbox 1001:\n- new: URGENT, from Urgent Ursula \(5550001\), .*\n- new: from Grace Caller \(5551234\), /, list);
  });

  it("(2) !heard moves only the newest to Old in Asterisk, and the DM shows the counts Asterisk reports", async (t) => {
    if (!world) return t.skip("no test bed");
    const reply = await say("!heard");
    assert.match(reply, /^Marked heard in Office PBX mailbox 1001: the voicemail URGENT, from Urgent Ursula/, reply);
    const content = await state((c) => c.new === 1 && c.old === 1);
    assert.equal(content.urgent_new, 0);
    assert.deepEqual(await ast().counts("1001"), { new: 1, old: 1, urgent: 0 });
    // Still newest first: a heard message keeps its place (and its msg_id).
    assert.match(await say("!voicemails 1001"), /- heard: from Urgent Ursula .*\n- new: from Grace Caller /);
  });

  it("(3) !delete removes nothing until !delete confirm, then exactly the newest message", async (t) => {
    if (!world) return t.skip("no test bed");
    const ask = await say("!delete");
    assert.match(ask, /^This deletes the newest voicemail of Office PBX mailbox 1001, for good: from Urgent Ursula .*!delete confirm within a minute/, ask);
    assert.deepEqual(await ast().counts("1001"), { new: 1, old: 1, urgent: 0 });
    const done = await say("!delete confirm");
    assert.match(done, /^Deleted from Office PBX mailbox 1001: the voicemail from Urgent Ursula/, done);
    await state((c) => c.new === 1 && c.old === 0);
    assert.deepEqual(await ast().counts("1001"), { new: 1, old: 0, urgent: 0 });
    const left = await ast().ami({ Action: "VoicemailBoxSummary", Context: "default", Mailbox: "1001" });
    assert.deepEqual(left.filter((p) => p.Event === "VoicemailBoxDetail").map((p) => p.ID), [first.msgId]);
    assert.notEqual(urgent.msgId, first.msgId);
  });

  it("(4) !heard all marks the rest; the lamp's count goes to 0", async (t) => {
    if (!world) return t.skip("no test bed");
    assert.match(await say("!heard all"), /^Marked heard in Office PBX mailbox 1001: the voicemail from Grace Caller/);
    await state((c) => c.new === 0 && c.old === 1);
    assert.deepEqual(await ast().counts("1001"), { new: 0, old: 1, urgent: 0 });
  });

  it("(5) a manager user without the class `user` is refused: the reason is Asterisk's no, nothing changes", async (t) => {
    if (!world) return t.skip("no test bed");
    await ast().leaveVoicemail("1001", { name: "Late Larry", number: "5550003" }, { seconds: 1 });
    const lines: string[] = [];
    const log = new Logger("reader");
    log.warn = ((m: string) => void lines.push(m)) as never;
    const gateway = new AmiGateway(
      {
        id: "reader",
        kind: "ami",
        ami: { host: "127.0.0.1", port: ast().amiPort, username: READER_USER, secret: READER_SECRET, context: "default", keepAliveSeconds: 30, actionTimeoutSeconds: 5, resync: { concurrency: 1, perSecond: 10 } },
      },
      { acceptUpdate: async () => undefined, log },
    );
    await gateway.start();
    try {
      let list = await gateway.messages.list("1001").catch(() => undefined);
      for (let i = 0; i < 50 && !list; i++) {
        await new Promise((r) => setTimeout(r, 100));
        list = await gateway.messages.list("1001").catch(() => undefined);
      }
      const fresh = list!.find((m) => m.fresh)!;
      await assert.rejects(gateway.messages.markHeard("1001", [fresh.id]), /^Error: the voice mail system refused it$/);
      await assert.rejects(gateway.messages.remove("1001", fresh.id), /^Error: the voice mail system refused it$/);
      console.log(`Asterisk's answer: ${lines.join(" | ")}`);
      assert.deepEqual(await ast().counts("1001"), { new: 1, old: 1, urgent: 0 });
    } finally {
      await gateway.stop();
    }
  });
});
