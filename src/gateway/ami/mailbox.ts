/**
 * Mailbox names of an AMI system: `1001` (in the system's default context) or `1001@sales`.
 * They go into AMI headers and dial strings, so they are checked strictly: no CR/LF, no `&`,
 * `,`, `/`, `|` or anything else that could add a header, an argument or a second channel.
 */
import type { MessageInfo } from "../../core/mwi.js";

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
  /** `Date:` as Asterisk gives it (the message's origtime: seconds since the epoch). */
  date?: string;
  duration?: string;
}

function epochSeconds(date: string | undefined): number | undefined {
  if (!date) return undefined;
  if (/^\d{1,12}$/.test(date.trim())) return Number(date.trim());
  const parsed = Date.parse(date);
  return Number.isNaN(parsed) ? undefined : parsed / 1000;
}

/** The newest unheard message's details (INBOX or Urgent), for the notification and the state event. */
export function newestMessage(details: readonly BoxDetail[], box: string): MessageInfo | undefined {
  let newest: { at: number; detail: BoxDetail } | undefined;
  for (const detail of details) {
    if (!/^(inbox|urgent)$/i.test(detail.folder)) continue;
    const at = epochSeconds(detail.date) ?? 0;
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
