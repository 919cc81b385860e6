/** Text of notifications and replies: a plain body and the same in HTML (F7). No I/O here. */
import type { MailboxChange, MailboxState, MessageInfo } from "./mwi.js";
import { formatPhoneNumber } from "./phone.js";
import type { CountryCode } from "libphonenumber-js";

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

/** "0:42", "12:05", "1:02:03": a message's length as a player shows it. */
export function formatDuration(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

const digitsOf = (text: string) => text.replace(/\D/g, "");

/**
 * "Grace Caller (+1 555 123 4567)"; the name or the number alone where only one is known. A PBX
 * that knows no name often sends the number as the name: that is shown once.
 */
function callerLabel(message: MessageInfo | undefined, region?: CountryCode): string | undefined {
  const number = message?.ani ? formatPhoneNumber(message.ani, region) : undefined;
  const name = message?.callerName;
  const nameIsNumber = name !== undefined && message?.ani !== undefined && !/\p{L}/u.test(name) && digitsOf(name) === digitsOf(message.ani);
  if (name && number && !nameIsNumber) return `${name} (${number})`;
  return number ?? name;
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
  /** Where national numbers are read (config `defaultRegion`). */
  region?: CountryCode;
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

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export interface Notification extends RenderedText {
  /** m.text for a new voicemail (it should reach the phone), m.notice otherwise. */
  msgtype: "m.text" | "m.notice";
}

/** What the headline of an arrival needs besides the change. */
interface ArrivalContext {
  region?: CountryCode;
  /** When a delayed change began, already formatted. */
  since?: string;
}

/**
 * Who called and how long, first: "New voicemail from Grace Caller (+1 555 123 4567), 0:42".
 * What waited names how many and the newest: "3 voicemails since 09:12, the last from Grace
 * Caller (...), 0:42". A change that did not wait and counts several new (the first state seen,
 * a system that reports late) is not guessed at: the newest caller, and the counts below.
 */
function arrivalHeadline(change: MailboxChange, n: number, context: ArrivalContext): string {
  const message = change.current.lastMessage;
  const who = callerLabel(message, context.region);
  const length = message?.duration !== undefined ? formatDuration(message.duration) : undefined;
  if (n === 1 || context.since === undefined) {
    // "urgent" last: the line still begins "New voicemail from", wherever it is matched or cut.
    const urgent = change.current.urgentNew > (change.previous?.urgentNew ?? 0) ? "urgent" : undefined;
    return [`New voicemail${who ? ` from ${who}` : ""}`, length, urgent].filter(Boolean).join(", ");
  }
  // "since" already says they are news: "3 new voicemails since ..." above "3 new, 5 old" says it twice.
  const many = `${n} voicemails since ${context.since}`;
  return who ? [`${many}, the last from ${who}`, length].filter(Boolean).join(", ") : many;
}

/** "7 old" once nothing is new; the full counts otherwise. */
function countsAfter(state: MailboxState): string {
  if (state.new > 0) return countsText(state);
  return `${state.old} old${state.urgentOld ? ` (${state.urgentOld} urgent)` : ""}`;
}

/**
 * What a change that is not a new voicemail did, from the counts before and after: "All
 * voicemail heard in mailbox 1001: 7 old", "1 voicemail heard ...", "2 voicemails deleted ...".
 */
function changeHeadline(change: MailboxChange, where: string): string {
  const { previous, current } = change;
  const counts = countsText(current);
  if (!previous) return `${where}: ${counts}`;
  const lostNew = previous.new - current.new;
  const gainedOld = current.old - previous.old;
  const lostTotal = previous.new + previous.old - (current.new + current.old);
  if (current.new === 0 && current.old === 0 && lostTotal > 0) return `All voicemail deleted in ${where}`;
  if (lostNew > 0 && gainedOld >= lostNew) {
    return current.new === 0 ? `All voicemail heard in ${where}: ${countsAfter(current)}` : `${plural(lostNew, "voicemail")} heard in ${where}: ${counts}`;
  }
  if (lostNew > 0 && gainedOld > 0) return `Voicemail heard and deleted in ${where}: ${countsAfter(current)}`;
  if (lostTotal > 0) return `${plural(lostTotal, "voicemail")} deleted in ${where}: ${countsAfter(current)}`;
  // A voicemail left and heard while the user was away (told together) is one more old one.
  if (lostNew === 0 && gainedOld > 0) return `${plural(gainedOld, "voicemail")} heard in ${where}: ${countsAfter(current)}`;
  if (lostNew < 0) return `${plural(-lostNew, "voicemail")} marked new in ${where}: ${counts}`;
  return `Voicemail in ${where}: ${counts}`;
}

/** When the message was left where the system says, else when the bridge heard of the change. */
function changeTime(change: MailboxChange, timeZone: string): string {
  const { current, kind } = change;
  const messageTime = kind === "new-message" && current.lastMessage?.time ? Date.parse(current.lastMessage.time) : NaN;
  return formatTimestamp(Number.isNaN(messageTime) ? current.updated : messageTime, timeZone);
}

/** "To +1 555 765 4321 · 25 Nov 2026, 14:03 UTC": the called number, where it says more than the mailbox. */
function calledAndTime(change: MailboxChange, timeZone: string, region?: CountryCode): string {
  const stamp = changeTime(change, timeZone);
  const dnis = change.kind === "new-message" ? change.current.lastMessage?.dnis : undefined;
  const mailbox = change.current.mailbox;
  if (!dnis || dnis === mailbox || dnis === mailbox.split("@")[0]) return stamp;
  return `To ${formatPhoneNumber(dnis, region)} · ${stamp}`;
}

/** A notification as lines: the first is what a lock screen shows, the rest what it adds. */
interface Lines {
  headline: string;
  details: string[];
  /** Shown as a list in HTML. */
  items?: string[];
  after: string[];
  footers: string[];
}

function toNotification(lines: Lines, msgtype: Notification["msgtype"]): Notification {
  const items = lines.items ?? [];
  const plain = [lines.headline, ...lines.details, ...items, ...lines.after, ...lines.footers];
  const html =
    `<p><strong>${escapeHtml(lines.headline)}</strong>${lines.details.map((d) => `<br>${escapeHtml(d)}`).join("")}</p>` +
    (items.length ? `<ul>${items.map((i) => `<li>${escapeHtml(i)}</li>`).join("")}</ul>` : "") +
    lines.after.map((a) => `<p>${escapeHtml(a)}</p>`).join("") +
    lines.footers.map((f) => `<p><em>${escapeHtml(f)}</em></p>`).join("");
  return { msgtype, body: plain.join("\n"), html };
}

/**
 * A system DM's message about one mailbox. A new voicemail: who called and how long, then the
 * mailbox and its counts, the called number and the time, the other mailboxes, the footer.
 * Anything else: what happened ("All voicemail heard in mailbox 1001: 7 old"), then the time.
 */
export function renderNotification(input: NotificationInput): Notification {
  const { change } = input;
  const { current } = change;
  const others = input.others.map((o) => `${o.systemName} ${o.mailbox}: ${countsText(o.state)}`);
  const after = others.length ? [`Other mailboxes: ${others.join(" · ")}`] : [];
  const footers = input.footer ? [input.footer] : [];
  const arrived = arrivedCount(change);
  if (arrived === 0) {
    // The room is the system's: what happened needs no system name; the state when first seen (a resync) does.
    const where = change.previous ? `mailbox ${current.mailbox}` : `${input.systemName} mailbox ${current.mailbox}`;
    return toNotification({ headline: changeHeadline(change, where), details: [changeTime(change, input.timeZone)], after, footers }, "m.notice");
  }
  const since = input.since !== undefined ? formatSince(input.since, current.updated, input.timeZone) : undefined;
  const headline = arrivalHeadline(change, arrived, { ...(input.region ? { region: input.region } : {}), ...(since !== undefined ? { since } : {}) });
  const details = [`${input.systemName} mailbox ${current.mailbox}: ${countsText(current)}`, calledAndTime(change, input.timeZone, input.region)];
  return toNotification({ headline, details, after, footers }, "m.text");
}

export interface AggregateInput {
  /** What changed, one entry per mailbox. */
  changes: { systemName: string; change: MailboxChange }[];
  /** Every mailbox of the user, with the changes applied. */
  all: MailboxView[];
  timeZone: string;
  footers: string[];
  since?: number;
  /** Where national numbers are read (config `defaultRegion`). */
  region?: CountryCode;
}

/** The mailboxes with new messages: "Office 2, Mobile 1". */
function newPerMailbox(all: MailboxView[]): { total: number; mailboxes: string[]; labels: string[]; views: MailboxView[] } {
  const withNew = all.filter((v) => (v.state?.new ?? 0) > 0);
  // The system's name alone reads best; the mailbox is added where a system has several.
  const label = (v: MailboxView) =>
    all.filter((o) => o.systemId === v.systemId).length > 1 ? `${v.systemName} ${v.mailbox}` : v.systemName;
  return {
    total: withNew.reduce((sum, v) => sum + v.state!.new, 0),
    mailboxes: withNew.map((v) => `${label(v)} ${v.state!.new}`),
    labels: withNew.map(label),
    views: withNew,
  };
}

/**
 * One message for several mailboxes (the main bot's DM, extra targets), in the same reading
 * order: who called and how long (the newest caller where several arrived), then each changed
 * mailbox with its counts, the total over all mailboxes where there are several, the time.
 */
export function renderAggregate(input: AggregateInput): Notification {
  const arrivals = input.changes.filter((c) => arrivedCount(c.change) > 0);
  const latest = Math.max(...input.changes.map((c) => c.change.current.updated));
  const since = input.since !== undefined ? formatSince(input.since, latest, input.timeZone) : undefined;
  const context: ArrivalContext = { ...(input.region ? { region: input.region } : {}), ...(since !== undefined ? { since } : {}) };
  const where = (c: AggregateInput["changes"][number]) => `${c.systemName} mailbox ${c.change.current.mailbox}`;
  const newest = [...arrivals].sort((a, b) => b.change.current.updated - a.change.current.updated)[0];
  const arrivedTotal = arrivals.reduce((sum, c) => sum + arrivedCount(c.change), 0);
  const single = input.changes.length === 1 ? input.changes[0]! : undefined;

  let headline: string;
  if (newest) headline = arrivalHeadline(newest.change, arrivedTotal, context);
  else if (single) headline = changeHeadline(single.change, where(single));
  else headline = `Voicemail changed in ${plural(input.changes.length, "mailbox", "mailboxes")}`;

  // Each changed mailbox: its counts where voicemail arrived, what happened otherwise.
  const perMailbox = input.changes
    .filter((c) => c !== single || newest)
    .map((c) => (arrivedCount(c.change) > 0 ? `${where(c)}: ${countsText(c.change.current)}` : changeHeadline(c.change, where(c))));
  // The total over all mailboxes, where it says more than the lines above: new voicemail in a
  // mailbox that did not change, in several mailboxes, or none left anywhere.
  const { total, mailboxes, labels, views } = newPerMailbox(input.all);
  const changed = (v: MailboxView) => input.changes.some((c) => c.change.current.systemId === v.systemId && c.change.current.mailbox === v.mailbox);
  const totalSaysMore = total === 0 || mailboxes.length > 1 || !views.every(changed);
  const totals =
    input.all.length > 1 && totalSaysMore
      ? [
          total === 0
            ? "No new voicemail in your mailboxes"
            : mailboxes.length === 1
              ? `${voicemails(total)} in ${labels[0]}`
              : `${voicemails(total)} in ${mailboxes.length} mailboxes: ${mailboxes.join(", ")}`,
        ]
      : [];
  // "since" is said once: in the headline where several arrived, after the time otherwise.
  const sinceAfter = since !== undefined && arrivedTotal <= 1 ? ` (changes since ${since})` : "";
  const stamp = single ? calledAndTime(single.change, input.timeZone, input.region) : `${formatTimestamp(latest, input.timeZone)}${sinceAfter}`;
  const lines: Lines =
    perMailbox.length > 1
      ? { headline, details: [], items: perMailbox, after: [stamp, ...totals], footers: input.footers }
      : { headline, details: [...perMailbox, stamp], after: totals, footers: input.footers };
  return toNotification(lines, arrivals.length ? "m.text" : "m.notice");
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
  const heading = `Your mailboxes (${mailboxesText(views.length)}):`;
  const body = [heading, ...rows.map((r) => `- ${r.system} ${r.mailbox}: ${r.counts}${r.updated ? ` (updated ${r.updated})` : ""}`)].join("\n");
  // The heading as a paragraph before the table: clients drop or hide a <caption>.
  const html =
    `<p><strong>${escapeHtml(heading)}</strong></p><table><thead><tr><th>System</th><th>Mailbox</th><th>Messages</th><th>Updated</th></tr></thead><tbody>` +
    rows
      .map(
        (r) =>
          `<tr><td>${escapeHtml(r.system)}</td><td>${escapeHtml(r.mailbox)}</td><td>${escapeHtml(r.counts)}</td><td>${escapeHtml(r.updated)}</td></tr>`,
      )
      .join("") +
    `</tbody></table>`;
  return { body, html };
}
