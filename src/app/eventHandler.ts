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
import { CommandRouter } from "./events/commandRouter.js";
import type { VoicemailStore } from "../store/store.js";
import type { KeyedQueue } from "../util/keyedQueue.js";
import type { VoicemailMetrics } from "../util/metrics.js";
import type { BotDirectory } from "../matrix/bots.js";
import type { DmRooms } from "../matrix/dmRooms.js";
import type { DeliveryService } from "../delivery/deliveryService.js";
import type { PresenceTracker } from "../delivery/presence.js";
import type { TargetService } from "./targetService.js";
import type { UserViews } from "../delivery/userViews.js";
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
  private readonly log: Logger;
  private readonly dispatcher: EventDispatcher;
  private readonly commandRouter: CommandRouter;

  constructor(private readonly deps: EventHandlerDeps) {
    this.log = deps.log;
    const parts = { config: deps.config, store: deps.store, bots: deps.bots, dms: deps.dms, targets: deps.targets, delivery: deps.delivery, log: deps.log };
    const membership = new MembershipHandler(parts, new InviteHandler(parts));
    this.commandRouter = new CommandRouter(deps);
    this.dispatcher = new EventDispatcher({
      bots: deps.bots,
      membership,
      onMessage: (event) => this.onMessage(event),
      onPowerLevels: (roomId) => deps.targets.onPowerLevels(roomId),
      log: deps.log,
    });
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

  /** A message from anyone but the bots: a `!command` in the sender's own DM is run (events/commandRouter.ts). */
  async onMessage(event: WeakEvent): Promise<void> {
    await this.commandRouter.onMessage(event);
  }
}

