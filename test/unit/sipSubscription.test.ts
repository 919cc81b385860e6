// The subscription state machine against a tiny in-process notifier on real sockets (127.0.0.1).
import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import dgram from "node:dgram";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";

import { StreamFramer } from "../../src/gateway/sip/framing.js";
import { parseNameAddr, parseSipUri, parseVia } from "../../src/gateway/sip/headers.js";
import { SipHeaders, buildResponse, parseMessage, serializeMessage, type SipMessage, type SipRequest, type SipResponse } from "../../src/gateway/sip/message.js";
import type { Endpoint } from "../../src/gateway/sip/transport.js";
import {
  SipUserAgent,
  type NotifyInfo,
  type SipTarget,
  type SipUserAgentOptions,
  type Subscription,
  type UnsolicitedNotify,
} from "../../src/gateway/sip/userAgent.js";

// ---------------------------------------------------------------- fake notifier

interface Received {
  msg: SipRequest;
  from: Endpoint;
  at: number;
  branch: string;
}

const TAG = "notifier-tag";
const MWI_BODY = "Messages-Waiting: yes\r\nVoice-Message: 2/1 (0/0)\r\n";

/** Plays the voice mail server: the test decides every answer. */
class FakeNotifier {
  /** Every request, retransmissions included. */
  readonly requests: Received[] = [];
  private readonly seen = new Set<string>();
  private readonly pending: Received[] = [];
  private readonly waiters: Array<{ method: string; resolve: (r: Received) => void }> = [];
  private readonly responseWaiters = new Map<string, (r: SipResponse) => void>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private cseq = 100;
  private branches = 0;
  conn: net.Socket | undefined;

  private constructor(
    readonly transport: "udp" | "tcp" | "tls",
    readonly port: number,
    private readonly write: (data: Buffer, to: { address: string; port: number }) => void,
    private readonly shut: () => Promise<void>,
  ) {}

  static async udp(): Promise<FakeNotifier> {
    const sock = dgram.createSocket("udp4");
    await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
    const n: FakeNotifier = new FakeNotifier(
      "udp",
      sock.address().port,
      (data, to) => sock.send(data, to.port, to.address),
      () => new Promise((r) => sock.close(() => r())),
    );
    sock.on("message", (buf, rinfo) => {
      const p = parseMessage(buf);
      if (p.ok) n.onMessage(p.message, { transport: "udp", address: rinfo.address, port: rinfo.port });
    });
    return n;
  }

  static async stream(kind: "tcp" | "tls", creds?: { cert: Buffer; key: Buffer }): Promise<FakeNotifier> {
    const server = kind === "tls" ? tls.createServer({ cert: creds!.cert, key: creds!.key }) : net.createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const sockets = new Set<net.Socket>();
    const n: FakeNotifier = new FakeNotifier(
      kind,
      (server.address() as net.AddressInfo).port,
      (data) => n.conn?.write(data),
      () => {
        for (const s of sockets) s.destroy();
        return new Promise((r) => server.close(() => r()));
      },
    );
    server.on(kind === "tls" ? "secureConnection" : "connection", (socket: net.Socket) => {
      sockets.add(socket);
      n.conn = socket;
      const framer = new StreamFramer();
      const from: Endpoint = { transport: kind, address: socket.remoteAddress!, port: socket.remotePort! };
      socket.on("data", (chunk: Buffer) => {
        for (const ev of framer.push(chunk)) if (ev.kind === "message") n.onMessage(ev.message, from);
      });
      socket.on("error", () => undefined);
    });
    return n;
  }

  get target(): SipTarget {
    return { host: "127.0.0.1", port: this.port, transport: this.transport };
  }

  private onMessage(msg: SipMessage, from: Endpoint): void {
    const branch = parseVia(msg.headers.getList("via")[0] ?? "")?.branch ?? "";
    if (msg.kind === "response") {
      this.responseWaiters.get(branch)?.(msg);
      this.responseWaiters.delete(branch);
      return;
    }
    const r: Received = { msg, from, at: Date.now(), branch };
    this.requests.push(r);
    const key = `${branch}|${msg.method}`;
    if (this.seen.has(key)) return; // a retransmission: only counted
    this.seen.add(key);
    const w = this.waiters.findIndex((x) => x.method === msg.method);
    if (w >= 0) this.waiters.splice(w, 1)[0]!.resolve(r);
    else this.pending.push(r);
  }

  /** The next new request of `method` (retransmissions skipped). */
  next(method: string, timeoutMs = 3000): Promise<Received> {
    const i = this.pending.findIndex((r) => r.msg.method === method);
    if (i >= 0) return Promise.resolve(this.pending.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const waiter = {
        method,
        resolve: (r: Received) => {
          clearTimeout(timer);
          this.timers.delete(timer);
          resolve(r);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`no ${method} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.timers.add(timer);
      this.waiters.push(waiter);
    });
  }

  /** Asserts that no new `method` request arrives within `ms`. */
  async none(method: string, ms: number): Promise<void> {
    await sleep(ms);
    assert.equal(this.pending.filter((r) => r.msg.method === method).length, 0, `unexpected ${method}`);
  }

  copies(branch: string): Received[] {
    return this.requests.filter((r) => r.branch === branch);
  }

  reply(r: Received, status: number, headers: Array<[string, string]> = [], toTag = TAG): void {
    const tp = this.transport === "udp" ? "" : `;transport=${this.transport}`;
    const res = buildResponse(r.msg, status, { toTag, headers: [["Contact", `<sip:notifier@127.0.0.1:${this.port}${tp}>`], ...headers] });
    this.write(serializeMessage(res), r.from);
  }

  /** Sends a NOTIFY in the dialog of SUBSCRIBE `sub` to its Contact; resolves with our UA's answer. */
  notify(
    sub: Received,
    o: { state: string; body?: string; toTag?: string; event?: string; branch?: string; cseq?: number; extra?: Array<[string, string]> },
  ): Promise<SipResponse> {
    const contact = parseSipUri(parseNameAddr(sub.msg.headers.get("contact")!)!.uri)!;
    const branch = o.branch ?? this.branch();
    const headers = new SipHeaders([
      ["Via", `SIP/2.0/${this.transport.toUpperCase()} 127.0.0.1:${this.port};rport;branch=${branch}`],
      ["Max-Forwards", "70"],
      ["From", `${sub.msg.headers.get("to")!.replace(/;tag=.*$/, "")};tag=${o.toTag ?? TAG}`],
      ["To", sub.msg.headers.get("from")!],
      ["Call-ID", sub.msg.headers.get("call-id")!],
      ["CSeq", `${o.cseq ?? this.cseq++} NOTIFY`],
      ["Contact", `<sip:notifier@127.0.0.1:${this.port}>`],
      ["Event", o.event ?? "message-summary"],
      ["Subscription-State", o.state],
      ...(o.body ? ([["Content-Type", "application/simple-message-summary"]] as Array<[string, string]>) : []),
      ...(o.extra ?? []),
    ]);
    const req: SipRequest = { kind: "request", method: "NOTIFY", uri: `sip:${contact.user}@127.0.0.1:${contact.port}`, headers, body: Buffer.from(o.body ?? "") };
    return this.send(serializeMessage(req), branch, { address: contact.host, port: contact.port! }).then((r) => {
      if (!r) throw new Error("no response to NOTIFY");
      return r;
    });
  }

  /** Sends raw bytes and waits for a response carrying `branch` (undefined after `timeoutMs`). */
  send(data: Buffer | string, branch: string, to: { address: string; port: number }, timeoutMs = 1500): Promise<SipResponse | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.responseWaiters.delete(branch);
        resolve(undefined);
      }, timeoutMs);
      this.timers.add(timer);
      this.responseWaiters.set(branch, (r) => {
        clearTimeout(timer);
        this.timers.delete(timer);
        resolve(r);
      });
      this.write(Buffer.from(data), to);
    });
  }

  branch(): string {
    return `z9hG4bKfake${++this.branches}x${Math.random().toString(36).slice(2, 8)}`;
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    await this.shut();
  }
}

// ---------------------------------------------------------------- helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const md5 = (s: string): string => createHash("md5").update(s).digest("hex");
const PASSWORD = "s3cret-Pa55";
const allLogs: string[] = [];

const FAST = { t1: 20, t2: 160, t4: 100, retryBaseMs: 100, retryMaxMs: 400, defaultRetryAfterMs: 300, unsubscribeWaitMs: 300, stableAfterMs: 10_000 };

async function startUa(extra: Partial<SipUserAgentOptions> = {}): Promise<SipUserAgent> {
  const log = (level: string) => (m: string) => allLogs.push(`${level} ${m}`);
  return SipUserAgent.start({
    bindAddress: "127.0.0.1",
    port: 0,
    logger: { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") },
    timers: FAST,
    random: () => 0,
    ...extra,
  });
}

function authParams(header: string | undefined): Record<string, string> {
  assert.ok(header, "missing Authorization");
  const out: Record<string, string> = {};
  const re = /([a-z0-9-]+)=("([^"]*)"|[^,\s]+)/gi;
  for (let m = re.exec(header); m; m = re.exec(header)) out[m[1]!.toLowerCase()] = m[3] ?? m[2]!;
  return out;
}

const tagOf = (v: string | undefined): string | undefined => parseNameAddr(v ?? "")?.tag;
const cseqOf = (r: Received): number => Number(r.msg.headers.get("cseq")!.split(" ")[0]);

/** Collects a subscription's events. */
function record(sub: Subscription): { notifies: Array<[string, NotifyInfo]>; terminated: Array<[string, number | undefined]>; resubscribed: number } {
  const rec = { notifies: [] as Array<[string, NotifyInfo]>, terminated: [] as Array<[string, number | undefined]>, resubscribed: 0 };
  sub.on("notify", (b, i) => rec.notifies.push([b, i]));
  sub.on("terminated", (r, a) => rec.terminated.push([r, a]));
  sub.on("resubscribed", () => rec.resubscribed++);
  return rec;
}

/** Runs `fn` with a fresh UA and notifier, closing both afterwards. */
async function withPeers(fn: (ua: SipUserAgent, n: FakeNotifier) => Promise<void>, n?: FakeNotifier, uaOpts?: Partial<SipUserAgentOptions>): Promise<void> {
  const notifier = n ?? (await FakeNotifier.udp());
  const ua = await startUa(uaOpts);
  try {
    await fn(ua, notifier);
  } finally {
    await ua.close();
    await notifier.close();
  }
}

/** SUBSCRIBE answered 200 at once (no auth); returns the accepted request. */
async function establish(
  ua: SipUserAgent,
  n: FakeNotifier,
  o: { expires?: string; notifyFirst?: boolean } = {},
): Promise<{ sub: Subscription; s: Received; rec: ReturnType<typeof record> }> {
  const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD });
  const rec = record(sub);
  const started = sub.start();
  const s = await n.next("SUBSCRIBE");
  n.reply(s, 200, [["Expires", o.expires ?? "600"]]);
  const res = await n.notify(s, { state: `active;expires=${o.expires ?? "600"}`, body: MWI_BODY });
  assert.equal(res.status, 200);
  const result = await started;
  assert.equal(result.ok, true, JSON.stringify(result));
  return { sub, s, rec };
}

after(() => {
  // Secrets never reach the logs.
  const joined = allLogs.join("\n");
  assert.ok(!joined.includes(PASSWORD), "password logged");
  assert.doesNotMatch(joined, /response="/);
  assert.doesNotMatch(joined, /Authorization/i);
});

// ---------------------------------------------------------------- tests

describe("SIP subscription: establishing", () => {
  it("answers a 401 once, then 200 and the first NOTIFY", () =>
    withPeers(async (ua, n) => {
      const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD, expires: 600 });
      const rec = record(sub);
      assert.equal(sub.state, "init");
      const started = sub.start();
      assert.equal(sub.start(), started, "start() is idempotent");

      const s1 = await n.next("SUBSCRIBE");
      const m = s1.msg;
      assert.equal(m.uri, "sip:1001@127.0.0.1");
      assert.equal(m.headers.get("event"), "message-summary");
      assert.equal(m.headers.get("accept"), "application/simple-message-summary");
      assert.equal(m.headers.get("expires"), "600");
      assert.equal(m.headers.get("max-forwards"), "70");
      assert.equal(m.headers.get("authorization"), undefined);
      assert.equal(tagOf(m.headers.get("to")), undefined);
      assert.ok(tagOf(m.headers.get("from")));
      const via = parseVia(m.headers.get("via")!)!;
      assert.equal(via.transport, "UDP");
      assert.equal(via.port, ua.localPort);
      assert.ok(via.params.has("rport"));
      assert.match(via.branch!, /^z9hG4bK/);
      assert.equal(m.headers.get("contact"), `<sip:1001@127.0.0.1:${ua.localPort}>`);

      n.reply(s1, 401, [["WWW-Authenticate", 'Digest realm="asterisk", nonce="n1", qop="auth", algorithm=MD5, opaque="op"']]);
      const s2 = await n.next("SUBSCRIBE");
      assert.equal(s2.msg.headers.get("call-id"), m.headers.get("call-id"));
      assert.equal(tagOf(s2.msg.headers.get("from")), tagOf(m.headers.get("from")));
      assert.equal(cseqOf(s2), cseqOf(s1) + 1);
      assert.notEqual(s2.branch, s1.branch);
      const a = authParams(s2.msg.headers.get("authorization"));
      assert.equal(a["username"], "1001");
      assert.equal(a["uri"], "sip:1001@127.0.0.1");
      assert.equal(a["opaque"], "op");
      assert.equal(a["nc"], "00000001");
      const ha1 = md5(`1001:asterisk:${PASSWORD}`);
      assert.equal(a["response"], md5(`${ha1}:n1:00000001:${a["cnonce"]}:auth:${md5("SUBSCRIBE:sip:1001@127.0.0.1")}`));

      n.reply(s2, 200, [["Expires", "600"]]);
      const res = await n.notify(s2, { state: "active;expires=600", body: MWI_BODY });
      assert.equal(res.status, 200);
      assert.equal(tagOf(res.headers.get("to")), tagOf(m.headers.get("from")));
      assert.deepEqual(await started, { ok: true, expires: 600, state: "active" });
      assert.equal(sub.state, "active");
      assert.deepEqual(rec.notifies, [[MWI_BODY, { contentType: "application/simple-message-summary", subscriptionState: "active;expires=600" }]]);
    }));

  it("takes a NOTIFY that races ahead of the 200 (RFC 6665 §4.1.2.4)", () =>
    withPeers(async (ua, n) => {
      const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD });
      const rec = record(sub);
      const started = sub.start();
      const s = await n.next("SUBSCRIBE");
      const res = await n.notify(s, { state: "pending;expires=600", body: MWI_BODY });
      assert.equal(res.status, 200);
      n.reply(s, 202, [["Expires", "600"]]);
      assert.deepEqual(await started, { ok: true, expires: 600, state: "pending" });
      assert.equal(rec.notifies.length, 1);
      const res2 = await n.notify(s, { state: "active;expires=590", body: MWI_BODY });
      assert.equal(res2.status, 200);
      assert.equal(sub.state, "active");
      // A NOTIFY from another remote tag (a fork) is not this dialog's.
      assert.equal((await n.notify(s, { state: "active", toTag: "other" })).status, 481);
    }));

  it("a NOTIFY racing ahead with terminated;reason=rejected makes start() fail", () =>
    withPeers(async (ua, n) => {
      const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD });
      const rec = record(sub);
      const started = sub.start();
      const s = await n.next("SUBSCRIBE");
      assert.equal((await n.notify(s, { state: "terminated;reason=rejected" })).status, 200);
      n.reply(s, 200, [["Expires", "600"]]);
      const r = await started;
      assert.deepEqual(r, { ok: false, kind: "rejected", reason: "notifier: rejected" });
      assert.equal(sub.state, "terminated");
      assert.deepEqual(rec.terminated, [["notifier: rejected", undefined]]);
      await n.none("SUBSCRIBE", 200);
    }));

  it("fails with kind auth on a wrong password (fresh nonce after our credentials)", () =>
    withPeers(async (ua, n) => {
      const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: "wrong" });
      const rec = record(sub);
      const started = sub.start();
      n.reply(await n.next("SUBSCRIBE"), 401, [["WWW-Authenticate", 'Digest realm="asterisk", nonce="n1", qop="auth"']]);
      const s2 = await n.next("SUBSCRIBE");
      assert.ok(s2.msg.headers.get("authorization"));
      n.reply(s2, 401, [["WWW-Authenticate", 'Digest realm="asterisk", nonce="n2", qop="auth"']]);
      const result = await started;
      assert.equal(result.ok, false);
      if (!result.ok) {
        assert.equal(result.kind, "auth");
        assert.equal(result.status, 401);
      }
      assert.equal(sub.state, "terminated");
      await n.none("SUBSCRIBE", 300);
      assert.deepEqual(rec.terminated, [], "start()'s result reports it; no terminated event");
    }));

  it("retries a stale nonce and prefers SHA-256 when offered", () =>
    withPeers(async (ua, n) => {
      const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", username: "authuser", password: PASSWORD });
      const started = sub.start();
      n.reply(await n.next("SUBSCRIBE"), 401, [
        ["WWW-Authenticate", 'Digest realm="r", nonce="n1", qop="auth", algorithm=MD5'],
        ["WWW-Authenticate", 'Digest realm="r", nonce="n1", qop="auth", algorithm=SHA-256'],
      ]);
      const s2 = await n.next("SUBSCRIBE");
      const a2 = authParams(s2.msg.headers.get("authorization"));
      assert.equal(a2["algorithm"], "SHA-256");
      assert.equal(a2["username"], "authuser");
      n.reply(s2, 401, [["WWW-Authenticate", 'Digest realm="r", nonce="n2", qop="auth", stale=true']]);
      const s3 = await n.next("SUBSCRIBE");
      assert.equal(authParams(s3.msg.headers.get("authorization"))["nonce"], "n2");
      n.reply(s3, 200, [["Expires", "100"]]);
      assert.deepEqual(await started, { ok: true, expires: 100, state: "active" });
    }));

  it("answers 407 with Proxy-Authorization", () =>
    withPeers(async (ua, n) => {
      const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD });
      const started = sub.start();
      n.reply(await n.next("SUBSCRIBE"), 407, [["Proxy-Authenticate", 'Digest realm="proxy", nonce="p1"']]);
      const s2 = await n.next("SUBSCRIBE");
      assert.equal(s2.msg.headers.get("authorization"), undefined);
      assert.equal(authParams(s2.msg.headers.get("proxy-authorization"))["realm"], "proxy");
      n.reply(s2, 200, [["Expires", "60"]]);
      assert.equal((await started).ok, true);
    }));

  it("classifies final failures", async () => {
    const cases: Array<[number, string]> = [
      [403, "auth"],
      [404, "not-found"],
      [489, "rejected"],
      [420, "rejected"],
      [500, "unreachable"],
      [408, "timeout"],
    ];
    for (const [status, kind] of cases) {
      await withPeers(async (ua, n) => {
        const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD });
        const started = sub.start();
        n.reply(await n.next("SUBSCRIBE"), status);
        const r = await started;
        assert.deepEqual([r.ok, !r.ok && r.kind, !r.ok && r.status], [false, kind, status], `status ${status}`);
        // Permanent failures stop; transient ones keep trying in the background.
        assert.equal(sub.state, kind === "unreachable" || kind === "timeout" ? "init" : "terminated");
        await sub.unsubscribe();
      });
    }
  });

  it("retries after 423 with Min-Expires", () =>
    withPeers(async (ua, n) => {
      const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD, expires: 30 });
      const started = sub.start();
      n.reply(await n.next("SUBSCRIBE"), 423, [["Min-Expires", "120"]]);
      const s2 = await n.next("SUBSCRIBE");
      assert.equal(s2.msg.headers.get("expires"), "120");
      n.reply(s2, 200, [["Expires", "120"]]);
      assert.deepEqual(await started, { ok: true, expires: 120, state: "active" });
    }));

  it("paces a notifier that grants Expires: 0 with the backoff", () =>
    withPeers(async (ua, n) => {
      const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD });
      const rec = record(sub);
      const started = sub.start();
      const s1 = await n.next("SUBSCRIBE");
      n.reply(s1, 200, [["Expires", "0"]]);
      assert.deepEqual(await started, { ok: true, expires: 0, state: "active" });
      const s2 = await n.next("SUBSCRIBE", 2000);
      assert.ok(s2.at - s1.at >= 40, `after ${s2.at - s1.at} ms`);
      assert.notEqual(s2.msg.headers.get("call-id"), s1.msg.headers.get("call-id"));
      n.reply(s2, 200, [["Expires", "0"]]);
      const s3 = await n.next("SUBSCRIBE", 2000);
      assert.ok(s3.at - s2.at >= 90, `backoff grows: ${s3.at - s2.at} ms`);
      n.reply(s3, 200, [["Expires", "600"]]);
      await sleep(50);
      assert.equal(rec.resubscribed, 2);
      await n.none("SUBSCRIBE", 200);
    }));

  it("keeps the password out of inspection and serialization", () =>
    withPeers(async (ua, n) => {
      const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD });
      const { inspect } = await import("node:util");
      assert.ok(!inspect(sub, { depth: 10, showHidden: true }).includes(PASSWORD));
      const seen = new WeakSet<object>();
      const json = JSON.stringify(sub, (_k, v: unknown) => {
        if (typeof v === "object" && v !== null) {
          if (seen.has(v)) return undefined;
          seen.add(v);
        }
        return v;
      });
      assert.ok(!json.includes(PASSWORD));
      assert.equal(sub.uri, "sip:1001@127.0.0.1");
    }));

  it("rejects a non-SIP URI without sending anything", () =>
    withPeers(async (ua, n) => {
      const r = await ua.subscribe({ target: n.target, uri: "mailto:x@y", password: "" }).start();
      assert.equal(r.ok, false);
      if (!r.ok) assert.equal(r.kind, "rejected");
      await n.none("SUBSCRIBE", 100);
    }));
});

describe("SIP subscription: refresh", () => {
  it("honours a shortened Expires and refreshes in the dialog at ~80% with reused credentials", () =>
    withPeers(async (ua, n) => {
      const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD, expires: 3600 });
      const started = sub.start();
      n.reply(await n.next("SUBSCRIBE"), 401, [["WWW-Authenticate", 'Digest realm="asterisk", nonce="n1", qop="auth"']]);
      const s2 = await n.next("SUBSCRIBE");
      n.reply(s2, 200, [
        ["Expires", "1"],
        ["Record-Route", `<sip:127.0.0.1:${n.port};lr>`],
      ]);
      const t0 = Date.now();
      assert.deepEqual(await started, { ok: true, expires: 1, state: "active" });
      assert.equal(sub.expires, 1);

      const s3 = await n.next("SUBSCRIBE", 3000);
      const elapsed = s3.at - t0;
      assert.ok(elapsed >= 700 && elapsed < 1000, `refresh after ${elapsed} ms`);
      const m = s3.msg;
      assert.equal(m.uri, `sip:notifier@127.0.0.1:${n.port}`, "Request-URI = remote target");
      assert.equal(m.headers.get("route"), `<sip:127.0.0.1:${n.port};lr>`);
      assert.equal(m.headers.get("call-id"), s2.msg.headers.get("call-id"));
      assert.equal(tagOf(m.headers.get("from")), tagOf(s2.msg.headers.get("from")));
      assert.equal(tagOf(m.headers.get("to")), TAG);
      assert.equal(cseqOf(s3), cseqOf(s2) + 1);
      assert.equal(m.headers.get("expires"), "3600");
      const a = authParams(m.headers.get("authorization"));
      assert.deepEqual([a["nonce"], a["nc"], a["uri"]], ["n1", "00000002", `sip:notifier@127.0.0.1:${n.port}`]);
      n.reply(s3, 200, [["Expires", "60"]]);
      await sleep(50);
      assert.equal(sub.expires, 60);
      await n.none("SUBSCRIBE", 300);
    }));

  it("takes the expiry from NOTIFY's Subscription-State", () =>
    withPeers(async (ua, n) => {
      const { s } = await establish(ua, n, { expires: "600" });
      const t0 = Date.now();
      assert.equal((await n.notify(s, { state: "active;expires=1", body: MWI_BODY })).status, 200);
      const s2 = await n.next("SUBSCRIBE", 3000);
      assert.ok(s2.at - t0 >= 700 && s2.at - t0 < 1000, `refresh after ${s2.at - t0} ms`);
      assert.equal(s2.msg.headers.get("call-id"), s.msg.headers.get("call-id"));
    }));

  it("spreads refreshes with the injected jitter", () =>
    withPeers(
      async (ua, n) => {
        const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD });
        const started = sub.start();
        const s1 = await n.next("SUBSCRIBE");
        n.reply(s1, 200, [["Expires", "2"]]);
        const t0 = Date.now();
        await started;
        // random() = 0.999: 2 s * (0.8 - 0.0999) = ~1400 ms
        const s2 = await n.next("SUBSCRIBE", 3000);
        assert.ok(s2.at - t0 >= 1300 && s2.at - t0 < 1600, `refresh after ${s2.at - t0} ms`);
      },
      undefined,
      { random: () => 0.999 },
    ));

  for (const failure of [481, 408]) {
    it(`starts a new subscription (new Call-ID and tag) when the refresh gets ${failure}`, () =>
      withPeers(async (ua, n) => {
        const { sub, s, rec } = await establish(ua, n, { expires: "1" });
        const refresh = await n.next("SUBSCRIBE", 3000);
        assert.equal(refresh.msg.headers.get("call-id"), s.msg.headers.get("call-id"));
        n.reply(refresh, failure);
        const fresh = await n.next("SUBSCRIBE", 1000);
        assert.ok(fresh.at - refresh.at < 200, "at once");
        assert.notEqual(fresh.msg.headers.get("call-id"), s.msg.headers.get("call-id"));
        assert.notEqual(tagOf(fresh.msg.headers.get("from")), tagOf(s.msg.headers.get("from")));
        assert.equal(tagOf(fresh.msg.headers.get("to")), undefined);
        assert.equal(fresh.msg.uri, "sip:1001@127.0.0.1");
        assert.equal(sub.state, "init");
        n.reply(fresh, 200, [["Expires", "600"]]);
        await sleep(50);
        assert.equal(rec.resubscribed, 1);
        assert.equal(sub.state, "active");
        // The old dialog is gone: its NOTIFYs get 481.
        assert.equal((await n.notify(s, { state: "active", body: MWI_BODY })).status, 481);
      }));
  }
});

describe("SIP subscription: terminated by the notifier", () => {
  it("reason=deactivated: resubscribes at once in a new dialog", () =>
    withPeers(async (ua, n) => {
      const { sub, s, rec } = await establish(ua, n);
      const res = await n.notify(s, { state: "terminated;reason=deactivated" });
      const t0 = Date.now();
      assert.equal(res.status, 200);
      const fresh = await n.next("SUBSCRIBE", 1000);
      assert.ok(fresh.at - t0 < 200, `after ${fresh.at - t0} ms`);
      assert.notEqual(fresh.msg.headers.get("call-id"), s.msg.headers.get("call-id"));
      n.reply(fresh, 200, [["Expires", "600"]]);
      await sleep(50);
      assert.equal(rec.resubscribed, 1);
      assert.equal(sub.state, "active");
      assert.deepEqual(rec.terminated, []);
    }));

  for (const reason of ["rejected", "noresource", "invariant"]) {
    it(`reason=${reason}: terminated, no retry`, () =>
      withPeers(async (ua, n) => {
        const { sub, s, rec } = await establish(ua, n);
        assert.equal((await n.notify(s, { state: `terminated;reason=${reason}`, body: MWI_BODY })).status, 200);
        await n.none("SUBSCRIBE", 400);
        assert.equal(sub.state, "terminated");
        assert.deepEqual(rec.terminated, [[`notifier: ${reason}`, undefined]]);
        assert.equal(rec.notifies.length, 2, "the final body is still delivered");
      }));
  }

  it("reason=probation;retry-after=1: waits the retry-after", () =>
    withPeers(async (ua, n) => {
      const { s } = await establish(ua, n);
      await n.notify(s, { state: "terminated;reason=probation;retry-after=1" });
      const t0 = Date.now();
      const fresh = await n.next("SUBSCRIBE", 3000);
      const waited = fresh.at - t0;
      assert.ok(waited >= 950 && waited < 1300, `after ${waited} ms`);
      assert.notEqual(fresh.msg.headers.get("call-id"), s.msg.headers.get("call-id"));
    }));

  it("reason=giveup without retry-after: waits the default", () =>
    withPeers(async (ua, n) => {
      const { s } = await establish(ua, n);
      await n.notify(s, { state: "terminated;reason=giveup" });
      const t0 = Date.now();
      const fresh = await n.next("SUBSCRIBE", 3000);
      assert.ok(fresh.at - t0 >= 250 && fresh.at - t0 < 600, `after ${fresh.at - t0} ms`);
    }));

  it("503 with Retry-After on the initial SUBSCRIBE: retried after it", () =>
    withPeers(async (ua, n) => {
      const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD });
      const rec = record(sub);
      const started = sub.start();
      n.reply(await n.next("SUBSCRIBE"), 503, [["Retry-After", "1"]]);
      const r = await started;
      assert.deepEqual(r, { ok: false, kind: "unreachable", status: 503, reason: "503 Service Unavailable", retryAfter: 1 });
      const t0 = Date.now();
      const again = await n.next("SUBSCRIBE", 3000);
      assert.ok(again.at - t0 >= 950 && again.at - t0 < 1300, `after ${again.at - t0} ms`);
      n.reply(again, 200, [["Expires", "600"]]);
      await sleep(50);
      assert.equal(rec.resubscribed, 1);
      assert.equal(sub.state, "active");
    }));

  it("backs off exponentially while the server keeps failing", () =>
    withPeers(async (ua, n) => {
      const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD });
      void sub.start();
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const s = await n.next("SUBSCRIBE", 3000);
        times.push(s.at);
        n.reply(s, 500);
      }
      // random() = 0: half of 100, 200, 400, 400 (cap) ms
      const gaps = times.slice(1).map((t, i) => t - times[i]!);
      const expected = [50, 100, 200, 200];
      gaps.forEach((g, i) => assert.ok(g >= expected[i]! - 5 && g < expected[i]! + 120, `gap ${i}: ${g} ms, expected ~${expected[i]}`));
      await sub.unsubscribe();
      await n.none("SUBSCRIBE", 400);
    }));
});

describe("SIP subscription: unsubscribe", () => {
  it("sends Expires: 0 in the dialog and waits for the final NOTIFY", () =>
    withPeers(async (ua, n) => {
      const { sub, s, rec } = await establish(ua, n);
      const done = sub.unsubscribe();
      const u = await n.next("SUBSCRIBE");
      assert.equal(u.msg.headers.get("expires"), "0");
      assert.equal(u.msg.headers.get("call-id"), s.msg.headers.get("call-id"));
      assert.equal(tagOf(u.msg.headers.get("to")), TAG);
      assert.equal(cseqOf(u), cseqOf(s) + 1);
      n.reply(u, 200, [["Expires", "0"]]);
      const t0 = Date.now();
      const res = await n.notify(s, { state: "terminated;reason=timeout", body: "Messages-Waiting: no\r\n" });
      assert.equal(res.status, 200);
      await done;
      assert.ok(Date.now() - t0 < 250, "resolved by the final NOTIFY, not the timeout");
      assert.equal(sub.state, "terminated");
      assert.deepEqual(rec.terminated, []);
      assert.equal(rec.resubscribed, 0);
      await n.none("SUBSCRIBE", 300);
      assert.equal(sub.unsubscribe(), sub.unsubscribe(), "idempotent");
    }));

  it("does not wait forever for the final NOTIFY", () =>
    withPeers(async (ua, n) => {
      const { sub } = await establish(ua, n);
      const done = sub.unsubscribe();
      n.reply(await n.next("SUBSCRIBE"), 200, [["Expires", "0"]]);
      const t0 = Date.now();
      await done;
      const waited = Date.now() - t0;
      assert.ok(waited >= 250 && waited < 600, `waited ${waited} ms`);
    }));
});

describe("SIP transactions over UDP", () => {
  it("retransmits a SUBSCRIBE the notifier dropped (Timer E) and stops after the answer", () =>
    withPeers(async (ua, n) => {
      const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD });
      const t0 = Date.now();
      const started = sub.start();
      const s = await n.next("SUBSCRIBE");
      await sleep(200); // ignore the first copies
      const copies = n.copies(s.branch);
      assert.ok(copies.length >= 3, `${copies.length} copies`);
      // T1 = 20 ms: copies at 20 and 60 ms (receive times only jitter late: one event loop).
      const since = copies.map((c) => c.at - t0);
      assert.ok(since[1]! >= 19 && since[1]! < 80, `second copy at ${since[1]} ms`);
      assert.ok(since[2]! >= 59 && since[2]! < 140, `third copy at ${since[2]} ms`);
      for (const c of copies) assert.deepEqual(serializeMessage(c.msg), serializeMessage(s.msg));
      n.reply(copies[copies.length - 1]!, 200, [["Expires", "600"]]);
      assert.equal((await started).ok, true);
      const count = n.copies(s.branch).length;
      await sleep(300);
      assert.equal(n.copies(s.branch).length, count, "no copies after the final response");
    }));

  it("times out (Timer F = 64*T1) when the notifier never answers, then retries with backoff", () =>
    withPeers(async (ua, n) => {
      const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD });
      const t0 = Date.now();
      const started = sub.start();
      const s = await n.next("SUBSCRIBE");
      const r = await started;
      const took = Date.now() - t0;
      assert.deepEqual(r, { ok: false, kind: "timeout", reason: "no response (transaction timeout)" });
      assert.ok(took >= 64 * FAST.t1 - 20 && took < 64 * FAST.t1 + 300, `took ${took} ms`);
      assert.ok(n.copies(s.branch).length >= 8, `${n.copies(s.branch).length} copies`);
      const again = await n.next("SUBSCRIBE", 1000);
      assert.notEqual(again.msg.headers.get("call-id"), s.msg.headers.get("call-id"));
      const t1 = Date.now();
      await sub.unsubscribe();
      assert.ok(Date.now() - t1 < 500, "unsubscribe does not wait for Timer F");
      assert.equal(sub.state, "terminated");
      await n.none("SUBSCRIBE", 300);
    }));

  it("answers a retransmitted NOTIFY from the cache, delivering its body once", () =>
    withPeers(async (ua, n) => {
      const { s, rec } = await establish(ua, n);
      const branch = n.branch();
      const r1 = await n.notify(s, { state: "active;expires=500", body: MWI_BODY, branch, cseq: 500 });
      const r2 = await n.notify(s, { state: "active;expires=500", body: MWI_BODY, branch, cseq: 500 });
      assert.equal(r1.status, 200);
      assert.deepEqual(serializeMessage(r2), serializeMessage(r1));
      assert.equal(rec.notifies.length, 2, "the establishing NOTIFY and this one");
      // Out of order (lower CSeq, new transaction): 500.
      assert.equal((await n.notify(s, { state: "active", cseq: 499 })).status, 500);
    }));
});

describe("SIP user agent: inbound requests", () => {
  const raw = (n: FakeNotifier, branch: string, lines: string[], body = ""): string =>
    [...lines.map((l) => l.replace("$BRANCH", branch).replace("$PORT", String(n.port))), `Content-Length: ${Buffer.byteLength(body)}`, "", body].join("\r\n");
  const base = (method: string, extra: string[] = []): string[] => [
    `${method} sip:mwi@127.0.0.1 SIP/2.0`,
    "Via: SIP/2.0/UDP 127.0.0.1:$PORT;rport;branch=$BRANCH",
    "From: <sip:pbx@127.0.0.1>;tag=p1",
    "To: <sip:mwi@127.0.0.1>",
    "Call-ID: inbound-1",
    `CSeq: 7 ${method}`,
    "Max-Forwards: 70",
    // What a real PBX sends besides: the answers (Allow, User-Agent) are no larger than this.
    "Contact: <sip:pbx@127.0.0.1:$PORT>",
    "User-Agent: Test-PBX/1.0",
    ...extra,
  ];

  it("answers what it does not take with the right status, and survives garbage", () =>
    withPeers(async (ua, n) => {
      const to = { address: "127.0.0.1", port: ua.localPort };
      const ask = async (lines: string[], body = ""): Promise<SipResponse | undefined> => {
        const b = n.branch();
        return n.send(raw(n, b, lines, body), b, to, 800);
      };
      const status = async (lines: string[], body = ""): Promise<number | undefined> => (await ask(lines, body))?.status;

      const options = await ask(base("OPTIONS", ["Accept: application/sdp"]));
      assert.equal(options?.status, 200);
      assert.match(options!.headers.get("allow")!, /NOTIFY/);
      assert.ok(tagOf(options!.headers.get("to")), "To tag added");
      const via = parseVia(options!.headers.get("via")!)!;
      assert.equal(via.params.get("rport"), String(n.port), "rport filled in");

      assert.equal(await status(base("NOTIFY", ["Event: message-summary", "Subscription-State: active"])), 481, "unknown dialog, no handler");
      assert.equal(await status(base("NOTIFY", ["Event: presence"])), 489);
      assert.equal(await status(base("NOTIFY")), 400, "no Event");
      assert.equal(await status(base("INVITE")), 405);
      assert.equal(await status(base("SUBSCRIBE", ["Event: message-summary"])), 405);
      assert.equal(await status(base("FROBNICATE")), 501);
      assert.equal(await status(base("CANCEL")), 481);
      assert.equal(await status(base("OPTIONS", ["Require: 100rel"])), 420);
      const noCallId = base("OPTIONS").filter((l) => !l.startsWith("Call-ID"));
      assert.equal(await status(noCallId), 400);
      const badCseq = base("OPTIONS").map((l) => (l.startsWith("CSeq") ? "CSeq: 7 INVITE" : l));
      assert.equal(await status(badCseq), 400);
      assert.equal(await status([...base("OPTIONS"), "this is not a header"]), 400, "malformed header line");
      const shortBody = raw(n, "z9hG4bKshort", base("NOTIFY", ["Event: message-summary"]), "").replace("Content-Length: 0", "Content-Length: 50");
      assert.equal((await n.send(shortBody, "z9hG4bKshort", to, 800))?.status, 400);

      // Garbage: no answer, no crash.
      for (const junk of ["", "\r\n\r\n", "HELLO WORLD", "\x00\x01\x02", "SIP/2.0 200 OK\r\n\r\n", "NOTIFY sip:a SIP/2.0\r\n\r\n"]) {
        assert.equal(await n.send(junk, "none", to, 100), undefined);
      }
      const e = n.branch();
      assert.equal((await n.send(raw(n, e, base("OPTIONS")), e, to))?.status, 200, "still alive");
    }));

  it("answers 513 to a request over the size limit", () =>
    withPeers(
      async (ua, n) => {
        const b = n.branch();
        const big = raw(n, b, base("NOTIFY", ["Event: message-summary"]), "x".repeat(5000));
        const res = await n.send(big, b, { address: "127.0.0.1", port: ua.localPort }, 800);
        assert.equal(res?.status, 513);
      },
      undefined,
      { maxMessageBytes: 4096 },
    ));

  it("hands out-of-dialog NOTIFYs to the unsolicited handler", () =>
    withPeers(async (ua, n) => {
      const seen: UnsolicitedNotify[] = [];
      let answer: number | (() => never) = 200;
      ua.onUnsolicitedNotify(async (notify) => {
        seen.push(notify);
        if (typeof answer === "function") answer();
        return answer as number;
      });
      const to = { address: "127.0.0.1", port: ua.localPort };
      const lines = base("NOTIFY", ["Event: message-summary", "Content-Type: application/simple-message-summary"]);
      const b1 = n.branch();
      assert.equal((await n.send(raw(n, b1, lines, MWI_BODY), b1, to))?.status, 200);
      assert.equal(seen.length, 1);
      assert.equal(seen[0]!.requestUri, "sip:mwi@127.0.0.1");
      assert.equal(seen[0]!.body, MWI_BODY);
      assert.equal(seen[0]!.contentType, "application/simple-message-summary");
      assert.deepEqual(seen[0]!.source, { transport: "udp", address: "127.0.0.1", port: n.port });
      assert.equal(seen[0]!.headers.get("call-id"), "inbound-1");

      answer = 403;
      const b2 = n.branch();
      assert.equal((await n.send(raw(n, b2, lines, MWI_BODY), b2, to))?.status, 403);
      answer = () => {
        throw new Error("boom");
      };
      const b3 = n.branch();
      assert.equal((await n.send(raw(n, b3, lines, MWI_BODY), b3, to))?.status, 500);
      // With a To tag it claims a dialog: not unsolicited.
      const b4 = n.branch();
      const inDialog = lines.map((l) => (l.startsWith("To:") ? "To: <sip:mwi@127.0.0.1>;tag=zz" : l));
      assert.equal((await n.send(raw(n, b4, inDialog, MWI_BODY), b4, to))?.status, 481);
      assert.equal(seen.length, 3);
    }));
});

describe("SIP over TCP and TLS", () => {
  it("subscribes over TCP and takes NOTIFYs on the same connection", async () => {
    const n = await FakeNotifier.stream("tcp");
    await withPeers(async (ua) => {
      const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD });
      const rec = record(sub);
      const started = sub.start();
      const s = await n.next("SUBSCRIBE");
      assert.equal(parseVia(s.msg.headers.get("via")!)!.transport, "TCP");
      assert.equal(s.msg.headers.get("contact"), `<sip:1001@127.0.0.1:${ua.localPort};transport=tcp>`);
      n.reply(s, 401, [["WWW-Authenticate", 'Digest realm="asterisk", nonce="t1", qop="auth"']]);
      const s2 = await n.next("SUBSCRIBE");
      n.reply(s2, 200, [["Expires", "600"]]);
      assert.equal((await n.notify(s2, { state: "active;expires=600", body: MWI_BODY })).status, 200);
      assert.deepEqual(await started, { ok: true, expires: 600, state: "active" });
      assert.equal(rec.notifies.length, 1);
      assert.equal(n.requests.length, 2, "no retransmissions over TCP");
    }, n);
  });

  it("reports unreachable when nobody listens on the TCP port", async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const ua = await startUa();
    try {
      const sub = ua.subscribe({ target: { host: "127.0.0.1", port, transport: "tcp" }, uri: "sip:1001@127.0.0.1", password: PASSWORD });
      const r = await sub.start();
      assert.equal(r.ok, false);
      if (!r.ok) assert.equal(r.kind, "unreachable");
      await sub.unsubscribe();
    } finally {
      await ua.close();
    }
  });

  it("subscribes over TLS, verifying the server against a CA file", async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), "sip-tls-"));
    try {
      const cert = path.join(dir, "cert.pem");
      const key = path.join(dir, "key.pem");
      const gen = spawnSync(
        "openssl",
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        { stdio: "ignore" },
      );
      if (gen.status !== 0) {
        if (process.env["CI"] === "true") assert.fail("openssl unavailable in CI");
        t.skip("openssl unavailable");
        return;
      }
      const { readFileSync } = await import("node:fs");
      const creds = { cert: readFileSync(cert), key: readFileSync(key) };

      const n = await FakeNotifier.stream("tls", creds);
      await withPeers(
        async (ua) => {
          const sub = ua.subscribe({ target: n.target, uri: "sip:1001@127.0.0.1", password: PASSWORD });
          const started = sub.start();
          const s = await n.next("SUBSCRIBE");
          assert.equal(parseVia(s.msg.headers.get("via")!)!.transport, "TLS");
          assert.match(s.msg.headers.get("contact")!, /;transport=tls>$/);
          n.reply(s, 200, [["Expires", "600"]]);
          assert.equal((await n.notify(s, { state: "active;expires=600", body: MWI_BODY })).status, 200);
          assert.equal((await started).ok, true);
        },
        n,
        { tls: { caFile: cert } },
      );

      // Without the CA the self-signed server is refused; with verification off it is taken.
      for (const [tlsOpts, ok] of [[{}, false], [{ rejectUnauthorized: false }, true]] as const) {
        const m = await FakeNotifier.stream("tls", creds);
        await withPeers(
          async (ua) => {
            const sub = ua.subscribe({ target: m.target, uri: "sip:1001@127.0.0.1", password: PASSWORD });
            const started = sub.start();
            if (ok) m.reply(await m.next("SUBSCRIBE"), 200, [["Expires", "60"]]);
            const r = await started;
            assert.equal(r.ok, ok, JSON.stringify(r));
            if (!r.ok) assert.equal(r.kind, "unreachable");
            await sub.unsubscribe();
          },
          m,
          { tls: tlsOpts },
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("SIP user agent: lifecycle", () => {
  it("close() clears every timer and socket it made", async () => {
    const timeouts = (): number => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = timeouts();
    const n = await FakeNotifier.udp();
    const ua = await startUa();
    const { sub } = await establish(ua, n, { expires: "3600" });
    // A second subscription stuck in backoff.
    const other = ua.subscribe({ target: n.target, uri: "sip:1002@127.0.0.1", password: PASSWORD });
    void other.start();
    n.reply(await n.next("SUBSCRIBE"), 500);
    await sleep(20);
    assert.ok(timeouts() > before);
    await ua.close();
    await n.close();
    assert.equal(sub.state, "terminated");
    assert.equal(other.state, "terminated");
    assert.equal(timeouts(), before);
    assert.throws(() => ua.subscribe({ target: n.target, uri: "sip:1@x", password: "" }), /closed/);
  });

  it("binds the port it is given, for UDP and TCP alike", async () => {
    const first = await startUa();
    const port = first.localPort;
    await first.close();
    const ua = await startUa({ port });
    try {
      assert.equal(ua.localPort, port);
      const c = net.connect(port, "127.0.0.1");
      await new Promise<void>((resolve, reject) => c.once("connect", resolve).once("error", reject));
      c.destroy();
    } finally {
      await ua.close();
    }
  });
});
