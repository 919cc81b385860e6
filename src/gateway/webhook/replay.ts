/**
 * The signatures a webhook accepted in the last five minutes: the same signed request again is
 * a replay, refused. Memory suffices because a signature is only worth refusing while its
 * timestamp is inside the window; after that the window check refuses it on its own.
 *
 * A restart forgets the set: a request captured in the five minutes before a restart can be
 * replayed once after it. We accept that risk rather than write every signature to the store
 * before answering: the replay can only bring back a state at most five minutes old (the
 * system's next update corrects it), repeating the newest state changes nothing, and the
 * attacker must be able to read the traffic (put TLS in front of the webhook).
 *
 * Only signatures that verified get in, so filling the set needs the secret; a full set refuses
 * (429) rather than forgets, since forgetting would let a replay through.
 */

/** Enough for about 300 requests a second from one system, sustained. */
const DEFAULT_CAPACITY = 100_000;
const SWEEP_INTERVAL_MS = 10_000;
const FULL_SWEEP_INTERVAL_MS = 1_000;

export type Claim = "claimed" | "seen" | "full";

export class SeenSignatures {
  /** Signature -> until when a repeat of it must be refused (ms). */
  private readonly seen = new Map<string, number>();
  private lastSweep = -Infinity;

  constructor(private readonly capacity = DEFAULT_CAPACITY) {}

  get size(): number {
    return this.seen.size;
  }

  /** Takes a signature for one request; "seen" when a request already took it (a replay). */
  claim(key: string, refuseUntilMs: number, nowMs: number): Claim {
    const until = this.seen.get(key);
    if (until !== undefined && until > nowMs) return "seen";
    const full = this.seen.size >= this.capacity;
    if (nowMs - this.lastSweep >= (full ? FULL_SWEEP_INTERVAL_MS : SWEEP_INTERVAL_MS)) this.sweep(nowMs);
    if (this.seen.size >= this.capacity) return "full";
    this.seen.set(key, refuseUntilMs);
    return "claimed";
  }

  /** Gives a signature back: its request was not stored, so the sender's retry must get through. */
  release(key: string): void {
    this.seen.delete(key);
  }

  private sweep(nowMs: number): void {
    this.lastSweep = nowMs;
    for (const [key, until] of this.seen) if (until <= nowMs) this.seen.delete(key);
  }
}
