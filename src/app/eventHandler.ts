/**
 * Events the homeserver sends the bridge: invites to its bots, users joining or leaving DMs,
 * and `!commands`. Commands run once per event ID and one at a time per user; a broken command
 * never blocks the next one.
 */
import type { Logger, WeakEvent } from "matrix-appservice-bridge";
import type { BridgeConfig } from "../config/types.js";
import type { MailboxService } from "./mailboxService.js";
import { text } from "./commands/commands.js";
import { CommandRouter } from "./events/commandRouter.js";
import { atLeast, permissionLevel } from "../core/permissions.js";
import type { VoicemailStore } from "../store/store.js";
import type { KeyedQueue } from "../util/keyedQueue.js";
import type { VoicemailMetrics } from "../util/metrics.js";
import type { Bot, BotDirectory } from "../matrix/bots.js";
import type { DmRooms } from "../matrix/dmRooms.js";
import { noticeContent } from "../matrix/content.js";
import type { DeliveryService } from "../delivery/deliveryService.js";
import type { PresenceTracker } from "../delivery/presence.js";
import type { TargetService } from "./targetService.js";
import type { UserViews } from "../delivery/userViews.js";

export interface EventHandlerDeps {
  config: BridgeConfig;
  store: VoicemailStore;
  bots: BotDirectory;
  dms: DmRooms;
  mailboxes: MailboxService;
  views: UserViews;
  targets: TargetService;
  delivery: DeliveryService;
  presence: PresenceTracker;
  /** One command at a time per user. */
  userQueue: KeyedQueue;
  log: Logger;
  metrics?: VoicemailMetrics;
}

export class EventHandler {
  private readonly config: BridgeConfig;
  private readonly store: VoicemailStore;
  private readonly bots: BotDirectory;
  private readonly dms: DmRooms;
  private readonly log: Logger;
  private commandRouter?: CommandRouter;

  constructor(private readonly deps: EventHandlerDeps) {
    this.config = deps.config;
    this.store = deps.store;
    this.bots = deps.bots;
    this.dms = deps.dms;
    this.log = deps.log;
  }

  async onEvent(event: WeakEvent): Promise<void> {
    try {
      if (event.type === "m.room.member" && typeof event.state_key === "string") await this.onMembership(event);
      else if (event.type === "m.room.message" && !this.bots.isBot(event.sender)) await this.onMessage(event);
    } catch (err) {
      this.log.error(`event ${event.event_id} (${event.type}) in ${event.room_id}: ${(err as Error).message}`);
    }
  }

  /** Presence from the homeserver: someone with `when-online` delivery came online. */
  onPresence(userId: string, presence: string): void {
    if (this.deps.presence.update(userId, presence) && presence === "online") {
      void this.deps.delivery.kickPerson(userId).catch((err: Error) => this.log.warn(`presence of ${userId}: ${err.message}`));
    }
  }

  private async onMembership(event: WeakEvent): Promise<void> {
    const target = event.state_key!;
    const membership = (event.content as { membership?: string }).membership ?? "";
    if (await this.deps.targets.onMembership(event.room_id, target, membership)) return;
    const bot = this.bots.byUser(target);
    if (bot) {
      if (membership === "invite") await this.onBotInvited(event, bot);
      return;
    }
    const dm = await this.store.getDmRoomById(event.room_id);
    if (!dm) return;
    if (target === dm.userId) {
      if (membership === "join") {
        await this.dms.markJoined(dm);
        // What waited for the user to accept the invite goes out now.
        await this.deps.delivery.kickPerson(dm.userId);
      } else if (membership === "leave" || membership === "ban") await this.dms.forget(dm);
    } else if (membership === "join" || membership === "invite") {
      // Voicemail details are private: a DM that gains a third person is a DM no more.
      const intent = this.bots.intent(this.bots.byUser(dm.botUserId)!);
      await intent
        .sendMessage(dm.roomId, noticeContent(text("Someone else was added to this room, so it is no longer private: I will send your voicemail notifications to a new direct chat.")))
        .catch(() => undefined);
      await this.dms.forget(dm);
    }
  }

  private async onBotInvited(event: WeakEvent, bot: Bot): Promise<void> {
    const inviter = event.sender;
    const intent = this.bots.intent(bot);
    if (!atLeast(permissionLevel(this.config.permissions, inviter), "user")) {
      this.log.info(`${bot.userId} declined an invite to ${event.room_id} from ${inviter}: not permitted`);
      await intent.leave(event.room_id, "You are not permitted to use this bridge").catch(() => undefined);
      return;
    }
    await intent.join(event.room_id);
    const members = await intent.matrixClient.getRoomMembers(event.room_id, undefined, ["join", "invite"]);
    const others = new Set(members.map((m) => m.membershipFor).filter((u) => u !== bot.userId));
    const oneToOne = others.size === 1 && others.has(inviter);
    // The main bot also serves rooms as notification targets: only a direct invite makes a DM.
    const direct = bot === this.bots.main ? oneToOne && (event.content as { is_direct?: boolean }).is_direct === true : oneToOne;
    if (!direct) {
      if (bot === this.bots.main) {
        // A room for notifications (a target): it is added from the user's DM, by someone allowed to.
        await intent.sendMessage(
          event.room_id,
          noticeContent(text(`Hello! To have voicemail notifications posted here, say "!target add ${event.room_id}" in your direct chat with me (you need the power to change this room). I take no commands here.`)),
        );
        this.log.info(`${bot.userId} joined ${event.room_id} on the invite of ${inviter}: a possible target room`);
        return;
      }
      await intent.sendMessage(event.room_id, noticeContent(text(`I only work in direct chats with one person. To have notifications posted in a room, invite ${this.bots.main.userId} instead.`)));
      await intent.leave(event.room_id);
      this.log.info(`${bot.userId} left ${event.room_id}: not a direct chat`);
      return;
    }
    await this.dms.adopt(inviter, bot, event.room_id);
    this.log.info(`${bot.userId} joined DM ${event.room_id} of ${inviter}`);
    const intro = bot.system
      ? `Hello! I bring you the message waiting indication of ${bot.system.name}. Say !help for commands.`
      : "Hello! I am the voicemail bridge. Say !help for commands.";
    await intent.sendMessage(event.room_id, noticeContent(text(intro)));
    await this.deps.delivery.kickPerson(inviter);
  }

  private async onMessage(event: WeakEvent): Promise<void> {
    await (this.commandRouter ??= new CommandRouter(this.deps)).onMessage(event);
  }
}

