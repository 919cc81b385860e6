/**
 * Delivery that never loses a notification (F9). Every change is written to the outbox before
 * anything is sent, and leaves it only once the homeserver accepted the events. Each target
 * room has one worker, so a room sees its events in order; a target that cannot take them now
 * (invite not accepted, user offline with `when-online`, homeserver down) keeps them, and what
 * waited together is told as one message.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "matrix-appservice-bridge";
import type { BridgeConfig } from "../config/types.js";
import type { UserViews } from "./userViews.js";
import { coalesce, type CoalescedChange } from "../core/coalesce.js";
import { MWI_EVENT_TYPE, MWI_SUMMARY_EVENT_TYPE, mailboxStateKey } from "../core/events.js";
import { accountRoomName, dmRoomName, mailboxesTopic, renderAggregate, renderNotification, type MailboxView, type RenderedText } from "../core/format.js";
import type { MailboxChange } from "../core/mwi.js";
import { buildSummary, mailboxStateContent } from "../core/summary.js";
import type { Bot, BotDirectory } from "../matrix/bots.js";
import { messageContent, noticeContent } from "../matrix/content.js";
import type { DmRooms } from "../matrix/dmRooms.js";
import type { DmRoom, ExtraTarget, OutboxEntry, VoicemailStore } from "../store/store.js";
import type { VoicemailMetrics } from "../util/metrics.js";
import type { PresenceTracker } from "./presence.js";
import { classifyFailure, RoomWriter, transactionId } from "./roomWriter.js";
import { extraTarget, mainTarget, parseTarget, systemTarget, type TargetKey } from "./targets.js";

/** At most about one message a second per room: a flapping mailbox is told, not shouted. */
const MIN_MESSAGE_INTERVAL_MS = 1000;
/** How often a target held for presence is looked at again, in case no presence event comes. */
const PRESENCE_RECHECK_MS = 15_000;
/** A change that waited longer than this is told with "since <time>". */
const DELAYED_AFTER_MS = 30_000;

/** What a room shows now (remembered so that only changes are sent). */
type RoomShows = Partial<Pick<DmRoom, "lastSummary" | "lastName" | "lastTopic">>;

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
  | { ok: false; action: "wait" | "drop"; reason: string; recheckMs?: number };

export class DeliveryService {
  private seq = 0;
  private readonly workers = new Map<TargetKey, Promise<void>>();
  private readonly again = new Set<TargetKey>();
  private readonly attempts = new Map<TargetKey, number>();
  private readonly lastMessageAt = new Map<string, number>();
  private readonly sleepers = new Set<{ timer: NodeJS.Timeout; wake: () => void }>();
  private readonly rechecks = new Map<TargetKey, NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly config: BridgeConfig,
    private readonly store: VoicemailStore,
    private readonly bots: BotDirectory,
    private readonly dms: DmRooms,
    private readonly views: UserViews,
    private readonly presence: PresenceTracker,
    private readonly log: Logger,
    private readonly metrics?: VoicemailMetrics,
  ) {}

  /** After a restart: continue numbering, and deliver whatever was waiting. */
  async start(): Promise<void> {
    this.seq = await this.store.maxOutboxSeq();
    const waiting = await this.store.outboxEntries();
    if (waiting.length) this.log.info(`${waiting.length} notification(s) waiting from before the restart`);
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
    const mainMessages = mode !== "per-system";
    if (mainMessages || (await this.dms.get(userId, this.bots.main))) {
      targets.push({ key: mainTarget(userId), withMessage: mainMessages });
    }
    for (const target of await this.store.listTargets(userId)) {
      if (target.status !== "refused") targets.push({ key: extraTarget(target.id), withMessage: true });
    }
    return targets;
  }

  private entry(ownerId: string, targetKey: TargetKey, withMessage: boolean, fields: Partial<OutboxEntry>): OutboxEntry {
    return { id: randomUUID(), seq: ++this.seq, ownerId, targetKey, withMessage, createdAt: Date.now(), ...fields };
  }

  /** Writes the change for every target of the user; resolves once it is stored. */
  async enqueueChange(userId: string, change: MailboxChange): Promise<TargetKey[]> {
    const targets = await this.targetsOf(userId, change.current.systemId);
    const stored = { kind: change.kind, current: change.current, ...(change.previous ? { previous: change.previous } : {}) };
    await this.store.addOutboxEntries(targets.map((t) => this.entry(userId, t.key, t.withMessage, { change: stored })));
    return targets.map((t) => t.key);
  }

  /** A notice from a system's bot in the user's DM with it, queued like everything else. */
  async enqueueNotice(userId: string, systemId: string, notice: RenderedText): Promise<TargetKey> {
    const key = systemTarget(userId, systemId);
    await this.store.addOutboxEntries([this.entry(userId, key, true, { notice: { ...notice, systemId } })]);
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
    const keys = new Set<TargetKey>();
    for (const entry of await this.store.outboxEntries()) {
      const target = parseTarget(entry.targetKey);
      if (target && target.kind !== "extra" && target.userId === userId) keys.add(entry.targetKey);
    }
    for (const key of keys) this.kick(key);
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

  private async work(key: TargetKey): Promise<void> {
    try {
      while (!this.stopped && (await this.step(key)));
    } catch (err) {
      this.log.error(`delivery to ${key} stopped: ${(err as Error).message}`);
    }
  }

  /** One round for a target; true when there may be more to do right away. */
  private async step(key: TargetKey): Promise<boolean> {
    const entries = await this.store.outboxEntries(key);
    if (entries.length === 0) return false;
    const room = await this.resolve(key, entries);
    if (!room.ok) {
      if (room.action === "drop") {
        await this.store.removeOutboxEntries(entries.map((e) => e.id));
        this.log.info(`dropped ${entries.length} notification(s) for ${key}: ${room.reason}`);
      } else {
        this.log.debug(`holding ${entries.length} notification(s) for ${key}: ${room.reason}`);
        if (room.recheckMs) this.recheckLater(key, room.recheckMs);
      }
      return false;
    }
    if (entries.some((e) => e.withMessage)) {
      const wait = (this.lastMessageAt.get(room.writer.roomId) ?? 0) + MIN_MESSAGE_INTERVAL_MS - Date.now();
      if (wait > 0) {
        // Meanwhile more changes may arrive: they are told together.
        await this.sleep(wait);
        return true;
      }
    }
    try {
      await this.deliver(room, entries);
      await this.store.removeOutboxEntries(entries.map((e) => e.id));
      this.attempts.delete(key);
      for (const e of entries) {
        if (e.change) this.metrics?.deliverySeconds.observe({ system: e.change.current.systemId }, (Date.now() - e.createdAt) / 1000);
      }
      return true;
    } catch (err) {
      const attempt = (this.attempts.get(key) ?? 0) + 1;
      this.attempts.set(key, attempt);
      const failure = classifyFailure(err, attempt);
      if (failure.kind === "gone") {
        this.log.warn(`${key}: the bot cannot post in ${room.writer.roomId} (${failure.reason}); opening a fresh room`);
        if (room.dm) await this.dms.forget(room.dm);
        if (room.extra) await this.store.updateTarget({ ...room.extra, status: "refused" });
        if (attempt > 3) await this.sleep(5000);
        return true;
      }
      if (failure.kind === "fatal") {
        this.log.error(`${key}: the homeserver refused ${entries.length} notification(s) (${failure.reason}); they are dropped`);
        await this.store.removeOutboxEntries(entries.map((e) => e.id));
        return true;
      }
      this.log.warn(`${key}: delivery failed (${failure.reason}); retrying in ${Math.round(failure.afterMs)} ms`);
      await this.sleep(failure.afterMs);
      return true;
    }
  }

  private async resolve(key: TargetKey, entries: OutboxEntry[]): Promise<Resolved> {
    const target = parseTarget(key);
    if (!target) return { ok: false, action: "drop", reason: "unknown target" };
    if (target.kind === "extra") return this.resolveExtra(target.targetId);
    if (target.kind === "sys" && !this.views.systems.has(target.systemId)) {
      return { ok: false, action: "drop", reason: `system ${target.systemId} is no longer configured` };
    }
    const bot = target.kind === "sys" ? this.bots.forSystem(target.systemId) : this.bots.main;
    // Only a message is worth a new room; state alone goes where a room already is.
    const dm = entries.some((e) => e.withMessage) ? await this.dms.ensure(target.userId, bot) : await this.dms.get(target.userId, bot);
    if (!dm) return { ok: false, action: "drop", reason: "no room to keep up to date" };
    if (!dm.userJoined) return { ok: false, action: "wait", reason: "the invite is not accepted yet" };
    const profile = await this.store.getProfile(target.userId);
    if (profile?.delivery === "when-online" && !(await this.presence.isOnline(target.userId))) {
      // Presence reaches the bridge only for users it shares rooms with: look again now and then.
      return { ok: false, action: "wait", reason: "the user is not online", recheckMs: PRESENCE_RECHECK_MS };
    }
    const intent = this.bots.intent(bot);
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
    if (!extra) return { ok: false, action: "drop", reason: "the target was removed" };
    if (extra.status === "refused") return { ok: false, action: "drop", reason: "the target declined" };
    if (extra.status === "invited" || !extra.roomId) return { ok: false, action: "wait", reason: "the invite is not accepted yet" };
    const bot = this.bots.main;
    return {
      ok: true,
      writer: new RoomWriter(this.bots.intent(bot), extra.roomId),
      bot,
      extra,
      ...(extra.kind === "account" ? { rename: accountRoomName(extra.ownerId) } : { stateOptional: true }),
    };
  }

  private async deliver(room: Extract<Resolved, { ok: true }>, entries: OutboxEntry[]): Promise<void> {
    const ownerId = entries[0]!.ownerId;
    for (const e of entries.filter((x) => x.notice)) {
      await room.writer.send("m.room.message", noticeContent(e.notice!), `vmn.${e.id}`);
      this.metrics?.matrixEvents.inc({ kind: "message" });
    }
    const changeEntries = entries.filter((e) => e.change);
    const changes = coalesce(changeEntries.map((e) => ({ change: e.change!, createdAt: e.createdAt })));
    const views = await this.views.mailboxViews(ownerId, changes.map((c) => c.current));
    if (changes.length && changeEntries.some((e) => e.withMessage)) {
      const message = await this.render(room, ownerId, changes, views);
      await room.writer.send(
        "m.room.message",
        messageContent(message, message.msgtype),
        transactionId("vm", changeEntries.map((e) => e.id)),
      );
      this.lastMessageAt.set(room.writer.roomId, Date.now());
      this.metrics?.matrixEvents.inc({ kind: "message" });
    }
    const states = async () => {
      for (const c of changes) {
        if (room.systemId && c.current.systemId !== room.systemId) continue;
        const content = mailboxStateContent(ownerId, this.views.systemName(c.current.systemId), c.current);
        await room.writer.state(MWI_EVENT_TYPE, mailboxStateKey(c.current.systemId, c.current.mailbox), content);
        this.metrics?.matrixEvents.inc({ kind: "mailbox_state" });
      }
      await this.refreshRoom(room, ownerId, views);
    };
    if (!room.stateOptional) await states();
    else await states().catch((err: Error) => this.log.debug(`no state events in ${room.writer.roomId}: ${err.message}`));
    if (room.systemId && changes.length) await this.refreshOtherSystemRooms(ownerId, room.systemId, views);
  }

  private async render(room: Extract<Resolved, { ok: true }>, ownerId: string, changes: CoalescedChange[], views: MailboxView[]) {
    const timeZone = await this.views.timeZone(ownerId);
    const firstAt = Math.min(...changes.map((c) => c.firstAt));
    const since = Date.now() - firstAt > DELAYED_AFTER_MS ? firstAt : undefined;
    const footers = [...new Set(changes.map((c) => this.views.systems.get(c.current.systemId)?.footer))]
      .concat(this.config.footer)
      .filter((f): f is string => Boolean(f));
    if (room.systemId && changes.length === 1) {
      const change = changes[0]!;
      return renderNotification({
        change,
        systemName: this.views.systemName(change.current.systemId),
        timeZone,
        others: views.filter((v) => !(v.systemId === change.current.systemId && v.mailbox === change.current.mailbox)),
        ...(footers.length ? { footer: footers.join("\n") } : {}),
        ...(since !== undefined ? { since } : {}),
      });
    }
    return renderAggregate({
      changes: changes.map((change) => ({ systemName: this.views.systemName(change.current.systemId), change })),
      all: room.systemId ? views.filter((v) => v.systemId === room.systemId) : views,
      timeZone,
      footers,
      ...(since !== undefined ? { since } : {}),
    });
  }

  /**
   * The summary, the room name and (in aggregate rooms) the topic with every mailbox side by
   * side, each sent only where it differs from what the room shows.
   */
  private async refreshRoom(room: Extract<Resolved, { ok: true }>, ownerId: string, views: MailboxView[]): Promise<void> {
    const shown: RoomShows | undefined = room.dm ?? room.extra;
    const summary = buildSummary(ownerId, views);
    const newCount = views.filter((v) => !room.systemId || v.systemId === room.systemId).reduce((sum, v) => sum + (v.state?.new ?? 0), 0);
    const wanted: { field: keyof RoomShows; type: string; value: string; content: Record<string, unknown>; kind: string }[] = [
      { field: "lastSummary", type: MWI_SUMMARY_EVENT_TYPE, value: JSON.stringify(summary), content: summary as unknown as Record<string, unknown>, kind: "summary" },
    ];
    if (room.rename) {
      const name = dmRoomName(room.rename, newCount);
      wanted.push({ field: "lastName", type: "m.room.name", value: name, content: { name }, kind: "room_name" });
      if (!room.systemId) {
        const topic = mailboxesTopic(views);
        wanted.push({ field: "lastTopic", type: "m.room.topic", value: topic, content: { topic }, kind: "room_topic" });
      }
    }
    const update: RoomShows = {};
    for (const w of wanted.filter((x) => x.value !== shown?.[x.field])) {
      await room.writer.state(w.type, "", w.content);
      this.metrics?.matrixEvents.inc({ kind: w.kind });
      update[w.field] = w.value;
    }
    if (Object.keys(update).length === 0) return;
    if (room.dm) {
      // The room may have been forgotten meanwhile (the user left): do not bring it back.
      const current = await this.store.getDmRoom(room.dm.userId, room.dm.botUserId);
      if (current?.roomId === room.dm.roomId) await this.store.saveDmRoom({ ...current, ...update });
    } else if (room.extra) {
      await this.store.updateTarget({ ...room.extra, ...update });
    }
  }

  /** Each system DM's summary covers all the user's systems: bring the others along (best effort). */
  private async refreshOtherSystemRooms(ownerId: string, systemId: string, views: MailboxView[]): Promise<void> {
    for (const otherId of new Set(views.map((v) => v.systemId).filter((id) => id !== systemId))) {
      const bot = this.bots.forSystem(otherId);
      const dm = await this.dms.get(ownerId, bot);
      if (!dm?.userJoined) continue;
      const other = { ok: true as const, writer: new RoomWriter(this.bots.intent(bot), dm.roomId), bot, dm, systemId: otherId, rename: bot.displayName };
      await this.refreshRoom(other, ownerId, views).catch((err: Error) => this.log.warn(`summary of ${dm.roomId} not refreshed: ${err.message}`));
    }
  }
}
