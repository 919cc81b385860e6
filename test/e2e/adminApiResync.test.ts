/**
 * The admin API's resync against a real Asterisk over AMI: a voicemail put into the spool by
 * hand (as a restore from a backup or another node's write would) raises no MessageWaiting, so
 * the bridge cannot know of it; a resync of the mailbox through the API asks Asterisk again and
 * the user's room shows it. Then a whole system's resync, in the background.
 */
import assert from "node:assert/strict";
import { chownSync, copyFileSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import type { MatrixEvent } from "matrix-js-sdk";
import { MWI_EVENT_TYPE } from "../../src/core/events.js";
import { startAsterisk, type RunningAsterisk } from "../testbed/asterisk.js";
import { waitForState } from "../testbed/matrixClient.js";
import { freePort } from "../testbed/ports.js";
import { requireTestbed, sleep, World, type User } from "./world.js";

const PBX_BOT = "@vm_pbx:localhost";
const AMI_USER = "voicemail-bridge";
const AMI_SECRET = "Ami-Bridge-Secret-3f8a";
const TOKEN = "admin-api-token-fedcba9876543210fedcba98765";

describe("admin API resync against a real Asterisk", { timeout: 110_000 }, () => {
  let world: World | undefined;
  let asterisk: RunningAsterisk | undefined;
  let alice: User;
  let room = "";
  let api = "";

  before(async (t) => {
    if (!(await requireTestbed(t as unknown as TestContext))) return;
    const amiPort = await freePort();
    asterisk = await startAsterisk({
      amiPort,
      mailboxes: [{ mailbox: "1001", password: "unused-1001" }],
      amiUsers: [{ username: AMI_USER, secret: AMI_SECRET, read: "call", write: "reporting,originate", eventFilters: ["Event: MessageWaiting"] }],
      sipTrace: false,
    });
    try {
      const adminPort = await freePort();
      api = `http://127.0.0.1:${adminPort}/_voicemail/admin/v1`;
      world = await World.create({
        synapsePort: await freePort(),
        bridgePort: await freePort(),
        logLevel: "info",
        systems: [{ id: "pbx", name: "Office PBX", botLocalpart: "vm_pbx", kind: "ami", ami: { host: "127.0.0.1", port: amiPort, username: AMI_USER, secret: AMI_SECRET } }],
        config: { adminApi: { token: TOKEN, port: adminPort } },
      });
    } catch (err) {
      await asterisk.stop();
      asterisk = undefined;
      throw err;
    }
    alice = await world.user("alice");
  });

  after(async () => {
    if (world) assert.ok(!world.bridge.log().includes(TOKEN) && !world.bridge.log().includes(AMI_SECRET), "no secret is logged");
    await world?.close();
    await asterisk?.stop();
  });

  const call = async (method: string, path: string, body?: unknown) => {
    const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(`${api}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    return { status: res.status, json: (await res.json()) as any };
  };
  const counts = (predicate: (c: Record<string, unknown>) => boolean, timeoutMs = 20_000) =>
    waitForState(alice.client, room, MWI_EVENT_TYPE, "pbx/1001", (e: MatrixEvent) => predicate(e.getContent()), timeoutMs).then((e) => e.getContent());

  /** A copy of a stored message under the next number: Asterisk counts it, but says nothing. */
  function copyBehindAsterisksBack(txtFile: string): void {
    const dir = dirname(txtFile);
    const stem = basename(txtFile, ".txt");
    const taken = new Set(readdirSync(dir).map((f) => f.split(".")[0]));
    let n = Number(stem.slice(3));
    while (taken.has(`msg${String(n).padStart(4, "0")}`)) n++;
    for (const file of readdirSync(dir).filter((f) => f.startsWith(`${stem}.`))) {
      const to = join(dir, file.replace(stem, `msg${String(n).padStart(4, "0")}`));
      copyFileSync(join(dir, file), to);
      const { uid, gid } = statSync(join(dir, file));
      chownSync(to, uid, gid);
    }
  }

  it("a resync of one mailbox shows what Asterisk never announced; a system's resync runs in the background", async (t) => {
    if (!world || !asterisk) return t.skip("no test bed");
    const linked = await call("POST", `/users/${encodeURIComponent(alice.userId)}/links`, { systemId: "pbx", mailbox: "1001" });
    assert.equal(linked.status, 201, JSON.stringify(linked.json));
    assert.match(linked.json.mwi, /system's credentials/);
    room = await world.acceptDmFrom(alice, PBX_BOT, 60_000);
    await counts((c) => c.new === 0);

    const left = await asterisk.leaveVoicemail("1001", { name: "Grace Caller", number: "5551234" }, { seconds: 1 });
    await counts((c) => c.new === 1);
    copyBehindAsterisksBack(left.txtFile);
    assert.equal((await asterisk.counts("1001")).new, 2);
    // Asterisk said nothing: the room still shows one.
    await sleep(2000);
    assert.equal(alice.client.getRoom(room)!.currentState.getStateEvents(MWI_EVENT_TYPE, "pbx/1001")?.getContent().new, 1);

    const resync = await call("POST", "/systems/pbx/mailboxes/1001/resync");
    assert.equal(resync.status, 200, JSON.stringify(resync.json));
    assert.equal(resync.json.state.new, 2);
    await counts((c) => c.new === 2);

    copyBehindAsterisksBack(left.txtFile);
    const all = await call("POST", "/systems/pbx/resync");
    assert.equal(all.status, 202, JSON.stringify(all.json));
    assert.deepEqual(all.json, { systemId: "pbx", mailboxes: 1 });
    await counts((c) => c.new === 3);
    const systems = await call("GET", "/systems");
    assert.deepEqual(systems.json.systems, [{ id: "pbx", kind: "ami", name: "Office PBX", resync: "watch-again", followedMailboxes: 1 }]);
    for (let i = 0; i < 100 && !/resync of pbx done/.test(world.bridge.log()); i++) await sleep(100);
    assert.match(world.bridge.log(), /admin API: resync of pbx done: 1 of 1 mailbox\(es\) refreshed/);
    assert.match(world.bridge.log(), /admin API \(127\.0\.0\.1\): resynced pbx\/1001/);
  });
});
