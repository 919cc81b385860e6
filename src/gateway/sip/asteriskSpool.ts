/**
 * Asterisk's NOTIFY carries counts only. Where the admin gives the voicemail spool directory,
 * the newest message's `msgNNNN.txt` tells the caller (ANI) and the called number (DNIS).
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { MessageInfo } from "../../core/mwi.js";
import { parseCallerId } from "../ami/mailbox.js";

/** `msgNNNN.txt` is an INI file with one `[message]` section of `key=value` lines. */
export function parseMessageFile(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*([A-Za-z_]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (match) fields[match[1]!.toLowerCase()] = match[2]!;
  }
  return fields;
}

export function messageInfoFrom(fields: Record<string, string>, mailbox: string): MessageInfo {
  const info: MessageInfo = {};
  // The spool's callerid is Asterisk's caller ID, as AMI's VoicemailBoxSummary gives it.
  const caller = parseCallerId(fields.callerid);
  if (caller.number) info.ani = caller.number;
  if (caller.name) info.callerName = caller.name;
  // rdnis is the number the caller dialled when the call was forwarded to voicemail.
  const rdnis = fields.rdnis && !/^unknown$/i.test(fields.rdnis) ? fields.rdnis : undefined;
  info.dnis = (rdnis ?? (fields.exten && fields.exten !== "s" ? fields.exten : mailbox)).slice(0, 64);
  // A time past the year 275760 (origtime=1e20) is no Date: toISOString would throw.
  const time = new Date(Number(fields.origtime) * 1000);
  if (time.getTime() > 0) info.time = time.toISOString();
  const duration = Number(fields.duration);
  if (fields.duration && Number.isFinite(duration) && duration >= 0) info.duration = Math.round(duration);
  return info;
}

/** The newest message in the mailbox's INBOX, or undefined when there is none or no spool. */
export async function newestInboxMessage(spoolDir: string, context: string, mailbox: string): Promise<MessageInfo | undefined> {
  if (!/^[A-Za-z0-9_.+*#-]+$/.test(mailbox) || mailbox.startsWith(".")) return undefined; // never leave the spool
  const inbox = join(spoolDir, context, mailbox, "INBOX");
  let names: string[];
  try {
    names = (await readdir(inbox)).filter((n) => /^msg\d{4}\.txt$/.test(n));
  } catch {
    return undefined;
  }
  let newest: { time: number; fields: Record<string, string> } | undefined;
  for (const name of names) {
    const fields = parseMessageFile(await readFile(join(inbox, name), "utf8").catch(() => ""));
    const time = Number(fields.origtime) || 0;
    if (!newest || time >= newest.time) newest = { time, fields };
  }
  return newest ? messageInfoFrom(newest.fields, mailbox) : undefined;
}
