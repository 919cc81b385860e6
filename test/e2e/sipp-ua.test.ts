// The SIP user agent against SIPp (Debian package sip-tester) playing notifiers that misbehave in
// ways a real voice mail server will not on demand. SIPp runs as a child process bound to
// 127.0.0.1, with -timeout/-timeout_error so it always stops by itself.
import { describe, it, test } from "node:test";
import assert from "node:assert/strict";
import { parseMessageSummary } from "../../src/gateway/sip/messageSummary.js";
import { SipUserAgent, type NotifyInfo, type SipUserAgentOptions, type Subscription, type UnsolicitedNotify } from "../../src/gateway/sip/userAgent.js";
import { ensureSipp, runSipp, sippSucceeded, sleep } from "./sipp.js";

async function startUa(logs: string[], extra: Partial<SipUserAgentOptions> = {}): Promise<SipUserAgent> {
  const log = (level: string) => (m: string) => logs.push(`${new Date().toISOString().slice(11, 23)} ${level} ${m}`);
  return SipUserAgent.start({
    bindAddress: "127.0.0.1",
    port: 0,
    logger: { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") },
    timers: { t1: 50, t2: 400, t4: 500, retryBaseMs: 200, retryMaxMs: 1000, defaultRetryAfterMs: 500, unsubscribeWaitMs: 1000 },
    random: () => 0,
    ...extra,
  });
}

function collect(sub: Subscription): { notifies: Array<{ body: string; info: NotifyInfo; at: number }>; terminated: string[]; resubscribed: number[] } {
  const rec = { notifies: [] as Array<{ body: string; info: NotifyInfo; at: number }>, terminated: [] as string[], resubscribed: [] as number[] };
  sub.on("notify", (body, info) => rec.notifies.push({ body, info, at: Date.now() }));
  sub.on("terminated", (reason) => rec.terminated.push(reason));
  sub.on("resubscribed", () => rec.resubscribed.push(Date.now()));
  return rec;
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const sentSubscribes = (logs: string[]): number => logs.filter((l) => / -> SUBSCRIBE /.test(l)).length;

// ---------------------------------------------------------------- tests

const status = ensureSipp();
if (!status.ok) {
  test("sipp scenarios against the SIP user agent", (t) => {
    if (process.env["CI"] === "true") assert.fail(`sipp unavailable in CI: ${status.reason}`);
    console.error(`\n${"!".repeat(72)}\n!!! SKIP sipp-ua: ${status.reason}\n${"!".repeat(72)}\n`);
    t.skip(status.reason);
  });
} else {
  describe("SIP user agent against SIPp", { timeout: 120_000 }, () => {
    for (const [transport, hugelen, limit] of [
      ["udp", 20000, 16384],
      ["tcp", 66000, undefined],
    ] as const) {
      it(`(1) survives malformed and oversized NOTIFYs after a normal 200 (${transport})`, async () => {
        const logs: string[] = [];
        const run = await runSipp("uas-malformed-huge.xml", { transport, calls: 1, set: { hugelen: String(hugelen) } });
        const ua = await startUa(logs, limit === undefined ? {} : { maxMessageBytes: limit });
        try {
          const sub = ua.subscribe({ target: { host: "127.0.0.1", port: run.port, transport }, uri: "sip:1001@127.0.0.1", password: "pw" });
          const rec = collect(sub);
          assert.deepEqual(await sub.start(), { ok: true, expires: 600, state: "active" });
          await until(() => rec.notifies.some((n) => n.body.includes("3/0")), 10_000, "the NOTIFY after the bad ones");
          await sub.unsubscribe();
          await sippSucceeded(run, logs);

          const bodies = rec.notifies.map((n) => n.body);
          assert.equal(bodies.length, 4, JSON.stringify(bodies.map((b) => b.slice(0, 40))));
          const parsed = bodies.map((b) => parseMessageSummary(b));
          assert.ok(parsed[0]!.ok && parsed[0]!.summary.voice.newCount === 1);
          assert.equal(parsed[1]!.ok, false, "the malformed body reaches the application, which rejects it");
          assert.ok(parsed[2]!.ok && parsed[2]!.summary.voice.newCount === 3 && parsed[2]!.summary.voice.urgentNew === 1);
          assert.ok(parsed[3]!.ok && !parsed[3]!.summary.waiting, "final NOTIFY after unsubscribe");
          assert.match(rec.notifies[3]!.info.subscriptionState, /^terminated/);
          assert.equal(sub.state, "terminated");
          assert.ok(logs.some((l) => /too large/.test(l)), "oversize logged");
        } finally {
          run.kill();
          await ua.close();
        }
      });
    }

    const retrying: Array<[string, { minMs: number; maxMs: number }]> = [
      ["terminated;reason=deactivated", { minMs: 0, maxMs: 500 }],
      ["terminated;reason=timeout", { minMs: 0, maxMs: 500 }],
      ["terminated", { minMs: 0, maxMs: 500 }],
      ["terminated;reason=probation;retry-after=1", { minMs: 950, maxMs: 2000 }],
      ["terminated;reason=giveup;retry-after=1", { minMs: 950, maxMs: 2000 }],
      ["terminated;reason=giveup", { minMs: 450, maxMs: 1500 }],
    ];
    for (const [ss, window] of retrying) {
      it(`(2) ${ss}: resubscribes in a new dialog after ${window.minMs}..${window.maxMs} ms`, async () => {
        const logs: string[] = [];
        const run = await runSipp("uas-terminated.xml", { transport: "udp", calls: 2, set: { ss } });
        const ua = await startUa(logs);
        try {
          const sub = ua.subscribe({ target: { host: "127.0.0.1", port: run.port, transport: "udp" }, uri: "sip:1001@127.0.0.1", password: "pw" });
          const rec = collect(sub);
          assert.equal((await sub.start()).ok, true);
          await until(() => rec.resubscribed.length === 1, 8000, "resubscribed");
          const end = rec.notifies.find((n) => n.info.subscriptionState.startsWith("terminated"));
          assert.ok(end, "the terminating NOTIFY was delivered");
          const waited = rec.resubscribed[0]! - end.at;
          assert.ok(waited >= window.minMs && waited <= window.maxMs, `resubscribed after ${waited} ms`);
          await until(() => rec.notifies.some((n) => n.body.includes("2/0")), 5000, "the new dialog's NOTIFY");
          await sub.unsubscribe();
          await sippSucceeded(run, logs);
          assert.deepEqual(rec.terminated, []);
        } finally {
          run.kill();
          await ua.close();
        }
      });
    }

    for (const reason of ["rejected", "noresource", "invariant"]) {
      it(`(2) terminated;reason=${reason}: ends for good, no retry`, async () => {
        const logs: string[] = [];
        const run = await runSipp("uas-terminated.xml", { transport: "udp", calls: 1, set: { ss: `terminated;reason=${reason}` } });
        const ua = await startUa(logs);
        try {
          const sub = ua.subscribe({ target: { host: "127.0.0.1", port: run.port, transport: "udp" }, uri: "sip:1001@127.0.0.1", password: "pw" });
          const rec = collect(sub);
          assert.equal((await sub.start()).ok, true);
          await until(() => rec.terminated.length === 1, 5000, "terminated");
          assert.deepEqual(rec.terminated, [`notifier: ${reason}`]);
          assert.equal(sub.state, "terminated");
          await sippSucceeded(run, logs);
          await sleep(300);
          assert.equal(sentSubscribes(logs), 1, "no new SUBSCRIBE");
        } finally {
          run.kill();
          await ua.close();
        }
      });
    }

    it("(3) 481 to an in-dialog refresh: a new subscription with a new Call-ID", async () => {
      const logs: string[] = [];
      const run = await runSipp("uas-refresh-481.xml", { transport: "udp", calls: 2 });
      const ua = await startUa(logs);
      try {
        const sub = ua.subscribe({ target: { host: "127.0.0.1", port: run.port, transport: "udp" }, uri: "sip:1001@127.0.0.1", password: "pw" });
        const rec = collect(sub);
        assert.deepEqual(await sub.start(), { ok: true, expires: 2, state: "active" });
        // Refresh at 80% of 2 s, 481, then at once a new SUBSCRIBE (sipp sees a new call).
        await until(() => rec.resubscribed.length === 1 && rec.notifies.length === 2, 6000, "resubscribed and notified");
        assert.equal(sub.state, "active");
        await sub.unsubscribe();
        await sippSucceeded(run, logs);
        const callIds = new Set(logs.filter((l) => / -> SUBSCRIBE /.test(l)).map((l) => /Call-ID ([^)]+)\)/.exec(l)?.[1]));
        assert.equal(callIds.size, 2);
      } finally {
        run.kill();
        await ua.close();
      }
    });

    for (const transport of ["udp", "tcp"] as const) {
      it(`(4) a notifier that always challenges: one answer, then kind auth (${transport})`, async () => {
        const logs: string[] = [];
        const run = await runSipp("uas-401-loop.xml", { transport, calls: 1 });
        const ua = await startUa(logs);
        try {
          const sub = ua.subscribe({ target: { host: "127.0.0.1", port: run.port, transport }, uri: "sip:1001@127.0.0.1", password: "wrong-password" });
          const r = await sub.start();
          assert.equal(r.ok, false);
          if (!r.ok) {
            assert.equal(r.kind, "auth");
            assert.equal(r.status, 401);
          }
          assert.equal(sub.state, "terminated");
          await sippSucceeded(run, logs);
          assert.equal(sentSubscribes(logs), 2);
          assert.ok(!logs.join("\n").includes("wrong-password"), "password never logged");
        } finally {
          run.kill();
          await ua.close();
        }
      });

      it(`(5) a notifier that never answers: timeout after Timer F, no hang (${transport})`, async () => {
        const logs: string[] = [];
        const run = await runSipp("uas-silent.xml", { transport, calls: 1 });
        const ua = await startUa(logs, { timers: { t1: 50, t2: 400, retryBaseMs: 10_000, unsubscribeWaitMs: 500 } });
        try {
          const sub = ua.subscribe({ target: { host: "127.0.0.1", port: run.port, transport }, uri: "sip:1001@127.0.0.1", password: "pw" });
          const t0 = Date.now();
          const r = await sub.start();
          const took = Date.now() - t0;
          assert.equal(r.ok, false);
          if (!r.ok) assert.equal(r.kind, "timeout");
          assert.ok(took >= 3100 && took < 4000, `gave up after ${took} ms (64*T1 = 3200)`);
          const retransmissions = logs.filter((l) => /retransmitting SUBSCRIBE/.test(l)).length;
          if (transport === "udp") assert.ok(retransmissions >= 8, `${retransmissions} retransmissions`);
          else assert.equal(retransmissions, 0, "no retransmission over TCP");
          await sub.unsubscribe();
          await sippSucceeded(run, logs);
        } finally {
          run.kill();
          await ua.close();
        }
      });

      it(`(6) unsolicited NOTIFYs and other requests from a PBX (${transport})`, async () => {
        const logs: string[] = [];
        const ua = await startUa(logs);
        const seen: UnsolicitedNotify[] = [];
        ua.onUnsolicitedNotify((n) => {
          seen.push(n);
          return /<sip:pbx@127\.0\.0\.1>/.test(n.headers.get("from") ?? "") ? 200 : 403;
        });
        const run = await runSipp("uac-unsolicited.xml", { transport, calls: 1, remote: `127.0.0.1:${ua.localPort}` });
        try {
          await sippSucceeded(run, logs);
          assert.equal(seen.length, 2);
          const first = seen[0]!;
          assert.equal(first.requestUri, `sip:1001@127.0.0.1:${ua.localPort}`);
          assert.equal(first.event, "message-summary");
          assert.equal(first.source.transport, transport);
          assert.equal(first.source.address, "127.0.0.1");
          if (transport === "udp") assert.equal(first.source.port, run.port);
          const summary = parseMessageSummary(first.body);
          assert.ok(summary.ok);
          if (summary.ok) assert.deepEqual(summary.summary.voice, { newCount: 4, oldCount: 2, urgentNew: 1, urgentOld: 0 });
        } finally {
          run.kill();
          await ua.close();
        }
      });
    }
  });
}

