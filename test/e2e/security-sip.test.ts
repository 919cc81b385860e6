/**
 * Hostile input against the SIP side (issue 8): each finding as a test, against small socket
 * drivers on loopback and SIPp playing notifiers. Only 127.0.0.0/8; every loop is bounded.
 */
import assert from "node:assert/strict";
import { createSocket, type Socket } from "node:dgram";
import net from "node:net";
import { after, describe, it, test } from "node:test";
import type { Logger } from "matrix-appservice-bridge";
import type { SipSystemConfig } from "../../src/config/types.js";
import type { MwiUpdate } from "../../src/core/mwi.js";
import { NO_PASSWORD_CHECK, SipGateway } from "../../src/gateway/sip/sipGateway.js";
import { SipUserAgent, type SipUserAgentOptions } from "../../src/gateway/sip/userAgent.js";
import { ensureSipp, runSipp, sippSucceeded, sleep } from "./sipp.js";

// ---------------------------------------------------------------- helpers

/** "Nothing (more) happened" is judged over this window. */
const QUIET_MS = 400;

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function capture(): { lines: string[]; log: Logger } {
  const lines: string[] = [];
  const at = (level: string) => (m: unknown) => void lines.push(`${level} ${String(m)}`);
  return { lines, log: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") } as unknown as Logger };
}

function sipSystem(sip: Partial<SipSystemConfig["sip"]> & { server: SipSystemConfig["sip"]["server"] }): SipSystemConfig {
  return {
    id: "office",
    name: "Office",
    botLocalpart: "vm_office",
    kind: "sip",
    sip: {
      local: { bindAddress: "127.0.0.1", port: 0, maxConnections: 64, maxConnectionsPerSource: 8, idleTimeoutSeconds: 120, messageTimeoutSeconds: 10 },
      expires: 600,
      allowAuthUser: false,
      unsolicitedSources: [],
      ...sip,
    },
  };
}

async function startGateway(system: SipSystemConfig): Promise<{ gw: SipGateway; updates: MwiUpdate[]; lines: string[] }> {
  const { lines, log } = capture();
  const updates: MwiUpdate[] = [];
  const gw = new SipGateway(system, { acceptUpdate: async (u) => void updates.push(u), log });
  await gw.start();
  return { gw, updates, lines };
}

async function startUa(extra: Partial<SipUserAgentOptions> = {}): Promise<{ ua: SipUserAgent; lines: string[] }> {
  const lines: string[] = [];
  const at = (level: string) => (m: string) => void lines.push(`${level} ${m}`);
  const ua = await SipUserAgent.start({
    bindAddress: "127.0.0.1",
    port: 0,
    logger: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") },
    ...extra,
  });
  return { ua, lines };
}

/** A UDP socket on a loopback address that records what it receives. */
async function udpPeer(address = "127.0.0.1"): Promise<{ socket: Socket; port: number; got: Buffer[]; close(): Promise<void> }> {
  const socket = createSocket("udp4");
  await new Promise<void>((r) => socket.bind(0, address, () => r()));
  const got: Buffer[] = [];
  socket.on("message", (b) => got.push(b));
  return { socket, port: socket.address().port, got, close: () => new Promise((r) => socket.close(() => r())) };
}

/** A request as a PBX would send it; `extra` lines go before Content-Length. */
function request(method: string, o: { viaPort: number; branch: string; extra?: string[]; body?: string; uri?: string; callId?: string }): Buffer {
  const body = o.body ?? "";
  return Buffer.from(
    [
      `${method} ${o.uri ?? "sip:mwi@127.0.0.1"} SIP/2.0`,
      `Via: SIP/2.0/UDP 127.0.0.1:${o.viaPort};rport;branch=${o.branch}`,
      "Max-Forwards: 70",
      "From: <sip:pbx@127.0.0.1>;tag=pbx1",
      `To: ${o.uri ? `<${o.uri}>` : "<sip:mwi@127.0.0.1>"}`,
      `Call-ID: ${o.callId ?? `c-${o.branch}`}`,
      `CSeq: 1 ${method}`,
      ...(o.extra ?? []),
      `Content-Length: ${Buffer.byteLength(body)}`,
      "",
      body,
    ].join("\r\n"),
  );
}

/** An out-of-dialog MWI NOTIFY. */
function unsolicited(viaPort: number, body: string, uri = "sip:1001@127.0.0.1"): Buffer {
  return request("NOTIFY", {
    viaPort,
    branch: `z9hG4bK-u${Math.random().toString(36).slice(2)}`,
    uri,
    extra: ["Event: message-summary", "Subscription-State: terminated", "Content-Type: application/simple-message-summary"],
    body,
  });
}

const statusOf = (b: Buffer | undefined): number | undefined => (b ? Number(/^SIP\/2\.0 (\d{3})/.exec(b.toString("latin1"))?.[1]) : undefined);

function connect(port: number, localAddress = "127.0.0.1"): Promise<net.Socket & { closedByPeer: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1", localAddress }) as net.Socket & { closedByPeer: boolean };
    s.closedByPeer = false;
    s.on("close", () => (s.closedByPeer = true));
    s.on("error", () => undefined);
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

// ---------------------------------------------------------------- 1. file descriptors

describe("SIP security: descriptors (High 1)", () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });

  it("transport udp opens no TCP listener", async () => {
    const { gw } = await startGateway(sipSystem({ server: { host: "127.0.0.1", port: 9, transport: "udp", rejectUnauthorized: true } }));
    cleanup.push(() => gw.stop());
    await assert.rejects(connect(gw.localPort!), /ECONNREFUSED/);
  });

  it("without a bindAddress it binds the address toward the server (loopback here), not 0.0.0.0", async () => {
    const system = sipSystem({ server: { host: "127.0.0.1", port: 9, transport: "udp", rejectUnauthorized: true } });
    delete system.sip.local.bindAddress;
    const { gw } = await startGateway(system);
    cleanup.push(() => gw.stop());
    assert.equal(gw.localAddress, "127.0.0.1");
  });

  it("caps inbound connections in total and per source: 230 half-sent connections hold at most the cap", async () => {
    const { ua, lines } = await startUa({ listenTcp: true, maxConnections: 6, maxConnectionsPerSource: 3 });
    cleanup.push(() => ua.close());
    const sockets: Array<net.Socket & { closedByPeer: boolean }> = [];
    cleanup.push(async () => sockets.forEach((s) => s.destroy()));
    // 230 from one source, each with half a request, as in the report.
    for (let i = 0; i < 230; i++) {
      const s = await connect(ua.localPort);
      s.write("OPTIONS sip:mwi@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1");
      sockets.push(s);
    }
    await until(() => sockets.filter((s) => s.closedByPeer).length === 227, "all but 3 closed");
    assert.equal(ua.held.inboundConnections, 3);
    // Other sources get their own share, up to the total.
    for (const address of ["127.0.0.2", "127.0.0.3", "127.0.0.4"]) for (let i = 0; i < 3; i++) sockets.push(await connect(ua.localPort, address));
    await until(() => sockets.filter((s) => s.closedByPeer).length === 227 + 6, "the total cap");
    assert.equal(ua.held.inboundConnections, 6);
    const refusals = lines.filter((l) => /refused a TCP connection/.test(l));
    assert.ok(refusals.length >= 1 && refusals.length <= 4, `refusals are logged, not one line each: ${refusals.length}`);
  });

  it("closes an idle inbound connection", async () => {
    const { ua } = await startUa({ listenTcp: true, idleTimeoutMs: 300 });
    cleanup.push(() => ua.close());
    const s = await connect(ua.localPort);
    cleanup.push(async () => s.destroy());
    await until(() => s.closedByPeer, "the idle connection to be closed");
    assert.equal(ua.held.inboundConnections, 0);
  });

  it("closes a connection that trickles a message it never completes, though it is never idle", async () => {
    const { ua } = await startUa({ listenTcp: true, idleTimeoutMs: 60_000, messageTimeoutMs: 500 });
    cleanup.push(() => ua.close());
    const s = await connect(ua.localPort);
    cleanup.push(async () => s.destroy());
    const trickle = "OPTIONS sip:mwi@127.0.0.1 SIP/2.0\r\nX-Slow: " + "a".repeat(200);
    let i = 0;
    const timer = setInterval(() => (i < trickle.length && !s.closedByPeer ? s.write(trickle[i++]!) : undefined), 50);
    try {
      await until(() => s.closedByPeer, "the slow connection to be closed", 8000);
    } finally {
      clearInterval(timer);
    }
    assert.ok(i < trickle.length, "closed before the trickle ended");
  });

  it("a complete message in time keeps the connection (and it is answered)", async () => {
    const { ua } = await startUa({ listenTcp: true, messageTimeoutMs: 500 });
    cleanup.push(() => ua.close());
    const s = await connect(ua.localPort);
    cleanup.push(async () => s.destroy());
    const answers: string[] = [];
    s.on("data", (d: Buffer) => answers.push(d.toString("latin1")));
    s.write(request("OPTIONS", { viaPort: 5060, branch: "z9hG4bKtcp1" }).toString().replace("SIP/2.0/UDP", "SIP/2.0/TCP"));
    await until(() => answers.join("").startsWith("SIP/2.0 200"), "the answer over TCP");
    await sleep(800);
    assert.equal(s.closedByPeer, false);
    assert.equal(ua.held.serverTransactions, 0, "over TCP no response is kept for retransmissions");
  });
});

// ---------------------------------------------------------------- 3. UDP reflection and memory

describe("SIP security: UDP reflection and memory (Medium)", () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });

  it("a cached response goes only to the source of the retransmission, and never larger than it", async () => {
    const { ua } = await startUa();
    const victim = await udpPeer();
    const attacker = await udpPeer("127.0.0.2");
    cleanup.push(() => ua.close(), () => victim.close(), () => attacker.close());
    const branch = "z9hG4bKreflect1";
    // The big request "from the victim" (a forged source, in the attack): its answer is as big.
    const big = request("OPTIONS", { viaPort: victim.port, branch, extra: [`Call-Info: <http://x/${"p".repeat(8000)}>`] });
    const callId = `c-${branch}`;
    victim.socket.send(big, ua.localPort, "127.0.0.1");
    await until(() => victim.got.length === 1, "the answer to the big request");
    assert.ok(victim.got[0]!.length <= big.length);
    // 50 small copies with the same top Via from elsewhere: nothing goes to the victim, and
    // nothing larger than each copy goes to the sender.
    const small = request("OPTIONS", { viaPort: victim.port, branch, callId });
    for (let i = 0; i < 50; i++) attacker.socket.send(small, ua.localPort, "127.0.0.1");
    await sleep(QUIET_MS);
    assert.equal(victim.got.length, 1, "no copies to the first source");
    assert.ok(attacker.got.every((b) => b.length <= small.length), "no answer larger than its request");
    // A genuine retransmission (the same bytes) from the victim is answered again, to it.
    victim.socket.send(big, ua.localPort, "127.0.0.1");
    await until(() => victim.got.length === 2, "the retransmitted answer");
  });

  it("never answers a datagram with a larger one", async () => {
    const { ua } = await startUa();
    const peer = await udpPeer();
    cleanup.push(() => ua.close(), () => peer.close());
    const minimal = (method: string, branch: string) =>
      Buffer.from(
        [`${method} sip:a@127.0.0.1 SIP/2.0`, `Via: SIP/2.0/UDP 127.0.0.1:${peer.port};rport;branch=${branch}`, "f: <sip:b@c>;tag=1", "t: <sip:a@d>", "i: x", `CSeq: 1 ${method}`, "", ""].join("\r\n"),
      );
    const sent: Buffer[] = [];
    for (const [i, method] of ["OPTIONS", "INVITE", "FOO", "SUBSCRIBE", "NOTIFY", "CANCEL"].entries()) sent.push(minimal(method, `z9hG4bKmin${i}`));
    sent.push(Buffer.from(`OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:${peer.port};rport;branch=z9hG4bKbad\r\nbad line ${"\u00ff".repeat(40)}\r\n\r\n`));
    for (const b of sent) peer.socket.send(b, ua.localPort, "127.0.0.1");
    await sleep(QUIET_MS);
    const smallest = Math.min(...sent.map((b) => b.length));
    const largest = Math.max(...sent.map((b) => b.length));
    assert.ok(peer.got.every((b) => b.length <= largest), "no answer larger than the largest request");
    // Each answer matches its request by branch: check sizes one by one.
    for (const answer of peer.got) {
      const branch = /branch=([^;\r\n]+)/.exec(answer.toString("latin1"))?.[1];
      const req = sent.find((b) => b.toString("latin1").includes(`branch=${branch}`));
      assert.ok(req && answer.length <= req.length, `answer of ${answer.length} bytes to a request of ${req?.length} (smallest ${smallest})`);
    }
  });

  it("keeps a bounded number of server transactions, dropping the oldest", async () => {
    const { ua } = await startUa({ maxServerTransactions: 50 });
    const peer = await udpPeer();
    cleanup.push(() => ua.close(), () => peer.close());
    for (let i = 0; i < 300; i++) {
      peer.socket.send(request("OPTIONS", { viaPort: peer.port, branch: `z9hG4bKmany${i}`, extra: ["User-Agent: flood/1.0 with room for the answer"] }), ua.localPort, "127.0.0.1");
      if (i % 50 === 49) await sleep(20);
    }
    await until(() => peer.got.length >= 250, "most answers", 10_000);
    assert.ok(ua.held.serverTransactions <= 50, `${ua.held.serverTransactions} server transactions kept`);
  });
});

// ---------------------------------------------------------------- 4. unsolicited NOTIFYs

describe("SIP security: unsolicited NOTIFYs (Medium)", () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });
  const allowing = () => sipSystem({ server: { host: "127.0.0.1", port: 9, transport: "udp", rejectUnauthorized: true }, unsolicitedSources: ["127.0.0.1"] });

  async function send(gw: SipGateway, peer: Awaited<ReturnType<typeof udpPeer>>, datagram: Buffer): Promise<number | undefined> {
    const before = peer.got.length;
    peer.socket.send(datagram, gw.localPort!, "127.0.0.1");
    await until(() => peer.got.length > before, "an answer");
    return statusOf(peer.got[peer.got.length - 1]);
  }

  it("files nothing under mailboxes nobody linked, nor under ones that are no mailbox", async () => {
    const { gw, updates } = await startGateway(allowing());
    const peer = await udpPeer();
    cleanup.push(() => gw.stop(), () => peer.close());
    await gw.watching.watch("1001"); // an admin link: no credentials
    const mwi = "Messages-Waiting: yes\r\nVoice-Message: 1/0\r\n";
    assert.equal(await send(gw, peer, unsolicited(peer.port, `${mwi}`, "sip:2002@127.0.0.1")), 404, "not linked");
    assert.equal(await send(gw, peer, unsolicited(peer.port, mwi.replace("\r\n", "\r\nMessage-Account: sip:__proto__@127.0.0.1\r\n"))), 404, "__proto__: nobody linked it");
    assert.equal(await send(gw, peer, unsolicited(peer.port, mwi, "sip:%2F..%2Fetc@127.0.0.1")), 400, "/../etc is no mailbox");
    assert.equal(await send(gw, peer, unsolicited(peer.port, mwi, "sip:%E0%A4%A@127.0.0.1")), 400, "a bad escape is no mailbox");
    assert.equal(updates.length, 0, "nothing stored");
    assert.equal(await send(gw, peer, unsolicited(peer.port, mwi)), 200, "the linked one");
    assert.deepEqual(updates.map((u) => u.mailbox), ["1001"]);
    await gw.watching.unwatch("1001");
    assert.equal(await send(gw, peer, unsolicited(peer.port, mwi)), 404, "unlinked again");
  });

  // The guard is a hang guard, five times what the quadratic regex took here for these five
  // datagrams and a thousand times what the linear reading takes.
  it("a 60 KB caller field costs linear work (it stalled the loop for seconds) and is read right", { timeout: 1500 }, async () => {
    const { gw, updates } = await startGateway(allowing());
    const peer = await udpPeer();
    cleanup.push(() => gw.stop(), () => peer.close());
    await gw.watching.watch("1001");
    for (let i = 0; i < 5; i++) {
      const body = `Messages-Waiting: yes\r\nVoice-Message: ${i + 1}/0\r\n\r\nFrom: ${"<".repeat(60_000)}\r\nTo: <sip:1001@pbx>\r\n`;
      assert.equal(await send(gw, peer, unsolicited(peer.port, body)), 200);
    }
    assert.equal(updates.length, 5);
    assert.ok(updates.every((u) => (u.message?.ani ?? "").length <= 64 && u.message?.dnis === "1001"));
    const named = `Messages-Waiting: yes\r\nVoice-Message: 9/0\r\n\r\nFrom: "Eve" ${"<".repeat(1000)}<sip:5551234@pbx>\r\n`;
    assert.equal(await send(gw, peer, unsolicited(peer.port, named)), 200);
    assert.equal(updates[5]!.message?.ani, "5551234", "the URI inside the last < before >");
  });

  it("a flood from a refused source logs a line, not a line per datagram", async () => {
    const system = allowing();
    system.sip.unsolicitedSources = ["10.0.0.0/8"];
    const { gw, lines } = await startGateway(system);
    const peer = await udpPeer();
    cleanup.push(() => gw.stop(), () => peer.close());
    for (let i = 0; i < 200; i++) peer.socket.send(unsolicited(peer.port, "Messages-Waiting: yes\r\n"), gw.localPort!, "127.0.0.1");
    await until(() => peer.got.length === 200, "200 answers");
    assert.ok(peer.got.every((b) => statusOf(b) === 403));
    assert.equal(lines.filter((l) => /refused an unsolicited NOTIFY/.test(l)).length, 1);
  });
});

// ---------------------------------------------------------------- 2. linking must prove ownership

const sipp = ensureSipp();
if (!sipp.ok) {
  test("SIP security: linking against SIPp", (t) => {
    if (process.env["CI"] === "true") assert.fail(`sipp unavailable in CI: ${sipp.reason}`);
    t.skip(sipp.reason);
  });
} else {
  describe("SIP security: !link must prove ownership (High 2)", { timeout: 60_000 }, () => {
    const server = (port: number) => ({ host: "127.0.0.1", port, transport: "udp" as const, rejectUnauthorized: true });

    it("a server that answers 200 without a challenge links nothing, stores nothing, and is unsubscribed", async () => {
      const run = await runSipp("uas-no-challenge.xml", { transport: "udp", calls: 1 });
      const { gw, updates, lines } = await startGateway(sipSystem({ server: server(run.port) }));
      try {
        const proof = await gw.linking.prove({ userId: "@mallory:example.org", mailbox: "1001", password: "any password at all" });
        assert.deepEqual(proof, { ok: false, reason: NO_PASSWORD_CHECK });
        assert.equal(NO_PASSWORD_CHECK, "this system does not check passwords: an admin must link it");
        await sippSucceeded(run, lines);
        assert.equal(updates.length, 0, "its counts are not stored");
      } finally {
        run.kill();
        await gw.stop();
      }
    });

    it("a server that challenged and accepted the credentials links, with the first counts", async () => {
      const run = await runSipp("uas-challenge.xml", { transport: "udp", calls: 1 });
      const { gw, updates, lines } = await startGateway(sipSystem({ server: server(run.port) }));
      try {
        const proof = await gw.linking.prove({ userId: "@alice:example.org", mailbox: "1001", password: "pw" });
        assert.equal(proof.ok, true, JSON.stringify(proof));
        if (proof.ok) assert.deepEqual(proof.credentials, { username: "1001", password: "pw" });
        assert.deepEqual(updates.map((u) => [u.mailbox, u.counts.new, u.counts.old]), [["1001", 5, 2]]);
      } finally {
        await gw.stop(); // unsubscribes: the scenario waits for it
        await sippSucceeded(run, lines).finally(() => run.kill());
      }
    });

    it("--auth-user other than the mailbox only where sip.allowAuthUser says so", async () => {
      const silent = await udpPeer();
      const { gw } = await startGateway(sipSystem({ server: server(silent.port) }));
      try {
        const proof = await gw.linking.prove({ userId: "@mallory:example.org", mailbox: "1001", password: "pw", authUser: "mallory" });
        assert.equal(proof.ok, false);
        if (!proof.ok) assert.match(proof.reason, /no --auth-user/);
        await sleep(QUIET_MS);
        assert.deepEqual(silent.got, [], "nothing was sent to the server");
      } finally {
        await gw.stop();
        await silent.close();
      }
      const run = await runSipp("uas-challenge.xml", { transport: "udp", calls: 1 });
      const allowed = await startGateway(sipSystem({ server: server(run.port), allowAuthUser: true }));
      try {
        const proof = await allowed.gw.linking.prove({ userId: "@alice:example.org", mailbox: "1001", password: "pw", authUser: "alice1001" });
        assert.equal(proof.ok, true, JSON.stringify(proof));
        if (proof.ok) assert.equal(proof.credentials?.username, "alice1001");
      } finally {
        await allowed.gw.stop();
        await sippSucceeded(run, allowed.lines).finally(() => run.kill());
      }
    });

    it("an in-dialog NOTIFY whose Message-Account names another linked mailbox is not filed under the subscribed one", async () => {
      const run = await runSipp("uas-other-account.xml", { transport: "udp", calls: 1 });
      const { gw, updates, lines } = await startGateway(sipSystem({ server: server(run.port) }));
      try {
        await gw.watching.watch("2002"); // linked by someone, without credentials
        await gw.watching.watch("1001", { username: "1001", password: "pw" });
        await until(() => updates.some((u) => u.counts.new === 4), "the NOTIFY naming the access number");
        assert.deepEqual(
          updates.map((u) => [u.mailbox, u.counts.new, u.counts.old]),
          [["1001", 3, 0], ["1001", 4, 0]],
          "9/9 belongs to 2002; *97 is an access number, not a linked mailbox",
        );
        assert.equal(lines.filter((l) => /Message-Account names mailbox 2002/.test(l)).length, 1);
      } finally {
        await gw.stop();
        await sippSucceeded(run, lines).finally(() => run.kill());
      }
    });
  });
}

