/**
 * The fault scenario of issue 7, shared by `test/e2e/faults.test.ts` (short schedules) and
 * `bench/soak.ts` (a long one): the bridge runs behind fault proxies (bridge -> Synapse and
 * Synapse -> bridge) while several users get MWI updates from two webhook systems, Synapse
 * restarts and the bridge is killed with SIGKILL at random points; then, with the faults off and
 * the bridge quiet, every user's rooms are read through the client-server API and checked:
 *
 * - every room shows the true final state (mailbox state event, room name, summary) and the last
 *   message of each mailbox tells it: nothing accepted (answered 202) is lost;
 * - no message twice: by `org.voicemail.outbox_id` in the content when the bridge sets it, and
 *   in any case no two messages telling the same counts of a mailbox (each accepted update has
 *   counts of its own) and no two other bot messages with the same body;
 * - no second DM: exactly one room per user and system bot that both are in (or that the bot
 *   invited the user to), at most one with the main bot;
 * - per-room order: the counts told by successive messages of a mailbox never go back to an
 *   older update, and every message tells an update that was accepted.
 *
 * Everything random comes from one seed, printed with every result; FAULT_SEED replays it (the
 * same plan and the same fault choices per request; which request comes when depends on timing).
 */
import { copyFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClientEvent, type MatrixClient } from "matrix-js-sdk";
import { MWI_EVENT_TYPE, MWI_SUMMARY_EVENT_TYPE, mailboxStateKey } from "../../src/core/events.js";
import { postWebhook } from "../testbed/bridgeProcess.js";
import { FAULT_KINDS, FaultProxy, randomSchedule, seededRng, type FaultAction, type FaultKind, type FaultRule, type Rng } from "../testbed/faultProxy.js";
import { freePort } from "../testbed/ports.js";
import { waitForEvent } from "../testbed/matrixClient.js";
import { World, type User } from "../e2e/world.js";

const SECRET = "fault-webhook-secret-of-at-least-32-characters";
export const MAIN_BOT = "@voicemail:localhost";
export const SYSTEMS = [
  { id: "carrier", name: "Carrier Voicemail", bot: "@vm_carrier:localhost" },
  { id: "office", name: "Office Voicemail", bot: "@vm_office:localhost" },
] as const;
/** The field the delivery work adds to every message (issue 7, point 1). */
export const OUTBOX_ID_FIELD = "org.voicemail.outbox_id";

/** Quiet for this long with faults off: whatever is still wrong stays wrong. */
const SETTLED_IDLE_MS = 70_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Fault rules

const SEND = /\/rooms\/[^/]+\/send\//;
const STATE = /\/rooms\/[^/]+\/state\//;
const CREATE_ROOM = /\/createRoom$/;

/** Bridge -> Synapse: where the known bugs live (sends, state events, room creation), and a little everywhere. */
export function homeserverRules(): FaultRule[] {
  const errors = (rng: Rng): FaultAction =>
    rng.pick<FaultAction>([
      { kind: "drop-answer", hangMs: rng.chance(0.3) ? rng.int(200, 2000) : 0 },
      { kind: "drop-answer" },
      { kind: "reset", forward: rng.pick(["none", "partial", "all"] as const) },
      { kind: "429", retryAfterMs: rng.int(100, 2000) },
      { kind: "502" },
      { kind: "delay", ms: rng.int(100, 3000) },
    ]);
  return [
    { method: /^POST$/, path: CREATE_ROOM, probability: 0.5, action: errors },
    { method: /^PUT$/, path: SEND, probability: 0.25, action: errors },
    { method: /^PUT$/, path: STATE, probability: 0.18, action: errors },
    {
      probability: 0.08,
      action: (rng) =>
        rng.pick<FaultAction>([
          { kind: "refuse", forMs: rng.int(200, 2500) },
          { kind: "delay", ms: rng.int(100, 2000) },
          { kind: "502" },
          { kind: "429", retryAfterMs: rng.int(100, 1500) },
          { kind: "reset", forward: "none" },
        ]),
    },
  ];
}

/**
 * Synapse -> bridge: lost and late transactions. Kept rare: Synapse marks the appservice down
 * and backs off (2 s doubling), so a run of these would stall the test, not test the bridge.
 */
export function appserviceRules(): FaultRule[] {
  return [
    {
      method: /^PUT$/,
      path: /\/transactions\//,
      probability: 0.08,
      action: (rng) =>
        rng.pick<FaultAction>([
          { kind: "drop-answer" },
          { kind: "reset", forward: "all" },
          { kind: "502" },
          { kind: "delay", ms: rng.int(100, 1500) },
          { kind: "refuse", forMs: rng.int(200, 1000) },
        ]),
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// The world behind the proxies

export class FaultWorld {
  readonly lines: string[] = [];
  private t0 = Date.now();

  private constructor(
    readonly world: World,
    readonly hsProxy: FaultProxy,
    readonly asProxy: FaultProxy,
    readonly admin: User,
    readonly adminRoom: string,
    private readonly logSink: (line: string) => void,
  ) {}

  /** Synapse, the bridge behind two fault proxies (faults off), and an admin in a DM with the main bot. */
  static async create(logSink: (line: string) => void = () => {}): Promise<FaultWorld> {
    const synapsePort = await freePort();
    const bridgePort = await freePort();
    const early: string[] = [];
    // Until the world exists, proxy lines wait here; then they go to its log, with times.
    let sink = (line: string): void => void early.push(line);
    const hsProxy = await FaultProxy.start({ name: "hs", target: `http://127.0.0.1:${synapsePort}`, log: (l) => sink(l) });
    const asProxy = await FaultProxy.start({ name: "as", target: `http://127.0.0.1:${bridgePort}`, log: (l) => sink(l) });
    let world: World;
    try {
      world = await World.create({
        synapsePort,
        bridgePort,
        homeserverUrl: hsProxy.url,
        appserviceUrl: asProxy.url,
        systems: SYSTEMS.map((s) => ({ id: s.id, name: s.name, botLocalpart: s.bot.slice(1).split(":")[0], kind: "webhook", webhook: { secret: SECRET } })),
      });
    } catch (err) {
      await hsProxy.close();
      await asProxy.close();
      throw err;
    }
    const admin = await world.user("admin");
    const adminRoom = await world.openDm(admin, MAIN_BOT);
    const fw = new FaultWorld(world, hsProxy, asProxy, admin, adminRoom, logSink);
    sink = (l) => fw.log(l);
    for (const l of early) fw.log(l);
    return fw;
  }

  /** One line of the run's log, with the time since the round began. */
  log(line: string): void {
    const stamped = `[+${((Date.now() - this.t0) / 1000).toFixed(1)}s] ${line}`;
    this.lines.push(stamped);
    this.logSink(stamped);
  }

  markRound(): void {
    this.t0 = Date.now();
    this.lines.length = 0;
  }

  faultsOff(): void {
    this.hsProxy.schedule = undefined;
    this.asProxy.schedule = undefined;
  }

  async close(): Promise<void> {
    this.faultsOff();
    await this.world.close();
    await this.hsProxy.close();
    await this.asProxy.close();
  }
}

// ---------------------------------------------------------------------------------------------
// A round

export interface RoundOptions {
  seed: number;
  /** Distinguishes the users and mailboxes of several rounds in one world. */
  tag: string;
  users: number;
  updatesPerMailbox: number;
  /** Pause before each update of a mailbox, ms (drawn uniformly). */
  gapMs: [number, number];
  /** Faults the bridge -> Synapse schedule may choose (one-shot disruption triggers not counted). */
  faultBudget: number;
  /** Faults the Synapse -> bridge schedule may choose. */
  appserviceFaultBudget: number;
  synapseRestarts: number;
  bridgeKills: number;
  /** How long to wait for the bridge to settle once the faults are off. */
  quietTimeoutMs: number;
}

export interface RoundResult {
  seed: number;
  /** Faults applied in this round, by kind (both proxies). */
  faults: Record<FaultKind, number>;
  homeserverFaults: number;
  appserviceFaults: number;
  synapseRestarts: number;
  bridgeKills: number;
  bridgeStartFailures: number;
  updatesAccepted: number;
  webhookRetries: number;
  /** Whether the bridge put `org.voicemail.outbox_id` into its messages (the duplicate check used it). */
  outboxIdSeen: boolean;
  violations: string[];
  /** The round's log (faults, disruptions, waits), the violations and the bridge's lines about them. */
  evidence: string;
  evidenceFile: string;
}

interface Mailbox {
  user: User;
  system: (typeof SYSTEMS)[number];
  mailbox: string;
  /** Planned updates: old = i (1, 2, ...) makes each one distinguishable; new drawn. */
  plan: { gapMs: number; new: number; old: number }[];
  accepted: { new: number; old: number; at: number }[];
}

interface Disruption {
  atMs: number;
  what: "synapse-restart" | "bridge-kill";
  /** "send": at the next message sent after atMs, once Synapse accepted it and before the bridge hears so. */
  trigger: "time" | "send";
}

/** Runs one seeded round in the world and checks the invariant; never throws for a violation. */
export async function runRound(fw: FaultWorld, opts: RoundOptions): Promise<RoundResult> {
  fw.markRound();
  const seedText = `seed=${opts.seed}`;
  fw.log(`round ${opts.tag} ${seedText}: ${opts.users} users x ${SYSTEMS.length} systems, ${opts.updatesPerMailbox} updates each, fault budget ${opts.faultBudget}+${opts.appserviceFaultBudget}, ${opts.synapseRestarts} Synapse restart(s), ${opts.bridgeKills} bridge kill(s)`);
  const rng = seededRng(opts.seed);
  const hsRng = rng.fork();
  const asRng = rng.fork();
  const planRng = rng.fork();
  const { world } = fw;
  const countsBefore = { hs: { ...fw.hsProxy.counts }, as: { ...fw.asProxy.counts } };
  const stats = { restarts: 0, kills: 0, startFailures: 0, retries: 0 };
  const violations: string[] = [];

  // The plan, drawn before anything runs so that timing cannot change it.
  const users: User[] = [];
  for (let i = 0; i < opts.users; i++) users.push(await world.user(`${opts.tag}u${i}`));
  const mailboxes: Mailbox[] = users.flatMap((user, i) =>
    SYSTEMS.map((system, s) => ({
      user,
      system,
      mailbox: `${opts.tag}${i}${s}`.replace(/[^0-9a-z]/gi, ""),
      plan: Array.from({ length: opts.updatesPerMailbox }, (_, k) => ({ gapMs: planRng.int(opts.gapMs[0], opts.gapMs[1]), new: planRng.int(0, 5), old: k + 1 })),
      accepted: [],
    })),
  );
  const span = (opts.updatesPerMailbox * (opts.gapMs[0] + opts.gapMs[1])) / 2;
  const disruptions: Disruption[] = [
    ...Array.from({ length: opts.synapseRestarts }, () => "synapse-restart" as const),
    ...Array.from({ length: opts.bridgeKills }, () => "bridge-kill" as const),
  ]
    .map((what) => ({ what, atMs: planRng.int(Math.round(span * 0.1), Math.round(span * 0.8)), trigger: planRng.chance(0.5) ? ("send" as const) : ("time" as const) }))
    .sort((a, b) => a.atMs - b.atMs);
  for (const d of disruptions) fw.log(`plan: ${d.what} at ${d.atMs} ms (${d.trigger === "send" ? "on the next message send, answer held" : "wherever the bridge is"})`);

  const joiners = users.map((u) => autoJoin(u.client, (l) => fw.log(l)));
  const hs = randomSchedule(hsRng, homeserverRules(), opts.faultBudget);
  const as = randomSchedule(asRng, appserviceRules(), opts.appserviceFaultBudget);
  fw.hsProxy.schedule = hs.schedule;
  fw.asProxy.schedule = as.schedule;
  let started = Date.now();

  const startBridge = async (): Promise<void> => {
    // As systemd would: start again until it runs.
    for (let attempt = 1; ; attempt++) {
      try {
        await world.bridge.start(45_000);
        return;
      } catch (err) {
        stats.startFailures++;
        const first = (err as Error).message.split("\n").filter((l) => /ERROR|exited|not ready/.test(l)).slice(0, 3).join(" | ");
        fw.log(`bridge start ${attempt} failed: ${first}`);
        await world.bridge.kill();
        if (attempt >= 10) throw err;
        await sleep(1000 * attempt);
      }
    }
  };

  let bridgeUp: Promise<void> = Promise.resolve();
  const disrupt = async (d: Disruption): Promise<void> => {
    if (d.what === "synapse-restart") {
      fw.log("Synapse restarts");
      await world.hs.restart();
      stats.restarts++;
      fw.log("Synapse is back");
    } else {
      fw.log("bridge killed (SIGKILL)");
      await world.bridge.kill();
      stats.kills++;
    }
  };
  const afterDisruption = async (d: Disruption): Promise<void> => {
    if (d.what !== "bridge-kill") return;
    await sleep(planRng.int(0, 2000));
    fw.log("bridge starts again");
    bridgeUp = startBridge();
    await bridgeUp;
    fw.log("bridge ready");
  };
  let linksDone!: () => void;
  const linksReady = new Promise<void>((r) => (linksDone = r));
  const disruptor = (async () => {
    // The plan's times count from the first update on.
    await linksReady;
    for (const d of disruptions) {
      const wait = started + d.atMs - Date.now();
      if (wait > 0) await sleep(wait);
      if (d.trigger === "send") {
        let done: Promise<void> | undefined;
        const armed = hs.once({ method: /^PUT$/, path: /\/send\/m\.room\.message\//, action: () => ({ kind: "drop-answer", hold: () => (done = disrupt(d)) }) });
        const fired = await Promise.race([armed.fired.then(() => true), sleep(10_000).then(() => false)]);
        if (!fired && armed.cancel()) {
          fw.log(`no message sent within 10 s: ${d.what} now instead`);
          await disrupt(d);
        } else {
          await armed.fired;
          while (!done) await sleep(10);
          await done;
        }
      } else {
        await disrupt(d);
      }
      await afterDisruption(d);
    }
  })();

  const post = async (m: Mailbox, update: { new: number; old: number }): Promise<boolean> => {
    const body = { mailbox: m.mailbox, waiting: update.new > 0, new: update.new, old: update.old };
    const deadline = Date.now() + 180_000;
    for (;;) {
      let status: number | string;
      try {
        status = (await postWebhook(world.bridgeUrl, m.system.id, body, { secret: SECRET })).status;
      } catch (err) {
        status = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      }
      if (status === 202) return true;
      if (typeof status === "number" && status >= 400 && status < 500 && status !== 429) {
        throw new Error(`${seedText}: webhook ${m.system.id}/${m.mailbox} answered ${status}: the test's request is wrong`);
      }
      stats.retries++;
      if (Date.now() > deadline) {
        violations.push(`${seedText}: the webhook of ${m.system.id} did not accept ${m.mailbox} ${update.new}/${update.old} for 180 s (last: ${status})`);
        return false;
      }
      await sleep(300);
    }
  };

  // Links, under faults: the welcome notice opens the DM (createRoom), the first thing at risk.
  const linked = await Promise.all(mailboxes.map((m) => adminLink(fw, m.user.userId, m.system, m.mailbox)));
  linked.forEach((ok, i) => {
    if (!ok) violations.push(`${seedText}: !admin link ${mailboxes[i]!.user.userId} ${mailboxes[i]!.system.id} ${mailboxes[i]!.mailbox} got no answer after ${LINK_TRIES} tries`);
  });
  fw.log(`links done`);
  started = Date.now();
  linksDone();

  await Promise.all(
    mailboxes.map(async (m) => {
      for (const update of m.plan) {
        await sleep(update.gapMs);
        if (!(await post(m, update))) return;
        m.accepted.push({ ...update, at: Date.now() });
      }
    }),
  );
  fw.log(`all updates sent: ${mailboxes.reduce((n, m) => n + m.accepted.length, 0)} accepted, ${stats.retries} webhook retries`);
  await disruptor;
  await bridgeUp;
  fw.faultsOff();
  fw.log(`faults off: ${fw.hsProxy.total - sum(countsBefore.hs)} bridge->Synapse, ${fw.asProxy.total - sum(countsBefore.as)} Synapse->bridge`);

  // Quiet: the rooms show the final state and the bridge sent nothing for a while (bounded).
  const quietSince = Date.now();
  let found = await inspect(fw, mailboxes, seedText);
  for (;;) {
    const idleMs = fw.hsProxy.inFlight === 0 ? Date.now() - fw.hsProxy.lastActivityAt : 0;
    if (found.violations.length === 0 && idleMs > 4000) break;
    // Longer than the bridge's longest retry pause (60 s, RETRY_BACKOFF in delivery/roomWriter.ts): it had its chance.
    if (idleMs > SETTLED_IDLE_MS) {
      fw.log(`the bridge sent nothing for ${Math.round(idleMs / 1000)} s (${found.violations.length} violation(s) left)`);
      break;
    }
    if (Date.now() - quietSince > opts.quietTimeoutMs) {
      fw.log(`not settled ${Math.round(opts.quietTimeoutMs / 1000)} s after the faults stopped (${found.violations.length} violation(s) left)`);
      break;
    }
    await sleep(1500);
    found = await inspect(fw, mailboxes, seedText);
  }
  fw.log(`checked ${((Date.now() - quietSince) / 1000).toFixed(1)} s after the faults stopped`);
  for (const stop of joiners) stop();
  violations.push(...found.violations);

  const faults = Object.fromEntries(
    FAULT_KINDS.map((k) => [k, fw.hsProxy.counts[k] - countsBefore.hs[k] + fw.asProxy.counts[k] - countsBefore.as[k]]),
  ) as Record<FaultKind, number>;
  const result: RoundResult = {
    seed: opts.seed,
    faults,
    homeserverFaults: fw.hsProxy.total - sum(countsBefore.hs),
    appserviceFaults: fw.asProxy.total - sum(countsBefore.as),
    synapseRestarts: stats.restarts,
    bridgeKills: stats.kills,
    bridgeStartFailures: stats.startFailures,
    updatesAccepted: mailboxes.reduce((n, m) => n + m.accepted.length, 0),
    webhookRetries: stats.retries,
    outboxIdSeen: found.outboxIdSeen,
    violations,
    evidence: "",
    evidenceFile: join(mkdtempSync(join(tmpdir(), "voicemail-faults-")), `round-${opts.tag}-seed-${opts.seed}.log`),
  };
  result.evidence = evidence(fw, result, found.roomIds);
  writeFileSync(result.evidenceFile, `${result.evidence}\n\n--- round log\n${fw.lines.join("\n")}\n`);
  // Synapse's data directory goes with the world: keep its log next to the evidence.
  if (violations.length) copyFileSync(fw.world.hs.logFile, `${result.evidenceFile}.homeserver.log`);
  return result;
}

const sum = (counts: Record<FaultKind, number>) => FAULT_KINDS.reduce((n, k) => n + counts[k], 0);

/** One line: what the round survived. */
export function describeRound(r: RoundResult): string {
  const kinds = FAULT_KINDS.map((k) => `${k} ${r.faults[k]}`).join(", ");
  return (
    `seed=${r.seed}: ${r.homeserverFaults + r.appserviceFaults} faults (${kinds}; ${r.homeserverFaults} bridge->Synapse, ${r.appserviceFaults} Synapse->bridge), ` +
    `${r.synapseRestarts} Synapse restart(s), ${r.bridgeKills} bridge kill(s), ${r.bridgeStartFailures} failed bridge start(s), ` +
    `${r.updatesAccepted} updates accepted (${r.webhookRetries} webhook retries); duplicates checked by ${r.outboxIdSeen ? OUTBOX_ID_FIELD + " and counts" : "counts and bodies (no " + OUTBOX_ID_FIELD + " in the messages)"}; ` +
    (r.violations.length ? `${r.violations.length} violation(s)` : "invariant holds")
  );
}

/** The user accepts every invite from a bridge bot, retrying while the homeserver is away. */
function autoJoin(client: MatrixClient, log: (line: string) => void): () => void {
  const joining = new Set<string>();
  let stopped = false;
  const scan = (): void => {
    for (const room of client.getRooms()) {
      if (room.getMyMembership() !== "invite" || joining.has(room.roomId)) continue;
      joining.add(room.roomId);
      void (async () => {
        for (let attempt = 0; !stopped; attempt++) {
          try {
            await client.joinRoom(room.roomId);
            log(`${client.getUserId()} joined ${room.roomId} (invited by ${room.getDMInviter() ?? "?"})`);
            return;
          } catch (err) {
            if (attempt % 10 === 0) log(`${client.getUserId()} could not join ${room.roomId} yet: ${(err as Error).message}`);
            await sleep(1000);
          }
        }
      })();
    }
  };
  client.on(ClientEvent.Room, scan);
  client.on(ClientEvent.Sync, scan);
  const timer = setInterval(scan, 1000);
  scan();
  return () => {
    stopped = true;
    clearInterval(timer);
    client.off(ClientEvent.Room, scan);
    client.off(ClientEvent.Sync, scan);
  };
}

const LINK_TRIES = 6;

/** `!admin link` from the admin's DM; true once the bot answered (a lost answer is asked again). */
async function adminLink(fw: FaultWorld, userId: string, system: (typeof SYSTEMS)[number], mailbox: string): Promise<boolean> {
  const client = fw.admin.client;
  for (let attempt = 1; attempt <= LINK_TRIES; attempt++) {
    const sent = await client.sendTextMessage(fw.adminRoom, `!admin link ${userId} ${system.id} ${mailbox}`);
    try {
      await waitForEvent(
        client,
        fw.adminRoom,
        (e) => {
          if (e.getSender() !== MAIN_BOT) return false;
          const body = String(e.getContent().body ?? "");
          if (!body.includes(userId) || !body.includes(`mailbox ${mailbox}`)) return false;
          const events = client.getRoom(fw.adminRoom)!.getLiveTimeline().getEvents();
          return events.findIndex((x) => x.getId() === e.getId()) > events.findIndex((x) => x.getId() === sent.event_id);
        },
        15_000,
      );
      return true;
    } catch {
      fw.log(`no answer to !admin link ${userId} ${system.id} ${mailbox} (try ${attempt})`);
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// The invariant, read through the client-server API as each user

interface RawEvent {
  type: string;
  sender: string;
  state_key?: string;
  event_id: string;
  origin_server_ts: number;
  content: Record<string, unknown>;
}

async function api<T>(fw: FaultWorld, user: User, path: string): Promise<T> {
  const res = await fetch(`${fw.world.hs.url}${path}`, { headers: { authorization: `Bearer ${user.client.getAccessToken()}` } });
  if (!res.ok) throw new Error(`GET ${path.split("?")[0]} as ${user.userId}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

interface InviteSync {
  rooms?: { invite?: Record<string, { invite_state?: { events?: RawEvent[] } }> };
}

let syncCacheBuster = 0;

/**
 * Rooms the user is invited to. Synapse answers an identical /sync from a cache (for minutes),
 * so each call names a different (nonexistent) room to leave out.
 */
async function invitesOf(fw: FaultWorld, user: User): Promise<Record<string, { invite_state?: { events?: RawEvent[] } }>> {
  const filter = JSON.stringify({
    presence: { not_types: ["*"] },
    account_data: { not_types: ["*"] },
    room: { not_rooms: [`!nocache${++syncCacheBuster}:localhost`], timeline: { limit: 0 }, state: { not_types: ["*"] }, ephemeral: { not_types: ["*"] }, account_data: { not_types: ["*"] } },
  });
  const sync = await api<InviteSync>(fw, user, `/_matrix/client/v3/sync?timeout=0&filter=${encodeURIComponent(filter)}`);
  return sync.rooms?.invite ?? {};
}

async function messagesOf(fw: FaultWorld, user: User, roomId: string): Promise<RawEvent[]> {
  const out: RawEvent[] = [];
  let from: string | undefined;
  for (let page = 0; page < 50; page++) {
    const q = new URLSearchParams({ dir: "b", limit: "100", ...(from ? { from } : {}) });
    const res = await api<{ chunk: RawEvent[]; end?: string }>(fw, user, `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?${q}`);
    out.push(...res.chunk);
    if (!res.end || res.chunk.length === 0) break;
    from = res.end;
  }
  return out.reverse();
}

/**
 * The mailbox and counts a notification tells, from its first two lines (a new voicemail leads
 * with the caller, the counts follow): "... mailbox f00: 2 new, 5 old", "All voicemail heard in
 * ... mailbox f00: 7 old", "All voicemail deleted in ... mailbox f00".
 */
export function toldCounts(body: string): { mailbox: string; new: number; old: number } | undefined {
  for (const line of body.split("\n").slice(0, 2)) {
    const full = /mailbox (\S+): (\d+) new, (\d+) old/.exec(line);
    if (full) return { mailbox: full[1]!, new: Number(full[2]), old: Number(full[3]) };
    const oldOnly = /mailbox (\S+): (\d+) old/.exec(line);
    if (oldOnly) return { mailbox: oldOnly[1]!, new: 0, old: Number(oldOnly[2]) };
    const none = /^All voicemail deleted in .*mailbox (\S+)$/.exec(line);
    if (none) return { mailbox: none[1]!, new: 0, old: 0 };
  }
  return undefined;
}

/** What the rooms show against what was accepted; an empty list when the invariant holds. */
async function inspect(fw: FaultWorld, mailboxes: Mailbox[], seedText: string): Promise<{ violations: string[]; outboxIdSeen: boolean; roomIds: Set<string> }> {
  const violations: string[] = [];
  const roomIds = new Set<string>();
  let outboxIdSeen = false;
  const users = [...new Set(mailboxes.map((m) => m.user))];
  for (const user of users) {
    let joined: [string, { state: RawEvent[] }][];
    let invited: [string, { invite_state?: { events?: RawEvent[] } }][];
    try {
      const { joined_rooms: ids } = await api<{ joined_rooms: string[] }>(fw, user, "/_matrix/client/v3/joined_rooms");
      joined = [];
      for (const id of ids) joined.push([id, { state: await api<RawEvent[]>(fw, user, `/_matrix/client/v3/rooms/${encodeURIComponent(id)}/state`) }]);
      invited = Object.entries(await invitesOf(fw, user));
    } catch (err) {
      violations.push(`${seedText}: ${user.userId}: cannot read the rooms: ${(err as Error).message}`);
      continue;
    }
    const mine = mailboxes.filter((m) => m.user === user);
    const expectedNew = (systemId: string) => mine.filter((m) => m.system.id === systemId).reduce((n, m) => n + (m.accepted.at(-1)?.new ?? 0), 0);

    for (const bot of [MAIN_BOT, ...SYSTEMS.map((s) => s.bot)]) {
      const rooms = joined.filter(([, r]) => r.state.some((e) => e.type === "m.room.member" && e.state_key === bot && e.content.membership === "join"));
      const invites = invited.filter(([, r]) => (r.invite_state?.events ?? []).some((e) => e.type === "m.room.member" && e.state_key === user.userId && e.sender === bot));
      const count = rooms.length + invites.length;
      const system = SYSTEMS.find((s) => s.bot === bot);
      const ids = [...rooms, ...invites].map(([id]) => id);
      ids.forEach((id) => roomIds.add(id));
      if (system && count !== 1) {
        violations.push(`${seedText}: ${user.userId} has ${count} DM(s) with ${bot} (joined: ${rooms.map(([id]) => id).join(", ") || "none"}; invited: ${invites.map(([id]) => id).join(", ") || "none"}): ${count ? "a second DM" : "no DM"}`);
      }
      if (!system && count > 1) violations.push(`${seedText}: ${user.userId} has ${count} DMs with ${bot}: a second DM (${ids.join(", ")})`);
      if (!system) continue;

      for (const [roomId, room] of rooms) {
        const state = room.state;
        const stateOf = (type: string, key = "") => state.find((e) => e.type === type && (e.state_key ?? "") === key)?.content;
        const where = `${user.userId} in ${roomId} (${system.id})`;
        const sysNew = expectedNew(system.id);
        // A room of the bot that carries no MWI at all, beside another: one the bridge does not
        // know (a lost createRoom answer). One line says so instead of one per missing event.
        const orphan = count > 1 && !stateOf(MWI_SUMMARY_EVENT_TYPE) && !mine.some((m) => stateOf(MWI_EVENT_TYPE, mailboxStateKey(m.system.id, m.mailbox)));
        if (orphan) violations.push(`${seedText}: ${where}: shows none of the mailboxes (no ${MWI_EVENT_TYPE}, no summary, name ${JSON.stringify(stateOf("m.room.name")?.name)}): the extra DM does not show the final state`);
        const name = stateOf("m.room.name")?.name;
        const wantName = sysNew > 0 ? `${system.name} (${sysNew})` : system.name;
        if (!orphan && name !== wantName) violations.push(`${seedText}: ${where}: room name ${JSON.stringify(name)}, the final state is ${JSON.stringify(wantName)}`);

        const summary = stateOf(MWI_SUMMARY_EVENT_TYPE) as { total_new?: number; systems?: Record<string, { mailboxes?: Record<string, { new?: number; old?: number }> }> } | undefined;
        const totalNew = SYSTEMS.reduce((n, s) => n + expectedNew(s.id), 0);
        if (!orphan && summary?.total_new !== totalNew) violations.push(`${seedText}: ${where}: summary total_new ${summary?.total_new}, the final state is ${totalNew}`);
        for (const m of mine) {
          const last = m.accepted.at(-1);
          const shown = summary?.systems?.[m.system.id]?.mailboxes?.[m.mailbox];
          if (!orphan && last && (shown?.new !== last.new || shown?.old !== last.old)) {
            violations.push(`${seedText}: ${where}: summary shows ${m.system.id}/${m.mailbox} as ${shown?.new}/${shown?.old} (new/old), the last accepted update is ${last.new}/${last.old}`);
          }
        }

        const messages = (await messagesOf(fw, user, roomId)).filter((e) => e.sender === bot && e.type === "m.room.message");
        const byOutboxId = new Map<string, string>();
        const bodies = new Map<string, string>();
        for (const e of messages) {
          const field = e.content[OUTBOX_ID_FIELD];
          const ids = Array.isArray(field) ? field.map(String) : field !== undefined ? [String(field)] : [];
          if (ids.length) outboxIdSeen = true;
          for (const id of ids) {
            const earlier = byOutboxId.get(id);
            if (earlier) violations.push(`${seedText}: ${where}: outbox entry ${id} told twice: ${earlier} and ${e.event_id}`);
            byOutboxId.set(id, e.event_id);
          }
          const body = String(e.content.body ?? "");
          if (!toldCounts(body)) {
            const earlier = bodies.get(body);
            if (earlier) violations.push(`${seedText}: ${where}: the same message twice (${earlier} and ${e.event_id}): ${JSON.stringify(body.split("\n")[0])}`);
            bodies.set(body, e.event_id);
          }
        }

        for (const m of mine.filter((x) => x.system.id === system.id)) {
          const last = m.accepted.at(-1);
          const key = mailboxStateKey(m.system.id, m.mailbox);
          const mwi = stateOf(MWI_EVENT_TYPE, key) as { new?: number; old?: number; waiting?: boolean } | undefined;
          if (!orphan && last && (mwi?.new !== last.new || mwi?.old !== last.old || mwi?.waiting !== last.new > 0)) {
            violations.push(`${seedText}: ${where}: state ${MWI_EVENT_TYPE}/${key} is ${mwi ? `${mwi.new}/${mwi.old} waiting=${mwi.waiting}` : "missing"}, the last accepted update is ${last.new}/${last.old}`);
          }
          const told = messages
            .map((e) => ({ e, h: toldCounts(String(e.content.body ?? "")) }))
            .filter((x) => x.h?.mailbox === m.mailbox)
            .map((x) => ({ id: x.e.event_id, new: x.h!.new, old: x.h!.old }));
          const seen = new Map<number, string>();
          let newest = 0;
          for (const t of told) {
            const acceptedAs = m.accepted.find((a) => a.old === t.old);
            if (!acceptedAs || acceptedAs.new !== t.new) violations.push(`${seedText}: ${where}: ${t.id} tells ${m.mailbox} ${t.new}/${t.old}, which was never accepted`);
            const twice = seen.get(t.old);
            if (twice) violations.push(`${seedText}: ${where}: ${m.mailbox} ${t.new}/${t.old} told twice: ${twice} and ${t.id}`);
            else if (t.old < newest) violations.push(`${seedText}: ${where}: order: ${t.id} tells ${m.mailbox} update ${t.old} after update ${newest} was told`);
            seen.set(t.old, t.id);
            newest = Math.max(newest, t.old);
          }
          const lastTold = told.at(-1);
          if (!orphan && last && (lastTold?.old !== last.old || lastTold?.new !== last.new)) {
            violations.push(`${seedText}: ${where}: the last message about ${m.mailbox} tells ${lastTold ? `${lastTold.new}/${lastTold.old}` : "nothing"}, the last accepted update is ${last.new}/${last.old}`);
          }
        }
      }
    }
  }
  return { violations, outboxIdSeen, roomIds };
}

/** The violations with what the logs say about them. */
function evidence(fw: FaultWorld, r: RoundResult, roomIds: Set<string>): string {
  const bridgeLog = fw.world.bridge.log().split("\n");
  const notable = bridgeLog.filter((l) => /ERROR|WARN|stopped|opened DM|moved from|dropped|joined DM|left DM|forgotten/.test(l));
  const mentioned = [...roomIds].filter((id) => r.violations.some((v) => v.includes(id)));
  const roomLines = bridgeLog.filter((l) => mentioned.some((id) => l.includes(id)));
  return [
    describeRound(r),
    ...r.violations.map((v) => `VIOLATION ${v}`),
    `--- bridge log: ${fw.world.bridge.files.logPath}; Synapse log: ${fw.world.hs.logFile}`,
    ...(roomLines.length ? ["--- bridge lines about the rooms named above:", ...roomLines.slice(-60)] : []),
    "--- notable bridge lines (last 80):",
    ...notable.slice(-80),
    "--- faults and disruptions of the round:",
    ...fw.lines.filter((l) => /fault |Synapse|bridge |plan:|no answer|not settled|sent nothing|checked|faults off|all updates|links done|joined/.test(l)),
  ].join("\n");
}
