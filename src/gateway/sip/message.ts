/**
 * SIP messages (RFC 3261 §7, §25): parse a datagram or a framed stream message, serialize with a
 * correct Content-Length. Parsing never throws: every byte comes off the network, so failures
 * are values. A failed parse keeps what it could read (`partial`) so the user agent can still
 * answer 400 to a request whose routing headers were readable.
 */
import { Buffer } from "node:buffer";
import { quoteForLog } from "../../util/quote.js";
import { canonicalName, headerKey, isToken, splitTopLevel } from "./headers.js";

/** The largest message we accept or send (RFC 3261 leaves it open; an MWI NOTIFY is ~1 KiB). */
export const MAX_MESSAGE_BYTES = 64 * 1024;

interface HeaderField {
  /** As written on the wire (compact names expanded to long ones). */
  name: string;
  /** headerKey(name): long and lower case. */
  key: string;
  value: string;
}

/** Ordered header list with case-insensitive, compact-form-aware lookups. */
export class SipHeaders {
  private readonly fields: HeaderField[] = [];

  constructor(init?: Iterable<readonly [string, string]>) {
    if (init) for (const [n, v] of init) this.append(n, v);
  }

  /** First value, or undefined. */
  get(name: string): string | undefined {
    const key = headerKey(name);
    return this.fields.find((f) => f.key === key)?.value;
  }

  /** One entry per header line (no comma splitting: right for WWW-Authenticate and friends). */
  getAll(name: string): string[] {
    const key = headerKey(name);
    return this.fields.filter((f) => f.key === key).map((f) => f.value);
  }

  /** Every element of a comma-separated list header (Via, Contact, Route, Allow, ...), in order. */
  getList(name: string): string[] {
    return this.getAll(name)
      .flatMap((v) => splitTopLevel(v, ","))
      .map((v) => v.trim())
      .filter((v) => v !== "");
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  append(name: string, value: string): this {
    this.fields.push({ name: canonicalName(name), key: headerKey(name), value });
    return this;
  }

  /** Replaces every line of this header with one (or appends it). */
  set(name: string, value: string): this {
    const key = headerKey(name);
    const i = this.fields.findIndex((f) => f.key === key);
    this.delete(name);
    const field = { name: canonicalName(name), key, value };
    if (i < 0) this.fields.push(field);
    else this.fields.splice(Math.min(i, this.fields.length), 0, field);
    return this;
  }

  delete(name: string): this {
    const key = headerKey(name);
    for (let i = this.fields.length - 1; i >= 0; i--) if (this.fields[i]!.key === key) this.fields.splice(i, 1);
    return this;
  }

  entries(): Array<[string, string]> {
    return this.fields.map((f) => [f.name, f.value]);
  }

  clone(): SipHeaders {
    return new SipHeaders(this.entries());
  }
}

export interface SipRequest {
  kind: "request";
  method: string;
  uri: string;
  headers: SipHeaders;
  body: Buffer;
}

export interface SipResponse {
  kind: "response";
  status: number;
  reason: string;
  headers: SipHeaders;
  body: Buffer;
}

export type SipMessage = SipRequest | SipResponse;

export type MessageParseResult =
  | { ok: true; message: SipMessage }
  | { ok: false; reason: string; partial?: SipMessage };

const decoder = new TextDecoder("utf-8");

/**
 * Parses one whole message (a UDP datagram, or a stream message cut by the framer). A
 * Content-Length shorter than the data cuts the body (RFC 3261 §18.3); a longer one fails.
 */
export function parseMessage(data: Buffer | string, maxBytes = MAX_MESSAGE_BYTES): MessageParseResult {
  try {
    const buf = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    if (buf.length > maxBytes) {
      // Keep the head when it is within the limit, so a 513 can still be sent.
      const reason = `message too large (${buf.length} > ${maxBytes} bytes)`;
      const split = findHeaderEnd(buf, 0);
      const head = split && split.headEnd <= maxBytes ? parseHead(decoder.decode(buf.subarray(0, split.headEnd))) : undefined;
      const partial = head?.ok ? head.message : head?.partial;
      return partial ? { ok: false, reason, partial } : { ok: false, reason };
    }
    const split = findHeaderEnd(buf, 0);
    // A datagram without the blank line is tolerated when it has no body (some send none).
    const headEnd = split ? split.headEnd : buf.length;
    const bodyStart = split ? split.bodyStart : buf.length;
    const head = parseHead(decoder.decode(buf.subarray(0, headEnd)));
    if (!head.ok) return head;
    const message = head.message;
    const rest = buf.subarray(bodyStart);
    const cl = message.headers.get("content-length");
    if (cl === undefined) {
      message.body = Buffer.from(rest);
      return { ok: true, message };
    }
    const len = parseContentLength(cl);
    if (len === undefined) return { ok: false, reason: `bad Content-Length ${quoteForLog(cl, 20)}`, partial: message };
    if (len > rest.length) {
      return { ok: false, reason: `body shorter than Content-Length (${rest.length} < ${len})`, partial: message };
    }
    message.body = Buffer.from(rest.subarray(0, len));
    return { ok: true, message };
  } catch (err) {
    return { ok: false, reason: `internal parser error: ${String(err).slice(0, 100)}` };
  }
}

/** Where the header block ends: CRLFCRLF, or a bare LFLF from lenient peers; undefined if absent. */
export function findHeaderEnd(buf: Buffer, from: number): { headEnd: number; bodyStart: number } | undefined {
  const crlf = buf.indexOf("\r\n\r\n", from, "latin1");
  const lflf = buf.indexOf("\n\n", from, "latin1");
  if (crlf < 0 && lflf < 0) return undefined;
  if (lflf >= 0 && (crlf < 0 || lflf < crlf)) return { headEnd: lflf, bodyStart: lflf + 2 };
  return { headEnd: crlf, bodyStart: crlf + 4 };
}

export function parseContentLength(v: string): number | undefined {
  const t = v.trim();
  if (!/^\d{1,9}$/.test(t)) return undefined;
  return Number(t);
}

/** Start line and headers; body left empty. */
export function parseHead(text: string): MessageParseResult {
  const lines = text.split(/\r?\n/);
  // RFC 3261 §7.5: ignore CRLFs before the start line.
  while (lines.length > 0 && lines[0] === "") lines.shift();
  const start = lines.shift();
  if (start === undefined) return { ok: false, reason: "empty message" };
  const message = parseStartLine(start);
  if (!message) return { ok: false, reason: `bad start line ${snippet(start)}` };

  let current: string | undefined;
  let failure: string | undefined;
  const flush = (): void => {
    if (current === undefined) return;
    const colon = current.indexOf(":");
    const name = colon < 0 ? "" : current.slice(0, colon).trim();
    if (colon < 0 || !isToken(name)) failure ??= `bad header line ${snippet(current)}`;
    else message.headers.append(name, current.slice(colon + 1).trim());
    current = undefined;
  };
  for (const line of lines) {
    if (line === "") continue; // only possible in a head without a final blank line
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(line)) {
      failure ??= `control character in header line ${snippet(line)}`;
      continue;
    }
    if (line[0] === " " || line[0] === "\t") {
      // Folded continuation (RFC 3261 §7.3.1): one space replaces the line break.
      if (current === undefined) failure ??= "continuation line before any header";
      else current = `${current.trimEnd()} ${line.trim()}`;
      continue;
    }
    flush();
    current = line;
  }
  flush();
  if (failure) return { ok: false, reason: failure, partial: message };
  return { ok: true, message };
}

function parseStartLine(line: string): SipMessage | undefined {
  const res = /^SIP\/2\.0 ([1-6]\d\d)(?: (.*))?$/i.exec(line);
  if (res) {
    return { kind: "response", status: Number(res[1]), reason: res[2] ?? "", headers: new SipHeaders(), body: Buffer.alloc(0) };
  }
  const req = /^([A-Za-z0-9\-.!%*_+`'~]+) (\S+) SIP\/2\.0$/i.exec(line);
  if (!req) return undefined;
  return { kind: "request", method: req[1]!.toUpperCase(), uri: req[2]!, headers: new SipHeaders(), body: Buffer.alloc(0) };
}

/** Wire form; Content-Length is always written from the actual body. */
export function serializeMessage(msg: SipMessage): Buffer {
  const start = msg.kind === "request" ? `${msg.method} ${msg.uri} SIP/2.0` : `SIP/2.0 ${msg.status} ${msg.reason}`;
  let head = `${start}\r\n`;
  for (const [name, value] of msg.headers.entries()) {
    if (headerKey(name) === "content-length") continue;
    head += `${name}: ${value.replace(/[\r\n]+/g, " ")}\r\n`;
  }
  head += `Content-Length: ${msg.body.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, "utf8"), msg.body]);
}

export function bodyText(msg: SipMessage): string {
  return decoder.decode(msg.body);
}

/** One line for logs: never headers, so never credentials. */
export function describe(msg: SipMessage): string {
  const cseq = msg.headers.get("cseq") ?? "?";
  const callId = msg.headers.get("call-id") ?? "?";
  const start = msg.kind === "request" ? `${msg.method} ${msg.uri}` : `${msg.status} ${msg.reason}`;
  return `${start} (CSeq ${cseq}, Call-ID ${callId})`.replace(/[\x00-\x1f\x7f]/g, "?").slice(0, 300);
}

const REASONS: Record<number, string> = {
  100: "Trying",
  200: "OK",
  202: "Accepted",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  407: "Proxy Authentication Required",
  408: "Request Timeout",
  415: "Unsupported Media Type",
  420: "Bad Extension",
  423: "Interval Too Brief",
  481: "Call/Transaction Does Not Exist",
  489: "Bad Event",
  500: "Server Internal Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  513: "Message Too Large",
};

/**
 * A response to `req` (RFC 3261 §8.2.6): Via, From, To, Call-ID and CSeq copied; `toTag` added
 * when the request's To has none.
 */
export function buildResponse(
  req: SipRequest,
  status: number,
  opts: { reason?: string; toTag?: string; headers?: Array<[string, string]>; body?: Buffer } = {},
): SipResponse {
  const headers = new SipHeaders();
  for (const via of req.headers.getAll("via")) headers.append("Via", via);
  for (const name of ["from", "to", "call-id", "cseq"]) {
    let v = req.headers.get(name);
    if (v === undefined) continue;
    if (name === "to" && opts.toTag && !/;\s*tag\s*=/i.test(v)) v = `${v};tag=${opts.toTag}`;
    headers.append(name, v);
  }
  for (const [n, v] of opts.headers ?? []) headers.append(n, v);
  return {
    kind: "response",
    status,
    reason: opts.reason ?? REASONS[status] ?? "Unknown",
    headers,
    body: opts.body ?? Buffer.alloc(0),
  };
}

const snippet = (s: string): string => quoteForLog(s, 60);
