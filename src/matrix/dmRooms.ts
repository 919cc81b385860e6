/**
 * Exactly one DM room per user and bot, remembered in the store. Creation runs one at a time
 * per user and bot, so concurrent updates cannot open two rooms; a room the user left is
 * forgotten and a fresh one opened the next time.
 *
 * Opening is idempotent: a `createRoom` whose answer was lost has made the room and invited the
 * user all the same. Before creating, the bot looks in its `m.direct` (kept up to date here, so
 * it is the cheap index), and, only when an earlier creation for this user is still in doubt
 * (noted in the bot's account data before asking), through its joined rooms.
 */
import type { Intent, Logger } from "matrix-appservice-bridge";
import pLimit from "p-limit";
import type { DmRoom, VoicemailStore } from "../store/store.js";
import { KeyedQueue } from "../util/keyedQueue.js";
import { BridgeInfoKeeper, bridgeInfoEvents } from "./bridgeInfo.js";
import { AccountData, PENDING_DMS_EVENT_TYPE, withDirectRoom, withoutDirectRoom, type DirectRooms } from "./accountData.js";
import type { Bot, BotDirectory } from "./bots.js";
import { messageContent } from "./content.js";
import { describeError, errcodeOf, membershipOf, oneToOneMembership, openDirectRoom, roomMembers } from "./membership.js";

/** How many rooms a scan of the bot's joined rooms looks at in parallel. */
const SCAN_CONCURRENCY = 4;

type PendingDms = Record<string, number>;

/** What became of a 1:1 room of a bot with a user that the store did not know. */
export type ClaimOutcome = "adopted" | "declined";

const notice = (body: string) => messageContent({ body, html: body }, "m.notice");

export class DmRooms {
  private readonly creating = new KeyedQueue();
  private readonly accountData = new AccountData();
  private readonly bridgeInfo: BridgeInfoKeeper;

  constructor(
    private readonly store: VoicemailStore,
    private readonly bots: BotDirectory,
    private readonly log: Logger,
  ) {
    this.bridgeInfo = new BridgeInfoKeeper(log);
  }

  /**
   * Gives a DM made before the bridge set the bridge info (MSC2346) its state events, once per
   * room and process; never rejects. Called after a delivery, so it costs nothing before one.
   */
  ensureBridgeInfo(room: Pick<DmRoom, "roomId" | "userId" | "botUserId">): Promise<void> {
    const bot = this.bots.byUser(room.botUserId);
    if (!bot) return Promise.resolve();
    return this.bridgeInfo.ensure(this.bots.intent(bot), room.roomId, bridgeInfoEvents(this.bots.main.userId, bot, room.userId));
  }

  get(userId: string, bot: Bot): Promise<DmRoom | undefined> {
    return this.store.getDmRoom(userId, bot.userId);
  }

  /** The user's DM with this bot, opened (with an invite) if there is none. */
  ensure(userId: string, bot: Bot): Promise<DmRoom> {
    return this.creating.run(key(userId, bot), async () => {
      const existing = await this.store.getDmRoom(userId, bot.userId);
      const checked = existing && (await this.check(existing, bot));
      if (checked) return checked;
      const intent = this.bots.intent(bot);
      const found = (await this.fromDirect(intent, bot, userId, existing?.roomId)) ?? (await this.afterLostAnswer(intent, bot, userId));
      if (found) return found;

      // Noted first: if the answer to createRoom is lost, the next attempt knows to look.
      await this.accountData.update<PendingDms>(intent, PENDING_DMS_EVENT_TYPE, (pending) => ({ ...pending, [userId]: Date.now() }));
      const topic = bot.system ? `Voicemail notifications from ${bot.system.name}. Say !help for commands.` : "Voicemail bridge. Say !help for commands.";
      const roomId = await openDirectRoom(intent, userId, bot.displayName, topic, bridgeInfoEvents(this.bots.main.userId, bot, userId));
      this.bridgeInfo.noteSet(roomId);
      const room: DmRoom = { userId, botUserId: bot.userId, roomId, userJoined: false, createdAt: Date.now(), lastName: bot.displayName };
      await this.store.saveDmRoom(room);
      this.log.info(`opened DM ${roomId} between ${bot.userId} and ${userId}`);
      await this.indexDirect(intent, userId, roomId);
      await this.clearPending(intent, userId);
      return room;
    });
  }

  /**
   * Asks the homeserver whether the user is still in (or invited to) the room: a leave may not
   * have reached us yet (it is queued while the bridge restarts), and posting into a room the
   * user left reaches nobody.
   */
  private async check(room: DmRoom, bot: Bot): Promise<DmRoom | undefined> {
    const membership = await membershipOf(this.bots.intent(bot), room.roomId, room.userId);
    if (membership === "leave" || membership === "ban") {
      await this.forget(room);
      return undefined;
    }
    if (membership === "join" && !room.userJoined) {
      const joined = { ...room, userJoined: true };
      await this.store.saveDmRoom(joined);
      return joined;
    }
    return room;
  }

  /** A room `m.direct` lists for this user that still is a 1:1 room with them. */
  private async fromDirect(intent: Intent, bot: Bot, userId: string, skip: string | undefined): Promise<DmRoom | undefined> {
    const listed = (await this.accountData.read<DirectRooms>(intent, "m.direct"))?.[userId];
    if (!Array.isArray(listed)) return undefined;
    for (const roomId of listed) {
      if (roomId === skip || (await this.takenElsewhere(roomId, userId, bot))) continue;
      const room = await roomMembers(intent, roomId);
      const membership = room && oneToOneMembership(room, bot.userId, userId);
      if (membership) return this.record(intent, bot, userId, roomId, membership, "found in m.direct");
    }
    return undefined;
  }

  /** After a creation whose answer never came: the room it may have made, found among the bot's rooms. */
  private async afterLostAnswer(intent: Intent, bot: Bot, userId: string): Promise<DmRoom | undefined> {
    const pending = await this.accountData.read<PendingDms>(intent, PENDING_DMS_EVENT_TYPE);
    if (pending?.[userId] === undefined) return undefined;
    const found = await this.scan(intent, bot, userId);
    if (!found.length) {
      this.log.info(`no DM of ${bot.userId} with ${userId} from an earlier attempt: opening one`);
      return undefined;
    }
    // Joined beats invited; any further ones are duplicates from before and go.
    found.sort((a, b) => (a.membership === b.membership ? 0 : a.membership === "join" ? -1 : 1));
    const [best, ...rest] = found as [(typeof found)[number], ...typeof found];
    const room = await this.record(intent, bot, userId, best.roomId, best.membership, "made by an earlier attempt whose answer was lost");
    for (const extra of rest) await this.retire(bot, { roomId: extra.roomId, userId, userJoined: extra.membership === "join" }, room.roomId);
    await this.clearPending(intent, userId);
    return room;
  }

  /** The bot's joined rooms that it made as a 1:1 room with this user (bounded: only after a lost answer). */
  private async scan(intent: Intent, bot: Bot, userId: string): Promise<{ roomId: string; membership: "join" | "invite" }[]> {
    const joined = await intent.matrixClient.getJoinedRooms();
    const limit = pLimit(SCAN_CONCURRENCY);
    const found = await Promise.all(
      joined.map((roomId) =>
        limit(async () => {
          if (await this.store.getDmRoomById(roomId)) return undefined;
          // One state event first: most rooms never had this user in them.
          const membership = await memberState(intent, roomId, userId);
          if (membership !== "join" && membership !== "invite") return undefined;
          const room = await roomMembers(intent, roomId);
          if (!room || room.creator !== bot.userId) return undefined;
          const oneToOne = oneToOneMembership(room, bot.userId, userId);
          if (!oneToOne || (await this.takenElsewhere(roomId, userId, bot))) return undefined;
          return { roomId, membership: oneToOne };
        }),
      ),
    );
    this.log.info(`looked through ${joined.length} room(s) of ${bot.userId} for a DM with ${userId}: ${found.filter(Boolean).length} found`);
    return found.filter((f): f is NonNullable<typeof f> => f !== undefined);
  }

  /** The room is another user's DM or a notification target: never this user's DM. */
  private async takenElsewhere(roomId: string, userId: string, bot: Bot): Promise<boolean> {
    const dm = await this.store.getDmRoomById(roomId);
    if (dm && (dm.userId !== userId || dm.botUserId !== bot.userId)) return true;
    return (await this.store.targetsByRoom(roomId)).length > 0;
  }

  private async record(intent: Intent, bot: Bot, userId: string, roomId: string, membership: "join" | "invite", how: string): Promise<DmRoom> {
    const room: DmRoom = { userId, botUserId: bot.userId, roomId, userJoined: membership === "join", createdAt: Date.now() };
    await this.store.saveDmRoom(room);
    this.log.info(`DM ${roomId} between ${bot.userId} and ${userId} ${how}; kept`);
    await this.indexDirect(intent, userId, roomId);
    void this.ensureBridgeInfo(room);
    return room;
  }

  /** A user invited a bot into a 1:1 room: that room becomes their DM with it. */
  async adopt(userId: string, bot: Bot, roomId: string): Promise<void> {
    await this.creating.run(key(userId, bot), async () => {
      const previous = await this.store.getDmRoom(userId, bot.userId);
      await this.store.saveDmRoom({ userId, botUserId: bot.userId, roomId, userJoined: true, createdAt: Date.now() });
      await this.indexDirect(this.bots.intent(bot), userId, roomId);
      // A room the user made: it lacks the bridge info.
      void this.ensureBridgeInfo({ userId, botUserId: bot.userId, roomId });
      if (previous && previous.roomId !== roomId) {
        this.log.info(`DM of ${userId} with ${bot.userId} moved from ${previous.roomId} to ${roomId}`);
        await this.retire(bot, previous, roomId);
      }
    });
  }

  /**
   * The user joined a 1:1 room with the bot that the store does not know as their DM (made by a
   * creation whose answer was lost, say). It becomes their DM if the recorded one was never
   * joined (which goes); otherwise the bot leaves it. Either way the user ends with one DM.
   */
  claim(userId: string, bot: Bot, roomId: string): Promise<ClaimOutcome> {
    return this.creating.run(key(userId, bot), async () => {
      const recorded = await this.store.getDmRoom(userId, bot.userId);
      if (recorded?.roomId === roomId) {
        await this.markJoined(recorded);
        return "adopted";
      }
      const live = recorded && (await this.check(recorded, bot));
      const intent = this.bots.intent(bot);
      if (live?.userJoined) {
        this.log.info(`${userId} joined ${roomId}, a second room with ${bot.userId}; their DM stays ${live.roomId}, the bot leaves`);
        await intent.sendMessage(roomId, notice("You already have a direct chat with me, so I am leaving this one.")).catch(() => undefined);
        await intent.leave(roomId).catch((err: unknown) => this.log.warn(`could not leave ${roomId}: ${describeError(err)}`));
        return "declined";
      }
      await this.store.saveDmRoom({ userId, botUserId: bot.userId, roomId, userJoined: true, createdAt: Date.now() });
      this.log.info(`${userId} joined ${roomId} with ${bot.userId}: it is their DM now${live ? ` instead of ${live.roomId}, never joined` : ""}`);
      await this.indexDirect(intent, userId, roomId);
      if (live) await this.retire(bot, live, roomId);
      return "adopted";
    });
  }

  async markJoined(room: DmRoom): Promise<void> {
    if (!room.userJoined) await this.store.saveDmRoom({ ...room, userJoined: true });
  }

  /** The user left (or the room is no DM any more): stop posting there; the next notification opens a fresh DM. */
  async forget(room: DmRoom, why = "left"): Promise<void> {
    await this.store.forgetDmRoom(room.roomId);
    const bot = this.bots.byUser(room.botUserId);
    if (!bot) {
      // Its system was removed from the config: the bridge can no longer act as that bot.
      this.log.info(`DM ${room.roomId} of ${room.userId} belonged to ${room.botUserId}, which is no longer configured; forgotten`);
      return;
    }
    this.log.info(why === "left" ? `${room.userId} left DM ${room.roomId}; it is forgotten` : `DM ${room.roomId} of ${room.userId} forgotten: ${why}`);
    const intent = this.bots.intent(bot);
    await this.accountData
      .update<DirectRooms>(intent, "m.direct", (direct) => withoutDirectRoom(direct, room.userId, room.roomId))
      .catch((err: unknown) => this.log.debug(`m.direct of ${bot.userId} not updated: ${describeError(err)}`));
    await intent.leave(room.roomId).catch((err: unknown) => this.log.warn(`could not leave ${room.roomId}: ${describeError(err)}`));
  }

  /** A room that is not the user's DM any more: an invite is withdrawn, a joined room told why; the bot leaves. */
  private async retire(bot: Bot, room: Pick<DmRoom, "roomId" | "userId" | "userJoined">, replacement: string): Promise<void> {
    const intent = this.bots.intent(bot);
    if (room.userJoined) {
      await intent.sendMessage(room.roomId, notice("Our direct chat has moved to another room, so I am leaving this one.")).catch(() => undefined);
    } else {
      await intent.kick(room.roomId, room.userId, "replaced by another direct chat").catch(() => undefined);
    }
    await intent.leave(room.roomId).catch((err: unknown) => this.log.warn(`could not leave ${room.roomId}: ${describeError(err)}`));
    this.log.info(`${bot.userId} left ${room.roomId}, a second room with ${room.userId} (their DM is ${replacement})`);
  }

  /** `m.direct` is what clients read and the cheap index here: best effort, the store is the record. */
  private async indexDirect(intent: Intent, userId: string, roomId: string): Promise<void> {
    await this.accountData
      .update<DirectRooms>(intent, "m.direct", (direct) => withDirectRoom(direct, userId, roomId))
      .catch((err: unknown) => this.log.debug(`m.direct of ${intent.userId} not updated: ${describeError(err)}`));
  }

  /** A stale note costs one scan later, nothing more: best effort. */
  private async clearPending(intent: Intent, userId: string): Promise<void> {
    await this.accountData
      .update<PendingDms>(intent, PENDING_DMS_EVENT_TYPE, (pending) => {
        if (pending[userId] === undefined) return undefined;
        const next = { ...pending };
        delete next[userId];
        return next;
      })
      .catch((err: unknown) => this.log.debug(`pending DMs of ${intent.userId} not updated: ${describeError(err)}`));
  }
}

const key = (userId: string, bot: Bot) => `${userId}\n${bot.userId}`;

/** A user's membership of a room, undefined if they never were in it; other errors are thrown (a scan must not miss a room). */
async function memberState(intent: Intent, roomId: string, userId: string): Promise<string | undefined> {
  try {
    const content = (await intent.matrixClient.getRoomStateEventContent(roomId, "m.room.member", userId)) as { membership?: string };
    return content.membership;
  } catch (err) {
    if (errcodeOf(err) === "M_NOT_FOUND" || errcodeOf(err) === "M_FORBIDDEN") return undefined;
    throw err;
  }
}
