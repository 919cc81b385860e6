/**
 * Which mail is a voicemail of which mailbox, and what it tells about the message: the
 * configured rules (settings.ts has the defaults for Asterisk) applied to a mail's fields. No
 * I/O here. A mail no mailbox rule matches is not a voicemail; a value a rule finds that is no
 * valid mailbox, number or duration is left out, never guessed.
 */
import { cleanCallerField, MAILBOX_PATTERN, type MessageInfo } from "../../core/mwi.js";
import type { MailFields } from "./mailFields.js";
import type { MailRule, MailRules } from "./settings.js";

export interface VoicemailMail {
  /** The mailbox the rules named (per-user accounts file every voicemail under their own). */
  mailbox: string;
  urgent: boolean;
  info: MessageInfo;
}

interface CompiledRule {
  from: MailRule["from"];
  header?: string;
  pattern?: RegExp;
}

export interface CompiledRules {
  mailbox: CompiledRule[];
  ani: CompiledRule[];
  callerName: CompiledRule[];
  dnis: CompiledRule[];
  duration: CompiledRule[];
  time: CompiledRule[];
  urgent: CompiledRule[];
  /** Some mailbox rule reads the body: each mail's text must be fetched to tell whether it is a voicemail. */
  mailboxNeedsBody: boolean;
  /** Some detail rule reads the body: the newest mail's text is fetched for its details. */
  detailsNeedBody: boolean;
  senders: Set<string>;
}

/** Compiles the rules; throws with the rule's key (`rules.mailbox[0].pattern: ...`) on a bad pattern. */
export function compileRules(rules: MailRules, senders: readonly string[] = []): CompiledRules {
  const compile = (key: keyof MailRules): CompiledRule[] =>
    rules[key].map((r, i) => {
      const out: CompiledRule = { from: r.from };
      if (r.from.startsWith("header:")) out.header = r.from.slice("header:".length).toLowerCase();
      if (r.pattern !== undefined) {
        try {
          out.pattern = new RegExp(r.pattern, "im");
        } catch (err) {
          throw new Error(`rules.${key}[${i}].pattern: ${(err as Error).message}`);
        }
      }
      return out;
    });
  const compiled = {
    mailbox: compile("mailbox"),
    ani: compile("ani"),
    callerName: compile("callerName"),
    dnis: compile("dnis"),
    duration: compile("duration"),
    time: compile("time"),
    urgent: compile("urgent"),
  };
  const readsBody = (list: CompiledRule[]) => list.some((r) => r.from === "body");
  return {
    ...compiled,
    mailboxNeedsBody: readsBody(compiled.mailbox),
    detailsNeedBody: [compiled.ani, compiled.callerName, compiled.dnis, compiled.duration, compiled.time, compiled.urgent].some(readsBody),
    senders: new Set(senders.map((s) => s.toLowerCase())),
  };
}

/** The texts a rule looks at, in order (To and From: each address). */
function textsOf(rule: CompiledRule, mail: MailFields): string[] {
  switch (rule.from) {
    case "subject":
      return [mail.subject];
    case "body":
      return mail.body === undefined ? [] : [mail.body];
    case "to":
      return mail.to;
    case "from":
      return mail.from;
    default: {
      const value = mail.headers.get(rule.header!);
      return value === undefined ? [] : [value];
    }
  }
}

/** The first value a list of rules finds, trimmed; undefined when none matches. */
function firstMatch(rules: CompiledRule[], mail: MailFields): string | undefined {
  for (const rule of rules) {
    for (const text of textsOf(rule, mail)) {
      if (!rule.pattern) {
        const whole = text.trim();
        if (whole) return whole;
        continue;
      }
      const m = rule.pattern.exec(text);
      const value = (m?.[1] ?? m?.[0])?.trim();
      if (value) return value;
    }
  }
  return undefined;
}

/** "0:11" (m:ss), "1:02:03" (h:mm:ss) or "42" (seconds); undefined for anything else. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d{1,6})(?::(\d{1,2}))?(?::(\d{1,2}))?$/.exec(text.trim());
  if (!m) return undefined;
  const parts = [m[1], m[2], m[3]].filter((p): p is string => p !== undefined).map(Number);
  if (parts.slice(1).some((p) => p > 59)) return undefined;
  return parts.reduce((total, p) => total * 60 + p, 0);
}

/** A caller number as a mail gives it: digits with an optional +, separators dropped; "Unknown" and names are not numbers. */
function phoneNumber(text: string): string | undefined {
  const compact = text.replace(/[\s().-]/g, "");
  return /^\+?[0-9*#]{1,32}$/.test(compact) ? compact : undefined;
}

/** Urgent by the priority headers: `X-Priority: 1` (or 2), `Importance: high`, `Priority: urgent`. */
export function isUrgent(mail: MailFields): boolean {
  const xPriority = mail.headers.get("x-priority")?.trim();
  if (xPriority && /^[12](?:\D|$)/.test(xPriority)) return true;
  if (/^high\b/i.test(mail.headers.get("importance")?.trim() ?? "")) return true;
  if (/^urgent\b/i.test(mail.headers.get("priority")?.trim() ?? "")) return true;
  return false;
}

/** The mailbox a mail belongs to, or undefined when it is not a voicemail (or not from an accepted sender). */
export function mailboxOf(rules: CompiledRules, mail: MailFields): string | undefined {
  if (rules.senders.size && !mail.from.some((a) => rules.senders.has(a))) return undefined;
  const mailbox = firstMatch(rules.mailbox, mail);
  return mailbox !== undefined && MAILBOX_PATTERN.test(mailbox) ? mailbox : undefined;
}

/** The voicemail a mail is, or undefined when it is none. */
export function voicemailOf(rules: CompiledRules, mail: MailFields): VoicemailMail | undefined {
  const mailbox = mailboxOf(rules, mail);
  if (mailbox === undefined) return undefined;
  const info: MessageInfo = {};
  const ani = firstMatch(rules.ani, mail);
  const number = ani === undefined ? undefined : phoneNumber(ani);
  if (number) info.ani = number;
  const name = firstMatch(rules.callerName, mail);
  const cleanName = name === undefined ? undefined : cleanCallerField(name);
  // Asterisk names an unknown caller "Unknown" or repeats the number as the name.
  if (cleanName && !/^(unknown|anonymous|<unknown>)$/i.test(cleanName) && cleanName !== number) info.callerName = cleanName;
  const dnis = firstMatch(rules.dnis, mail);
  info.dnis = (dnis !== undefined ? phoneNumber(dnis) : undefined) ?? mailbox;
  const duration = firstMatch(rules.duration, mail);
  const seconds = duration === undefined ? undefined : parseDuration(duration);
  if (seconds !== undefined) info.duration = seconds;
  const time = firstMatch(rules.time, mail);
  const when = time === undefined ? NaN : Date.parse(time);
  if (!Number.isNaN(when)) info.time = new Date(when).toISOString();
  else if (mail.date) info.time = mail.date.toISOString();
  return { mailbox, urgent: isUrgent(mail) || firstMatch(rules.urgent, mail) !== undefined, info };
}
