/** MWI state of one mailbox and how an update from a voice mail system changes it. No I/O here. */

/** What a mailbox number may look like, wherever one comes in (webhook, commands). */
export const MAILBOX_PATTERN = /^[\p{L}\p{N}@._+:*#-]{1,128}$/u;

/** RFC 3842 counts are unsigned 32-bit; larger values are clamped to this. */
export const MAX_COUNT = 4294967295;

export interface MwiCounts {
  waiting: boolean;
  new: number;
  old: number;
  urgentNew: number;
  urgentOld: number;
}

/** What the voice mail system knows about the newest message, when it says. */
export interface MessageInfo {
  /** Caller number (ANI). */
  ani?: string;
  /** The caller's name, as the voice mail system knows it (caller ID name, a mail header). */
  callerName?: string;
  /** Called number or mailbox (DNIS). */
  dnis?: string;
  /** When the message was left, ISO 8601. */
  time?: string;
  /** Length in seconds. */
  duration?: number;
}

/**
 * Control characters (C0, DEL, C1), Unicode line and paragraph separators, and bidirectional overrides/isolates/marks: a caller field
 * from outside must not reorder or hide what a client shows next to it.
 */
const UNSAFE_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** A caller field as it may be shown: unsafe characters out, white space folded, bounded. */
export function cleanCallerField(value: string): string | undefined {
  const cleaned = value.replace(UNSAFE_CHARACTERS, " ").replace(/\s+/g, " ").trim().slice(0, 128);
  return cleaned || undefined;
}

/** The message info with every text field cleaned; fields that end up empty are left out. */
export function cleanMessageInfo(info: MessageInfo): MessageInfo | undefined {
  const out: MessageInfo = {};
  for (const key of ["ani", "callerName", "dnis", "time"] as const) {
    const value = info[key];
    const cleaned = typeof value === "string" ? cleanCallerField(value) : undefined;
    if (cleaned) out[key] = cleaned;
  }
  if (typeof info.duration === "number" && Number.isFinite(info.duration) && info.duration >= 0) out.duration = info.duration;
  return Object.keys(out).length ? out : undefined;
}

export interface MwiUpdate {
  systemId: string;
  mailbox: string;
  counts: MwiCounts;
  message?: MessageInfo;
  /** When the bridge accepted the update (ms since the epoch). */
  receivedAt: number;
}

export interface MailboxState extends MwiCounts {
  systemId: string;
  mailbox: string;
  /** When the counts last changed (ms since the epoch). */
  updated: number;
  lastMessage?: MessageInfo;
}

export type ChangeKind = "new-message" | "counts";

export interface MailboxChange {
  kind: ChangeKind;
  previous?: MailboxState;
  current: MailboxState;
}

export function sameCounts(a: MwiCounts, b: MwiCounts): boolean {
  return (
    a.waiting === b.waiting &&
    a.new === b.new &&
    a.old === b.old &&
    a.urgentNew === b.urgentNew &&
    a.urgentOld === b.urgentOld
  );
}

export const emptyCounts = (): MwiCounts => ({ waiting: false, new: 0, old: 0, urgentNew: 0, urgentOld: 0 });

/**
 * Applies an update to the stored state. Returns no change for a repeat of the same counts:
 * systems resend MWI on every refresh and users must not be told twice.
 */
export function applyUpdate(previous: MailboxState | undefined, update: MwiUpdate): MailboxChange | undefined {
  if (previous && sameCounts(previous, update.counts)) return undefined;
  const arrived = update.counts.new > (previous?.new ?? 0);
  // A new message without caller details must not show the caller of an older one.
  const message = update.message && cleanMessageInfo(update.message);
  const lastMessage = message ?? (arrived ? undefined : previous?.lastMessage);
  const current: MailboxState = {
    systemId: update.systemId,
    mailbox: update.mailbox,
    ...update.counts,
    updated: update.receivedAt,
    ...(lastMessage ? { lastMessage } : {}),
  };
  // The very first state seen with nothing new in it is a sync, not news.
  return { kind: arrived ? "new-message" : "counts", previous, current };
}

export function clampCount(value: number): number {
  if (!Number.isFinite(value) || value < 0) return 0;
  return Math.min(Math.floor(value), MAX_COUNT);
}
