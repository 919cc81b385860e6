/**
 * Who is online, for users who asked for `when-online` delivery. Presence arrives as ephemeral
 * events in the appservice transactions; when the bridge has none for a user it asks once.
 */
import type { Intent } from "matrix-appservice-bridge";

export type Presence = "online" | "unavailable" | "offline";

/** A presence the bridge asked for is asked again after this long; pushed ones are kept. */
const ASKED_PRESENCE_TTL_MS = 20_000;

export class PresenceTracker {
  private readonly known = new Map<string, { presence: Presence; askedAt?: number }>();

  constructor(private readonly askingIntent: () => Intent) {}

  /** Returns true when this is a change (the caller may then deliver what waited). */
  update(userId: string, presence: string): boolean {
    if (presence !== "online" && presence !== "unavailable" && presence !== "offline") return false;
    const changed = this.known.get(userId)?.presence !== presence;
    this.known.set(userId, { presence });
    return changed;
  }

  async isOnline(userId: string): Promise<boolean> {
    const known = this.known.get(userId);
    if (known && (known.askedAt === undefined || Date.now() - known.askedAt < ASKED_PRESENCE_TTL_MS)) {
      return known.presence === "online";
    }
    const presence: Presence = await this.askingIntent()
      .matrixClient.getPresenceStatusFor(userId)
      .then((p: { state?: string }) => (p.state === "online" ? "online" : p.state === "unavailable" ? "unavailable" : "offline"))
      .catch(() => "offline" as const);
    this.known.set(userId, { presence, askedAt: Date.now() });
    return presence === "online";
  }
}
