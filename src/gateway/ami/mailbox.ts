/**
 * Mailbox names of an AMI system: `1001` (in the system's default context) or `1001@sales`.
 * They go into AMI headers and dial strings, so they are checked strictly: no CR/LF, no `&`,
 * `,`, `/`, `|` or anything else that could add a header, an argument or a second channel.
 */
import type { MessageInfo } from "../../core/mwi.js";
import type { VoicemailMessage } from "../gateway.js";

const MAILBOX = /^([A-Za-z0-9_.+*#-]{1,80})(?:@([A-Za-z0-9_.+-]{1,80}))?$/;

export interface AmiMailbox {
  /** The mailbox number, as in voicemail.conf. */
  box: string;
  context: string;
}

/** The mailbox a linked name stands for, or undefined when the name is not one (refused, never sent). */
export function parseAmiMailbox(name: string, defaultContext: string): AmiMailbox | undefined {
  const m = MAILBOX.exec(name);
  if (!m || m[1]!.startsWith(".")) return undefined;
  return { box: m[1]!, context: m[2] ?? defaultContext };
}

/** `box@context`, as Asterisk names it in MessageWaiting's `Mailbox:`. */
export const canonical = (m: AmiMailbox): string => `${m.box}@${m.context}`;

/** `"Grace Caller" <5551234>` -> number and name; "Unknown" and empty parts are left out. */
export function parseCallerId(callerId: string | undefined): { number?: string; name?: string } {
  if (!callerId) return {};
  const value = callerId.slice(0, 512);
  const open = value.lastIndexOf("<");
  const close = open < 0 ? -1 : value.indexOf(">", open);
  const rawNumber = (open >= 0 && close > open ? value.slice(open + 1, close) : value).trim();
  const rawName = open >= 0 && close > open ? value.slice(0, open).trim().replace(/^"(.*)"$/s, "$1").trim() : "";
  const known = (s: string) => (s && !/^(unknown|<unknown>)$/i.test(s) ? s : undefined);
  const out: { number?: string; name?: string } = {};
  const number = known(rawNumber.replace(/^"|"$/g, ""));
  const name = known(rawName);
  if (number) out.number = number.slice(0, 64);
  if (name) out.name = name.slice(0, 128);
  return out;
}

/** One `VoicemailBoxDetail` of VoicemailBoxSummary, as far as the bridge reads it. */
export interface BoxDetail {
  folder: string;
  callerId?: string;
  /** `Date:`, the spool's origdate: "Tue Dec  1 12:50:50 PM UTC 2026" (strftime `%a %b %e %r %Z %Y`). */
  date?: string;
  duration?: string;
  /** `ID:`, the msg_id: "1796129450-00000000", seconds since the epoch when it was made, then a counter. */
  id?: string;
}

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

/**
 * Seconds since the epoch of an origdate, only where its zone is UTC/GMT: a zone abbreviation
 * (CET, EST, IST) names no one offset.
 */
export function parseOrigDate(date: string | undefined): number | undefined {
  const m = /^[A-Za-z]{3} ([A-Za-z]{3}) {1,2}(\d{1,2}) (\d{1,2}):(\d{2}):(\d{2}) (AM|PM) (UTC|GMT) (\d{4})$/.exec((date ?? "").trim().slice(0, 64));
  if (!m) return undefined;
  const month = MONTHS.indexOf(m[1]!.toLowerCase());
  if (month < 0) return undefined;
  const hour = (Number(m[3]) % 12) + (m[6] === "PM" ? 12 : 0);
  const ms = Date.UTC(Number(m[8]), month, Number(m[2]), hour, Number(m[4]), Number(m[5]));
  return Number.isNaN(ms) ? undefined : ms / 1000;
}

/** When a message was left: the msg_id's seconds, else its origdate. */
export function timeOf(detail: BoxDetail): number | undefined {
  const fromId = /^(\d{9,11})-[0-9a-f]{1,16}$/i.exec((detail.id ?? "").trim());
  return fromId ? Number(fromId[1]) : parseOrigDate(detail.date);
}

/** The newest unheard message's details (INBOX or Urgent), for the notification and the state event. */
export function newestMessage(details: readonly BoxDetail[], box: string): MessageInfo | undefined {
  let newest: { at: number; detail: BoxDetail } | undefined;
  for (const detail of details) {
    if (!/^(inbox|urgent)$/i.test(detail.folder)) continue;
    const at = timeOf(detail) ?? 0;
    if (!newest || at >= newest.at) newest = { at, detail };
  }
  if (!newest) return undefined;
  const { number, name } = parseCallerId(newest.detail.callerId);
  const info: MessageInfo = { dnis: box };
  if (number) info.ani = number;
  if (name) info.callerName = name;
  if (newest.at > 0 && newest.at < 8.64e12) info.time = new Date(newest.at * 1000).toISOString();
  const duration = Number(newest.detail.duration);
  if (newest.detail.duration && Number.isFinite(duration) && duration >= 0) info.duration = Math.round(duration);
  return info;
}

/** A msg_id as it may go into an AMI header: what Asterisk makes ("1796129450-00000000") and no more. */
export const MESSAGE_ID = /^[A-Za-z0-9_.-]{1,64}$/;

/** Folders that hold messages the user has not heard: their count is the lamp's. */
export const isUnheardFolder = (folder: string): boolean => /^(inbox|urgent)$/i.test(folder);

/** Every INBOX, Urgent and Old message of a VoicemailBoxSummary, newest first (other folders are the user's own filing). */
export function messagesOf(details: readonly BoxDetail[]): VoicemailMessage[] {
  const out: { at: number; message: VoicemailMessage }[] = [];
  for (const detail of details) {
    const id = (detail.id ?? "").trim();
    if (!MESSAGE_ID.test(id) || !/^(inbox|urgent|old)$/i.test(detail.folder)) continue;
    const at = timeOf(detail) ?? 0;
    const { number, name } = parseCallerId(detail.callerId);
    const duration = Number(detail.duration);
    out.push({
      at,
      message: {
        id,
        fresh: isUnheardFolder(detail.folder),
        urgent: /^urgent$/i.test(detail.folder),
        ...(number ? { callerNumber: number } : {}),
        ...(name ? { callerName: name } : {}),
        ...(at > 0 && at < 8.64e12 ? { time: at * 1000 } : {}),
        ...(detail.duration && Number.isFinite(duration) && duration >= 0 ? { duration: Math.round(duration) } : {}),
      },
    });
  }
  return out.sort((a, b) => b.at - a.at).map((m) => m.message);
}
