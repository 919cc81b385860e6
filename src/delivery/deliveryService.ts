/**
 * Delivery that never loses a notification and never tells one twice (F9). Every change is
 * written to the outbox before anything is sent, and leaves it only once the homeserver accepted
 * the events. Each target room has one worker, so a room sees its events in order; a target that
 * cannot take them now (invite not accepted, user offline with `when-online`, homeserver down)
 * keeps them, and what waited together is told as one message.
 *
 * Exactly once, without relying on Synapse's transaction cache (it forgets on restart): what a
 * round sends is an outbox batch, recorded in the store before the first request, with its entry
 * IDs, a stable ID (carried in the message as `org.voicemail.outbox_id`) and the message's
 * transaction ID. Each step the homeserver accepts (each notice, the message, each state event)
 * is recorded and never sent again. A batch is frozen once a request of it may have reached the
 * homeserver: later changes form the next batch. While every attempt failed before reaching it
 * (connection refused, or answered "not stored": 4xx, 429), later changes still join, with the
 * same transaction ID, so that what waited through an outage is still told as one message. Where
 * an answer was lost (reset, timeout, 5xx, a crash), the room's recent messages are read before
 * sending again; a state event whose answer was lost is compared with the room's state.
 *
 * No error ends a worker: every failure is retried with the one backoff (core/backoff.ts).
 */
import { createHash, randomUUID } from "node:crypto";
import { backoffDelay, type BackoffOptions } from "../core/backoff.js";
import type { Logger } from "matrix-appservice-bridge";
import type { BridgeConfig } from "../config/types.js";
import { DEFAULT_LIMITS } from "../config/schema.js";
import type { UserViews } from "./userViews.js";
import { coalesce, type CoalescedChange } from "../core/coalesce.js";
import { MWI_EVENT_TYPE, MWI_SUMMARY_EVENT_TYPE, mailboxStateKey } from "../core/events.js";
import { accountRoomName, dmRoomName, escapeHtml, mailboxesTopic, renderAggregate, renderNotification, type MailboxView, type RenderedText } from "../core/format.js";
import type { MailboxChange } from "../core/mwi.js";
import { buildSummary, mailboxStateContent } from "../core/summary.js";
import type { Bot, BotDirectory } from "../matrix/bots.js";
import { messageContent, noticeContent } from "../matrix/content.js";
import type { DmRooms } from "../matrix/dmRooms.js";
import { membershipOf } from "../matrix/membership.js";
import type { DmRoom, ExtraTarget, OutboxBatch, OutboxEntry, VoicemailStore } from "../store/store.js";
import type { VoicemailMetrics } from "../util/metrics.js";
import type { PresenceTracker } from "./presence.js";
import { classifyFailure, RETRY_BACKOFF, RoomWriter, type SendFailure } from "./roomWriter.js";
import { extraTarget, mainTarget, ownerCannotPost, parseTarget, systemTarget, type TargetKey } from "./targets.js";

/** The pace of delivery; tests make it quick. */
export interface DeliveryTiming {
  /** At most about one message a second per room: a flapping mailbox is told, not shouted. */
  minMessageIntervalMs: number;
  /** How often a target held for presence is looked at again, in case no presence event comes. */
  presenceRecheckMs: number;
  /**
   * An invite not accepted yet is looked at again (in case the join reaches the bridge late or
   * not at all: Synapse backs off from an appservice that was down): 15 to 30 s, doubling to 5 min.
   */
  inviteRecheck: BackoffOptions;
  /** A homeserver that is down or overloaded, or any other failure. */
  retry: BackoffOptions;
}

const DEFAULT_TIMING: DeliveryTiming = {
  minMessageIntervalMs: 1000,
  presenceRecheckMs: 15_000,
  inviteRecheck: { baseMs: 30_000, maxMs: 300_000 },
  retry: RETRY_BACKOFF,
};
/** A change that waited longer than this is told with "since <time>". */
const DELAYED_AFTER_MS = 30_000;


/** What a room shows now (remembered so that only changes are sent). */
type RoomShows = Partial<Pick<DmRoom, "lastSummary" | "lastName" | "lastTopic">>;

/** A state event of the room as a whole, and the field that remembers what the room shows. */
interface RoomState {
  field: keyof RoomShows;
  type: string;
  value: string;
  content: Record<string, unknown>;
  kind: string;
}

/** The room a target resolves to now, or why it cannot take anything now. */
type Resolved =
  | {
      ok: true;
      writer: RoomWriter;
      bot: Bot;
      /** A system's DM: that system's view; otherwise the aggregate of all systems. */
      systemId?: string;
      /** Rename the room with the count (never a group room of the user's). */
      rename?: string;
      /** In someone else's room the bot may lack the power for state events: then messages only. */
      stateOptional?: boolean;
      dm?: DmRoom;
      extra?: ExtraTarget;
    }
  | {
      ok: false;
      action: "wait" | "drop";
      reason: string;
      recheck?: "invite" | "presence";
      /** Waiting for an invite sent at this time: past the expiry its queue is cut to a resync. */
      invitedAt?: number;
    };

type Room = Extract<Resolved, { ok: true }>;

/** One round's view of its batch: what is done, and whether a request may have gone out before. */
interface Round {
  key: TargetKey;
  batch: OutboxBatch;
  /** A request of this batch may have reached the homeserver before this round: look first. */
  lookFirst: boolean;
  /** Outbox IDs of the bot's recent messages in the room, read once per round when needed. */
  found?: Map<string, string>;
}

export class DeliveryService {
  private seq = 0;
  private seqLoaded?: Promise<void>;
  private readonly workers = new Map<TargetKey, Promise<void>>();
  private readonly again = new Set<TargetKey>();
  private readonly attempts = new Map<TargetKey, number>();
  private readonly lastMessageAt = new Map<string, number>();
  private readonly sleepers = new Set<{ timer: NodeJS.Timeout; wake: () => void }>();
  /** The sleepers that back off from a homeserver that failed (not from a rate limit). */
  private readonly backingOff = new Set<() => void>();
  private readonly rechecks = new Map<TargetKey, NodeJS.Timeout>();
  private readonly inviteChecks = new Map<TargetKey, number>();
  private stopped = false;
  private readonly timing: DeliveryTiming;

  constructor(
    private readonly config: BridgeConfig,
    private readonly store: VoicemailStore,
    private readonly bots: BotDirectory,
    private readonly dms: DmRooms,
    private readonly views: UserViews,
    private readonly presence: PresenceTracker,
    private readonly log: Logger,
    private readonly metrics?: VoicemailMetrics,
    timing: Partial<DeliveryTiming> = {},
  ) {
    this.timing = { ...DEFAULT_TIMING, ...timing };
  }

  /** After a restart: continue numbering, and deliver whatever was waiting. */
  async start(): Promise<void> {
    await this.numbering();
    const waiting = await this.store.outboxEntries();
    if (waiting.length) this.log.info(`${waiting.length} notification(s) waiting from before the restart`);
    // Called once the homeserver answered the start-up: targets that backed off meanwhile go now.
    this.homeserverWell();
    for (const key of new Set(waiting.map((e) => e.targetKey))) this.kick(key);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.rechecks.values()) clearTimeout(timer);
    for (const sleeper of this.sleepers) {
      clearTimeout(sleeper.timer);
      sleeper.wake();
    }
    await Promise.all(this.workers.values());
  }

  /** The targets of a user's change: which rooms, and whether they get a message or only state. */
  private async targetsOf(userId: string, systemId: string): Promise<{ key: TargetKey; withMessage: boolean }[]> {
    const mode = (await this.store.getProfile(userId))?.notify ?? "per-system";
    const targets: { key: TargetKey; withMessage: boolean }[] = [];
    // A room that gets no messages still has its state events kept up to date, if it exists.
    const systemMessages = mode !== "summary";
    if (systemMessages || (await this.dms.get(userId, this.bots.forSystem(systemId)))) {
      targets.push({ key: systemTarget(userId, systemId), withMessage: systemMessages });
    }
    // Each system DM's summary covers all the user's systems: the user's other system DMs get the
    // change too, state only, through the outbox like everything else (retried, never lost).
    for (const other of this.views.systems.keys()) {
      if (other !== systemId && (await this.dms.get(userId, this.bots.forSystem(other)))) {
        targets.push({ key: systemTarget(userId, other), withMessage: false });
      }
    }
    const mainMessages = mode !== "per-system";
    if (mainMessages || (await this.dms.get(userId, this.bots.main))) {
      targets.push({ key: mainTarget(userId), withMessage: mainMessages });
    }
    for (const target of await this.store.listTargets(userId)) {
      if (target.status !== "refused" && target.removedAt === undefined) targets.push({ key: extraTarget(target.id), withMessage: true });
    }
    return targets;
  }

  /**
   * Numbering goes on from the stored entries before the first new one: an update can be accepted
   * (the webhook listener is open) before start(), and an entry numbered from 0 would sort before
   * older ones and be told first, its older neighbour last (the room would show stale counts).
   */
  private numbering(): Promise<void> {
    this.seqLoaded ??= this.store.maxOutboxSeq().then(
      (max) => {
        this.seq = Math.max(this.seq, max);
      },
      (err: unknown) => {
        this.seqLoaded = undefined;
        throw err;
      },
    );
    return this.seqLoaded;
  }

  private async entry(ownerId: string, targetKey: TargetKey, withMessage: boolean, fields: Partial<OutboxEntry>): Promise<OutboxEntry> {
    await this.numbering();
    return { id: randomUUID(), seq: ++this.seq, ownerId, targetKey, withMessage, createdAt: Date.now(), ...fields };
  }

  /**
   * The outbox entries of a change for every target of the user, not stored yet: the caller
   * stores them together with the mailbox's new state (`store.acceptChange`), then kicks them.
   */
  async prepareChange(userId: string, change: MailboxChange): Promise<OutboxEntry[]> {
    const targets = await this.targetsOf(userId, change.current.systemId);
    const stored = { kind: change.kind, current: change.current, ...(change.previous ? { previous: change.previous } : {}) };
    const entries: OutboxEntry[] = [];
    for (const t of targets) entries.push(await this.entry(userId, t.key, t.withMessage, { change: stored }));
    return entries;
  }

  /** Writes the change for every target of the user; resolves once it is stored. */
  async enqueueChange(userId: string, change: MailboxChange): Promise<TargetKey[]> {
    const entries = await this.prepareChange(userId, change);
    await this.store.addOutboxEntries(entries);
    return entries.map((e) => e.targetKey);
  }

  /**
   * Drops what still waits for one of the user's mailboxes (`!mwi off`): every change entry of
   * that mailbox not in a batch that may already be in the room. Such a batch (in flight, or
   * retried after a lost answer) may still finish: it cannot be called back.
   */
  async dropQueued(ownerId: string, systemId: string, mailbox: string): Promise<number> {
    const frozen = new Set((await this.store.outboxBatches()).filter((b) => !b.open).flatMap((b) => b.entryIds));
    const drop = (await this.store.outboxEntries()).filter(
      (e) => e.ownerId === ownerId && e.change?.current.systemId === systemId && e.change.current.mailbox === mailbox && !frozen.has(e.id),
    );
    await this.store.removeOutboxEntries(drop.map((e) => e.id));
    if (drop.length) this.log.info(`dropped ${drop.length} queued notification(s) of ${systemId}/${mailbox} for ${ownerId}: MWI is off`);
    return drop.length;
  }

  /** A notice from the main bot in the user's DM with it (about their targets), queued like everything else. */
  async enqueueMainNotice(userId: string, notice: RenderedText): Promise<TargetKey> {
    const key = mainTarget(userId);
    await this.store.addOutboxEntries([await this.entry(userId, key, true, { notice })]);
    this.kick(key);
    return key;
  }

  /** A notice from a system's bot in the user's DM with it, queued like everything else. */
  async enqueueNotice(userId: string, systemId: string, notice: RenderedText): Promise<TargetKey> {
    const key = systemTarget(userId, systemId);
    await this.store.addOutboxEntries([await this.entry(userId, key, true, { notice: { ...notice, systemId } })]);
    return key;
  }

  kick(key: TargetKey): void {
    if (this.stopped) return;
    if (this.workers.has(key)) {
      this.again.add(key);
      return;
    }
    const worker = this.work(key).finally(() => {
      this.workers.delete(key);
      if (this.again.delete(key)) this.kick(key);
    });
    this.workers.set(key, worker);
  }

  /** Something changed for this person (joined, came online): try what waits for them. */
  async kickPerson(userId: string): Promise<void> {
    // The user's own DMs are owned by them: found by owner, not by reading the whole outbox.
    for (const key of await this.store.outboxTargetKeys(userId)) {
      const target = parseTarget(key);
      if (target && target.kind !== "extra" && target.userId === userId) this.kick(key);
    }
  }

  /** Resolves when nothing is being delivered (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.workers.size) await Promise.all(this.workers.values());
  }

  private recheckLater(key: TargetKey, ms: number): void {
    if (this.rechecks.has(key)) return;
    const timer = setTimeout(() => {
      this.rechecks.delete(key);
      this.kick(key);
    }, ms);
    timer.unref();
    this.rechecks.set(key, timer);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const sleeper = {
        timer: setTimeout(() => {
          this.sleepers.delete(sleeper);
          resolve();
        }, ms),
        wake: resolve,
      };
      this.sleepers.add(sleeper);
    });
  }

  /**
   * A backoff after a failure that was not a rate limit. It ends early once the homeserver is seen
   * well again (another target delivered, or the bridge started): after a long outage every target
   * has backed off for up to a minute, and none should wait that long once the homeserver is back.
   */
  private async backOff(ms: number, failure: SendFailure): Promise<void> {
    if (failure.rateLimited) return this.sleep(ms);
    let wake!: () => void;
    const woken = new Promise<void>((resolve) => (wake = resolve));
    this.backingOff.add(wake);
    await Promise.race([this.sleep(ms), woken]);
    this.backingOff.delete(wake);
  }

  /** The homeserver took something: whoever backs off from its failures tries again now. */
  private homeserverWell(): void {
    for (const wake of this.backingOff) wake();
    this.backingOff.clear();
  }

  /** Runs until the target has nothing it can take now; whatever fails is retried, never the end. */
  private async work(key: TargetKey): Promise<void> {
    while (!this.stopped) {
      try {
        if (!(await this.step(key))) return;
      } catch (err) {
        // Resolving the room, opening a DM, the store, rendering: all retried the same way.
        const attempt = (this.attempts.get(key) ?? 0) + 1;
        this.attempts.set(key, attempt);
        const failure = classifyFailure(err, attempt, this.timing.retry);
        const afterMs = failure.kind === "retry" ? failure.afterMs : backoffDelay(attempt - 1, this.timing.retry);
        this.log.warn(`${key}: delivery interrupted (${failure.reason}); trying again in ${Math.round(afterMs)} ms`);
        await this.backOff(afterMs, failure);
      }
    }
  }

  /** The batch this round sends: the recorded one, or a new one of everything waiting. */
  private async currentBatch(key: TargetKey, waiting: OutboxEntry[]): Promise<{ batch?: OutboxBatch; entries: OutboxEntry[] }> {
    const batch = await this.store.getBatch(key);
    if (!batch || waiting.length === 0) {
      // A batch whose entries are all gone: delivered (the bridge stopped before the batch left) or dropped.
      if (batch) await this.store.completeBatch(batch);
      return { entries: waiting };
    }
    const ids = new Set(batch.entryIds);
    const inBatch = waiting.filter((e) => ids.has(e.id));
    if (inBatch.length === 0) {
      await this.store.completeBatch(batch);
      return { entries: waiting };
    }
    return { batch, entries: batch.open ? waiting : inBatch };
  }

  /** One round for a target; true when there may be more to do right away. */
  private async step(key: TargetKey): Promise<boolean> {
    const waiting = await this.store.outboxEntries(key);
    const { batch: recorded, entries } = await this.currentBatch(key, waiting);
    if (entries.length === 0) return false;
    const room = await this.resolve(key, entries);
    if (!room.ok) {
      if (room.action === "drop") {
        await this.store.removeOutboxEntries(waiting.map((e) => e.id));
        if (recorded) await this.store.completeBatch(recorded);
        this.metrics?.notifications.inc({ outcome: "dropped" }, waiting.length);
        this.log.info(`dropped ${waiting.length} notification(s) for ${key}: ${room.reason}`);
      } else {
        if (room.invitedAt !== undefined && !recorded) await this.expire(key, waiting, room.invitedAt);
        else this.log.debug(`holding ${entries.length} notification(s) for ${key}: ${room.reason}`);
        if (room.recheck) this.recheckLater(key, this.recheckDelay(key, room.recheck));
      }
      this.attempts.delete(key);
      return false;
    }
    this.inviteChecks.delete(key);
    if (entries.some((e) => e.withMessage)) {
      const wait = (this.lastMessageAt.get(room.writer.roomId) ?? 0) + this.timing.minMessageIntervalMs - Date.now();
      if (wait > 0) {
        // Meanwhile more changes may arrive: they are told together.
        await this.sleep(wait);
        return true;
      }
    }
    const round = await this.beginRound(key, room, entries, recorded);
    try {
      await this.deliver(room, entries, round);
      await this.store.completeBatch(round.batch);
      this.attempts.delete(key);
      this.homeserverWell();
      this.metrics?.notifications.inc({ outcome: "delivered" }, entries.length);
      // Rooms the bridge made (not a user's room target): the bridge info (MSC2346), once.
      const made = room.dm ?? (room.extra?.kind === "account" && room.extra.roomId ? { roomId: room.extra.roomId, userId: room.extra.ownerId, botUserId: room.bot.userId } : undefined);
      if (made) void this.dms.ensureBridgeInfo(made);
      for (const e of entries) {
        if (e.change) this.metrics?.deliverySeconds.observe({ system: e.change.current.systemId }, (Date.now() - e.createdAt) / 1000);
      }
      return true;
    } catch (err) {
      const attempt = (this.attempts.get(key) ?? 0) + 1;
      this.attempts.set(key, attempt);
      const failure = classifyFailure(err, attempt, this.timing.retry);
      this.metrics?.deliveryFailures.inc({ kind: failure.kind });
      if (!round.lookFirst && round.batch.done.every((d) => d.step.startsWith("state:")) && !failure.maybeStored) {
        // No message of it can be in the room: later changes may still join it. The state it set
        // (the rename that goes first) is set again for what the batch then says.
        await this.store.saveBatch({ ...round.batch, open: true, done: [] });
      }
      if (failure.kind === "gone") {
        this.log.warn(`${key}: the bot cannot post in ${room.writer.roomId} (${failure.reason}); opening a fresh room`);
        if (room.dm) await this.dms.forget(room.dm);
        if (room.extra) await this.store.updateTarget({ ...room.extra, status: "refused", refusedAt: Date.now() });
        if (attempt > 3) await this.sleep(5000);
        return true;
      }
      if (failure.kind === "fatal") {
        this.log.error(`${key}: the homeserver refused ${entries.length} notification(s) (${failure.reason}); they are dropped`);
        await this.store.completeBatch(round.batch);
        this.metrics?.notifications.inc({ outcome: "dropped" }, entries.length);
        return true;
      }
      this.log.warn(`${key}: delivery failed (${failure.reason}); retrying in ${Math.round(failure.afterMs)} ms`);
      await this.backOff(failure.afterMs, failure);
      return true;
    }
  }

  /**
   * A target that has not accepted its invite within `limits.inviteExpirySeconds` gathers no
   * queue: what waits is dropped, and in its place stays one entry per mailbox with the current
   * counts (a resync), which is what the room is shown once it accepts. Idempotent: a queue that
   * is already such a resync is left as it is.
   */
  private async expire(key: TargetKey, waiting: OutboxEntry[], invitedAt: number): Promise<void> {
    const expiryMs = ({ ...DEFAULT_LIMITS, ...this.config.limits }).inviteExpirySeconds * 1000;
    if (Date.now() - invitedAt < expiryMs) {
      this.log.debug(`holding ${waiting.length} notification(s) for ${key}: the invite is not accepted yet`);
      return;
    }
    const mailboxKey = (e: OutboxEntry) => JSON.stringify([e.change?.current.systemId, e.change?.current.mailbox]);
    const isResync = (e: OutboxEntry) => e.change?.kind === "counts" && !e.change.previous && !e.notice;
    if (waiting.every(isResync) && new Set(waiting.map(mailboxKey)).size === waiting.length) return;
    const ownerId = waiting[0]!.ownerId;
    const withMessage = waiting.some((e) => e.withMessage);
    const resync: OutboxEntry[] = [];
    for (const k of new Set(waiting.filter((e) => e.change).map(mailboxKey))) {
      const [systemId, mailbox] = JSON.parse(k) as [string, string];
      const current = await this.store.getMailboxState(systemId, mailbox);
      if (current) resync.push(await this.entry(ownerId, key, withMessage, { change: { kind: "counts", current } }));
    }
    // The resync first: a crash in between leaves a duplicate (told once, coalesced), never a loss.
    await this.store.addOutboxEntries(resync);
    await this.store.removeOutboxEntries(waiting.map((e) => e.id));
    this.log.info(`dropped ${waiting.length} notification(s) for ${key}: the invite was not accepted within ${Math.round(expiryMs / 1000)} s; the current counts are shown on join`);
  }

  private recheckDelay(key: TargetKey, why: "invite" | "presence"): number {
    if (why === "presence") return this.timing.presenceRecheckMs;
    const n = this.inviteChecks.get(key) ?? 0;
    this.inviteChecks.set(key, n + 1);
    return backoffDelay(n, this.timing.inviteRecheck);
  }

  /** Records the batch before its first request (and whenever it changed). */
  private async beginRound(key: TargetKey, room: Room, entries: OutboxEntry[], recorded?: OutboxBatch): Promise<Round> {
    const id = recorded?.id ?? randomUUID();
    let batch: OutboxBatch = recorded ?? { id, targetKey: key, entryIds: [], txnId: `vm.${id}`, roomId: room.writer.roomId, createdAt: Date.now(), open: true, done: [] };
    if (batch.roomId !== room.writer.roomId) {
      // A fresh room (the old one was gone): nothing of the batch is there yet.
      batch = { ...batch, roomId: room.writer.roomId, open: true, done: [] };
    }
    const lookFirst = !batch.open;
    if (batch.open || batch !== recorded) {
      batch = { ...batch, entryIds: entries.map((e) => e.id), open: false };
      await this.store.saveBatch(batch);
    }
    return { key, batch, lookFirst };
  }

  private isDone(round: Round, step: string): boolean {
    return round.batch.done.some((d) => d.step === step);
  }

  private async markDone(round: Round, step: string, eventId?: string): Promise<void> {
    round.batch = { ...round.batch, done: [...round.batch.done, { step, ...(eventId ? { eventId } : {}) }] };
    await this.store.saveBatch(round.batch);
  }

  /** Sends a message of the batch once: skipped when done, looked for first when a send may have been lost. */
  private async sendOnce(round: Round, room: Room, step: string, outboxId: string, content: Record<string, unknown>, txnId: string): Promise<boolean> {
    if (this.isDone(round, step)) return false;
    if (round.lookFirst) {
      round.found ??= await room.writer.findOutboxMessages(new Set([round.batch.id, ...round.batch.entryIds]));
      const eventId = round.found.get(outboxId);
      if (eventId) {
        this.log.info(`${round.key}: ${step} of batch ${round.batch.id} is in ${room.writer.roomId} already (${eventId}); not sent again`);
        await this.markDone(round, step, eventId);
        return false;
      }
    }
    await this.markDone(round, step, await room.writer.send("m.room.message", content, txnId));
    return true;
  }

  /** Sends a state event of the batch once (a lost answer: compared with the room's state first). */
  private async stateOnce(round: Round, writer: RoomWriter, type: string, stateKey: string, content: Record<string, unknown>, step = `state:${type}:${stateKey}`): Promise<boolean> {
    if (this.isDone(round, step)) return false;
    if (round.lookFirst && (await writer.stateIs(type, stateKey, content))) {
      await this.markDone(round, step);
      return false;
    }
    await writer.state(type, stateKey, content);
    await this.markDone(round, step);
    return true;
  }

  private async resolve(key: TargetKey, entries: OutboxEntry[]): Promise<Resolved> {
    const target = parseTarget(key);
    if (!target) return { ok: false, action: "drop", reason: "unknown target" };
    if (target.kind === "extra") return this.resolveExtra(target.targetId);
    if (target.kind === "sys" && !this.views.systems.has(target.systemId)) {
      return { ok: false, action: "drop", reason: `system ${target.systemId} is no longer configured` };
    }
    const bot = target.kind === "sys" ? this.bots.forSystem(target.systemId) : this.bots.main;
    const intent = this.bots.intent(bot);
    // Only a message is worth a new room; state alone goes where a room already is.
    // ensure() looks at the membership of a room not joined yet: the join may come late or never.
    let dm = entries.some((e) => e.withMessage) ? await this.dms.ensure(target.userId, bot) : await this.dms.get(target.userId, bot);
    if (!dm) return { ok: false, action: "drop", reason: "no room to keep up to date" };
    if (!dm.userJoined && (await membershipOf(intent, dm.roomId, target.userId)) === "join") {
      await this.dms.markJoined(dm);
      dm = { ...dm, userJoined: true };
    }
    if (!dm.userJoined) return { ok: false, action: "wait", reason: "the invite is not accepted yet", recheck: "invite", invitedAt: dm.createdAt };
    const profile = await this.store.getProfile(target.userId);
    // Asked as the DM's bot: it shares a room with the user, so the homeserver tells it.
    if (profile?.delivery === "when-online" && !(await this.presence.isOnline(target.userId, intent))) {
      // A presence push may be late or dropped: look again now and then.
      return { ok: false, action: "wait", reason: "the user is not online", recheck: "presence" };
    }
    return {
      ok: true,
      writer: new RoomWriter(intent, dm.roomId),
      bot,
      dm,
      rename: bot.displayName,
      ...(target.kind === "sys" ? { systemId: target.systemId } : {}),
    };
  }

  private async resolveExtra(targetId: string): Promise<Resolved> {
    const extra = await this.store.getTarget(targetId);
    if (!extra || extra.removedAt !== undefined) return { ok: false, action: "drop", reason: "the target was removed" };
    if (extra.status === "refused") return { ok: false, action: "drop", reason: "the target declined" };
    if (!extra.roomId) return { ok: false, action: "wait", reason: "the invite is not sent yet", recheck: "invite" };
    const bot = this.bots.main;
    const intent = this.bots.intent(bot);
    let current = extra;
    if (extra.status === "invited") {
      // The acceptance may reach the bridge late or not at all: look.
      const membership = extra.kind === "account" ? await membershipOf(intent, extra.roomId, extra.address) : "unknown";
      if (membership === "leave" || membership === "ban") {
        await this.store.updateTarget({ ...extra, status: "refused", refusedAt: Date.now() });
        return { ok: false, action: "drop", reason: "the target declined" };
      }
      if (membership !== "join") return { ok: false, action: "wait", reason: "the invite is not accepted yet", recheck: "invite", invitedAt: extra.createdAt };
      current = { ...extra, status: "active" };
      await this.store.updateTarget(current);
      this.log.info(`${extra.address} accepted to be told about the voicemail of ${extra.ownerId}`);
    }
    if (current.kind === "room") {
      // Posting there is on the owner's authority: only while they are in the room and may send messages.
      const lost = await ownerCannotPost(intent, current.roomId!, current.ownerId);
      if (lost) {
        await this.refuseRoom(current, lost);
        return { ok: false, action: "drop", reason: lost };
      }
    }
    return {
      ok: true,
      writer: new RoomWriter(intent, extra.roomId),
      bot,
      extra: current,
      ...(current.kind === "account" ? { rename: accountRoomName(current.ownerId) } : { stateOptional: true }),
    };
  }

  /**
   * A room target whose owner left it or lost the power to send messages there: refused (it
   * stays so), one log line, and the owner is told in their DM with the main bot.
   */
  async refuseRoom(target: ExtraTarget, why: string): Promise<void> {
    const now = await this.store.getTarget(target.id);
    if (!now || now.status === "refused") return;
    await this.store.updateTarget({ ...now, status: "refused", refusedAt: Date.now() });
    this.log.info(`stopped posting the voicemail of ${target.ownerId} in ${target.roomId}: ${why}`);
    const plain = `Your voicemail is no longer posted in ${target.address}: ${why}. Add it again with !target add once you can.`;
    await this.enqueueMainNotice(target.ownerId, { body: plain, html: escapeHtml(plain) });
  }

  private async deliver(room: Room, entries: OutboxEntry[], round: Round): Promise<void> {
    const ownerId = entries[0]!.ownerId;
    for (const e of entries.filter((x) => x.notice)) {
      if (await this.sendOnce(round, room, `notice:${e.id}`, e.id, noticeContent(e.notice!, e.id), `vmn.${e.id}`)) {
        this.metrics?.matrixEvents.inc({ kind: "message" });
      }
    }
    const changeEntries = entries.filter((e) => e.change);
    const changes = coalesce(changeEntries.map((e) => ({ change: e.change!, createdAt: e.createdAt })));
    const views = await this.views.mailboxViews(ownerId, changes.map((c) => c.current));
    // Only what this room is told about: state-only entries (another system's change) add no words.
    const told = coalesce(changeEntries.filter((e) => e.withMessage).map((e) => ({ change: e.change!, createdAt: e.createdAt })));
    if (told.length && !this.isDone(round, "message")) {
      await this.renameFirst(room, views, round);
      const message = await this.render(room, ownerId, told, views);
      const content = messageContent(message, message.msgtype, round.batch.id);
      if (await this.sendOnce(round, room, "message", round.batch.id, content, round.batch.txnId)) {
        this.lastMessageAt.set(room.writer.roomId, Date.now());
        this.metrics?.matrixEvents.inc({ kind: "message" });
      }
    }
    const states = async () => {
      for (const c of changes) {
        if (room.systemId && c.current.systemId !== room.systemId) continue;
        const content = mailboxStateContent(ownerId, this.views.systemName(c.current.systemId), c.current);
        if (await this.stateOnce(round, room.writer, MWI_EVENT_TYPE, mailboxStateKey(c.current.systemId, c.current.mailbox), content)) {
          this.metrics?.matrixEvents.inc({ kind: "mailbox_state" });
        }
      }
      await this.refreshRoom(room, ownerId, views, round);
    };
    if (!room.stateOptional) await states();
    else await states().catch((err: Error) => this.log.debug(`no state events in ${room.writer.roomId}: ${err.message}`));
  }

  private async render(room: Room, ownerId: string, changes: CoalescedChange[], views: MailboxView[]) {
    const timeZone = await this.views.timeZone(ownerId);
    const firstAt = Math.min(...changes.map((c) => c.firstAt));
    const since = Date.now() - firstAt > DELAYED_AFTER_MS ? firstAt : undefined;
    const footers = [...new Set(changes.map((c) => this.views.systems.get(c.current.systemId)?.footer))]
      .concat(this.config.footer)
      .filter((f): f is string => Boolean(f));
    const region = this.config.defaultRegion;
    if (room.systemId && changes.length === 1) {
      const change = changes[0]!;
      return renderNotification({
        change,
        systemName: this.views.systemName(change.current.systemId),
        timeZone,
        others: views.filter((v) => !(v.systemId === change.current.systemId && v.mailbox === change.current.mailbox)),
        ...(footers.length ? { footer: footers.join("\n") } : {}),
        ...(since !== undefined ? { since } : {}),
        ...(region ? { region } : {}),
      });
    }
    return renderAggregate({
      changes: changes.map((change) => ({ systemName: this.views.systemName(change.current.systemId), change })),
      all: room.systemId ? views.filter((v) => v.systemId === room.systemId) : views,
      timeZone,
      footers,
      ...(since !== undefined ? { since } : {}),
      ...(region ? { region } : {}),
    });
  }

  /** The room's name with the count and (in aggregate rooms) its topic, where the room is renamed. */
  private roomLook(room: Room, views: MailboxView[]): RoomState[] {
    if (!room.rename) return [];
    const newCount = views.filter((v) => !room.systemId || v.systemId === room.systemId).reduce((sum, v) => sum + (v.state?.new ?? 0), 0);
    const name = dmRoomName(room.rename, newCount);
    const look: RoomState[] = [{ field: "lastName", type: "m.room.name", value: name, content: { name }, kind: "room_name" }];
    if (!room.systemId) {
      const topic = mailboxesTopic(views);
      look.push({ field: "lastTopic", type: "m.room.topic", value: topic, content: { topic }, kind: "room_topic" });
    }
    return look;
  }

  /**
   * The room's name and topic before the message, as steps of the batch: a client's room list
   * and notification title show the name the room has when the message arrives. `refreshRoom`
   * after the message finds them done and records what the room shows.
   */
  private async renameFirst(room: Room, views: MailboxView[], round: Round): Promise<void> {
    const shown: RoomShows | undefined = room.dm ?? room.extra;
    for (const w of this.roomLook(room, views).filter((x) => x.value !== shown?.[x.field])) {
      if (await this.stateOnce(round, room.writer, w.type, "", w.content, this.roomStep(room, round, w))) this.metrics?.matrixEvents.inc({ kind: w.kind });
    }
  }

  /**
   * Other rooms than the batch's (the other system DMs) have their own steps. The value is part
   * of the step: the summary, name and topic are computed afresh on every try of a batch, and a
   * step done on an earlier try with older counts must not count as done for the newer ones (the
   * room would keep the older value while the bridge records the newer one as shown).
   */
  private roomStep(room: Room, round: Round, w: RoomState): string {
    const digest = createHash("sha256").update(w.value).digest("base64url").slice(0, 12);
    return `state:${w.type}:${room.writer.roomId === round.batch.roomId ? "" : room.writer.roomId}:${digest}`;
  }

  /**
   * The summary, the room name and (in aggregate rooms) the topic with every mailbox side by
   * side, each sent only where it differs from what the room shows.
   */
  private async refreshRoom(room: Room, ownerId: string, views: MailboxView[], round: Round): Promise<void> {
    const shown: RoomShows | undefined = room.dm ?? room.extra;
    const summary = buildSummary(ownerId, views);
    const wanted: RoomState[] = [
      { field: "lastSummary", type: MWI_SUMMARY_EVENT_TYPE, value: JSON.stringify(summary), content: summary as unknown as Record<string, unknown>, kind: "summary" },
    ];
    wanted.push(...this.roomLook(room, views));
    const update: RoomShows = {};
    for (const w of wanted.filter((x) => x.value !== shown?.[x.field])) {
      if (await this.stateOnce(round, room.writer, w.type, "", w.content, this.roomStep(room, round, w))) this.metrics?.matrixEvents.inc({ kind: w.kind });
      update[w.field] = w.value;
    }
    if (Object.keys(update).length === 0) return;
    if (room.dm) {
      // The room may have been forgotten meanwhile (the user left): do not bring it back.
      const current = await this.store.getDmRoom(room.dm.userId, room.dm.botUserId);
      if (current?.roomId === room.dm.roomId) await this.store.saveDmRoom({ ...current, ...update });
    } else if (room.extra) {
      // Read again: the target may have been refused or removed meanwhile, which must stay so.
      const current = await this.store.getTarget(room.extra.id);
      if (current) await this.store.updateTarget({ ...current, ...update });
    }
  }
}
