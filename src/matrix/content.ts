import type { RenderedText } from "../core/format.js";

/** Content of a message with a plain body and the same in HTML (F7). */
export function messageContent(text: RenderedText, msgtype: "m.text" | "m.notice" = "m.notice"): Record<string, unknown> {
  return { msgtype, body: text.body, format: "org.matrix.custom.html", formatted_body: text.html };
}

/** Content of an m.notice: the form of every command reply. */
export const noticeContent = (text: RenderedText) => messageContent(text, "m.notice");
