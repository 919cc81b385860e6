/** The machine-readable indicator (F13): one state event per user holding every system's counts. */
import type { MailboxState, MessageInfo } from "./mwi.js";

export interface CountsContent {
  waiting: boolean;
  new: number;
  old: number;
  urgent_new: number;
  urgent_old: number;
}

export interface SystemSummary extends CountsContent {
  name: string;
  mailboxes: Record<string, CountsContent>;
}

export interface SummaryContent {
  user_id: string;
  total_new: number;
  systems: Record<string, SystemSummary>;
}

export interface LinkedMailbox {
  systemId: string;
  systemName: string;
  mailbox: string;
  state?: MailboxState;
}

function countsOf(state: MailboxState | undefined): CountsContent {
  return {
    waiting: state?.waiting ?? false,
    new: state?.new ?? 0,
    old: state?.old ?? 0,
    urgent_new: state?.urgentNew ?? 0,
    urgent_old: state?.urgentOld ?? 0,
  };
}

/** Builds the summary; keys are sorted so equal summaries serialise equally. */
export function buildSummary(userId: string, mailboxes: LinkedMailbox[]): SummaryContent {
  // Maps, then own properties: system IDs and mailbox numbers come from outside, and "__proto__"
  // is a valid one (as a plain object key it would reach Object.prototype).
  const systems = new Map<string, Omit<SystemSummary, "mailboxes"> & { mailboxes: Map<string, CountsContent> }>();
  // Code-unit order, not localeCompare: distinct but "equivalent" names must still sort apart.
  const compare = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
  const sorted = [...mailboxes].sort((a, b) => compare(a.systemId, b.systemId) || compare(a.mailbox, b.mailbox));
  for (const m of sorted) {
    const counts = countsOf(m.state);
    let system = systems.get(m.systemId);
    if (!system) {
      system = { name: m.systemName, waiting: false, new: 0, old: 0, urgent_new: 0, urgent_old: 0, mailboxes: new Map() };
      systems.set(m.systemId, system);
    }
    system.mailboxes.set(m.mailbox, counts);
    system.waiting ||= counts.waiting;
    system.new += counts.new;
    system.old += counts.old;
    system.urgent_new += counts.urgent_new;
    system.urgent_old += counts.urgent_old;
  }
  const total_new = [...systems.values()].reduce((sum, s) => sum + s.new, 0);
  const content: Record<string, SystemSummary> = Object.fromEntries(
    [...systems].map(([id, s]) => [id, { ...s, mailboxes: Object.fromEntries(s.mailboxes) }]),
  );
  return { user_id: userId, total_new, systems: content };
}

/** `last_message` of the state event: the event's fields are snake case, as the webhook's are. */
function lastMessageContent(message: MessageInfo): Record<string, unknown> {
  const { callerName, ...rest } = message;
  return { ...rest, ...(callerName !== undefined ? { caller_name: callerName } : {}) };
}

/** The per-mailbox state event content (F13, F8). */
export function mailboxStateContent(userId: string, systemName: string, state: MailboxState): Record<string, unknown> {
  return {
    user_id: userId,
    system: state.systemId,
    system_name: systemName,
    mailbox: state.mailbox,
    ...countsOf(state),
    updated: state.updated,
    ...(state.lastMessage ? { last_message: lastMessageContent(state.lastMessage) } : {}),
  };
}
