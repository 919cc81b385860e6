/**
 * Memberships in the bots' rooms: a user joining or leaving their DM, a third person in a DM
 * (private no more), a user joining a 1:1 room of a bot that the store does not know (a DM whose
 * creation answer was lost), and the bots' own invites (handed to the invite handler).
 */
import type { Bot } from "../../matrix/bots.js";
import { noticeContent } from "../../matrix/content.js";
import { describeError, errcodeOf, oneToOneMembership, roomMembers } from "../../matrix/membership.js";
import { text } from "../commands/commands.js";
import type { InviteHandler } from "./invites.js";
import { membershipIn, type EventPartsDeps, type MemberEvent } from "./types.js";

export class MembershipHandler {
  constructor(
    private readonly deps: EventPartsDeps,
    private readonly invites: InviteHandler,
  ) {}

  async onMembership(event: MemberEvent): Promise<void> {
    const { bots, dms, store, log } = this.deps;
    const target = event.state_key;
    const membership = membershipIn(event);
    if (await this.deps.targets.onMembership(event.room_id, target, membership)) return;
    const bot = bots.byUser(target);
    if (bot) {
      if (membership === "invite") await this.invites.onBotInvited(event, bot);
      return;
    }
    const dm = await store.getDmRoomById(event.room_id);
    if (!dm) {
      if (membership === "join") await this.onJoinedUnknownRoom(event.room_id, target);
      return;
    }
    if (target === dm.userId) {
      if (membership === "join") {
        await dms.markJoined(dm);
        // What waited for the user to accept the invite goes out now.
        await this.deps.delivery.kickPerson(dm.userId);
      } else if (membership === "leave" || membership === "ban") await dms.forget(dm);
    } else if (membership === "join" || membership === "invite") {
      // Voicemail details are private: a DM that gains a third person is a DM no more.
      const dmBot = bots.byUser(dm.botUserId);
      if (dmBot) {
        await bots
          .intent(dmBot)
          .sendMessage(dm.roomId, noticeContent(text("Someone else was added to this room, so it is no longer private: I will send your voicemail notifications to a new direct chat.")))
          .catch((err: unknown) => log.debug(`could not tell ${dm.roomId} why it is no DM any more: ${describeError(err)}`));
      }
      await dms.forget(dm, `${target} was added`);
    }
  }

  /**
   * A user joined a room the store knows as nobody's DM. If it is a 1:1 room a bot made with
   * them, it is a DM whose creation answer was lost: one DM per user and bot stays.
   */
  private async onJoinedUnknownRoom(roomId: string, userId: string): Promise<void> {
    for (const bot of this.deps.bots.all()) {
      const intent = this.deps.bots.intent(bot);
      // Joined members first: cheap, and a bot that is not in the room is told so at once.
      let joined: string[];
      try {
        joined = await intent.matrixClient.getJoinedRoomMembers(roomId);
      } catch (err) {
        if (errcodeOf(err) === "M_FORBIDDEN" || errcodeOf(err) === "M_NOT_FOUND") continue;
        throw err;
      }
      if (joined.length !== 2 || !joined.includes(bot.userId)) return;
      const room = await roomMembers(intent, roomId);
      if (!room || room.creator !== bot.userId || oneToOneMembership(room, bot.userId, userId) !== "join") return;
      await this.claim(bot, userId, roomId);
      return;
    }
  }

  private async claim(bot: Bot, userId: string, roomId: string): Promise<void> {
    if ((await this.deps.dms.claim(userId, bot, roomId)) === "adopted") await this.deps.delivery.kickPerson(userId);
  }
}
