/**
 * End to end against a real Synapse from the test bed, in one run: webhook → bridge → Synapse →
 * the users' /sync. Latency of single updates, throughput of a burst, and the homeserver's own
 * limit for plain message sends on the same Synapse, for comparison.
 * Run directly: `node dist/bench/e2e.js`.
 *
 * The users are observed with raw /sync long polls (one fetch loop per user, filtered to the
 * system bot's m.room.message events), not matrix-js-sdk clients: twenty SDK clients would
 * measure the SDK on two cores more than the bridge.
 */

import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";

import type { MatrixEvent } from "matrix-js-sdk";

import { World } from "../test/e2e/world.js";
import { signedHeaders } from "../src/gateway/webhook/signature.js";
import { waitForEvent } from "../test/testbed/matrixClient.js";
import { ensureTestbed, testbedRoot, type RegisteredUser } from "../test/testbed/synapse.js";
import type { BenchResult } from "./parser.js";

const SYNAPSE_PORT = 18508;
const BRIDGE_PORT = 19508;
const SECRET = "bench-e2e-webhook-secret-0123456789abcdef";
const SYSTEM = "carrier";
const CARRIER_BOT = "@vm_carrier:localhost";
const MAIN_BOT = "@voicemail:localhost";

const USERS = 20;
const LATENCY_PROBES = 60;
/** The bridge sends at most about one message a second per room: probes keep further apart. */
const ROOM_SPACING_MS = 1500;
const BURST_ROUNDS = 10;
const BURST_CONCURRENCY = 8;
const RAW_SEQUENTIAL = 300;
const RAW_CONCURRENT_PER_LOOP = 50;

const WAIT_MS = 30_000;
const SYNC_POLL_MS = 20_000;
/** Each phase stops by itself after this long and reports what it measured. */
const LATENCY_BUDGET_MS = 45_000;
const RAW_BUDGET_MS = 45_000;

const mailboxOf = (i: number): string => String(5001 + i);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let runStarted = performance.now();
const progress = (line: string): void => console.error(`end-to-end … [${((performance.now() - runStarted) / 1000).toFixed(1)} s] ${line}`);

// ---------------------------------------------------------------------------------------------
// A user seen through the raw client-server API

interface Arrival {
  roomId: string;
  body: string;
  /** performance.now() when the /sync response carrying it was read. */
  at: number;
}

/** Timeline m.room.message from the system bot only; no presence, no account data, no state. */
const SYNC_FILTER = JSON.stringify({
  presence: { types: [] },
  account_data: { types: [] },
  room: {
    timeline: { types: ["m.room.message"], senders: [CARRIER_BOT], limit: 100 },
    state: { types: [] },
    ephemeral: { types: [] },
    account_data: { types: [] },
  },
});

class RawUser {
  readonly arrivals: Arrival[] = [];
  readonly invites = new Set<string>();
  syncErrors = 0;
  private readonly waiters = new Set<{ check: () => boolean }>();
  private readonly abort = new AbortController();
  private loop?: Promise<void>;

  constructor(
    readonly hsUrl: string,
    readonly account: RegisteredUser,
    readonly index: number,
  ) {}

  get userId(): string {
    return this.account.userId;
  }

  async api<T = Record<string, unknown>>(method: string, path: string, body?: unknown, timeoutMs = WAIT_MS): Promise<T> {
    const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(timeoutMs)]);
    const response = await fetch(`${this.hsUrl}/_matrix/client/v3${path}`, {
      method,
      headers: { authorization: `Bearer ${this.account.accessToken}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal,
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path} as ${this.userId}: ${response.status} ${text.slice(0, 200)}`);
    return JSON.parse(text) as T;
  }

  /** Starts the /sync long-poll loop; resolves after the first (immediate) sync. */
  async start(): Promise<void> {
    const first = await this.api<SyncResponse>("GET", `/sync?timeout=0&filter=${encodeURIComponent(SYNC_FILTER)}`);
    this.take(first);
    let since = first.next_batch;
    this.loop = (async () => {
      while (!this.abort.signal.aborted) {
        try {
          const path = `/sync?timeout=${SYNC_POLL_MS}&since=${encodeURIComponent(since)}&filter=${encodeURIComponent(SYNC_FILTER)}`;
          const batch = await this.api<SyncResponse>("GET", path, undefined, SYNC_POLL_MS + 15_000);
          this.take(batch);
          since = batch.next_batch;
        } catch (err) {
          if (this.abort.signal.aborted) return;
          this.syncErrors++;
          progress(`sync of ${this.userId} failed (${(err as Error).message}); retrying`);
          await sleep(500);
        }
      }
    })();
  }

  private take(batch: SyncResponse): void {
    const at = performance.now();
    for (const roomId of Object.keys(batch.rooms?.invite ?? {})) this.invites.add(roomId);
    for (const [roomId, room] of Object.entries(batch.rooms?.join ?? {})) {
      for (const event of room.timeline?.events ?? []) {
        if (event.type !== "m.room.message" || event.sender !== CARRIER_BOT) continue;
        this.arrivals.push({ roomId, body: String(event.content?.body ?? ""), at });
      }
    }
    for (const waiter of [...this.waiters]) waiter.check();
  }

  /** Resolves once `found` returns something (tried now and after every /sync batch). */
  waitFor<T>(what: string, found: () => T | undefined, timeoutMs = WAIT_MS): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const waiter = {
        check: (): boolean => {
          const value = found();
          if (value === undefined) return false;
          this.waiters.delete(waiter);
          clearTimeout(timer);
          resolve(value);
          return true;
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${this.userId})`));
      }, timeoutMs);
      timer.unref(); // the /sync loop keeps the process alive while it matters
      this.waiters.add(waiter);
      waiter.check();
    });
  }

  /** The first bot message in `roomId` after arrival index `from` whose body matches. */
  waitForMessage(roomId: string, pattern: RegExp, from = 0, timeoutMs = WAIT_MS): Promise<Arrival> {
    return this.waitFor(
      `a bot message matching ${pattern} in ${roomId}`,
      () => this.arrivals.slice(from).find((a) => a.roomId === roomId && pattern.test(a.body)),
      timeoutMs,
    );
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }
}

interface SyncResponse {
  next_batch: string;
  rooms?: {
    join?: Record<string, { timeline?: { events?: { type: string; sender: string; content?: { body?: unknown } }[] } }>;
    invite?: Record<string, unknown>;
  };
}

// ---------------------------------------------------------------------------------------------

/** Nearest-rank percentile. */
function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

async function pool<T>(items: T[], concurrency: number, task: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await task(items[i]!, i);
      }
    }),
  );
}

const countPattern = (mailbox: string, count: number): RegExp => new RegExp(`mailbox ${mailbox}: ${count} new, 0 old`);

/** Why the bench cannot run here, or undefined. A bench never builds the test bed (minutes). */
async function testbedMissing(): Promise<string | undefined> {
  if (process.platform !== "linux") return "the test bed needs Linux";
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return "the test bed needs root";
  if (!existsSync(join(testbedRoot(), ".testbed-ready"))) return `no test bed at ${testbedRoot()} (npm test builds it)`;
  const status = await ensureTestbed();
  return status.ok ? undefined : status.reason;
}

export async function benchEndToEnd(): Promise<BenchResult[]> {
  runStarted = performance.now();
  const missing = await testbedMissing();
  if (missing) {
    console.log(`end-to-end: SKIPPED, the test bed is unavailable: ${missing}`);
    return [];
  }

  let world: World;
  try {
    world = await World.create({
      synapsePort: SYNAPSE_PORT,
      bridgePort: BRIDGE_PORT,
      logLevel: "info",
      systems: [{ id: SYSTEM, name: "Carrier Voicemail", botLocalpart: "vm_carrier", kind: "webhook", webhook: { secret: SECRET } }],
    });
  } catch (err) {
    console.log(`end-to-end: SKIPPED, Synapse and the bridge did not start: ${(err as Error).message.split("\n")[0]}`);
    return [];
  }

  const results: BenchResult[] = [];
  const report = (name: string, value: number, unit: string): void => {
    results.push({ name, value, unit });
  };
  const users: RawUser[] = [];
  /** One signed MWI update; resolves on the 202. */
  const post = async (user: RawUser, count: number): Promise<void> => {
    const raw = JSON.stringify({ mailbox: mailboxOf(user.index), waiting: count > 0, new: count, old: 0 });
    const response = await fetch(`${world.bridgeUrl}/webhook/${SYSTEM}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...signedHeaders(SECRET, raw) },
      body: raw,
      signal: AbortSignal.timeout(WAIT_MS),
    });
    const text = await response.text();
    if (response.status !== 202) throw new Error(`webhook answered ${response.status}: ${text.slice(0, 200)}`);
  };

  try {
    // 1. Setup: users linked by the admin, each joined to its DM with the system bot.
    progress(`Synapse and the bridge are up; setting up ${USERS} users`);
    const setupStarted = performance.now();
    const admin = await world.user("admin");
    const adminRoom = await world.openDm(admin, MAIN_BOT);
    await pool(
      Array.from({ length: USERS }, (_, i) => i),
      4,
      async (i) => {
        const account = await world.hs.registerUser(`bench${i}`, `bench${i}-password-123`);
        const user = new RawUser(world.hs.url, account, i);
        await user.start();
        users[i] = user;
      },
    );
    // The link commands go out together; each reply names its user.
    const replies: Promise<MatrixEvent>[] = [];
    for (const user of users) {
      const escaped = user.userId.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      const reply = waitForEvent(admin.client, adminRoom, (e) => e.getSender() === MAIN_BOT && new RegExp(`to ${escaped}`).test(String(e.getContent().body ?? "")), 60_000);
      reply.catch(() => {}); // awaited below; a send failing first must not leave it unhandled
      replies.push(reply);
      await admin.client.sendTextMessage(adminRoom, `!admin link ${user.userId} ${SYSTEM} ${mailboxOf(user.index)}`);
    }
    for (const reply of await Promise.all(replies)) {
      const body = String(reply.getContent().body);
      if (!body.startsWith("Linked")) throw new Error(`admin link refused: ${body}`);
    }
    const dmRooms = await Promise.all(
      users.map(async (user) => {
        const roomId = await user.waitFor("the system bot's invite", () => [...user.invites][0], 60_000);
        await user.api("POST", `/rooms/${encodeURIComponent(roomId)}/join`, {});
        await user.waitForMessage(roomId, /now linked/, 0, 60_000);
        return roomId;
      }),
    );
    report(`setup of ${USERS} users (linked by an admin, DM joined)`, performance.now() - setupStarted, "ms");

    // 2. Latency: one update at a time, rotating over the users.
    progress(`${USERS} users linked and joined; ${LATENCY_PROBES} latency probes`);
    const counts = users.map(() => 0);
    const latencyDeadline = performance.now() + LATENCY_BUDGET_MS;
    const lastTouched = users.map((u) => Math.max(0, ...u.arrivals.map((a) => a.at)));
    const latencies: number[] = [];
    let lost = 0;
    for (let probe = 0; probe < LATENCY_PROBES; probe++) {
      if (performance.now() > latencyDeadline) {
        progress(`latency: out of time after ${probe} probes`);
        break;
      }
      const i = probe % USERS;
      const user = users[i]!;
      const wait = lastTouched[i]! + ROOM_SPACING_MS - performance.now();
      if (wait > 0) await sleep(wait);
      const count = ++counts[i]!;
      const from = user.arrivals.length;
      await post(user, count);
      const accepted = performance.now();
      try {
        const arrival = await user.waitForMessage(dmRooms[i]!, countPattern(mailboxOf(i), count), from, 20_000);
        latencies.push(arrival.at - accepted);
        lastTouched[i] = arrival.at;
      } catch (err) {
        lost++;
        lastTouched[i] = performance.now();
        progress(`latency probe ${probe}: ${(err as Error).message}`);
      }
    }
    latencies.sort((a, b) => a - b);
    if (latencies.length) {
      report("latency p50", percentile(latencies, 50), "ms");
      report("latency p99", percentile(latencies, 99), "ms");
      report("latency probes (webhook 202 to the message in the user's /sync)", latencies.length, "probes");
    }
    if (lost) report("latency probes not seen within 20 s", lost, "probes");

    // 3. Throughput: R rounds of one update per user, as fast as the webhook accepts them.
    progress(`burst: ${BURST_ROUNDS} rounds × ${USERS} users`);
    await sleep(ROOM_SPACING_MS);
    const jobs: { user: RawUser; count: number }[] = [];
    for (let round = 0; round < BURST_ROUNDS; round++) for (const [i, user] of users.entries()) jobs.push({ user, count: ++counts[i]! });
    const finals = [...counts];
    const arrivalsBefore = users.map((u) => u.arrivals.length);
    const burstStarted = performance.now();
    await pool(jobs, BURST_CONCURRENCY, ({ user, count }) => post(user, count));
    const acceptedAll = performance.now() - burstStarted;
    const finalArrivals = await Promise.all(
      users.map((user, i) => user.waitForMessage(dmRooms[i]!, countPattern(mailboxOf(i), finals[i]!), arrivalsBefore[i], 60_000)),
    );
    const deliveredAll = Math.max(...finalArrivals.map((a) => a.at)) - burstStarted;
    const burstMessages = users.reduce((sum, u, i) => sum + u.arrivals.slice(arrivalsBefore[i]).filter((a) => a.roomId === dmRooms[i]).length, 0);
    const updates = USERS * BURST_ROUNDS;
    const bridgeDelivered = (updates * 1000) / deliveredAll;
    report(`MWI updates accepted per second (${updates} in a burst, ${BURST_CONCURRENCY} at a time)`, (updates * 1000) / acceptedAll, "updates/s");
    report("MWI updates delivered per second (first post to every final count seen)", bridgeDelivered, "updates/s");
    report("burst: time to accept all", acceptedAll, "ms");
    report("burst: time to deliver all", deliveredAll, "ms");
    report(`burst: messages the users received for ${updates} updates (coalesced by design)`, burstMessages, "messages");

    // 4. The homeserver's own limit: plain message sends, same Synapse, same run, the users'
    // /sync loops still running (as during the burst).
    progress("raw Synapse sends");
    const rooms = await Promise.all(users.map((u) => u.api<{ room_id: string }>("POST", "/createRoom", { preset: "private_chat", name: "raw" })));
    const send = (user: RawUser, roomId: string, n: number, tag: string): Promise<unknown> =>
      user.api("PUT", `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${tag}-${n}`, { msgtype: "m.text", body: `raw ${n}` });
    const sequentialStarted = performance.now();
    let sequentialSent = 0;
    while (sequentialSent < RAW_SEQUENTIAL && performance.now() - sequentialStarted < RAW_BUDGET_MS) {
      await send(users[0]!, rooms[0]!.room_id, sequentialSent++, "seq");
    }
    report(`raw homeserver: 1 sequential send loop (${sequentialSent} messages)`, (sequentialSent * 1000) / (performance.now() - sequentialStarted), "messages/s");
    const concurrentStarted = performance.now();
    let concurrentSent = 0;
    await Promise.all(
      users.map(async (user, i) => {
        for (let n = 0; n < RAW_CONCURRENT_PER_LOOP && performance.now() - concurrentStarted < RAW_BUDGET_MS; n++) {
          await send(user, rooms[i]!.room_id, n, "par");
          concurrentSent++;
        }
      }),
    );
    const rawConcurrent = (concurrentSent * 1000) / (performance.now() - concurrentStarted);
    report(`raw homeserver: ${USERS} concurrent send loops (${concurrentSent} messages)`, rawConcurrent, "messages/s");
    report("bridge delivered / raw concurrent (updates/s over messages/s)", (100 * bridgeDelivered) / rawConcurrent, "%");
    const syncErrors = users.reduce((sum, u) => sum + u.syncErrors, 0);
    if (syncErrors) report("/sync errors during the run", syncErrors, "errors");
  } catch (err) {
    console.log(`end-to-end: ABORTED (figures so far follow): ${(err as Error).message}`);
    console.error(`bridge log:\n${world.bridge.logTail(20)}`);
    process.exitCode = 1;
  } finally {
    progress("cleaning up");
    await Promise.all(users.map((u) => u?.stop()));
    await world.close();
    rmSync(world.dir, { recursive: true, force: true });
  }
  results.push({ name: "run time", value: (performance.now() - runStarted) / 1000, unit: "s" });
  return results;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await benchEndToEnd()) {
    const shown = r.unit === "%" || r.unit === "s" ? r.value.toFixed(1) : Math.round(r.value).toString();
    console.log(`end-to-end: ${r.name}: ${shown} ${r.unit}`);
  }
}
