/** The webhook's JSON body: validated strictly, turned into an MwiUpdate. No I/O here. */
import { clampCount, MAILBOX_PATTERN, type MessageInfo, type MwiUpdate } from "../../core/mwi.js";

export type PayloadResult = { ok: true; update: MwiUpdate } | { ok: false; reason: string };

const TOP_LEVEL_KEYS = new Set(["mailbox", "waiting", "new", "old", "urgent_new", "urgent_old", "message"]);
const MESSAGE_KEYS = new Set(["ani", "dnis", "caller_name", "time", "duration"]);
// Date.parse alone accepts "1" or "Wednesday"; the contract is ISO 8601 with a zone.
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;
const NUMBER_PATTERN = /^[\p{L}\p{N} @._+:*#()/-]{1,64}$/u;

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0;
}

function parseMessage(raw: unknown): { ok: true; message: MessageInfo } | { ok: false; reason: string } {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return { ok: false, reason: "message must be an object" };
  const record = raw as Record<string, unknown>;
  const unknown = Object.keys(record).find((k) => !MESSAGE_KEYS.has(k));
  if (unknown) return { ok: false, reason: `message.${unknown} is not a known field` };
  const message: MessageInfo = {};
  for (const key of ["ani", "dnis"] as const) {
    const value = record[key];
    if (value === undefined || value === null || value === "") continue;
    if (typeof value !== "string" || !NUMBER_PATTERN.test(value)) {
      return { ok: false, reason: `message.${key} must be a phone number or SIP user of at most 64 characters` };
    }
    message[key] = value;
  }
  const name = record.caller_name;
  if (name !== undefined && name !== null && name !== "") {
    if (typeof name !== "string" || name.length > 128) return { ok: false, reason: "message.caller_name must be a string of at most 128 characters" };
    message.callerName = name; // cleaned of control and bidi characters when stored (cleanMessageInfo)
  }
  if (record.time !== undefined && record.time !== null) {
    if (typeof record.time !== "string" || !ISO_TIME.test(record.time) || Number.isNaN(Date.parse(record.time))) {
      return { ok: false, reason: "message.time must be an ISO 8601 time stamp" };
    }
    message.time = new Date(record.time).toISOString();
  }
  if (record.duration !== undefined && record.duration !== null) {
    if (typeof record.duration !== "number" || !Number.isFinite(record.duration) || record.duration < 0) {
      return { ok: false, reason: "message.duration must be a number of seconds" };
    }
    message.duration = Math.round(record.duration);
  }
  return { ok: true, message };
}

export function parseWebhookPayload(systemId: string, raw: unknown, receivedAt: number): PayloadResult {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return { ok: false, reason: "body must be a JSON object" };
  const body = raw as Record<string, unknown>;
  const unknown = Object.keys(body).find((k) => !TOP_LEVEL_KEYS.has(k));
  if (unknown) return { ok: false, reason: `${unknown} is not a known field` };
  if (typeof body.mailbox !== "string" || !MAILBOX_PATTERN.test(body.mailbox)) {
    return { ok: false, reason: "mailbox must be a string of 1 to 128 letters, digits or @._+:*#-" };
  }
  if (typeof body.waiting !== "boolean") return { ok: false, reason: "waiting must be true or false" };
  for (const key of ["new", "old"] as const) {
    if (!isCount(body[key])) return { ok: false, reason: `${key} must be a non-negative integer` };
  }
  for (const key of ["urgent_new", "urgent_old"] as const) {
    if (body[key] !== undefined && !isCount(body[key])) return { ok: false, reason: `${key} must be a non-negative integer` };
  }
  let message: MessageInfo | undefined;
  if (body.message !== undefined && body.message !== null) {
    const parsed = parseMessage(body.message);
    if (!parsed.ok) return parsed;
    if (Object.keys(parsed.message).length) message = parsed.message;
  }
  const count = (key: string) => clampCount((body[key] as number | undefined) ?? 0);
  return {
    ok: true,
    update: {
      systemId,
      mailbox: body.mailbox,
      counts: {
        waiting: body.waiting,
        new: count("new"),
        old: count("old"),
        urgentNew: count("urgent_new"),
        urgentOld: count("urgent_old"),
      },
      ...(message ? { message } : {}),
      receivedAt,
    },
  };
}
