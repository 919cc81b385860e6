/**
 * Events the homeserver sends the bridge: invites to its bots, users joining or leaving DMs,
 * and `!commands`. The dispatcher (events/dispatch.ts) keeps the order of each room's events;
 * memberships and invites have their own parts (events/membership.ts, events/invites.ts).
 * Commands run once per event ID and one at a time per user; a broken command never blocks the
 * next one.
 */
import type { Logger, WeakEvent } from "matrix-appservice-bridge";
import type { BridgeConfig } from "../config/types.js";
import type { MailboxService } from "./mailboxService.js";
import { COMMANDS, CommandError, text, type CommandContext } from "./commands/commands.js";
import { carriesSecret, parseCommand } from "./commands/parser.js";
import { atLeast, permissionLevel } from "../core/permissions.js";
import type { VoicemailStore } from "../store/store.js";
import type { KeyedQueue } from "../util/keyedQueue.js";
import type { VoicemailMetrics } from "../util/metrics.js";
import type { BotDirectory } from "../matrix/bots.js";
import type { DmRooms } from "../matrix/dmRooms.js";
import { noticeContent } from "../matrix/content.js";
import type { DeliveryService } from "../delivery/deliveryService.js";
import type { PresenceTracker } from "../delivery/presence.js";
import type { TargetService } from "./targetService.js";
import type { UserViews } from "../delivery/userViews.js";
import type { RenderedText } from "../core/format.js";
import { EventDispatcher } from "./events/dispatch.js";
import { InviteHandler } from "./events/invites.js";
import { MembershipHandler } from "./events/membership.js";

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
  private readonly systems: CommandContext["systems"];
  private readonly config: BridgeConfig;
  private readonly store: VoicemailStore;
  private readonly bots: BotDirectory;
  private readonly log: Logger;
  private readonly metrics: VoicemailMetrics | undefined;
  private readonly dispatcher: EventDispatcher;

  constructor(private readonly deps: EventHandlerDeps) {
    this.config = deps.config;
    this.store = deps.store;
    this.bots = deps.bots;
    this.log = deps.log;
    this.metrics = deps.metrics;
    this.systems = deps.views.systems;
    const parts = { config: deps.config, store: deps.store, bots: deps.bots, dms: deps.dms, targets: deps.targets, delivery: deps.delivery, log: deps.log };
    const membership = new MembershipHandler(parts, new InviteHandler(parts));
    this.dispatcher = new EventDispatcher({ bots: deps.bots, membership, onMessage: (event) => this.onMessage(event), log: deps.log });
  }

  /** Every event from the homeserver: handled in order per room; resolves once handled, never rejects. */
  onEvent(event: WeakEvent): Promise<void> {
    return this.dispatcher.dispatch(event);
  }

  /** Resolves when every event received so far was handled. */
  idle(): Promise<void> {
    return this.dispatcher.idle();
  }

  /** Presence from the homeserver: someone with `when-online` delivery came online. */
  onPresence(userId: string, presence: string): void {
    if (this.deps.presence.update(userId, presence) && presence === "online") {
      void this.deps.delivery.kickPerson(userId).catch((err: Error) => this.log.warn(`presence of ${userId}: ${err.message}`));
    }
  }

  /** A message from anyone but the bots: a `!command` in the sender's own DM is run. */
  async onMessage(event: WeakEvent): Promise<void> {
    const content = event.content as { msgtype?: string; body?: unknown; "m.new_content"?: unknown };
    if (content.msgtype !== "m.text" || typeof content.body !== "string" || content["m.new_content"]) return;
    const body = content.body;
    if (!body.trimStart().startsWith("!")) return;
    // Commands are taken in the sender's own DMs only; one line says why one was not.
    const dm = await this.store.getDmRoomById(event.room_id);
    if (!dm) return this.log.info(`command ${event.event_id} from ${event.sender} in ${event.room_id} not taken: the room is no DM of the bridge`);
    if (dm.userId !== event.sender) return this.log.info(`command ${event.event_id} from ${event.sender} in ${event.room_id} not taken: the DM of ${dm.userId}, not theirs`);
    const bot = this.bots.byUser(dm.botUserId);
    if (!bot) return this.log.info(`command ${event.event_id} from ${event.sender} in ${event.room_id} not taken: its bot ${dm.botUserId} is no longer configured`);
    const intent = this.bots.intent(bot);
    const reply = (t: RenderedText) => intent.sendMessage(event.room_id, noticeContent(t));

    // A password must not stay in the room a moment longer than needed, not even if the
    // command turns out to be wrong.
    let redactionFailed = false;
    if (carriesSecret(body)) {
      redactionFailed = await intent.matrixClient
        .redactEvent(event.room_id, event.event_id, "contained a password")
        .then(() => false)
        .catch((err: Error) => {
          this.log.warn(`could not redact a message with a password in ${event.room_id}: ${err.message}`);
          return true;
        });
    }

    await this.deps.userQueue.run(event.sender, async () => {
      if (!(await this.store.markEventHandled(event.event_id, Date.now()))) return;
      if (redactionFailed) await reply(text("I could not remove your message with the password: please delete it yourself."));
      const level = permissionLevel(this.config.permissions, event.sender);
      const parsed = parseCommand(body, COMMANDS);
      if ("notACommand" in parsed) return;
      const name = parsed.name ?? "unknown";
      if (!atLeast(level, "user")) {
        this.metrics?.commands.inc({ command: name, outcome: "denied" });
        await reply(text("You are not permitted to use this bridge."));
        return;
      }
      if (!parsed.ok) {
        this.metrics?.commands.inc({ command: name, outcome: "bad_syntax" });
        await reply(text(parsed.error));
        return;
      }
      const command = COMMANDS.find((c) => c.name === parsed.name)!;
      if (!atLeast(level, command.level)) {
        this.metrics?.commands.inc({ command: name, outcome: "denied" });
        await reply(text(`!${command.name} is for ${command.level}s only.`));
        return;
      }
      const ctx: CommandContext = {
        sender: event.sender,
        level,
        bot,
        mailboxes: this.deps.mailboxes,
        views: this.deps.views,
        targets: this.deps.targets,
        store: this.store,
        systems: this.systems,
      };
      try {
        await reply(await command.run(ctx, parsed.args));
        this.metrics?.commands.inc({ command: name, outcome: "ok" });
        this.log.info(`${event.sender} ran !${command.name}`);
      } catch (err) {
        if (err instanceof CommandError) {
          this.metrics?.commands.inc({ command: name, outcome: "refused" });
          await reply(text(err.message));
          return;
        }
        this.metrics?.commands.inc({ command: name, outcome: "error" });
        this.log.error(`!${command.name} from ${event.sender} failed: ${(err as Error).message}`);
        await reply(text(`Something went wrong with !${command.name}; the bridge's log has the details.`));
      }
    });
  }
}

