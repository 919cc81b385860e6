/**
 * Exactly one DM room per user and bot, remembered in the store. Creation runs one at a time
 * per user and bot, so concurrent updates cannot open two rooms; a room the user left is
 * forgotten and a fresh one opened the next time.
 */
import type { Logger } from "matrix-appservice-bridge";
import type { DmRoom, VoicemailStore } from "../store/store.js";
import { KeyedQueue } from "../util/keyedQueue.js";
import type { Bot, BotDirectory } from "./bots.js";
import { membershipOf, openDirectRoom } from "./membership.js";

export class DmRooms {
  private readonly creating = new KeyedQueue();

  constructor(
    private readonly store: VoicemailStore,
    private readonly bots: BotDirectory,
    private readonly log: Logger,
  ) {}

  get(userId: string, bot: Bot): Promise<DmRoom | undefined> {
    return this.store.getDmRoom(userId, bot.userId);
  }

  /** The user's DM with this bot, opened (with an invite) if there is none. */
  ensure(userId: string, bot: Bot): Promise<DmRoom> {
    return this.creating.run(`${userId}\n${bot.userId}`, async () => {
      const existing = await this.store.getDmRoom(userId, bot.userId);
      const checked = existing && (await this.check(existing, bot));
      if (checked) return checked;
      const topic = bot.system ? `Voicemail notifications from ${bot.system.name}. Say !help for commands.` : "Voicemail bridge. Say !help for commands.";
      const roomId = await openDirectRoom(this.bots.intent(bot), userId, bot.displayName, topic);
      const room: DmRoom = { userId, botUserId: bot.userId, roomId, userJoined: false, createdAt: Date.now(), lastName: bot.displayName };
      await this.store.saveDmRoom(room);
      this.log.info(`opened DM ${roomId} between ${bot.userId} and ${userId}`);
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

  /** A user invited a bot into a 1:1 room: that room becomes their DM with it. */
  async adopt(userId: string, bot: Bot, roomId: string): Promise<void> {
    await this.creating.run(`${userId}\n${bot.userId}`, async () => {
      const previous = await this.store.getDmRoom(userId, bot.userId);
      await this.store.saveDmRoom({
        userId,
        botUserId: bot.userId,
        roomId,
        userJoined: true,
        createdAt: Date.now(),
      });
      if (previous && previous.roomId !== roomId) {
        this.log.info(`DM of ${userId} with ${bot.userId} moved from ${previous.roomId} to ${roomId}`);
      }
    });
  }

  async markJoined(room: DmRoom): Promise<void> {
    if (!room.userJoined) await this.store.saveDmRoom({ ...room, userJoined: true });
  }

  /** The user left: stop posting there; the next notification opens a fresh DM. */
  async forget(room: DmRoom): Promise<void> {
    await this.store.forgetDmRoom(room.roomId);
    this.log.info(`${room.userId} left DM ${room.roomId}; it is forgotten`);
    await this.bots
      .intent(this.bots.byUser(room.botUserId)!)
      .leave(room.roomId)
      .catch((err: Error) => this.log.warn(`could not leave ${room.roomId}: ${err.message}`));
  }
}
