/**
 * A bot was invited into a room. A user's 1:1 room becomes their DM with that bot; the main bot
 * also stays in other rooms (a room can become a notification target), but not in one larger
 * than `limits.maxRoomMembers`, nor beyond `limits.unusedRoomSeconds` unless it became a
 * target; a system bot leaves them.
 */
import { atLeast, permissionLevel } from "../../core/permissions.js";
import type { Bot } from "../../matrix/bots.js";
import { noticeContent } from "../../matrix/content.js";
import { text } from "../commands/commands.js";
import type { EventPartsDeps, MemberEvent } from "./types.js";

export class InviteHandler {
  constructor(private readonly deps: EventPartsDeps) {}

  async onBotInvited(event: MemberEvent, bot: Bot): Promise<void> {
    const { bots, dms, log } = this.deps;
    const inviter = event.sender;
    const intent = bots.intent(bot);
    if (!atLeast(permissionLevel(this.deps.config.permissions, inviter), "user")) {
      log.info(`${bot.userId} declined an invite to ${event.room_id} from ${inviter}: not permitted`);
      await intent.leave(event.room_id, "You are not permitted to use this bridge").catch(() => undefined);
      return;
    }
    await intent.join(event.room_id);
    const members = await intent.matrixClient.getRoomMembers(event.room_id, undefined, ["join", "invite"]);
    const others = new Set(members.map((m) => m.membershipFor).filter((u) => u !== bot.userId));
    const oneToOne = others.size === 1 && others.has(inviter);
    // The main bot also serves rooms as notification targets: only a direct invite makes a DM.
    const direct = bot === bots.main ? oneToOne && (event.content as { is_direct?: boolean }).is_direct === true : oneToOne;
    if (!direct) {
      if (bot === bots.main && !this.deps.targets.invitedInto(event.room_id, others.size + 1)) {
        await intent.leave(event.room_id, "This room is too large for voicemail notifications").catch(() => undefined);
        log.info(`${bot.userId} left ${event.room_id} at once: ${others.size + 1} members is more than a target room may have`);
        return;
      }
      if (bot === bots.main) {
        // A room for notifications (a target): it is added from the user's DM, by someone allowed to.
        await intent.sendMessage(
          event.room_id,
          noticeContent(text(`Hello! To have voicemail notifications posted here, say "!target add ${event.room_id}" in your direct chat with me (you need the power to change this room). I take no commands here.`)),
        );
        log.info(`${bot.userId} joined ${event.room_id} on the invite of ${inviter}: a possible target room`);
        return;
      }
      await intent.sendMessage(event.room_id, noticeContent(text(`I only work in direct chats with one person. To have notifications posted in a room, invite ${bots.main.userId} instead.`)));
      await intent.leave(event.room_id);
      log.info(`${bot.userId} left ${event.room_id}: not a direct chat`);
      return;
    }
    await dms.adopt(inviter, bot, event.room_id);
    log.info(`${bot.userId} joined DM ${event.room_id} of ${inviter}`);
    const intro = bot.system
      ? `Hello! I bring you the message waiting indication of ${bot.system.name}. Say !help for commands.`
      : "Hello! I am the voicemail bridge. Say !help for commands.";
    await intent.sendMessage(event.room_id, noticeContent(text(intro)));
    await this.deps.delivery.kickPerson(inviter);
  }
}
