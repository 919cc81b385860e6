/** The webhook's HTTP capability behind an HttpRouter, on a real listener on loopback. */
import assert from "node:assert/strict";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import type { Logger } from "matrix-appservice-bridge";
import type { MwiUpdate } from "../../src/core/mwi.js";
import { HttpRouter } from "../../src/gateway/http.js";
import { createGateway } from "../../src/gateway/registry.js";
import { signBody } from "../../src/gateway/webhook/signature.js";

const quiet = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger;
const SECRET = "0123456789abcdef";
const BODY = JSON.stringify({ mailbox: "1001", waiting: true, new: 2, old: 5 });

describe("webhook over HTTP", () => {
  const updates: MwiUpdate[] = [];
  let failStore = false;
  let server: Server;
  let base: string;

  before(async () => {
    const router = new HttpRouter();
    const host = {
      log: quiet,
      acceptUpdate: async (u: MwiUpdate) => {
        if (failStore) throw new Error("disk full");
        updates.push(u);
      },
    };
    for (const id of ["carrier", "office"]) {
      const gateway = createGateway({ id, kind: "webhook", webhook: { secret: SECRET, maxBodyBytes: 256 } }, host);
      assert.ok(gateway.http, "a webhook gateway offers HTTP");
      assert.equal(gateway.http.listen, undefined, "without a port: on the appservice listener");
      assert.equal(gateway.linking, undefined, "webhook mailboxes are linked by an admin");
      assert.equal(gateway.watching, undefined);
      assert.equal(gateway.upstreamMwi, undefined);
      router.add(gateway.http);
    }
    server = await router.listen(0, "127.0.0.1");
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const post = (path: string, body = BODY, signature = signBody(SECRET, body)) =>
    fetch(`${base}${path}`, { method: "POST", headers: { "x-signature-256": signature }, body });

  it("stores a signed update and answers 202, for the system the path names", async () => {
    updates.length = 0;
    const res = await post("/webhook/office");
    assert.equal(res.status, 202);
    assert.deepEqual(await res.json(), { status: "accepted" });
    assert.deepEqual(updates.map((u) => [u.systemId, u.mailbox, u.counts.new]), [["office", "1001", 2]]);
    assert.equal((await post("/webhook/carrier/?x=1")).status, 202, "a trailing slash and a query are fine");
    assert.equal(updates[1]!.systemId, "carrier");
  });

  it("refuses what it must, storing nothing", async () => {
    updates.length = 0;
    assert.equal((await post("/webhook/carrier", BODY, signBody("another secret", BODY))).status, 401);
    assert.equal((await post("/webhook/carrier", "{", signBody(SECRET, "{"))).status, 400);
    assert.equal((await fetch(`${base}/webhook/carrier`)).status, 405);
    const big = JSON.stringify({ mailbox: "1001", waiting: true, new: 1, old: 0, pad: "x".repeat(300) });
    assert.equal((await post("/webhook/carrier", big)).status, 413);
    assert.equal((await post("/webhook/nosuchsystem")).status, 404);
    assert.equal((await post("/elsewhere")).status, 404);
    assert.deepEqual(updates, []);
  });

  it("answers a path with a bad %-escape with 404", async () => {
    assert.equal((await post("/webhook/%E0%A4%A")).status, 404);
  });

  it("answers 503 when the update cannot be stored", async () => {
    failStore = true;
    try {
      assert.equal((await post("/webhook/carrier")).status, 503);
    } finally {
      failStore = false;
    }
  });

  it("a router refuses a second route for the same path", () => {
    const router = new HttpRouter();
    const gateway = createGateway({ id: "carrier", kind: "webhook", webhook: { secret: SECRET, maxBodyBytes: 256 } }, { log: quiet, acceptUpdate: async () => undefined });
    router.add(gateway.http!);
    assert.throws(() => router.add(gateway.http!), /two systems serve \/webhook\/carrier on one listener/);
  });
});
