/**
 * Routes the homeserver's events by type, handling the events of one room in the order they came
 * (a command sent just after a bot joined a new DM waits for the invite handler to have stored
 * that DM). A broken event is logged in one line and never stops the next.
 */
import type { Logger, WeakEvent } from "matrix-appservice-bridge";
import type { BotDirectory } from "../../matrix/bots.js";
import { describeError, errcodeOf } from "../../matrix/membership.js";
import { KeyedQueue } from "../../util/keyedQueue.js";
import type { MembershipHandler } from "./membership.js";
import type { MemberEvent } from "./types.js";

export interface DispatchRoutes {
  bots: Pick<BotDirectory, "isBot">;
  membership: Pick<MembershipHandler, "onMembership">;
  /** A room's power levels changed (room targets check their owner's power). */
  onPowerLevels?(roomId: string): Promise<void>;
  /** Messages from anyone but the bridge's bots (commands). */
  onMessage(event: WeakEvent): Promise<void>;
  log: Logger;
}

/** Failures of the homeserver (or the way to it) that the next event may not meet. */
function transient(err: unknown): boolean {
  const e = (err ?? {}) as { code?: string; statusCode?: number };
  return errcodeOf(err) !== undefined || typeof e.code === "string" || (e.statusCode ?? 0) >= 500;
}

export class EventDispatcher {
  private readonly rooms = new KeyedQueue();

  constructor(private readonly routes: DispatchRoutes) {}

  /** Resolves when this event was handled (or failed, which is logged): never rejects. */
  dispatch(event: WeakEvent): Promise<void> {
    return this.rooms
      .run(event.room_id, () => this.route(event))
      .catch((err: unknown) => {
        const line = `event ${event.event_id} (${event.type}) in ${event.room_id}: ${describeError(err)}`;
        if (transient(err)) this.routes.log.warn(line);
        else this.routes.log.error(line);
      });
  }

  /** Resolves when every event received so far was handled. */
  idle(): Promise<void> {
    return this.rooms.idle();
  }

  private async route(event: WeakEvent): Promise<void> {
    if (event.type === "m.room.member" && typeof event.state_key === "string") await this.routes.membership.onMembership(event as MemberEvent);
    else if (event.type === "m.room.message" && !this.routes.bots.isBot(event.sender)) await this.routes.onMessage(event);
    else if (event.type === "m.room.power_levels" && event.state_key === "") await this.routes.onPowerLevels?.(event.room_id);
  }
}
