/**
 * Who is online, for users who asked for `when-online` delivery. Presence arrives as ephemeral
 * events in the appservice transactions, but Synapse drops those while it has the appservice
 * marked down: so what was pushed is trusted only for a while, and then the bridge asks, as a
 * bot that shares a room with the user (the DM's bot; Synapse refuses anyone else with
 * "You are not allowed to see their presence").
 */
import type { Intent } from "matrix-appservice-bridge";

export type Presence = "online" | "unavailable" | "offline";

/** A presence the bridge asked for is asked again after this long. */
const ASKED_PRESENCE_TTL_MS = 20_000;
/** A pushed presence is trusted this long: a later push may have been dropped. */
const PUSHED_PRESENCE_TTL_MS = 60_000;

export class PresenceTracker {
  private readonly known = new Map<string, { presence: Presence; at: number; asked: boolean }>();

  /** `fallbackIntent`: who asks when the caller names nobody (the main bot). */
  constructor(private readonly fallbackIntent?: () => Intent) {}

  /** Returns true when this is a change (the caller may then deliver what waited). */
  update(userId: string, presence: string): boolean {
    if (presence !== "online" && presence !== "unavailable" && presence !== "offline") return false;
    const changed = this.known.get(userId)?.presence !== presence;
    this.known.set(userId, { presence, at: Date.now(), asked: false });
    return changed;
  }

  /**
   * Whether the user is online now, asking as `asking` (a bot that shares a room with them)
   * when what is known is too old. A failed look-up is "unknown": never remembered as offline,
   * asked again next time.
   */
  async isOnline(userId: string, asking?: Intent): Promise<boolean> {
    const known = this.known.get(userId);
    if (known && Date.now() - known.at < (known.asked ? ASKED_PRESENCE_TTL_MS : PUSHED_PRESENCE_TTL_MS)) return known.presence === "online";
    const intent = asking ?? this.fallbackIntent?.();
    if (!intent) return known?.presence === "online";
    let state: string | undefined;
    try {
      state = ((await intent.matrixClient.getPresenceStatusFor(userId)) as { state?: string }).state;
    } catch {
      // Unknown: the last thing known (if any) stands until the next look-up.
      return known?.presence === "online";
    }
    const presence: Presence = state === "online" ? "online" : state === "unavailable" ? "unavailable" : "offline";
    this.known.set(userId, { presence, at: Date.now(), asked: true });
    return presence === "online";
  }
}
