/**
 * How many mailboxes one bridge process keeps subscribed: one in-process SipUserAgent against a
 * SIPp notifier (bench/sipp/notifier.xml: 401 digest challenge, then 200 + NOTIFY on the initial
 * SUBSCRIBE and on every refresh in the dialog, until Expires: 0). Loopback UDP only.
 *
 * 1. Ramp: subscriptions are started STARTS_IN_FLIGHT at a time (as SipGateway.watch does at
 *    start-up) up to each step of STEPS; establishment rate and memory per step.
 * 2. Hold: a window with nothing but refreshes (expiry EXPIRES_S, refresh at 70..80% of it), long
 *    enough for every subscription to refresh at least once: CPU time per refresh, event-loop
 *    delay, and at its end how many are still active (none terminated, none re-established).
 * 3. Unsubscribe: half of them STARTS_IN_FLIGHT at a time, the other half all at once with
 *    SipGateway.stop()'s time limit; close; SIPp ends (or is stopped: calls left open by the
 *    burst).
 *
 * The whole run stops by itself within 90 s (about 40 s here): the ramp and the unsubscribes have
 * time budgets, SIPp a -timeout, and a hard kill as the last resort. Run directly:
 * `node dist/bench/sip.js`; `BENCH_SIP_STEPS=60000` ramps until the budget runs out (overload).
 */

import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";
import v8 from "node:v8";
import vm from "node:vm";

import { SipUserAgent, type Subscription } from "../src/gateway/sip/userAgent.js";
import type { BenchResult } from "./parser.js";
import { freeSipPort } from "../test/testbed/ports.js";

/** Cumulative subscription counts of the ramp (BENCH_SIP_STEPS=100,200 for a quick look). */
const STEPS = (process.env["BENCH_SIP_STEPS"] ?? "500,1000,2000,4000,8000").split(",").map(Number);
/** Starts in flight at once: SipGateway's STARTS_IN_FLIGHT. */
const STARTS_IN_FLIGHT = 16;
/** Granted expiry (SIPp -set exp): refreshes every 14..16 s. */
const EXPIRES_S = 20;
const PASSWORD = "bench-sip-password";
/** The ramp starts no subscription after it has run this long... */
const RAMP_BUDGET_MS = 25_000;
/** ...and waits at most this much longer for the starts in flight. */
const RAMP_GRACE_MS = 2_000;
/** After the ramp: wait this long at most for the last first NOTIFYs. */
const SETTLE_MS = 5_000;
/** Refresh-only window: every subscription refreshes at least once (80% of EXPIRES_S + slack). */
const WINDOW_MS = EXPIRES_S * 1000 + 2_000;
/** CPU of the process doing nothing is measured this long before the ramp. */
const IDLE_MS = 1_000;
/** SipGateway.stop() closes the user agent this long after starting the unsubscribes. */
const STOP_WAIT_MS = 3_000;
/** The paced half of the unsubscribes stops being waited for after this long. */
const PACED_UNSUBSCRIBE_BUDGET_MS = 8_000;
/** Everything in: SIPp quits by itself after this, and is killed a little later. */
const SIPP_TIMEOUT_S = 85;

// dist/bench/sip.js -> repository root -> bench/sipp
const SCENARIO = path.resolve(fileURLToPath(import.meta.url), "../../../bench/sipp/notifier.xml");

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let runStarted = performance.now();
const progress = (line: string): void => console.error(`SIP UA … [${((performance.now() - runStarted) / 1000).toFixed(1)} s] ${line}`);

let gc: (() => void) | undefined;

/** Heap and RSS after a full collection (twice: weak references and finalizers). */
function memory(): { rss: number; heap: number } {
  if (!gc) {
    v8.setFlagsFromString("--expose-gc");
    gc = vm.runInNewContext("gc") as () => void;
  }
  gc();
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed + m.external };
}

// ---------------------------------------------------------------- sipp

function sippWorks(): boolean {
  const r = spawnSync("sipp", ["-v"], { stdio: "ignore", timeout: 10_000 });
  return r.error === undefined && r.status !== null && r.status !== 127;
}

/** The /proc/net/udp line of the socket bound to 127.0.0.1:port, split into fields. */
function udpSocket(port: number): string[] | undefined {
  const needle = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  try {
    const line = readFileSync("/proc/net/udp", "utf8")
      .split("\n")
      .find((l) => l.includes(` ${needle} `));
    return line?.trim().split(/\s+/);
  } catch {
    return undefined;
  }
}

/** Datagrams the kernel dropped for the socket on 127.0.0.1:port (full receive buffer). */
const udpDrops = (port: number): number => Number(udpSocket(port)?.at(-1) ?? NaN);

async function waitListening(port: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (udpSocket(port)) return;
    await sleep(30);
  }
  throw new Error(`sipp does not listen on udp 127.0.0.1:${port}`);
}

interface Sipp {
  port: number;
  done: Promise<{ code: number | null; signal: string | null; errors: string; out: string }>;
  stop(): void;
  kill(): void;
}

async function startSipp(calls: number): Promise<Sipp> {
  const port = await freeSipPort();
  const cwd = mkdtempSync(path.join(tmpdir(), "bench-sipp-"));
  const args = [
    "-sf", SCENARIO,
    "-i", "127.0.0.1", "-bind_local",
    "-p", String(port),
    "-t", "u1",
    "-m", String(calls),
    "-l", String(calls + 100),
    // Bursts of thousands of SUBSCRIBEs: the 64 KB default would drop most of them.
    "-buff_size", String(4 * 1024 * 1024),
    "-max_recv_loops", "10000",
    "-set", "exp", String(EXPIRES_S),
    "-set", "pw", PASSWORD,
    "-nostdin", "-nd",
    "-timeout", `${SIPP_TIMEOUT_S}s`, "-timeout_error",
    "-trace_err",
  ];
  const child = spawn("sipp", args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  // The statistics screens go to stdout (the last one on exit); -trace_screen writes nothing
  // when SIPp is stopped by a signal.
  child.stdout.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  child.stderr.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  const hardKill = setTimeout(() => child.kill("SIGKILL"), (SIPP_TIMEOUT_S + 3) * 1000);
  const done = new Promise<{ code: number | null; signal: string | null; errors: string; out: string }>((resolve) => {
    child.on("close", (code, signal) => {
      clearTimeout(hardKill);
      let errors = "";
      for (const f of readdirSync(cwd)) if (f.endsWith("_errors.log")) errors = readFileSync(path.join(cwd, f), "utf8");
      rmSync(cwd, { recursive: true, force: true });
      resolve({ code, signal, errors, out });
    });
  });
  await waitListening(port);
  return {
    port,
    done,
    // SIGINT: SIPp quits at once (SIGUSR1, its soft quit, waits for the open calls).
    stop: () => child.exitCode === null && child.kill("SIGINT"),
    kill: () => child.exitCode === null && child.kill("SIGKILL"),
  };
}

/** "Successful call" and "Failed call" totals from SIPp's last statistics screen. */
function sippTotals(screen: string): { successful?: number; failed?: number } {
  const total = (label: string): number | undefined => {
    const lines = screen.split(/\r?\n/).filter((l) => l.trim().startsWith(label));
    const last = lines.at(-1);
    if (!last) return undefined;
    const numbers = last.split("|").map((s) => Number(s.trim())).filter((n) => Number.isFinite(n));
    return numbers.at(-1);
  };
  const out: { successful?: number; failed?: number } = {};
  const s = total("Successful call");
  const f = total("Failed call");
  if (s !== undefined) out.successful = s;
  if (f !== undefined) out.failed = f;
  return out;
}

// ---------------------------------------------------------------- the bench

/**
 * Transactions the user agent still holds (completed ones wait out Timer J/K): a look at private
 * state, for the memory figures only; undefined when the layout changed.
 */
function retainedTransactions(ua: SipUserAgent): { clients: number; servers: number } | undefined {
  const tx = (ua as unknown as { tx?: { clients?: unknown; servers?: unknown } }).tx;
  if (!(tx?.clients instanceof Map) || !(tx.servers instanceof Map)) return undefined;
  return { clients: tx.clients.size, servers: tx.servers.size };
}

interface Mailbox {
  sub: Subscription;
  started: number;
  established?: number;
  notifies: number;
  /** NOTIFYs with Subscription-State: terminated (only the final one, after unsubscribe). */
  finalNotifies: number;
  terminated: number;
  resubscribed: number;
  failed?: string;
}

export async function benchSip(): Promise<BenchResult[]> {
  runStarted = performance.now();
  const results: BenchResult[] = [];
  const report = (name: string, value: number, unit: string): void => {
    results.push({ name, value, unit });
    progress(`${name}: ${Number.isInteger(value) ? value : value.toFixed(2)} ${unit}`);
  };
  if (!sippWorks()) {
    console.error("SIP UA: SKIPPED: sipp is not installed (Debian: apt-get install sip-tester)");
    return results;
  }

  const total = STEPS.at(-1)!;
  const sipp = await startSipp(total);
  let refreshes = 0;
  let retransmissions = 0;
  const problems: string[] = [];
  const noteProblem = (m: string): void => {
    if (problems.length < 20) problems.push(m);
  };
  const ua = await SipUserAgent.start({
    bindAddress: "127.0.0.1",
    port: 0,
    logger: {
      // What the bridge's logger does at level info: nothing for debug, but the UA still builds
      // the strings. Counting two of them is all the bench adds.
      debug: (m) => {
        if (m.startsWith("sip: refreshed ")) refreshes++;
        else if (m.startsWith("sip: retransmitting ")) retransmissions++;
      },
      info: (m) => {
        if (!m.startsWith("sip: subscribed to ")) noteProblem(`info ${m}`);
      },
      warn: (m) => noteProblem(`warn ${m}`),
      error: (m) => noteProblem(`error ${m}`),
    },
  });
  const target = { host: "127.0.0.1", port: sipp.port, transport: "udp" as const };
  const mailboxes: Mailbox[] = [];

  try {
    progress(`SIPp notifier on udp 127.0.0.1:${sipp.port}, user agent on ${ua.localPort}; ramp ${STEPS.join(", ")}`);
    // What the process burns doing nothing (timers of node itself, the loop monitor below).
    const idleCpu0 = process.cpuUsage();
    const idleT0 = performance.now();
    await sleep(IDLE_MS);
    const idleCpu = process.cpuUsage(idleCpu0);
    const idleLoad = (idleCpu.user + idleCpu.system) / (1000 * (performance.now() - idleT0)); // µs per ms = fraction·1000
    const before = memory();
    const ramp: { n: number; established: number; seconds: number; cpuUs: number; rss: number; heap: number }[] = [];
    const rampStarted = performance.now();

    const rampDeadline = rampStarted + RAMP_BUDGET_MS;
    for (const step of STEPS) {
      if (performance.now() > rampDeadline) break;
      const from = mailboxes.length;
      const cpu0 = process.cpuUsage();
      const stepStarted = performance.now();
      // Each worker subscribes the next mailbox when the previous start() has resolved; none
      // starts after the deadline, so a slow machine ends the ramp part way through a step.
      const worker = async (): Promise<void> => {
        while (mailboxes.length < step && performance.now() < rampDeadline) {
          const i = mailboxes.length;
          const sub = ua.subscribe({ target, uri: `sip:${100000 + i}@127.0.0.1`, password: PASSWORD, expires: EXPIRES_S });
          const mb: Mailbox = { sub, notifies: 0, finalNotifies: 0, terminated: 0, resubscribed: 0, started: performance.now() };
          sub.on("notify", (_body, info) => {
            mb.notifies++;
            if (info.subscriptionState.startsWith("terminated")) mb.finalNotifies++;
          });
          sub.on("terminated", () => mb.terminated++);
          sub.on("resubscribed", () => mb.resubscribed++);
          mailboxes.push(mb);
          const r = await sub.start();
          if (r.ok) mb.established = performance.now();
          else mb.failed = `${r.kind}: ${r.reason}`;
        }
      };
      // A start() whose answers are lost can take two Timer Fs: past the deadline, those still
      // running are left to finish (or not) on their own.
      const workers = Promise.all(Array.from({ length: STARTS_IN_FLIGHT }, worker));
      await Promise.race([workers, sleep(Math.max(0, rampDeadline - performance.now()) + RAMP_GRACE_MS)]);
      const seconds = (performance.now() - stepStarted) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const m = memory();
      const reached = mailboxes.length;
      const established = mailboxes.slice(from).filter((mb) => mb.established !== undefined).length;
      ramp.push({ n: reached, established, seconds, cpuUs: cpu.user + cpu.system, ...m });
      const failed = mailboxes.slice(from).filter((mb) => mb.failed).length;
      progress(
        `ramp: ${reached} subscriptions (+${reached - from} in ${seconds.toFixed(2)} s, ${failed} failed, ` +
          `CPU ${((cpu.user + cpu.system) / 1e4 / seconds).toFixed(0)}% of a core), RSS ${(m.rss / 2 ** 20).toFixed(0)} MiB`,
      );
      if (reached < step) progress(`ramp: out of time at ${reached} of ${step}`);
    }
    const n = mailboxes.length;
    let rampAdded = 0;
    let rampSeconds = 0;
    let rampCpuUs = 0;
    for (let i = 0; i < ramp.length; i++) {
      const r = ramp[i]!;
      const from = i === 0 ? 0 : ramp[i - 1]!.n;
      rampAdded += r.established;
      rampSeconds += r.seconds;
      rampCpuUs += r.cpuUs;
      report(`subscriptions established per second, ${from} -> ${r.n}`, r.established / r.seconds, "subscriptions/s");
    }
    if (rampAdded) {
      report(`CPU load of the process during the ramp (${STARTS_IN_FLIGHT} starts in flight)`, rampCpuUs / 1e4 / rampSeconds, "% of a core");
      report("CPU per subscription established (SUBSCRIBE/401/SUBSCRIBE/200 + NOTIFY/200)", rampCpuUs / rampAdded, "µs");
    }
    const established = mailboxes.filter((mb) => mb.established !== undefined);
    const latencies = established.map((mb) => mb.established! - mb.started).sort((a, b) => a - b);
    if (latencies.length) {
      report("start() to established (SUBSCRIBE/401/SUBSCRIBE/200), median", latencies[Math.floor(latencies.length / 2)]!, "ms");
      report("start() to established, p99", latencies[Math.floor(latencies.length * 0.99)]!, "ms");
    }
    const txs = retainedTransactions(ua);
    if (txs) {
      report("client transactions held right after the ramp (Timer K, T4 = 5 s)", txs.clients, "transactions");
      report("server transactions held right after the ramp (Timer J, 64*T1 = 32 s)", txs.servers, "transactions");
    }
    const last = ramp.at(-1);
    if (last && n > 0) {
      report(`RSS delta per subscription (${n} subscribed, after GC)`, (last.rss - before.rss) / n, "bytes");
      report(`heap+external delta per subscription (${n} subscribed, after GC)`, (last.heap - before.heap) / n, "bytes");
    }

    // Every established one has had its first NOTIFY before the refresh-only window starts.
    const settleUntil = performance.now() + SETTLE_MS;
    while (established.some((mb) => mb.notifies === 0) && performance.now() < settleUntil) await sleep(20);
    const noNotify = established.filter((mb) => mb.notifies === 0).length;
    if (noNotify) progress(`${noNotify} subscriptions still without a first NOTIFY`);

    // ------------------------------------------------------------ refresh-only window
    const notifiesBefore = mailboxes.map((mb) => mb.notifies);
    const refreshesBefore = refreshes;
    const retransmissionsBefore = retransmissions;
    const dropsBefore = udpDrops(ua.localPort);
    const loop = monitorEventLoopDelay({ resolution: 10 });
    progress(`refresh window: ${WINDOW_MS / 1000} s with ${established.length} subscriptions`);
    loop.enable();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await sleep(WINDOW_MS);
    const cpu = process.cpuUsage(cpu0);
    const windowMs = performance.now() - t0;
    loop.disable();
    const windowRefreshes = refreshes - refreshesBefore;
    const kept = mailboxes.filter(
      (mb, i) => mb.established !== undefined && mb.sub.state === "active" && mb.terminated === 0 && mb.resubscribed === 0 && mb.notifies > notifiesBefore[i]!,
    ).length;
    const lost = mailboxes.filter((mb) => mb.terminated > 0 || mb.resubscribed > 0 || (mb.established !== undefined && mb.sub.state !== "active")).length;
    const afterWindow = memory();
    const cpuUs = cpu.user + cpu.system;

    report("mailboxes kept subscribed (active, refreshed and notified again in the window)", kept, "mailboxes");
    report("mailboxes lost (terminated, re-established or not active)", lost, "mailboxes");
    report("mailboxes never established", mailboxes.filter((mb) => mb.established === undefined).length, "mailboxes");
    report(`refreshes in the ${(windowMs / 1000).toFixed(0)} s refresh-only window`, windowRefreshes, "refreshes");
    report("refresh rate in the window", (1000 * windowRefreshes) / windowMs, "refreshes/s");
    if (windowRefreshes > 0) {
      report("CPU per refresh (SUBSCRIBE/200 + NOTIFY/200, user+system)", cpuUs / windowRefreshes, "µs");
      report("CPU per refresh, idle process subtracted", Math.max(0, cpuUs - idleLoad * windowMs) / windowRefreshes, "µs");
    }
    report("CPU load of the process in the window", cpuUs / 10 / windowMs, "% of a core");
    report("CPU load of the idle process (before the ramp)", idleLoad / 10, "% of a core");
    report("event-loop delay in the window, p99", loop.percentile(99) / 1e6, "ms");
    report("event-loop delay in the window, max", loop.max / 1e6, "ms");
    report("SUBSCRIBE retransmissions in the window", retransmissions - retransmissionsBefore, "retransmissions");
    report("UDP datagrams dropped by the kernel for the user agent in the window", udpDrops(ua.localPort) - dropsBefore, "datagrams");
    report("RSS delta per subscription after the window (after GC)", (afterWindow.rss - before.rss) / n, "bytes");

    // SIPp ends by itself once the last call is over: its socket is read now.
    report("UDP datagrams dropped by the kernel for SIPp (receive buffer full)", udpDrops(sipp.port), "datagrams");

    // ------------------------------------------------------------ unsubscribe
    // First half: STARTS_IN_FLIGHT at a time. Second half: all at once, as SipGateway.stop()
    // does, which closes the user agent STOP_WAIT_MS later whatever is still pending; so here.
    const half = Math.floor(n / 2);
    const paced = mailboxes.slice(0, half);
    const burst = mailboxes.slice(half);
    const clean = (list: Mailbox[]): number => list.filter((mb) => mb.finalNotifies > 0).length;
    progress(`unsubscribing ${paced.length}, ${STARTS_IN_FLIGHT} at a time`);
    let retransmissionsBeforeStop = retransmissions;
    let dropsBeforeStop = udpDrops(ua.localPort);
    const p0 = performance.now();
    let nextOut = 0;
    let pacedDone = 0;
    // A dialog SIPp lost track of (see the scenario) costs a Timer F (32 s): the budget bounds it.
    const pacedDeadline = p0 + PACED_UNSUBSCRIBE_BUDGET_MS;
    await Promise.race([
      Promise.all(
        Array.from({ length: STARTS_IN_FLIGHT }, async () => {
          while (nextOut < paced.length && performance.now() < pacedDeadline) {
            await paced[nextOut++]!.sub.unsubscribe().catch(() => undefined);
            pacedDone++;
          }
        }),
      ),
      sleep(PACED_UNSUBSCRIBE_BUDGET_MS),
    ]);
    const pacedMs = performance.now() - p0;
    if (pacedDone < paced.length) progress(`paced unsubscribe: out of time after ${pacedDone} of ${paced.length}`);
    report(`paced unsubscribe (${STARTS_IN_FLIGHT} in flight, ${pacedDone} of ${paced.length} mailboxes): rate`, (1000 * pacedDone) / pacedMs, "unsubscribes/s");
    report("paced unsubscribe: unsubscribed cleanly (final NOTIFY received)", clean(paced), "mailboxes");
    report("paced unsubscribe: SUBSCRIBE retransmissions", retransmissions - retransmissionsBeforeStop, "retransmissions");
    report("paced unsubscribe: UDP datagrams dropped by the kernel for the user agent", udpDrops(ua.localPort) - dropsBeforeStop, "datagrams");

    progress(`unsubscribing ${burst.length} at once`);
    retransmissionsBeforeStop = retransmissions;
    dropsBeforeStop = udpDrops(ua.localPort);
    let settled = 0;
    const b0 = performance.now();
    const all = Promise.all(burst.map((mb) => mb.sub.unsubscribe().catch(() => undefined).finally(() => settled++)));
    await Promise.race([all, sleep(STOP_WAIT_MS)]);
    const burstMs = performance.now() - b0;
    report(`${burst.length} unsubscribes at once: unsubscribed cleanly within SipGateway.stop()'s ${STOP_WAIT_MS / 1000} s`, clean(burst), "mailboxes");
    report(`${burst.length} unsubscribes at once: unsubscribe() settled in that time`, settled, "mailboxes");
    report(`${burst.length} unsubscribes at once: time to the last settled, or the limit`, burstMs, "ms");
    report(`${burst.length} unsubscribes at once: SUBSCRIBE retransmissions`, retransmissions - retransmissionsBeforeStop, "retransmissions");
    report(`${burst.length} unsubscribes at once: UDP datagrams dropped by the kernel for the user agent`, udpDrops(ua.localPort) - dropsBeforeStop, "datagrams");
    report("SUBSCRIBE retransmissions over the whole run", retransmissions, "retransmissions");
    report("UDP datagrams dropped by the kernel for the user agent over the whole run", udpDrops(ua.localPort), "datagrams");
  } catch (err) {
    console.log(`SIP UA: ABORTED (figures so far follow): ${(err as Error).message}`);
    process.exitCode = 1;
  } finally {
    await ua.close();
    // SIPp ends by itself after -m calls; when the ramp was cut short it is told to stop.
    const ended = await Promise.race([sipp.done.then(() => true), sleep(2_000).then(() => false)]);
    if (!ended) {
      sipp.stop();
      if (!(await Promise.race([sipp.done.then(() => true), sleep(2_000).then(() => false)]))) sipp.kill();
    }
    const s = await sipp.done;
    const totals = sippTotals(s.out);
    progress(`SIPp exit ${s.code ?? s.signal}; calls successful ${totals.successful ?? "?"}, failed ${totals.failed ?? "?"}`);
    if (totals.failed !== undefined) results.push({ name: "SIPp calls failed", value: totals.failed, unit: "calls" });
    if (s.code !== 0 || (totals.failed ?? 0) > 0) {
      console.error(`SIPp output (tail):\n${s.out.slice(-1500)}\nSIPp errors (tail):\n${s.errors.slice(-2000)}`);
    }
    if (problems.length) console.error(`user agent log, warnings and odd info (first ${problems.length}):\n${problems.join("\n")}`);
  }
  results.push({ name: "run time", value: (performance.now() - runStarted) / 1000, unit: "s" });
  return results;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await benchSip()) console.log(`SIP UA: ${r.name}: ${Math.round(r.value).toLocaleString("en")} ${r.unit}`);
}
