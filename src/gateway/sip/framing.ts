/**
 * Cuts a TCP/TLS byte stream into SIP messages by Content-Length (RFC 3261 §18.3), in work
 * linear in the bytes received however they are chunked. A message
 * over the size limit is skipped without buffering its body, so one huge NOTIFY costs neither
 * memory nor the connection; only a header block that never ends loses the framing.
 */
import { Buffer } from "node:buffer";
import { MAX_MESSAGE_BYTES, findHeaderEnd, parseContentLength, parseHead, parseMessage, type SipMessage } from "./message.js";

export type FrameEvent =
  /** `size`: the bytes it took on the stream. */
  | { kind: "message"; message: SipMessage; size: number }
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
  /**
   * Received bytes not yet framed are buf[start, end). The buffer grows by doubling and is
   * compacted only when that frees at least as much as it moves: every byte is copied in O(1)
   * times, and the search for the blank line resumes where the last one stopped.
   */
  private buf: Buffer = Buffer.alloc(0);
  private start = 0;
  private end = 0;
  /** Offset (in buf) below which no end of the header block can start. */
  private scanFrom = 0;
  /** The message whose head is read and whose body is still arriving. */
  private awaiting: { total: number } | undefined;
  /** Body bytes of an oversized message still to be thrown away. */
  private discard = 0;
  private dead = false;

  constructor(private readonly maxBytes = MAX_MESSAGE_BYTES) {}

  /** True while part of a message (or of an oversized one to skip) is outstanding. */
  get pending(): boolean {
    return !this.dead && (this.end > this.start || this.discard > 0);
  }

  push(chunk: Buffer): FrameEvent[] {
    if (this.dead) return [];
    let data = chunk;
    if (this.discard > 0) {
      const n = Math.min(this.discard, data.length);
      this.discard -= n;
      data = data.subarray(n);
    }
    this.append(data);
    const events: FrameEvent[] = [];
    for (;;) {
      const ev = this.next();
      if (!ev) break;
      events.push(ev);
      if (ev.kind === "fatal") {
        this.dead = true;
        this.buf = Buffer.alloc(0);
        this.start = this.end = this.scanFrom = 0;
        break;
      }
    }
    return events;
  }

  private append(data: Buffer): void {
    if (data.length === 0) return;
    const used = this.end - this.start;
    if (this.end + data.length > this.buf.length) {
      if (used + data.length <= this.buf.length && this.start >= used) {
        this.buf.copy(this.buf, 0, this.start, this.end);
      } else {
        const grown = Buffer.allocUnsafe(Math.max(used + data.length, 2 * this.buf.length, 4096));
        this.buf.copy(grown, 0, this.start, this.end);
        this.buf = grown;
      }
      this.scanFrom -= this.start;
      this.start = 0;
      this.end = used;
    }
    this.end += data.copy(this.buf, this.end);
  }

  private consume(n: number): void {
    this.start += n;
    this.scanFrom = Math.max(this.scanFrom, this.start);
    if (this.start >= this.end) this.start = this.end = this.scanFrom = 0;
  }

  private next(): FrameEvent | undefined {
    if (this.discard > 0) return undefined;
    if (!this.awaiting) {
      // Line breaks between messages: keepalives, or padding we may skip.
      let run = 0;
      while (this.start + run < this.end && (this.buf[this.start + run] === CR || this.buf[this.start + run] === LF)) run++;
      if (run > 0) {
        if (this.start + run === this.end && run < 4) return undefined; // maybe half a ping
        const ping = this.buf.subarray(this.start, this.start + run).includes("\r\n\r\n", 0, "latin1");
        this.consume(run);
        if (ping) return { kind: "ping" };
      }
    }
    if (this.end === this.start) return undefined;
    const view = this.buf.subarray(this.start, this.end);

    if (!this.awaiting) {
      // The blank line may straddle the last chunk: resume 3 bytes before where the search stopped.
      const split = findHeaderEnd(view, Math.max(0, this.scanFrom - this.start - 3));
      if (!split) {
        this.scanFrom = this.end;
        if (view.length > this.maxBytes) return { kind: "fatal", reason: `header block over ${this.maxBytes} bytes` };
        return undefined;
      }
      const headText = decoder.decode(view.subarray(0, split.headEnd));
      const head = parseHead(headText);
      const headMsg = head.ok ? head.message : head.partial;
      const clValue = headMsg ? headMsg.headers.get("content-length") : /^(?:content-length|l)[ \t]*:[ \t]*(\S*)/im.exec(headText)?.[1];
      // Content-Length is mandatory on streams; a missing one is read as 0 (no body).
      const cl = clValue === undefined ? 0 : parseContentLength(clValue);
      if (cl === undefined) return { kind: "fatal", reason: "unreadable Content-Length on a stream" };

      const total = split.bodyStart + cl;
      if (total > this.maxBytes) {
        const have = view.length - split.bodyStart;
        this.discard = Math.max(0, cl - have);
        this.consume(Math.min(view.length, total));
        const ev: FrameEvent = { kind: "invalid", reason: `message too large (${total} > ${this.maxBytes} bytes)`, tooLarge: true };
        if (headMsg) ev.partial = headMsg;
        return ev;
      }
      this.awaiting = { total };
    }
    const { total } = this.awaiting;
    if (view.length < total) return undefined;
    this.awaiting = undefined;
    // parseMessage copies the body: the buffer is reused.
    const parsed = parseMessage(view.subarray(0, total), this.maxBytes);
    this.consume(total);
    if (parsed.ok) return { kind: "message", message: parsed.message, size: total };
    const ev: FrameEvent = { kind: "invalid", reason: parsed.reason };
    if (parsed.partial) ev.partial = parsed.partial;
    return ev;
  }
}
