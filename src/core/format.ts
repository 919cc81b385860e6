/** Text of notifications and replies: a plain body and the same in HTML (F7). No I/O here. */
import type { MailboxChange, MailboxState, MessageInfo } from "./mwi.js";

export interface RenderedText {
  body: string;
  html: string;
}

export interface MailboxView {
  systemId: string;
  systemName: string;
  mailbox: string;
  state?: MailboxState;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The name of the room an account target is told in (the count is added on delivery). */
export const accountRoomName = (ownerId: string) => `Voicemail of ${ownerId}`;

function mailboxesText(n: number): string {
  return n === 1 ? "1 mailbox" : `${n} mailboxes`;
}

/** The canonical name of an IANA time zone ("europe/berlin" -> "Europe/Berlin"), or undefined. */
export function canonicalTimeZone(zone: string): string | undefined {
  try {
    return new Intl.DateTimeFormat("en", { timeZone: zone }).resolvedOptions().timeZone;
  } catch {
    return undefined;
  }
}

/** "25 Nov 2026, 15:03 CET": a time in the user's zone, with the zone named. */
export function formatTimestamp(ms: number, timeZone: string): string {
  return new Intl.DateTimeFormat("en-GB", {
    timeZone,
    day: "numeric",
    month: "short",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    timeZoneName: "short",
  }).format(new Date(ms));
}

/** "2 new, 5 old (1 urgent)": the counts of one mailbox. */
export function countsText(state: Pick<MailboxState, "new" | "old" | "urgentNew" | "urgentOld"> | undefined): string {
  if (!state) return "no data yet";
  const urgent = state.urgentNew + state.urgentOld;
  return `${state.new} new, ${state.old} old${urgent ? ` (${state.urgentNew} urgent new, ${state.urgentOld} urgent old)` : ""}`;
}

function callerText(message: MessageInfo | undefined): string | undefined {
  if (!message || (!message.ani && !message.dnis)) return undefined;
  const parts = [
    message.ani ? `from ${message.ani}` : undefined,
    message.dnis ? `to ${message.dnis}` : undefined,
    message.duration !== undefined ? `${message.duration} s` : undefined,
  ].filter(Boolean);
  return `Last message ${parts.join(", ")}`;
}

export interface NotificationInput {
  change: MailboxChange;
  systemName: string;
  footer?: string;
  timeZone: string;
  /** The user's other mailboxes, shown side by side under the news. */
  others: MailboxView[];
  /** Set when the change waited (the user was away): when the first of it happened. */
  since?: number;
}

/** "09:12" today, "24 Nov, 09:12" on another day: when a delayed change began. */
export function formatSince(since: number, now: number, timeZone: string): string {
  const day = (ms: number) => new Intl.DateTimeFormat("en-GB", { timeZone, dateStyle: "short" }).format(new Date(ms));
  const time = new Intl.DateTimeFormat("en-GB", { timeZone, hour: "2-digit", minute: "2-digit" }).format(new Date(since));
  if (day(since) === day(now)) return time;
  return `${new Intl.DateTimeFormat("en-GB", { timeZone, day: "numeric", month: "short" }).format(new Date(since))}, ${time}`;
}

/** How many voicemails arrived in a change (0 when none did). */
export function arrivedCount(change: MailboxChange): number {
  return change.kind === "new-message" ? Math.max(1, change.current.new - (change.previous?.new ?? 0)) : 0;
}

function voicemails(n: number): string {
  return n === 1 ? "1 new voicemail" : `${n} new voicemails`;
}

export interface Notification extends RenderedText {
  /** m.text for a new voicemail (it should reach the phone), m.notice otherwise. */
  msgtype: "m.text" | "m.notice";
}

export function renderNotification(input: NotificationInput): Notification {
  const { current, kind } = input.change;
  const headline =
    kind === "new-message"
      ? input.since !== undefined
        ? `${voicemails(arrivedCount(input.change))} since ${formatSince(input.since, current.updated, input.timeZone)} in ${input.systemName} mailbox ${current.mailbox}: ${countsText(current)}`
        : `New voicemail in ${input.systemName} mailbox ${current.mailbox}: ${countsText(current)}`
      : `${input.systemName} mailbox ${current.mailbox}: ${countsText(current)}`;
  const messageTime = kind === "new-message" && current.lastMessage?.time ? Date.parse(current.lastMessage.time) : NaN;
  const stamp = formatTimestamp(Number.isNaN(messageTime) ? current.updated : messageTime, input.timeZone);
  const caller = kind === "new-message" ? callerText(current.lastMessage) : undefined;
  const others = input.others.map((o) => `${o.systemName} ${o.mailbox}: ${countsText(o.state)}`);

  const plainLines = [
    headline,
    caller ? `${caller} · ${stamp}` : stamp,
    ...(others.length ? [`Other mailboxes: ${others.join(" · ")}`] : []),
    ...(input.footer ? [input.footer] : []),
  ];
  const htmlParts = [
    `<p><strong>${escapeHtml(headline)}</strong><br>`,
    `${escapeHtml(caller ? `${caller} · ${stamp}` : stamp)}</p>`,
    ...(others.length ? [`<p>Other mailboxes: ${others.map(escapeHtml).join(" · ")}</p>`] : []),
    ...(input.footer ? [`<p><em>${escapeHtml(input.footer)}</em></p>`] : []),
  ];
  return {
    msgtype: kind === "new-message" ? "m.text" : "m.notice",
    body: plainLines.join("\n"),
    html: htmlParts.join(""),
  };
}

export interface AggregateInput {
  /** What changed, one entry per mailbox. */
  changes: { systemName: string; change: MailboxChange }[];
  /** Every mailbox of the user, with the changes applied. */
  all: MailboxView[];
  timeZone: string;
  footers: string[];
  since?: number;
}

/** The mailboxes with new messages: "Office 2, Mobile 1". */
function newPerMailbox(all: MailboxView[]): { total: number; mailboxes: string[] } {
  const withNew = all.filter((v) => (v.state?.new ?? 0) > 0);
  // The system's name alone reads best; the mailbox is added where a system has several.
  const label = (v: MailboxView) =>
    all.filter((o) => o.systemId === v.systemId).length > 1 ? `${v.systemName} ${v.mailbox}` : v.systemName;
  return {
    total: withNew.reduce((sum, v) => sum + v.state!.new, 0),
    mailboxes: withNew.map((v) => `${label(v)} ${v.state!.new}`),
  };
}

/**
 * One message for several mailboxes (the main bot's DM, extra targets): the total first
 * ("3 new voicemails in 2 mailboxes: Office 2, Mobile 1"), then what changed in each.
 */
export function renderAggregate(input: AggregateInput): Notification {
  const { total, mailboxes } = newPerMailbox(input.all);
  const anyArrived = input.changes.some((c) => c.change.kind === "new-message");
  const latest = Math.max(...input.changes.map((c) => c.change.current.updated));
  const headline =
    total === 0
      ? "No new voicemail"
      : `${voicemails(total)} in ${mailboxes.length === 1 ? "1 mailbox" : `${mailboxes.length} mailboxes`}: ${mailboxes.join(", ")}`;
  const sinceText = input.since !== undefined ? ` (changes since ${formatSince(input.since, latest, input.timeZone)})` : "";
  const lines = input.changes.map(({ systemName, change }) => {
    const caller = change.kind === "new-message" ? callerText(change.current.lastMessage) : undefined;
    const arrived = arrivedCount(change);
    return `${systemName} ${change.current.mailbox}: ${arrived ? `${voicemails(arrived)}; ` : ""}${countsText(change.current)}${caller ? ` · ${caller}` : ""}`;
  });
  const stamp = `${formatTimestamp(latest, input.timeZone)}${sinceText}`;
  return {
    msgtype: anyArrived ? "m.text" : "m.notice",
    body: [headline, ...lines, stamp, ...input.footers].join("\n"),
    html:
      `<p><strong>${escapeHtml(headline)}</strong></p>` +
      `<ul>${lines.map((l) => `<li>${escapeHtml(l)}</li>`).join("")}</ul>` +
      `<p>${escapeHtml(stamp)}</p>` +
      input.footers.map((f) => `<p><em>${escapeHtml(f)}</em></p>`).join(""),
  };
}

/** The DM room's name: the system's name and its new-message count, so the room list shows it. */
export function dmRoomName(systemName: string, newCount: number): string {
  return newCount > 0 ? `${systemName} (${newCount})` : systemName;
}

/** Every mailbox side by side, for a room topic: "Office 1001: 2 new, 5 old · Mobile 555: 0 new, 1 old". */
export function mailboxesTopic(views: MailboxView[]): string {
  if (views.length === 0) return "No linked mailboxes. Say !help for commands.";
  return views.map((v) => `${v.systemName} ${v.mailbox}: ${countsText(v.state)}`).join(" · ");
}

/** A table of mailboxes for `!list`. */
export function renderMailboxList(views: MailboxView[], timeZone: string): RenderedText {
  if (views.length === 0) {
    const text = "You have no linked mailboxes.";
    return { body: text, html: escapeHtml(text) };
  }
  const rows = views.map((v) => ({
    system: v.systemName,
    mailbox: v.mailbox,
    counts: countsText(v.state),
    updated: v.state ? formatTimestamp(v.state.updated, timeZone) : "",
  }));
  const body = [
    `Your mailboxes (${mailboxesText(views.length)}):`,
    ...rows.map((r) => `- ${r.system} ${r.mailbox}: ${r.counts}${r.updated ? ` (updated ${r.updated})` : ""}`),
  ].join("\n");
  const html =
    `<table><thead><tr><th>System</th><th>Mailbox</th><th>Messages</th><th>Updated</th></tr></thead><tbody>` +
    rows
      .map(
        (r) =>
          `<tr><td>${escapeHtml(r.system)}</td><td>${escapeHtml(r.mailbox)}</td><td>${escapeHtml(r.counts)}</td><td>${escapeHtml(r.updated)}</td></tr>`,
      )
      .join("") +
    `</tbody></table>`;
  return { body, html };
}
