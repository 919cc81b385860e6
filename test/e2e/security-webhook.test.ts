/**
 * The webhook under hostile input, against the real bridge on a real Synapse (issue 8): bad
 * %-escapes, bodies that end early or never, replays and stale signatures, floods of connections,
 * short secrets. The bridge runs with --unhandled-rejections=strict: a rejection left unhandled
 * anywhere ends it, and every test checks that it still answers. What reaches the user is read
 * from the user's own room.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import yaml from "js-yaml";
import { MWI_EVENT_TYPE } from "../../src/core/events.js";
import { signBody, signRequest } from "../../src/gateway/webhook/signature.js";
import { postWebhook, runCli } from "../testbed/bridgeProcess.js";
import { waitForState } from "../testbed/matrixClient.js";
import { freePort } from "../testbed/ports.js";
import { requireTestbed, timelineOf, World, type User } from "./world.js";

const SECRET = "security-webhook-secret-0123456789abcdef";
const LEGACY_SECRET = "security-legacy-secret-0123456789abcdef";
const CARRIER_BOT = "@vm_carrier:localhost";
const MAIN_BOT = "@voicemail:localhost";

// The bridge child inherits this: an unhandled rejection crashes it even if something hooks
// 'unhandledRejection'.
process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ""} --unhandled-rejections=strict`.trim();

/** Raw bytes to a listener; resolves with what came back once the bridge closed the connection. */
function raw(port: number, drive: (s: Socket) => void, localAddress = "127.0.0.1"): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1", localAddress });
    let received = "";
    socket.on("data", (d) => (received += d.toString("latin1")));
    socket.on("error", () => undefined);
    socket.on("close", () => resolve(received));
    socket.on("connect", () => drive(socket));
  });
}

describe("webhook under hostile input, on a real homeserver", { timeout: 300_000 }, () => {
  let world: World | undefined;
  let alice: User;
  let aliceRoom: string;
  let ownPort: number;
  let ownUrl: string;

  before(async (t) => {
    if (!(await requireTestbed(t as never))) return;
    ownPort = await freePort();
    ownUrl = `http://127.0.0.1:${ownPort}`;
    world = await World.create({
      synapsePort: await freePort(),
      bridgePort: await freePort(),
      systems: [
        { id: "carrier", name: "Carrier Voicemail", botLocalpart: "vm_carrier", kind: "webhook", webhook: { secret: SECRET, maxBodyBytes: 2048 } },
        { id: "office", name: "Office Voicemail", botLocalpart: "vm_office", kind: "webhook", webhook: { secret: SECRET, port: ownPort } },
        { id: "old", name: "Old Voicemail", botLocalpart: "vm_old", kind: "webhook", webhook: { secret: LEGACY_SECRET, port: ownPort, legacySignature: true } },
      ],
    });
    const admin = await world.user("admin");
    alice = await world.user("alice");
    const adminRoom = await world.openDm(admin, MAIN_BOT);
    const reply = await world.command(admin, adminRoom, MAIN_BOT, "!admin link @alice:localhost carrier 1001");
    assert.match(reply.getContent().body, /Linked/);
    aliceRoom = await world.acceptDmFrom(alice, CARRIER_BOT);
  });

  after(async () => {
    await world?.close();
  });

  const w = () => {
    if (!world) throw new Error("no test bed");
    return world;
  };
  const carrier = (body: Record<string, unknown> | string, options: Parameters<typeof postWebhook>[3] = { secret: SECRET }) =>
    postWebhook(w().bridgeUrl, "carrier", body, options);
  const alive = async () => {
    assert.equal((await fetch(`${w().bridgeUrl}/health`)).status, 200, `the bridge still answers:\n${w().bridge.logTail()}`);
    assert.doesNotMatch(w().bridge.log(), /unhandled|uncaught|ERR_UNHANDLED_REJECTION/i);
  };
  /** The counts alice's room was ever told for carrier/1001, oldest first. */
  const toldCounts = () =>
    timelineOf(alice.client, aliceRoom, MWI_EVENT_TYPE)
      .filter((e) => e.getStateKey() === "carrier/1001")
      .map((e) => e.getContent().new as number);

  it("answers bad %-escapes with 404 on both listeners, and lives", async (t) => {
    if (!world) return t.skip("no test bed");
    const body = JSON.stringify({ mailbox: "1001", waiting: true, new: 1, old: 0 });
    for (const base of [world.bridgeUrl, ownUrl]) {
      for (const path of ["/webhook/%E0%A4%A", "/webhook/carrier%", "/%ZZ", "/webhook/%C0%AF"]) {
        const res = await fetch(`${base}${path}`, { method: "POST", body });
        assert.equal(res.status, 404, `${base}${path}`);
        await res.arrayBuffer();
      }
    }
    await alive();
  });

  it("answers a body that ends early, a client that aborts, bad JSON; none of it reaches the user", async (t) => {
    if (!world) return t.skip("no test bed");
    const body = JSON.stringify({ mailbox: "1001", waiting: true, new: 66, old: 0 });
    const ts = String(Math.floor(Date.now() / 1000));
    const head = `POST /webhook/office HTTP/1.1\r\nHost: x\r\nX-Signature-Timestamp: ${ts}\r\nX-Signature-256: ${signRequest(SECRET, ts, body)}\r\n`;
    const early = await raw(ownPort, (s) => s.end(`${head}Content-Length: ${body.length}\r\n\r\n${body.slice(0, 12)}`));
    assert.match(early, /^HTTP\/1\.1 400 /);
    await raw(ownPort, (s) => {
      s.write(`${head}Content-Length: ${body.length}\r\n\r\n${body.slice(0, 12)}`);
      setTimeout(() => s.resetAndDestroy(), 50);
    });
    const badJson = await carrier(`{"mailbox":"1001","new":66`);
    assert.equal(badJson.status, 400);
    assert.match(String(badJson.body.error), /JSON/);
    assert.equal((await carrier({ mailbox: "1001", waiting: true, new: 66, old: 0 }, { secret: SECRET, signature: null })).status, 401);

    assert.equal((await carrier({ mailbox: "1001", waiting: true, new: 3, old: 0 })).status, 202);
    await waitForState(alice.client, aliceRoom, MWI_EVENT_TYPE, "carrier/1001", (e) => e.getContent().new === 3);
    assert.ok(!toldCounts().includes(66), `nothing of a refused request was delivered: ${toldCounts().join(", ")}`);
    await alive();
  });

  it("refuses a replay, a stale timestamp and (unless the system allows it) the body-only signature", async (t) => {
    if (!world) return t.skip("no test bed");
    const now = Math.floor(Date.now() / 1000);
    const first = JSON.stringify({ mailbox: "1001", waiting: true, new: 4, old: 0 });
    assert.equal((await carrier(first, { secret: SECRET, timestamp: now })).status, 202);
    assert.equal((await carrier({ mailbox: "1001", waiting: true, new: 5, old: 0 })).status, 202);
    await waitForState(alice.client, aliceRoom, MWI_EVENT_TYPE, "carrier/1001", (e) => e.getContent().new === 5);

    const replay = await carrier(first, { secret: SECRET, timestamp: now });
    assert.equal(replay.status, 401);
    assert.match(String(replay.body.error), /already used/);
    const stale = await carrier({ mailbox: "1001", waiting: true, new: 4, old: 0 }, { secret: SECRET, timestamp: now - 600 });
    assert.equal(stale.status, 401);
    assert.match(String(stale.body.error), /five minutes/);
    assert.equal((await carrier({ mailbox: "1001", waiting: true, new: 4, old: 0 }, { secret: SECRET, legacy: true })).status, 401);

    // A system that set legacySignature takes the body-only signature, and the new one.
    const legacyBody = JSON.stringify({ mailbox: "7", waiting: false, new: 0, old: 1 });
    const legacy = await fetch(`${ownUrl}/webhook/old`, { method: "POST", headers: { "x-signature-256": signBody(LEGACY_SECRET, legacyBody) }, body: legacyBody });
    assert.equal(legacy.status, 202);
    assert.equal((await postWebhook(ownUrl, "old", { mailbox: "7", waiting: true, new: 1, old: 1 }, { secret: LEGACY_SECRET })).status, 202);

    assert.equal((await carrier({ mailbox: "1001", waiting: true, new: 6, old: 0 })).status, 202);
    await waitForState(alice.client, aliceRoom, MWI_EVENT_TYPE, "carrier/1001", (e) => e.getContent().new === 6);
    const told = toldCounts();
    assert.deepEqual(told.slice(told.indexOf(5)), [5, 6], "the replayed and the stale request changed nothing");
    await alive();
  });

  it("a flood of connections from one source leaves the listener to others", async (t) => {
    if (!world) return t.skip("no test bed");
    const held: Socket[] = [];
    const refused: Promise<void>[] = [];
    // 64 per source are let in; the rest are closed at once.
    for (let i = 0; i < 80; i++) {
      const socket = connect({ port: ownPort, host: "127.0.0.1", localAddress: "127.0.0.2" });
      socket.on("error", () => undefined);
      socket.resume();
      held.push(socket);
      if (i >= 64) refused.push(new Promise((r) => socket.once("close", () => r())));
    }
    try {
      await Promise.all(refused);
      assert.equal((await postWebhook(ownUrl, "office", { mailbox: "2001", waiting: true, new: 1, old: 0 }, { secret: SECRET })).status, 202);
    } finally {
      for (const s of held) s.destroy();
    }
    await alive();
  });

  it("closes a connection whose headers never finish, and serves others meanwhile", async (t) => {
    if (!world) return t.skip("no test bed");
    const slow = raw(ownPort, (s) => {
      s.write("POST /webhook/office HTTP/1.1\r\nHost: x\r\n");
      const timer = setInterval(() => s.writable && s.write("X-Slow: 1\r\n"), 500);
      s.once("close", () => clearInterval(timer));
    });
    assert.equal((await postWebhook(ownUrl, "office", { mailbox: "2001", waiting: true, new: 2, old: 0 }, { secret: SECRET })).status, 202);
    assert.match(await slow, /^(HTTP\/1\.1 408 |$)/, "cut off after the headers timeout");
    await alive();
  });

  it("closes the connection after 413 on the appservice listener's webhook too", async (t) => {
    if (!world) return t.skip("no test bed");
    const port = Number(new URL(world.bridgeUrl).port);
    const head = "POST /webhook/carrier HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    const chunk = `400\r\n${"x".repeat(0x400)}\r\n`;
    // One that never stops sending is closed on (perhaps reset before it reads the answer)...
    const endless = await raw(port, (s) => {
      s.write(head);
      const pump = () => {
        while (s.writable && s.write(chunk));
        if (s.writable) s.once("drain", pump);
      };
      pump();
    });
    assert.match(endless, /^(HTTP\/1\.1 413 |$)/);
    // ...one whose body is merely too long reads the 413, then the connection closes.
    const reply = await raw(port, (s) => s.write(head + chunk.repeat(64)));
    assert.match(reply, /^HTTP\/1\.1 413 /);
    await alive();
  });

  it("validate-config refuses a webhook secret shorter than 32 characters, naming the key", async (t) => {
    if (!world) return t.skip("no test bed");
    const path = join(world.dir, "short-secret.yaml");
    writeFileSync(
      path,
      yaml.dump({
        homeserver: { url: "http://127.0.0.1:8008", domain: "localhost" },
        appservice: { port: 9000, url: "http://127.0.0.1:9000" },
        systems: [{ id: "carrier", name: "Carrier", botLocalpart: "vm_carrier", kind: "webhook", webhook: { secret: "12345678" } }],
      }),
    );
    const result = await runCli(["validate-config", "-c", path], world.dir);
    assert.notEqual(result.code, 0);
    assert.match(result.stdout + result.stderr, /systems\[0\]\.webhook\.secret: must be at least 32 characters long/);
  });
});
