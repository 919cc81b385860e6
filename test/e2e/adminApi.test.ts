/**
 * The admin API of the real bridge process on a real Synapse: its own listener, the token, a
 * link made through it that reaches the user's room like `!admin link`, the unlink, the log.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { postWebhook } from "../testbed/bridgeProcess.js";
import { freePort } from "../testbed/ports.js";
import { waitForEvent } from "../testbed/matrixClient.js";
import { requireTestbed, World, type User } from "./world.js";

const SECRET = "carrier-webhook-secret-0123456789abcdef";
const TOKEN = "admin-api-token-0123456789abcdef0123456789";
const CARRIER_BOT = "@vm_carrier:localhost";

describe("admin API on the real bridge", { timeout: 110_000 }, () => {
  let world: World | undefined;
  let alice: User;
  let api: string;

  before(async (t) => {
    if (!(await requireTestbed(t as never))) return;
    const adminPort = await freePort();
    api = `http://127.0.0.1:${adminPort}/_voicemail/admin/v1`;
    world = await World.create({
      synapsePort: await freePort(),
      bridgePort: await freePort(),
      logLevel: "info",
      systems: [{ id: "carrier", name: "Carrier Voicemail", botLocalpart: "vm_carrier", kind: "webhook", webhook: { secret: SECRET } }],
      config: { adminApi: { token: TOKEN, port: adminPort } },
    });
    alice = await world.user("alice");
  });

  after(async () => {
    await world?.close();
  });

  const call = async (method: string, path: string, body?: unknown, token: string | null = TOKEN) => {
    const headers: Record<string, string> = {};
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(`${api}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    return { status: res.status, json: (await res.json()) as any };
  };

  it("links, shows, changes and unlinks a mailbox; the user's room hears of it; the token is never logged", async (t) => {
    if (!world) return t.skip("no test bed");
    const u = encodeURIComponent(alice.userId);
    assert.equal((await call("GET", "/openapi.json", undefined, null)).json.openapi, "3.0.3");
    assert.equal((await call("GET", "/users", undefined, null)).status, 401);
    assert.equal((await call("GET", "/users", undefined, "x".repeat(40))).status, 401);
    // The appservice listener does not serve it.
    assert.equal((await fetch(`${world.bridgeUrl}/_voicemail/admin/v1/users`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 404);

    const linked = await call("POST", `/users/${u}/links`, { systemId: "carrier", mailbox: "1001" });
    assert.equal(linked.status, 201, JSON.stringify(linked.json));
    const roomId = await world.acceptDmFrom(alice, CARRIER_BOT, 60_000);
    await waitForEvent(alice.client, roomId, (e) => e.getSender() === CARRIER_BOT && /Mailbox 1001 of Carrier Voicemail is now linked/.test(String(e.getContent().body)), 60_000);

    assert.equal((await postWebhook(world.bridgeUrl, "carrier", { mailbox: "1001", waiting: true, new: 3, old: 1 }, { secret: SECRET })).status, 202);
    await waitForEvent(alice.client, roomId, (e) => e.getSender() === CARRIER_BOT && /3 new/.test(String(e.getContent().body)), 60_000);

    const shown = await call("GET", `/users/${u}`);
    assert.equal(shown.status, 200);
    assert.deepEqual(shown.json.links.map((l: any) => [l.systemId, l.mailbox, l.linkedBy, l.mwiEnabled]), [["carrier", "1001", "admin-api", true]]);
    assert.equal((await call("GET", "/users?search=alice")).json.users[0].userId, alice.userId);
    const settings = await call("PATCH", `/users/${u}/settings`, { timezone: "Europe/Berlin" });
    assert.equal(settings.json.settings.timezone, "Europe/Berlin");
    const outbox = await call("GET", "/outbox");
    assert.equal(outbox.status, 200);
    assert.equal(typeof outbox.json.entries, "number");
    assert.equal((await call("POST", "/systems/carrier/resync")).json.errcode, "M_UNSUPPORTED");

    assert.equal((await call("DELETE", `/users/${u}/links/carrier/1001`)).status, 200);
    assert.deepEqual((await call("GET", `/users/${u}/links`)).json.links, []);
    const log = world.bridge.log();
    assert.match(log, /admin API on 127\.0\.0\.1:\d+/);
    assert.match(log, /admin API \(127\.0\.0\.1\): linked carrier\/1001 to @alice:localhost/);
    assert.match(log, /admin API \(127\.0\.0\.1\): unlinked carrier\/1001 from @alice:localhost/);
    assert.match(log, /refused 127\.0\.0\.1: wrong token/);
    assert.ok(!log.includes(TOKEN), "the token is never logged");
  });
});
