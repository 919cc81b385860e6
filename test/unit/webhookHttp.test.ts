/** The webhook's HTTP capability behind an HttpRouter, on a real listener on loopback. */
import assert from "node:assert/strict";
import type { Server } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import type { Logger } from "matrix-appservice-bridge";
import type { MwiUpdate } from "../../src/core/mwi.js";
import type { HttpCapability } from "../../src/gateway/gateway.js";
import { HttpRouter } from "../../src/gateway/http.js";
import { createGateway } from "../../src/gateway/registry.js";
import { signBody, signedHeaders, signRequest } from "../../src/gateway/webhook/signature.js";

const SECRET = "0123456789abcdef0123456789abcdef";
const BODY = JSON.stringify({ mailbox: "1001", waiting: true, new: 2, old: 5 });
// Two requests with the same body signed in the same second are one signature, and a repeat
// of it a replay: tests that are not about replays sign a body of their own each time.
let counter = 100;
const freshBody = () => JSON.stringify({ mailbox: "1001", waiting: true, new: ++counter, old: 5 });
const nowSeconds = () => Math.floor(Date.now() / 1000);

/** A logger that keeps its lines, to count them. */
function recordingLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (message: string) => void lines.push(`${level} ${message}`);
  return { log: { debug() {}, info: at("INFO"), warn: at("WARN"), error: at("ERROR") } as unknown as Logger, lines };
}

/** Writes raw bytes and resolves with everything the server sent once it closed the connection. */
function rawExchange(port: number, write: (socket: Socket) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let received = "";
    socket.on("data", (d) => (received += d.toString("latin1")));
    socket.on("error", reject);
    socket.on("close", () => resolve(received));
    socket.on("connect", () => write(socket));
  });
}

describe("webhook over HTTP", () => {
  const updates: MwiUpdate[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);
  let failStore = false;
  let server: Server;
  let port: number;
  let base: string;
  const recorded = recordingLog();

  before(async () => {
    process.on("unhandledRejection", onUnhandled);
    const router = new HttpRouter();
    const host = {
      log: recorded.log,
      acceptUpdate: async (u: MwiUpdate) => {
        if (failStore) throw new Error("ENOSPC: no space left on device");
        updates.push(u);
      },
    };
    for (const [id, legacySignature] of [["carrier", false], ["office", false], ["legacy", true]] as const) {
      const gateway = createGateway({ id, kind: "webhook", webhook: { secret: SECRET, maxBodyBytes: 256, legacySignature } }, host);
      assert.ok(gateway.http, "a webhook gateway offers HTTP");
      assert.equal(gateway.http.listen, undefined, "without a port: on the appservice listener");
      assert.equal(gateway.linking, undefined, "webhook mailboxes are linked by an admin");
      assert.equal(gateway.watching, undefined);
      assert.equal(gateway.upstreamMwi, undefined);
      router.add(gateway.http);
    }
    const broken: HttpCapability = { path: "/broken", handle: () => Promise.reject(new Error("a bug")) };
    router.add(broken);
    server = await router.listen(0, "127.0.0.1");
    port = (server.address() as AddressInfo).port;
    base = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    process.off("unhandledRejection", onUnhandled);
    assert.deepEqual(unhandled, [], "no rejection was left unhandled");
  });
  beforeEach(() => {
    updates.length = 0;
    recorded.lines.length = 0;
  });

  const post = (path: string, body = freshBody(), headers: Record<string, string> = signedHeaders(SECRET, body)) =>
    fetch(`${base}${path}`, { method: "POST", headers, body });

  it("stores a signed update and answers 202, for the system the path names", async () => {
    const res = await post("/webhook/office", BODY);
    assert.equal(res.status, 202);
    assert.deepEqual(await res.json(), { status: "accepted" });
    assert.deepEqual(updates.map((u) => [u.systemId, u.mailbox, u.counts.new]), [["office", "1001", 2]]);
    assert.equal((await post("/webhook/carrier/?x=1")).status, 202, "a trailing slash and a query are fine");
    assert.equal(updates[1]!.systemId, "carrier");
    assert.deepEqual(recorded.lines, [], "an accepted request logs nothing");
  });

  it("refuses what it must, storing nothing", async () => {
    assert.equal((await post("/webhook/carrier", BODY, signedHeaders("another secret of thirty-two chars", BODY))).status, 401);
    assert.equal((await post("/webhook/carrier", "{")).status, 400);
    assert.equal((await fetch(`${base}/webhook/carrier`)).status, 405);
    const big = JSON.stringify({ mailbox: "1001", waiting: true, new: 1, old: 0, pad: "x".repeat(300) });
    assert.equal((await post("/webhook/carrier", big)).status, 413);
    assert.equal((await post("/webhook/nosuchsystem")).status, 404);
    assert.equal((await post("/elsewhere")).status, 404);
    assert.deepEqual(updates, []);
    assert.equal(recorded.lines.length, 4, `one line per refused request of a system:\n${recorded.lines.join("\n")}`);
  });

  it("answers a path with a bad %-escape with 404", async () => {
    assert.equal((await post("/webhook/%E0%A4%A")).status, 404);
    assert.equal((await post("/webhook/carrier%")).status, 404);
  });

  it("a route that rejects still gets an answer: 500", async () => {
    assert.equal((await post("/broken")).status, 500);
  });

  describe("signature", () => {
    it("refuses the body-only signature unless the system sets legacySignature", async () => {
      const BODY = freshBody();
      const legacy = { "x-signature-256": signBody(SECRET, BODY) };
      const res = await post("/webhook/carrier", BODY, legacy);
      assert.equal(res.status, 401);
      assert.match(String(((await res.json()) as { error: string }).error), /X-Signature-Timestamp/);
      assert.equal((await post("/webhook/legacy", BODY, legacy)).status, 202);
      assert.equal((await post("/webhook/legacy", BODY, legacy)).status, 202, "a legacy signature cannot be told from a repeat");
      assert.equal((await post("/webhook/legacy")).status, 202, "a legacy system takes the new signature too");
      assert.deepEqual(updates.map((u) => u.systemId), ["legacy", "legacy", "legacy"]);
    });

    it("refuses a timestamp more than five minutes off the bridge's clock, either way", async () => {
      const BODY = freshBody();
      for (const offset of [-301, 301, -3600]) {
        const t = String(nowSeconds() + offset);
        const res = await post("/webhook/carrier", BODY, { "x-signature-timestamp": t, "x-signature-256": signRequest(SECRET, t, BODY) });
        assert.equal(res.status, 401, `offset ${offset}`);
        assert.match(String(((await res.json()) as { error: string }).error), /five minutes/);
      }
      for (const offset of [-290, 0, 290]) {
        const t = String(nowSeconds() + offset);
        assert.equal((await post("/webhook/carrier", BODY, { "x-signature-timestamp": t, "x-signature-256": signRequest(SECRET, t, BODY) })).status, 202, `offset ${offset}`);
      }
      assert.equal(updates.length, 3);
    });

    it("refuses a signature over another timestamp, or a timestamp not in plain digits", async () => {
      const BODY = freshBody();
      const t = String(nowSeconds());
      const signature = signRequest(SECRET, t, BODY);
      for (const other of [String(Number(t) + 1), `+${t}`, `${t}.0`, `0${t}`, `${t}x`, "", "1e9"]) {
        assert.equal((await post("/webhook/carrier", BODY, { "x-signature-timestamp": other, "x-signature-256": signature })).status, 401, JSON.stringify(other));
      }
      assert.deepEqual(updates, []);
    });

    it("refuses the same signed request a second time, however the hex is spelled", async () => {
      const BODY = freshBody();
      const headers = signedHeaders(SECRET, BODY);
      assert.equal((await post("/webhook/carrier", BODY, headers)).status, 202);
      const again = await post("/webhook/carrier", BODY, headers);
      assert.equal(again.status, 401);
      assert.match(String(((await again.json()) as { error: string }).error), /already used/);
      const upper = { ...headers, "x-signature-256": `sha256=${headers["x-signature-256"]!.slice(7).toUpperCase()}` };
      assert.equal((await post("/webhook/carrier", BODY, upper)).status, 401);
      assert.equal((await post("/webhook/office", BODY, headers)).status, 202, "each system has its own seen set");
      assert.equal(updates.length, 2);
    });

    it("a request signed anew with the same body is no replay", async () => {
      const BODY = freshBody();
      const first = signedHeaders(SECRET, BODY, Date.now());
      const second = signedHeaders(SECRET, BODY, Date.now() + 1000);
      assert.equal((await post("/webhook/carrier", BODY, first)).status, 202);
      assert.equal((await post("/webhook/carrier", BODY, second)).status, 202);
    });
  });

  describe("the store fails", () => {
    it("answers 503 with one log line, stores nothing, and takes the same request once the store is back", async () => {
      const BODY = freshBody();
      const headers = signedHeaders(SECRET, BODY);
      failStore = true;
      try {
        const res = await post("/webhook/carrier", BODY, headers);
        assert.equal(res.status, 503);
        assert.deepEqual(await res.json(), { error: "the bridge could not store the update; retry later" }, "the client is not told the store's error");
      } finally {
        failStore = false;
      }
      assert.deepEqual(updates, []);
      assert.equal(recorded.lines.length, 1, recorded.lines.join("\n"));
      assert.match(recorded.lines[0]!, /^ERROR webhook carrier from 127\.0\.0\.1: 503 could not store the update: ENOSPC/);
      assert.equal((await post("/webhook/carrier", BODY, headers)).status, 202, "a retry of a request that was not stored is no replay");
      assert.equal(updates.length, 1);
    });
  });

  describe("every request gets an answer", () => {
    it("a body that ends early: answered, nothing stored, the listener keeps serving", async () => {
      const BODY = freshBody();
      const headers = signedHeaders(SECRET, BODY);
      const reply = await rawExchange(port, (s) => {
        s.write(
          `POST /webhook/carrier HTTP/1.1\r\nHost: x\r\nX-Signature-Timestamp: ${headers["x-signature-timestamp"]}\r\n` +
            `X-Signature-256: ${headers["x-signature-256"]}\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY.slice(0, 10)}`,
        );
        s.end();
      });
      assert.match(reply, /^HTTP\/1\.1 400 /);
      assert.deepEqual(updates, []);
      assert.equal((await post("/webhook/carrier", BODY, headers)).status, 202, "the cut request never claimed its signature");
    });

    it("a client that aborts mid-body: nothing stored, the listener keeps serving", async () => {
      let sawRequest!: () => void;
      const requestStarted = new Promise<void>((r) => (sawRequest = r));
      server.once("request", () => sawRequest());
      await new Promise<void>((resolve) => {
        const socket = connect(port, "127.0.0.1", () => {
          socket.write(`POST /webhook/carrier HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n{"mailbox":`);
          void requestStarted.then(() => socket.resetAndDestroy());
        });
        socket.on("error", () => undefined);
        socket.on("close", () => resolve());
      });
      assert.equal((await post("/webhook/carrier")).status, 202);
      assert.equal(updates.length, 1);
    });

    it("chunked bodies, with or without a broken chunk, are answered", async () => {
      const BODY = freshBody();
      const headers = signedHeaders(SECRET, BODY);
      const head = `POST /webhook/carrier HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nX-Signature-Timestamp: ${headers["x-signature-timestamp"]}\r\nX-Signature-256: ${headers["x-signature-256"]}\r\n\r\n`;
      const broken = await rawExchange(port, (s) => s.end(`${head}zz\r\n`));
      assert.match(broken, /^HTTP\/1\.1 400 /);
      const good = await rawExchange(port, (s) => s.end(`${head}${BODY.length.toString(16)}\r\n${BODY}\r\n0\r\n\r\n`));
      assert.match(good, /^HTTP\/1\.1 202 /);
      assert.equal(updates.length, 1);
    });
  });
});

describe("a router", () => {
  it("refuses a second route for the same path", () => {
    const router = new HttpRouter();
    const gateway = createGateway(
      { id: "carrier", kind: "webhook", webhook: { secret: SECRET, maxBodyBytes: 256, legacySignature: false } },
      { log: recordingLog().log, acceptUpdate: async () => undefined },
    );
    router.add(gateway.http!);
    assert.throws(() => router.add(gateway.http!), /two systems serve \/webhook\/carrier on one listener/);
  });
});
