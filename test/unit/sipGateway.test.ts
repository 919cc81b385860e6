/** The SIP gateway's own decisions, on a real UDP socket on loopback: unsolicited NOTIFYs. */
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { after, describe, it } from "node:test";
import type { Logger } from "matrix-appservice-bridge";
import type { SipSystemConfig } from "../../src/config/types.js";
import type { MwiUpdate } from "../../src/core/mwi.js";
import { SipGateway } from "../../src/gateway/sip/sipGateway.js";

const quiet = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger;

function system(unsolicitedSources: string[]): SipSystemConfig {
  return {
    id: "office",
    name: "Office",
    botLocalpart: "vm_office",
    kind: "sip",
    sip: {
      server: { host: "127.0.0.1", port: 9, transport: "udp" },
      local: { bindAddress: "127.0.0.1", port: 0 },
      expires: 3600,
      unsolicitedSources,
    },
  };
}

async function gateway(sources: string[]): Promise<{ gw: SipGateway; updates: MwiUpdate[] }> {
  const updates: MwiUpdate[] = [];
  const gw = new SipGateway(system(sources), { acceptUpdate: async (u) => void updates.push(u), log: quiet });
  await gw.start();
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
