/**
 * The AMI wire format, without I/O: the banner line, then packets of `Key: Value` lines ended by
 * an empty line (CRLF; a bare LF is taken too). Everything is bounded, so a hostile or broken
 * peer cannot grow the bridge's memory: a line, a packet's header count and its size have limits,
 * and crossing one is an error after which the connection is not to be trusted (the client
 * drops it).
 */

export interface FrameLimits {
  /** Bytes in one line, its CRLF included. */
  maxLineBytes: number;
  /** Header lines in one packet. */
  maxHeaders: number;
  /** Bytes in one packet. */
  maxPacketBytes: number;
}

export const DEFAULT_FRAME_LIMITS: FrameLimits = { maxLineBytes: 8 * 1024, maxHeaders: 512, maxPacketBytes: 64 * 1024 };

/**
 * One packet: its headers in order, and lookup by key without regard to case. A repeated key
 * (`Output:`, `ChanVariable:`) keeps every value; `get` answers the first.
 */
export class AmiPacket {
  private readonly byKey = new Map<string, string[]>();

  constructor(readonly headers: readonly (readonly [string, string])[]) {
    for (const [key, value] of headers) {
      const k = key.toLowerCase();
      const values = this.byKey.get(k);
      if (values) values.push(value);
      else this.byKey.set(k, [value]);
    }
  }

  get(key: string): string | undefined {
    return this.byKey.get(key.toLowerCase())?.[0];
  }

  all(key: string): readonly string[] {
    return this.byKey.get(key.toLowerCase()) ?? [];
  }
}

export type Frame =
  | { type: "banner"; text: string }
  | { type: "packet"; packet: AmiPacket }
  | { type: "error"; reason: string };

const LF = 0x0a;

/** Splits the byte stream of one connection into frames. Feed it chunks; it returns what they completed. */
export class FrameParser {
  private pending: Buffer = Buffer.alloc(0);
  private bannerSeen = false;
  private headers: [string, string][] = [];
  private packetBytes = 0;
  private failed = false;

  constructor(private readonly limits: FrameLimits = DEFAULT_FRAME_LIMITS) {}

  push(chunk: Buffer): Frame[] {
    if (this.failed) return [];
    const frames: Frame[] = [];
    let data = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let start = 0;
    for (;;) {
      const nl = data.indexOf(LF, start);
      if (nl < 0) break;
      if (nl + 1 - start > this.limits.maxLineBytes) return this.fail(frames, `a line longer than ${this.limits.maxLineBytes} bytes`);
      const end = nl > start && data[nl - 1] === 0x0d ? nl - 1 : nl;
      const frame = this.line(data.toString("utf8", start, end), nl + 1 - start);
      start = nl + 1;
      if (frame) {
        frames.push(frame);
        if (frame.type === "error") return this.fail(frames);
      }
    }
    data = data.subarray(start);
    // What is left has no LF yet: the line limit bounds it.
    if (data.length > this.limits.maxLineBytes) return this.fail(frames, `a line longer than ${this.limits.maxLineBytes} bytes`);
    // A copy: the slice would keep the whole chunk alive.
    this.pending = Buffer.from(data);
    return frames;
  }

  private fail(frames: Frame[], reason?: string): Frame[] {
    this.failed = true;
    this.pending = Buffer.alloc(0);
    this.headers = [];
    if (reason) frames.push({ type: "error", reason });
    return frames;
  }

  private line(text: string, bytes: number): Frame | undefined {
    if (!this.bannerSeen) {
      this.bannerSeen = true;
      // "Asterisk Call Manager/11.0.0": the one line without a colon-separated header.
      if (!/^Asterisk Call Manager\//.test(text)) return { type: "error", reason: "no AMI banner (is this an Asterisk manager port?)" };
      return { type: "banner", text: text.slice(0, 200) };
    }
    if (text === "") {
      if (!this.headers.length) return undefined; // empty lines between packets
      const packet = new AmiPacket(this.headers);
      this.headers = [];
      this.packetBytes = 0;
      return { type: "packet", packet };
    }
    this.packetBytes += bytes;
    if (this.packetBytes > this.limits.maxPacketBytes) return { type: "error", reason: `a packet larger than ${this.limits.maxPacketBytes} bytes` };
    if (this.headers.length >= this.limits.maxHeaders) return { type: "error", reason: `a packet with more than ${this.limits.maxHeaders} headers` };
    const colon = text.indexOf(":");
    // Asterisk sends nothing else; a line without a key is skipped, not trusted.
    if (colon <= 0) return undefined;
    const key = text.slice(0, colon).trim();
    if (!key) return undefined;
    // A stray CR (a line ended by LF alone may hold one) must not reach a log line or a room as a line break.
    this.headers.push([key.replace(/\r/g, " "), text.slice(colon + 1).replace(/^ /, "").replace(/\r/g, " ")]);
    return undefined;
  }
}

/** A header key or value as it may go out: a CR or LF would start a header (or an action) of its own. */
export function safeHeader(value: string): boolean {
  return !/[\r\n\0]/.test(value);
}

/** An action as bytes; throws on a key or value that would break the framing (never sent). */
export function serializeAction(headers: readonly (readonly [string, string])[]): string {
  let out = "";
  for (const [key, value] of headers) {
    if (!/^[A-Za-z0-9_-]+$/.test(key)) throw new Error(`AMI header key ${JSON.stringify(key.slice(0, 40))} is not allowed`);
    if (!safeHeader(value)) throw new Error(`AMI header ${key} contains a line break`);
    out += `${key}: ${value}\r\n`;
  }
  return `${out}\r\n`;
}
