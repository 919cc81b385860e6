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

function mailboxesText(n: number): string {
  return n === 1 ? "1 mailbox" : `${n} mailboxes`;
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
}

export interface Notification extends RenderedText {
  /** m.text for a new voicemail (it should reach the phone), m.notice otherwise. */
  msgtype: "m.text" | "m.notice";
}

export function renderNotification(input: NotificationInput): Notification {
  const { current, kind } = input.change;
  const headline =
    kind === "new-message"
      ? `New voicemail in ${input.systemName} mailbox ${current.mailbox}: ${countsText(current)}`
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

/** The DM room's name: the system's name and its new-message count, so the room list shows it. */
export function dmRoomName(systemName: string, newCount: number): string {
  return newCount > 0 ? `${systemName} (${newCount})` : systemName;
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
