/**
 * Operations on a real Synapse, quickly: /live, /ready (an AMI system whose PBX is down is
 * retrying, which is ready; an IMAP system on a real Dovecot is connected), /metrics after a webhook delivery (the figures an admin alerts on,
 * no user ID or mailbox in a label), and the bridge info (MSC2346) in the user's DM as clients see it.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { postWebhook } from "../testbed/bridgeProcess.js";
import { freePort } from "../testbed/ports.js";
import { startDovecot, type RunningDovecot } from "../testbed/dovecot.js";
import { waitForEvent, waitForState } from "../testbed/matrixClient.js";
import { requireTestbed, World, type User } from "./world.js";

const SECRET = "carrier-webhook-secret-0123456789abcdef";
const CARRIER_BOT = "@vm_carrier:localhost";
const MAIN_BOT = "@voicemail:localhost";

describe("operations on a real homeserver", { timeout: 110_000 }, () => {
  let world: World | undefined;
  let dovecot: RunningDovecot | undefined;
  let admin: User;
  let alice: User;

  before(async (t) => {
    if (!(await requireTestbed(t as never))) return;
    // Nothing listens there: the AMI connection keeps retrying.
    const deadAmiPort = await freePort();
    dovecot = await startDovecot({ users: [{ user: "voicemail", password: "imap-password-not-in-metrics" }] });
    world = await World.create({
      synapsePort: await freePort(),
      bridgePort: await freePort(),
      logLevel: "info",
      systems: [
        { id: "carrier", name: "Carrier Voicemail", botLocalpart: "vm_carrier", kind: "webhook", webhook: { secret: SECRET } },
        { id: "pbx", name: "Office PBX", botLocalpart: "vm_pbx", kind: "ami", ami: { host: "127.0.0.1", port: deadAmiPort, username: "bridge", secret: "ami-secret-not-in-metrics" } },
        { id: "mail", name: "Mail Voicemail", botLocalpart: "vm_mail", kind: "imap", imap: { host: "127.0.0.1", port: dovecot.port, username: "voicemail", password: "imap-password-not-in-metrics" } },
      ],
    });
    [admin, alice] = [await world.user("admin"), await world.user("alice")];
  });

  after(async () => {
    await world?.close();
    await dovecot?.stop();
  });

  it("/live and /ready answer 200 without a token; a system retrying its connection counts as ready", async (t) => {
    if (!world) return t.skip("no test bed");
    const live = await fetch(`${world.bridgeUrl}/live`);
    assert.equal(live.status, 200);
    const ready = await fetch(`${world.bridgeUrl}/ready`);
    assert.equal(ready.status, 200, await ready.clone().text());
    assert.deepEqual(await ready.json(), { ready: true });
    let metrics = "";
    // The IMAP session logs in on its own time after start.
    for (let i = 0; i < 100; i++) {
      metrics = await (await fetch(`${world.bridgeUrl}/metrics`)).text();
      if (/^bridge_voicemail_system_connections\{system="mail",kind="imap",state="connected"\} 1$/m.test(metrics)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(metrics, /^bridge_voicemail_system_connections\{system="pbx",kind="ami",state="retrying"\} 1$/m);
    assert.match(metrics, /^bridge_voicemail_system_connections\{system="mail",kind="imap",state="connected"\} 1$/m);
  });

  it("a webhook update reaches the DM, which carries the bridge info; /metrics counts it without naming the user or mailbox", async (t) => {
    if (!world) return t.skip("no test bed");
    const adminRoom = await world.openDm(admin, MAIN_BOT);
    await world.command(admin, adminRoom, MAIN_BOT, "!admin link @alice:localhost carrier 5550199");
    const room = await world.acceptDmFrom(alice, CARRIER_BOT);
    const key = "org.voicemail://carrier/@alice:localhost";
    for (const type of ["m.bridge", "uk.half-shot.bridge"]) {
      const info = (await waitForState(alice.client, room, type, key)).getContent();
      assert.equal(info.bridgebot, MAIN_BOT);
      assert.equal(info.creator, CARRIER_BOT);
      assert.deepEqual(info.protocol, { id: "voicemail", displayname: "Voicemail" });
      assert.deepEqual(info.network, { id: "carrier", displayname: "Carrier Voicemail" });
      assert.equal(info.channel.id, alice.userId);
    }
    const posted = await postWebhook(world.bridgeUrl, "carrier", { mailbox: "5550199", waiting: true, new: 1, old: 0 }, { secret: SECRET });
    assert.equal(posted.status, 202, JSON.stringify(posted.body));
    await waitForEvent(alice.client, room, (e) => e.getSender() === CARRIER_BOT && e.getType() === "m.room.message" && /1 new/.test(String(e.getContent().body)));

    let metrics = "";
    for (let i = 0; i < 50; i++) {
      metrics = await (await fetch(`${world.bridgeUrl}/metrics`)).text();
      if (/^bridge_voicemail_notifications_total\{outcome="delivered"\} [1-9]/m.test(metrics) && /^bridge_voicemail_outbox_entries 0$/m.test(metrics)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(metrics, /^bridge_voicemail_updates_received_total\{system="carrier",kind="webhook"\} 1$/m);
    assert.match(metrics, /^bridge_voicemail_notifications_total\{outcome="delivered"\} [1-9]/m);
    assert.match(metrics, /^bridge_voicemail_outbox_entries 0$/m);
    assert.match(metrics, /^bridge_voicemail_outbox_oldest_age_seconds 0$/m);
    assert.match(metrics, /^bridge_voicemail_commands_total\{command="admin",outcome="ok"\} 1$/m);
    for (const secretOrPersonal of ["@alice", "@admin", "5550199", "ami-secret-not-in-metrics", "imap-password-not-in-metrics", "!"]) {
      const inLabels = metrics.split("\n").filter((l) => !l.startsWith("#") && /\{.*\}/.test(l) && /\{(.*)\}/.exec(l)![1]!.includes(secretOrPersonal));
      assert.deepEqual(inLabels, [], `no label carries ${secretOrPersonal}`);
    }
    for (const secret of [SECRET, "ami-secret-not-in-metrics", "imap-password-not-in-metrics"]) assert.ok(!metrics.includes(secret), "no secret anywhere in /metrics");
  });
});
