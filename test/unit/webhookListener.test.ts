/**
 * The limits of a webhook listener, driven with raw sockets on loopback: slow headers, a slow
 * body, many connections, a body that goes on after 413, endless keep-alive. Each test waits for
 * the bridge to answer or close (the test's timeout catches a bridge that never does) and checks
 * that other clients still get through.
 */
import assert from "node:assert/strict";
import type { Server } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { after, describe, it } from "node:test";
import type { Logger } from "matrix-appservice-bridge";
import type { MwiUpdate } from "../../src/core/mwi.js";
import { HttpRouter, type ListenerLimits } from "../../src/gateway/http.js";
import { createGateway } from "../../src/gateway/registry.js";
import { signedHeaders } from "../../src/gateway/webhook/signature.js";

const quiet = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger;
const SECRET = "listener-test-secret-0123456789abcdef";
// Far below Node's defaults (60 s for headers, 300 s for a request, no caps), which are what a
// listener without the limits has: then these tests time out.
const TEST_TIMEOUT = { timeout: 20_000 };
let counter = 0;

const servers: Server[] = [];
after(() => Promise.all(servers.map((s) => new Promise<void>((r) => (s.closeAllConnections(), s.close(() => r()))))));

async function listener(limits: Partial<ListenerLimits>): Promise<{ port: number; updates: MwiUpdate[] }> {
  const updates: MwiUpdate[] = [];
  const router = new HttpRouter(quiet);
  const gateway = createGateway(
    { id: "carrier", kind: "webhook", webhook: { secret: SECRET, maxBodyBytes: 1024, legacySignature: false } },
    { log: quiet, acceptUpdate: async (u) => void updates.push(u) },
  );
  router.add(gateway.http!);
  const server = await router.listen(0, "127.0.0.1", limits);
  servers.push(server);
  return { port: (server.address() as AddressInfo).port, updates };
}

/** A signed request from `localAddress`, over a connection of its own. */
async function post(port: number, localAddress = "127.0.0.1"): Promise<number> {
  const body = JSON.stringify({ mailbox: "1001", waiting: true, new: ++counter, old: 0 });
  const headers = Object.entries({ ...signedHeaders(SECRET, body), "content-length": String(body.length), connection: "close" })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  const reply = await exchange(port, (s) => s.write(`POST /webhook/carrier HTTP/1.1\r\nHost: x\r\n${headers}\r\n${body}`), localAddress);
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(reply.received)?.[1] ?? 0);
}

interface Exchange {
  received: string;
  /** Bytes we had written when the server closed. */
  written: number;
}

/** Opens a connection, lets `drive` write, and resolves once the server has closed it. */
function exchange(port: number, drive: (socket: Socket) => void, localAddress = "127.0.0.1"): Promise<Exchange> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1", localAddress });
    let received = "";
    socket.on("data", (d) => (received += d.toString("latin1")));
    socket.on("error", () => undefined); // a reset is one way of being closed
    socket.on("close", () => resolve({ received, written: socket.bytesWritten }));
    socket.on("connect", () => drive(socket));
  });
}

/** Opens a connection that sends nothing; resolves once it is established, with its close. */
function idle(port: number, localAddress: string): Promise<{ socket: Socket; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1", localAddress });
    const closed = new Promise<void>((r) => socket.once("close", () => r()));
    socket.on("error", () => undefined);
    socket.resume(); // read, or the server's close is never seen
    socket.once("connect", () => resolve({ socket, closed }));
    socket.once("error", reject);
  });
}

describe("webhook listener limits", () => {
  it("closes a connection whose headers never finish, and serves others meanwhile", TEST_TIMEOUT, async () => {
    const { port, updates } = await listener({ headersTimeoutMs: 500, checkIntervalMs: 100 });
    const silent = exchange(port, () => undefined);
    const trickle = exchange(port, (s) => {
      s.write("POST /webhook/carrier HTTP/1.1\r\nHost: x\r\n");
      const timer = setInterval(() => s.writable && s.write("X-Padding: 1\r\n"), 50);
      s.once("close", () => clearInterval(timer));
    });
    assert.equal(await post(port), 202, "another client is served while those two hang");
    const [a, b] = await Promise.all([silent, trickle]);
    for (const x of [a, b]) assert.ok(x.received === "" || /^HTTP\/1\.1 408 /.test(x.received), x.received);
    assert.equal(updates.length, 1);
  });

  it("closes a connection whose body trickles in, and serves others meanwhile", TEST_TIMEOUT, async () => {
    const { port, updates } = await listener({ headersTimeoutMs: 800, requestTimeoutMs: 800, checkIntervalMs: 100 });
    const slow = exchange(port, (s) => {
      s.write("POST /webhook/carrier HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
      const timer = setInterval(() => s.writable && s.write(" "), 50);
      s.once("close", () => clearInterval(timer));
    });
    assert.equal(await post(port), 202);
    const result = await slow;
    assert.ok(result.written < 1100, "cut off before the body was complete");
    assert.equal(updates.length, 1);
  });

  it("caps the connections of one source; other sources still get through", TEST_TIMEOUT, async () => {
    const { port, updates } = await listener({ maxConnectionsPerSource: 4 });
    const held = await Promise.all([1, 2, 3, 4].map(() => idle(port, "127.0.0.2")));
    // Past the cap a connection is closed at once, before it can send anything.
    const refused = await Promise.all([5, 6, 7].map(() => idle(port, "127.0.0.2")));
    await Promise.all(refused.map((r) => r.closed));
    assert.equal(await post(port, "127.0.0.2"), 0, "the capped source gets no answer");
    assert.equal(await post(port, "127.0.0.1"), 202, "another source does");
    held[0]!.socket.destroy();
    await held[0]!.closed;
    assert.equal(await post(port, "127.0.0.2"), 202, "a freed slot serves its source again");
    assert.equal(updates.length, 2);
    for (const h of held) h.socket.destroy();
  });

  it("caps all connections, and frees them once the idle ones time out", TEST_TIMEOUT, async () => {
    const { port, updates } = await listener({ maxConnections: 6, maxConnectionsPerSource: 3, headersTimeoutMs: 500, checkIntervalMs: 100 });
    const held = await Promise.all(["127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3", "127.0.0.3"].map((a) => idle(port, a)));
    const refused = await idle(port, "127.0.0.4");
    await refused.closed;
    await Promise.all(held.map((h) => h.closed));
    assert.equal(await post(port, "127.0.0.4"), 202);
    assert.equal(updates.length, 1);
  });

  it("closes the connection after 413 instead of reading on", TEST_TIMEOUT, async () => {
    const { port, updates } = await listener({});
    // A chunked body declares no length: the listener finds out as it reads.
    const head = "POST /webhook/carrier HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    const chunk = `400\r\n${"x".repeat(0x400)}\r\n`;
    // A client that never stops sending: the bridge closes on it (it may be reset before it reads the 413).
    const endless = await exchange(port, (s) => {
      s.write(head);
      const pump = () => {
        while (s.writable && s.write(chunk));
        if (s.writable) s.once("drain", pump);
      };
      pump();
    });
    assert.match(endless.received, /^(HTTP\/1\.1 413 |$)/);
    // A client whose body is merely too long gets the 413 and then the close.
    const long = await exchange(port, (s) => s.write(head + chunk.repeat(64)));
    assert.match(long.received, /^HTTP\/1\.1 413 /);
    assert.match(long.received, /\r\nconnection: close\r\n/i);
    // Declared too long: refused before reading.
    const declared = await exchange(port, (s) => s.write("POST /webhook/carrier HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"));
    assert.match(declared.received, /^HTTP\/1\.1 413 /);
    assert.equal(await post(port), 202);
    assert.equal(updates.length, 1);
  });

  it("bounds the requests on one keep-alive connection", TEST_TIMEOUT, async () => {
    const { port, updates } = await listener({ maxRequestsPerSocket: 2 });
    const request = () => {
      const body = JSON.stringify({ mailbox: "1001", waiting: true, new: ++counter, old: 0 });
      const headers = Object.entries({ ...signedHeaders(SECRET, body), "content-length": String(body.length) }).map(([k, v]) => `${k}: ${v}\r\n`).join("");
      return `POST /webhook/carrier HTTP/1.1\r\nHost: x\r\n${headers}\r\n${body}`;
    };
    const result = await exchange(port, (s) => {
      // One request at a time: the next once the answer to the last is in.
      let answers = 0;
      s.write(request());
      s.on("data", (d: Buffer) => {
        answers += (d.toString("latin1").match(/HTTP\/1\.1 \d{3}/g) ?? []).length;
        if (answers < 5 && s.writable) s.write(request());
      });
    });
    const statuses = result.received.match(/HTTP\/1\.1 \d{3}/g) ?? [];
    assert.deepEqual(statuses, ["HTTP/1.1 202", "HTTP/1.1 202"], "then the server closes");
    assert.equal(updates.length, 2);
  });

  it("survives accept failing when descriptors run out (EMFILE), with one log line a minute", async () => {
    const lines: string[] = [];
    const log = { warn: (m: string) => void lines.push(m) };
    const router = new HttpRouter(log as unknown as Logger);
    const server = await router.listen(0, "127.0.0.1");
    servers.push(server);
    // What libuv reports when accept() finds no descriptor left: without a listener, a crash.
    for (let i = 0; i < 3; i++) server.emit("error", Object.assign(new Error("accept EMFILE"), { code: "EMFILE" }));
    assert.deepEqual(lines, ["HTTP listener: EMFILE (logged at most once a minute)"]);
    assert.equal(await post((server.address() as AddressInfo).port), 404, "and it still answers");
  });
});
