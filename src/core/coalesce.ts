/**
 * Changes that waited for the same room are told as one: per mailbox, from the state the user
 * last saw to the state now. No I/O here.
 */
import type { MailboxChange, MailboxState } from "./mwi.js";

export interface WaitingChange {
  change: MailboxChange;
  createdAt: number;
}

export interface CoalescedChange extends MailboxChange {
  /** When the first of the merged changes happened. */
  firstAt: number;
  /** How many changes were merged. */
  merged: number;
}

const key = (s: MailboxState) => `${s.systemId}\n${s.mailbox}`;

/** One change per mailbox, in the order mailboxes first changed. */
export function coalesce(waiting: WaitingChange[]): CoalescedChange[] {
  const byMailbox = new Map<string, CoalescedChange>();
  for (const { change, createdAt } of waiting) {
    const k = key(change.current);
    const earlier = byMailbox.get(k);
    if (!earlier) {
      byMailbox.set(k, { ...change, firstAt: createdAt, merged: 1 });
      continue;
    }
    const arrived = earlier.kind === "new-message" || change.kind === "new-message";
    byMailbox.set(k, {
      // A voicemail that arrived and was already listened to is no news any more.
      kind: arrived && change.current.new > (earlier.previous?.new ?? 0) ? "new-message" : "counts",
      ...(earlier.previous ? { previous: earlier.previous } : {}),
      current: change.current,
      firstAt: earlier.firstAt,
      merged: earlier.merged + 1,
    });
  }
  return [...byMailbox.values()];
}
