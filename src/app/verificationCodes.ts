/**
 * One-time codes of ring-to-verify linking: the bridge rings a mailbox's phone with a code, the
 * user types it back. A code is bound to the user and the mailbox it was made for, is used once,
 * expires after CODE_TTL_MS, dies after MAX_WRONG wrong tries, and is compared in constant time.
 * Kept in memory: a restart forgets them (the user rings again).
 */
import { createHash, randomInt, timingSafeEqual } from "node:crypto";
import type { LinkAttempt } from "./linkAttempts.js";

export const CODE_TTL_MS = 10 * 60_000;
export const CODE_DIGITS = 6;
/** Wrong tries one code survives; the user's and the mailbox's limits (linkAttempts.ts) count them too. */
const MAX_WRONG = 3;

interface PendingCode {
  systemId: string;
  mailbox: string;
  digest: Buffer;
  expiresAt: number;
  wrong: number;
  /** The call's try: it counts as a failure until the code is used. */
  attempt: LinkAttempt;
}

export type CodeCheck =
  | { ok: true; systemId: string; mailbox: string }
  | { ok: false; reason: "none" | "expired" | "wrong"; systemId?: string; mailbox?: string };

const digestOf = (code: string) => createHash("sha256").update(code).digest();

export class VerificationCodes {
  /** One pending code per user: a new call replaces the code of the one before. */
  private readonly byUser = new Map<string, PendingCode>();

  constructor(
    private readonly now: () => number = Date.now,
    private readonly random: (max: number) => number = (max) => randomInt(max),
  ) {}

  /** A fresh code for the user and mailbox, and when it expires. */
  issue(userId: string, systemId: string, mailbox: string, attempt: LinkAttempt): { code: string; expiresAt: number } {
    this.sweep();
    const code = String(this.random(10 ** CODE_DIGITS)).padStart(CODE_DIGITS, "0");
    const expiresAt = this.now() + CODE_TTL_MS;
    this.byUser.set(userId, { systemId, mailbox, digest: digestOf(code), expiresAt, wrong: 0, attempt });
    return { code, expiresAt };
  }

  /** The code was not used after all (the call could not be made). */
  withdraw(userId: string): void {
    this.byUser.get(userId)?.attempt.forget();
    this.byUser.delete(userId);
  }

  /** What the user's pending code (if any) is for, without trying it. */
  pendingFor(userId: string): { systemId: string; mailbox: string } | undefined {
    const pending = this.byUser.get(userId);
    return pending && pending.expiresAt > this.now() ? { systemId: pending.systemId, mailbox: pending.mailbox } : undefined;
  }

  check(userId: string, code: string): CodeCheck {
    const pending = this.byUser.get(userId);
    if (!pending) return { ok: false, reason: "none" };
    const where = { systemId: pending.systemId, mailbox: pending.mailbox };
    if (pending.expiresAt <= this.now()) {
      this.byUser.delete(userId);
      return { ok: false, reason: "expired", ...where };
    }
    // Both sides hashed: equal lengths whatever was typed, and no early exit on the first wrong digit.
    if (!timingSafeEqual(digestOf(code), pending.digest)) {
      if (++pending.wrong >= MAX_WRONG) this.byUser.delete(userId);
      return { ok: false, reason: "wrong", ...where };
    }
    this.byUser.delete(userId);
    pending.attempt.forget();
    return { ok: true, ...where };
  }

  private sweep(): void {
    const now = this.now();
    for (const [user, pending] of this.byUser) if (pending.expiresAt <= now) this.byUser.delete(user);
  }
}
