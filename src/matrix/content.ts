import type { RenderedText } from "../core/format.js";

/**
 * Where a bot message names the outbox batch or entry it tells: after a lost answer the bridge
 * looks for it in the room before sending again (Synapse forgets transaction IDs on restart).
 */
export const OUTBOX_ID_FIELD = "org.voicemail.outbox_id";

/**
 * Content of a message with a plain body and the same in HTML (F7); from the outbox, with its ID.
 * `m.mentions` is empty: the body may hold "@room" or a display name (a caller's ANI, a user's
 * own words) that the legacy push rules would otherwise turn into a ping.
 */
export function messageContent(text: RenderedText, msgtype: "m.text" | "m.notice" = "m.notice", outboxId?: string): Record<string, unknown> {
  return {
    msgtype,
    body: text.body,
    format: "org.matrix.custom.html",
    formatted_body: text.html,
    "m.mentions": {},
    ...(outboxId !== undefined ? { [OUTBOX_ID_FIELD]: outboxId } : {}),
  };
}

/** Content of an m.notice: the form of every command reply. */
export const noticeContent = (text: RenderedText, outboxId?: string) => messageContent(text, "m.notice", outboxId);
