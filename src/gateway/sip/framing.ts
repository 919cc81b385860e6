/**
 * Cuts a TCP/TLS byte stream into SIP messages by Content-Length (RFC 3261 §18.3). A message
 * over the size limit is skipped without buffering its body, so one huge NOTIFY costs neither
 * memory nor the connection; only a header block that never ends loses the framing.
 */
import { Buffer } from "node:buffer";
import { MAX_MESSAGE_BYTES, findHeaderEnd, parseContentLength, parseHead, parseMessage, type SipMessage } from "./message.js";

export type FrameEvent =
  | { kind: "message"; message: SipMessage }
  /** Skipped, the stream is still in sync; `partial` may allow an error response. */
  | { kind: "invalid"; reason: string; partial?: SipMessage; tooLarge?: boolean }
  /** RFC 5626 §3.5.1 keepalive "CRLFCRLF": answer with one CRLF. */
  | { kind: "ping" }
  /** Framing lost: the connection must be closed. */
  | { kind: "fatal"; reason: string };

const CR = 0x0d;
const LF = 0x0a;
const decoder = new TextDecoder("utf-8");

export class StreamFramer {
  private buf: Buffer = Buffer.alloc(0);
  /** Body bytes of an oversized message still to be thrown away. */
  private discard = 0;
  private dead = false;

  constructor(private readonly maxBytes = MAX_MESSAGE_BYTES) {}

  push(chunk: Buffer): FrameEvent[] {
    if (this.dead) return [];
    let data = chunk;
    if (this.discard > 0) {
      const n = Math.min(this.discard, data.length);
      this.discard -= n;
      data = data.subarray(n);
    }
    this.buf = this.buf.length === 0 ? Buffer.from(data) : Buffer.concat([this.buf, data]);
    const events: FrameEvent[] = [];
    for (;;) {
      const ev = this.next();
      if (!ev) break;
      events.push(ev);
      if (ev.kind === "fatal") {
        this.dead = true;
        this.buf = Buffer.alloc(0);
        break;
      }
    }
    return events;
  }

  private next(): FrameEvent | undefined {
    if (this.discard > 0) return undefined;
    // Line breaks between messages: keepalives, or padding we may skip.
    let run = 0;
    while (run < this.buf.length && (this.buf[run] === CR || this.buf[run] === LF)) run++;
    if (run > 0) {
      if (run === this.buf.length && run < 4) return undefined; // maybe half a ping
      const ping = this.buf.subarray(0, run).includes("\r\n\r\n", 0, "latin1");
      this.buf = this.buf.subarray(run);
      if (ping) return { kind: "ping" };
    }
    if (this.buf.length === 0) return undefined;

    const split = findHeaderEnd(this.buf, 0);
    if (!split) {
      if (this.buf.length > this.maxBytes) return { kind: "fatal", reason: `header block over ${this.maxBytes} bytes` };
      return undefined;
    }
    const headText = decoder.decode(this.buf.subarray(0, split.headEnd));
    const head = parseHead(headText);
    const headMsg = head.ok ? head.message : head.partial;
    const clValue = headMsg ? headMsg.headers.get("content-length") : /^(?:content-length|l)[ \t]*:[ \t]*(\S*)/im.exec(headText)?.[1];
    // Content-Length is mandatory on streams; a missing one is read as 0 (no body).
    const cl = clValue === undefined ? 0 : parseContentLength(clValue);
    if (cl === undefined) return { kind: "fatal", reason: "unreadable Content-Length on a stream" };

    const total = split.bodyStart + cl;
    if (total > this.maxBytes) {
      const have = this.buf.length - split.bodyStart;
      this.discard = Math.max(0, cl - have);
      this.buf = this.buf.subarray(Math.min(this.buf.length, total));
      const ev: FrameEvent = { kind: "invalid", reason: `message too large (${total} > ${this.maxBytes} bytes)`, tooLarge: true };
      if (headMsg) ev.partial = headMsg;
      return ev;
    }
    if (this.buf.length < total) return undefined;
    const bytes = this.buf.subarray(0, total);
    this.buf = this.buf.subarray(total);
    const parsed = parseMessage(bytes, this.maxBytes);
    if (parsed.ok) return { kind: "message", message: parsed.message };
    const ev: FrameEvent = { kind: "invalid", reason: parsed.reason };
    if (parsed.partial) ev.partial = parsed.partial;
    return ev;
  }
}
