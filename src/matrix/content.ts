import type { RenderedText } from "../core/format.js";

/** Content of an m.notice: the form of every command reply. */
export function noticeContent(text: RenderedText): Record<string, unknown> {
  return { msgtype: "m.notice", body: text.body, format: "org.matrix.custom.html", formatted_body: text.html };
}
