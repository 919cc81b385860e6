/**
 * The bridge on PostgreSQL (`database.uri: postgres://...`) against a real Synapse and a real
 * PostgreSQL: linking, a webhook MWI delivered, the rows where they belong, a restart, and an
 * outage of the database (the webhook is refused, the bridge keeps running, and works again
 * once the database is back), then migrate-store to NeDB and back to a fresh PostgreSQL database
 * with the bridge picking up in the same room each time. The password never reaches the log.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import yaml from "js-yaml";
import { postWebhook, runCli } from "../testbed/bridgeProcess.js";
import { freePort } from "../testbed/ports.js";
import { waitForEvent } from "../testbed/matrixClient.js";
import { requirePostgres, startPostgres, type RunningPostgres } from "../testbed/postgres.js";
import { requireTestbed, World, type User } from "./world.js";

const SECRET = "carrier-webhook-secret-0123456789abcdef";
const CARRIER_BOT = "@vm_carrier:localhost";
const MAIN_BOT = "@voicemail:localhost";

describe("bridge on PostgreSQL", { timeout: 180_000 }, () => {
  let pg: RunningPostgres | undefined;
  let world: World | undefined;
  let database = "";
  let alice: User;
  let aliceRoom: string;

  before(async (t) => {
    if (!(await requireTestbed(t as never)) || !requirePostgres(t as never)) return;
    pg = await startPostgres();
    const uri = await pg.createDatabase();
    database = new URL(uri).pathname.slice(1);
    world = await World.create({
      synapsePort: await freePort(),
      bridgePort: await freePort(),
      systems: [{ id: "carrier", name: "Carrier Voicemail", botLocalpart: "vm_carrier", kind: "webhook", webhook: { secret: SECRET } }],
      config: { database: { uri } },
    });
    alice = await world.user("alice");
  });

  after(async () => {
    await world?.close();
    await pg?.stop();
  });

  const mwi = (fields: Record<string, unknown>) => postWebhook(world!.bridgeUrl, "carrier", { mailbox: "1001", waiting: true, old: 0, ...fields }, { secret: SECRET });
  const newVoicemail = (count: number) =>
    waitForEvent(alice.client, aliceRoom, (e) => e.getSender() === CARRIER_BOT && new RegExp(`mailbox 1001: ${count} new`).test(e.getContent().body ?? ""), 60_000);
  const sql = () => pg!.admin(database);

  it("links, delivers a webhook MWI, and keeps its rows in PostgreSQL", async (t) => {
    if (!world) return t.skip("no test bed or PostgreSQL");
    const admin = await world.user("admin");
    const adminRoom = await world.openDm(admin, MAIN_BOT);
    const reply = await world.command(admin, adminRoom, MAIN_BOT, "!admin link @alice:localhost carrier 1001");
    assert.match(reply.getContent().body, /Linked Carrier Voicemail mailbox 1001 to @alice:localhost/);
    aliceRoom = await world.acceptDmFrom(alice, CARRIER_BOT);

    assert.deepEqual(await mwi({ new: 2, message: { ani: "+15551234567" } }), { status: 202, body: { status: "accepted" } });
    assert.match((await newVoicemail(2)).getContent().body, /from \+1 555 123 4567/);

    const [link] = await sql()`SELECT user_id, system_id, mailbox, mwi_enabled FROM mailbox_links`;
    assert.deepEqual({ ...link }, { user_id: alice.userId, system_id: "carrier", mailbox: "1001", mwi_enabled: true });
    const [state] = await sql()`SELECT new_count, last_message FROM mailbox_states WHERE system_id = 'carrier' AND mailbox = '1001'`;
    assert.equal(Number(state!.new_count), 2);
    assert.equal((state!.last_message as { ani: string }).ani, "+15551234567");
    const rooms = await sql()`SELECT user_id, bot_user_id FROM dm_rooms ORDER BY bot_user_id`;
    assert.ok(rooms.some((r) => r.user_id === alice.userId && r.bot_user_id === CARRIER_BOT));
    assert.ok(Number((await sql()`SELECT count(*) AS n FROM handled_events`)[0]!.n) > 0, "the admin's command was recorded as handled");
    const deadline = Date.now() + 30_000;
    while (Number((await sql()`SELECT count(*) AS n FROM outbox_entries`)[0]!.n) > 0) {
      assert.ok(Date.now() < deadline, "the outbox empties once delivered");
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  it("after a restart the bridge goes on from what PostgreSQL holds", async (t) => {
    if (!world) return t.skip("no test bed or PostgreSQL");
    await world.bridge.restart();
    assert.equal((await mwi({ new: 3 })).status, 202);
    await newVoicemail(3);
  });

  it("a database outage: the webhook is refused, the bridge keeps running, and delivers once it is back", async (t) => {
    if (!world) return t.skip("no test bed or PostgreSQL");
    await pg!.pause();
    try {
      const refused = await mwi({ new: 4 });
      assert.ok(refused.status >= 500, `refused while the database is down: ${refused.status}`);
      assert.equal((await fetch(`${world.bridgeUrl}/health`)).status, 200, "the bridge still runs");
    } finally {
      await pg!.resume();
    }
    const outage = world.bridge.log().split("\n").filter((l) => l.includes("is out of reach"));
    console.log(`the bridge's log during the outage:\n${outage.join("\n")}`);
    assert.match(outage.join("\n"), /PostgreSQL postgres:\/\/bridge:\*\*\*@127\.0\.0\.1:\d+\/\w+ is out of reach/);
    assert.equal((await mwi({ new: 5 })).status, 202);
    await newVoicemail(5);
    assert.ok(!world.bridge.log().includes(pg!.password), "the password is never logged");
  });

  /** Stops the bridge, copies its store to `to` with the real CLI, points the config there, starts it. */
  const moveStore = async (from: string, to: string) => {
    await world!.bridge.stop();
    const run = await runCli(["migrate-store", "--from", from, "--to", to], world!.dir);
    assert.equal(run.code, 0, run.stderr);
    assert.ok(!run.stdout.includes(pg!.password) && !run.stderr.includes(pg!.password), "the password is never printed");
    assert.match(run.stdout, /^links\s+1\s+1$/m);
    assert.match(run.stdout, /^mailboxStates\s+1\s+1$/m);
    const config = yaml.load(readFileSync(world!.bridge.files.configPath, "utf8")) as { database: { uri: string } };
    config.database.uri = to;
    writeFileSync(world!.bridge.files.configPath, yaml.dump(config));
    await world!.bridge.start();
  };

  it("migrate-store to NeDB and back to a fresh PostgreSQL: the bridge goes on in the same room", async (t) => {
    if (!world) return t.skip("no test bed or PostgreSQL");
    const pgUri = (yaml.load(readFileSync(world.bridge.files.configPath, "utf8")) as { database: { uri: string } }).database.uri;
    const nedb = `nedb:${join(world.dir, "migrated")}`;
    await moveStore(pgUri, nedb);
    assert.equal((await mwi({ new: 6 })).status, 202);
    await newVoicemail(6);

    const fresh = await pg!.createDatabase();
    await moveStore(nedb, fresh);
    assert.equal((await mwi({ new: 7 })).status, 202);
    await newVoicemail(7);
    // The same DM: no second invite, and the new database holds the state.
    const invites = alice.client.getRooms().filter((r) => r.getMyMembership() === "invite");
    assert.deepEqual(invites.map((r) => r.roomId), []);
    const [state] = await pg!.admin(new URL(fresh).pathname.slice(1))`SELECT new_count FROM mailbox_states`;
    assert.equal(Number(state!.new_count), 7);
    assert.ok(!world.bridge.log().includes(pg!.password), "the password is never logged");
  });
});
