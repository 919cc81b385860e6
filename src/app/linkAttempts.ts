/**
 * Failed `!link` tries, limited per user and per mailbox: without a limit `!link` is a password
 * oracle, and every failure reaches the PBX from the bridge's address, so its fail2ban would cut
 * off MWI for everyone. Kept in memory: a restart forgets the tries (and starts the windows anew).
 */

/** The `linkLimits` block of the config. */
export interface LinkLimits {
  /** Failed tries of one user (any system, any mailbox) within userWindowMinutes. */
  userFailures: number;
  userWindowMinutes: number;
  /** Failed tries on one mailbox (by anyone) within mailboxWindowMinutes. */
  mailboxFailures: number;
  mailboxWindowMinutes: number;
}

export const DEFAULT_LINK_LIMITS: LinkLimits = { userFailures: 5, userWindowMinutes: 15, mailboxFailures: 5, mailboxWindowMinutes: 60 };

/** A try under way: it counts as a failure until it is settled otherwise. */
export interface LinkAttempt {
  /** It did not fail (the link was proven), or it was no verdict on the credentials: it does not count. */
  forget(): void;
}

export type AttemptStart = { ok: true; attempt: LinkAttempt } | { ok: false; limit: "user" | "mailbox"; until: number };

/** Above this many keys, a new try first drops every expired one. */
const SWEEP_ABOVE = 1_000;

/** Times of the tries under one key, oldest first. */
class Window {
  private readonly keys = new Map<string, { at: number }[]>();

  constructor(
    private readonly failures: number,
    private readonly windowMs: number,
  ) {}

  private live(key: string, now: number): { at: number }[] {
    const tries = (this.keys.get(key) ?? []).filter((t) => t.at > now - this.windowMs);
    if (tries.length) this.keys.set(key, tries);
    else this.keys.delete(key);
    return tries;
  }

  /** When the key may try again, if it may not now. */
  blockedUntil(key: string, now: number): number | undefined {
    if (this.keys.size > SWEEP_ABOVE) for (const k of [...this.keys.keys()]) this.live(k, now);
    const tries = this.live(key, now);
    if (tries.length < this.failures) return undefined;
    // Tries expire oldest first: one more may start once all but failures-1 of them have.
    return tries[tries.length - this.failures]!.at + this.windowMs;
  }

  add(key: string, entry: { at: number }): void {
    const tries = this.keys.get(key);
    if (tries) tries.push(entry);
    else this.keys.set(key, [entry]);
  }

  remove(key: string, entry: { at: number }): void {
    const tries = this.keys.get(key)?.filter((t) => t !== entry) ?? [];
    if (tries.length) this.keys.set(key, tries);
    else this.keys.delete(key);
  }
}

export class LinkAttempts {
  private readonly users: Window;
  private readonly mailboxes: Window;

  constructor(
    limits: LinkLimits = DEFAULT_LINK_LIMITS,
    private readonly now: () => number = Date.now,
  ) {
    this.users = new Window(limits.userFailures, limits.userWindowMinutes * 60_000);
    this.mailboxes = new Window(limits.mailboxFailures, limits.mailboxWindowMinutes * 60_000);
  }

  /**
   * A try of the user on the mailbox, or when they may try again. The try counts at once (as a
   * failure, until forgotten), so that tries made at the same time cannot pass the limit together.
   */
  begin(userId: string, systemId: string, mailbox: string): AttemptStart {
    const now = this.now();
    const mailboxKey = JSON.stringify([systemId, mailbox]);
    const userUntil = this.users.blockedUntil(userId, now);
    const mailboxUntil = this.mailboxes.blockedUntil(mailboxKey, now);
    if (userUntil !== undefined || mailboxUntil !== undefined) {
      const limit = userUntil !== undefined && (mailboxUntil === undefined || userUntil >= mailboxUntil) ? "user" : "mailbox";
      return { ok: false, limit, until: Math.max(userUntil ?? 0, mailboxUntil ?? 0) };
    }
    const entry = { at: now };
    this.users.add(userId, entry);
    this.mailboxes.add(mailboxKey, entry);
    return {
      ok: true,
      attempt: {
        forget: () => {
          this.users.remove(userId, entry);
          this.mailboxes.remove(mailboxKey, entry);
        },
      },
    };
  }
}
