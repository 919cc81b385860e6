/** The SIP gateway's own decisions, on real sockets on loopback: unsolicited NOTIFYs, TLS settings. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createSocket } from "node:dgram";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import tls from "node:tls";
import type { Logger } from "matrix-appservice-bridge";
import type { SipSystemConfig } from "../../src/config/types.js";
import type { MwiUpdate } from "../../src/core/mwi.js";
import { StreamFramer } from "../../src/gateway/sip/framing.js";
import { buildResponse, serializeMessage } from "../../src/gateway/sip/message.js";
import { SipGateway } from "../../src/gateway/sip/sipGateway.js";

const quiet = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger;

function system(unsolicitedSources: string[]): SipSystemConfig {
  return {
    id: "office",
    name: "Office",
    botLocalpart: "vm_office",
    kind: "sip",
    sip: {
      server: { host: "127.0.0.1", port: 9, transport: "udp", rejectUnauthorized: true },
      local: { bindAddress: "127.0.0.1", port: 0, maxConnections: 64, maxConnectionsPerSource: 8, idleTimeoutSeconds: 120, messageTimeoutSeconds: 10 },
      expires: 3600,
      allowAuthUser: false,
      unsolicitedSources,
    },
  };
}

/** A started gateway with `linked` linked (admin links: no credentials, so no subscription). */
async function gateway(sources: string[], linked: string[] = ["2001", "3003"]): Promise<{ gw: SipGateway; updates: MwiUpdate[] }> {
  const updates: MwiUpdate[] = [];
  const gw = new SipGateway(system(sources), { acceptUpdate: async (u) => void updates.push(u), log: quiet });
  await gw.start();
  for (const mailbox of linked) await gw.watching.watch(mailbox);
  return { gw, updates };
}

/** Sends an out-of-dialog NOTIFY from 127.0.0.1 and returns the status line of the answer. */
async function notify(port: number, body: string, requestUser = "1002"): Promise<string> {
  const socket = createSocket("udp4");
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
  const local = socket.address().port;
  const message = [
    `NOTIFY sip:${requestUser}@127.0.0.1:${port} SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${local};branch=z9hG4bK-${Math.random().toString(36).slice(2)};rport`,
    "Max-Forwards: 70",
    "From: <sip:pbx@127.0.0.1>;tag=pbx1",
    `To: <sip:${requestUser}@127.0.0.1>`,
    `Call-ID: unsolicited-${Math.random().toString(36).slice(2)}`,
    "CSeq: 1 NOTIFY",
    "Event: message-summary",
    "Subscription-State: terminated",
    "Content-Type: application/simple-message-summary",
    `Content-Length: ${Buffer.byteLength(body)}`,
    "",
    body,
  ].join("\r\n");
  const answer = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no answer")), 3000);
    socket.once("message", (data) => {
      clearTimeout(timer);
      resolve(data.toString("utf8").split("\r\n")[0]!);
    });
  });
  socket.send(message, port, "127.0.0.1");
  try {
    return await answer;
  } finally {
    socket.close();
  }
}

const SUMMARY = "Messages-Waiting: yes\r\nMessage-Account: sip:2001@127.0.0.1\r\nVoice-Message: 2/1 (0/0)\r\n";

describe("SIP gateway: unsolicited NOTIFYs", () => {
  const open: SipGateway[] = [];
  after(async () => {
    for (const gw of open) await gw.stop();
  });

  it("accepts one from an allowed source, mapped by Message-Account", async () => {
    const { gw, updates } = await gateway(["127.0.0.0/8"]);
    open.push(gw);
    assert.equal(await notify(gw.localPort!, SUMMARY), "SIP/2.0 200 OK");
    assert.equal(updates.length, 1);
    assert.equal(updates[0]!.mailbox, "2001", "Message-Account wins over the request URI");
    assert.deepEqual(updates[0]!.counts, { waiting: true, new: 2, old: 1, urgentNew: 0, urgentOld: 0 });
  });

  it("maps by the request URI when there is no Message-Account", async () => {
    const { gw, updates } = await gateway(["127.0.0.1"]);
    open.push(gw);
    assert.equal(await notify(gw.localPort!, "Messages-Waiting: no\r\nVoice-Message: 0/3\r\n", "3003"), "SIP/2.0 200 OK");
    assert.equal(updates[0]!.mailbox, "3003");
    assert.equal(updates[0]!.counts.old, 3);
  });

  it("refuses one from a source that is not allowed, and stores nothing", async () => {
    const { gw, updates } = await gateway(["10.0.0.0/8"]);
    open.push(gw);
    assert.match(await notify(gw.localPort!, SUMMARY), /^SIP\/2\.0 403/);
    assert.equal(updates.length, 0);
  });

  it("refuses a body that is not a message summary, and stores nothing", async () => {
    const { gw, updates } = await gateway(["127.0.0.1"]);
    open.push(gw);
    assert.match(await notify(gw.localPort!, "Voice-Message: 1/0\r\n"), /^SIP\/2\.0 400/);
    assert.equal(updates.length, 0);
  });
});

/** A private CA and a server certificate for 127.0.0.1 signed by it, made with openssl. */
function privateCa(dir: string): { caFile: string; cert: Buffer; key: Buffer } {
  const file = (name: string) => join(dir, name);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const steps = [
    ["req", "-x509", ...ec, "-keyout", file("ca.key"), "-out", file("ca.pem"), "-days", "1", "-subj", "/CN=Test PBX CA"],
    ["req", ...ec, "-keyout", file("server.key"), "-out", file("server.csr"), "-subj", "/CN=pbx.test"],
    ["x509", "-req", "-in", file("server.csr"), "-CA", file("ca.pem"), "-CAkey", file("ca.key"), "-CAcreateserial",
      "-out", file("server.pem"), "-days", "1", "-extfile", file("ext.cnf")],
  ];
  writeFileSync(file("ext.cnf"), "subjectAltName=IP:127.0.0.1\n");
  for (const args of steps) {
    const run = spawnSync("openssl", args, { encoding: "utf8" });
    assert.equal(run.status, 0, `openssl ${args[0]}: ${run.stderr}`);
  }
  return { caFile: file("ca.pem"), cert: readFileSync(file("server.pem")), key: readFileSync(file("server.key")) };
}

/** A TLS "PBX" that answers every SUBSCRIBE with 404 and records what it got. */
async function tlsPbx(cert: Buffer, key: Buffer): Promise<{ port: number; subscribes: string[]; close(): Promise<void> }> {
  const subscribes: string[] = [];
  const server = tls.createServer({ cert, key }, (socket) => {
    const framer = new StreamFramer();
    socket.on("data", (chunk: Buffer) => {
      for (const ev of framer.push(chunk)) {
        if (ev.kind !== "message" || ev.message.kind !== "request") continue;
        subscribes.push(ev.message.uri);
        socket.write(serializeMessage(buildResponse(ev.message, 404, { toTag: "pbx" })));
      }
    });
    socket.on("error", () => undefined);
  });
  server.on("tlsClientError", () => undefined);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    subscribes,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

describe("SIP gateway: TLS to a PBX with a private CA", () => {
  it("trusts sip.server.caFile", async () => {
    const dir = mkdtempSync(join(tmpdir(), "vm-sip-ca-"));
    const { caFile, cert, key } = privateCa(dir);
    const pbx = await tlsPbx(cert, key);
    const config = system([]);
    config.sip.server = { host: "127.0.0.1", port: pbx.port, transport: "tls", caFile, rejectUnauthorized: true };
    const gw = new SipGateway(config, { acceptUpdate: async () => undefined, log: quiet });
    await gw.start();
    try {
      const proof = await gw.linking.prove({ userId: "@alice:example.org", mailbox: "1001", password: "secret" });
      // The handshake succeeded: the PBX got the SUBSCRIBE and its 404 came back.
      assert.deepEqual(pbx.subscribes, ["sip:1001@127.0.0.1"]);
      assert.deepEqual(proof, { ok: false, reason: "the server refused the credentials" }, "a missing mailbox reads like a wrong password");
    } finally {
      await gw.stop();
      await pbx.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
