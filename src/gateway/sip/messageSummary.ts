/**
 * Parser for the RFC 3842 body `application/simple-message-summary`, the
 * payload of a SIP NOTIFY for the "message-summary" event package (MWI).
 *
 *   message-summary  = msg-status-line CRLF
 *                      [msg-account CRLF]
 *                      [*(msg-summary-line CRLF)]
 *                      [*(opt-msg-headers CRLF)]
 *   msg-status-line  = "Messages-Waiting" HCOLON ("yes" / "no")
 *   msg-account      = "Message-Account" HCOLON Account-URI
 *   msg-summary-line = message-context-class HCOLON newmsgs SLASH oldmsgs
 *                      [ LPAREN new-urgentmsgs SLASH old-urgentmsgs RPAREN ]
 *   opt-msg-headers  = CRLF 1*(extension-header CRLF)
 *   msgcount         = 1*DIGIT  ; MUST NOT exceed 2^32-1
 *
 * The summary part (up to the first blank line) is parsed strictly, because
 * it drives the lamp on the user's phone and a misread count is worse than
 * no count. The optional per-message headers after it are informational
 * only, so they are parsed leniently and never make the whole body fail.
 *
 * `parseMessageSummary` never throws: the body comes off the network.
 */

import { Buffer } from "node:buffer";
import { quoteForLog } from "../../util/quote.js";

export interface MessageClassCounts {
  newCount: number;
  oldCount: number;
  urgentNew: number;
  urgentOld: number;
}

interface SummaryMessageHeaders {
  from?: string;
  to?: string;
  date?: string;
  subject?: string;
  priority?: string;
  messageId?: string;
  /** Every header of the block, keyed by lower-case name (first one wins). */
  headers: Record<string, string>;
}

export interface MessageSummary {
  waiting: boolean;
  /** Message-Account URI when present. */
  account?: string;
  /** Keyed by lower-case class ("voice", "fax", ... and unknown ones too). */
  classes: Record<string, MessageClassCounts>;
  /** The voice-message counts (zeros when absent). */
  voice: MessageClassCounts;
  /** Optional message header blocks after the blank line(s), in order. */
  messages: SummaryMessageHeaders[];
}

export type ParseResult = { ok: true; summary: MessageSummary } | { ok: false; reason: string };

/** RFC 3842: a count MUST NOT exceed 2^32-1; bigger ones are clamped to it. */
export const MAX_COUNT = 4294967295;

/** A summary is a few hundred bytes; anything near this is not one. */
export const MAX_BODY_BYTES = 64 * 1024;

// RFC 3261 token characters, as a table: this runs on every line.
const TOKEN_CHARS = new Uint8Array(128);
for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~") {
  TOKEN_CHARS[c.charCodeAt(0)] = 1;
}
// new/old [(urgent-new/urgent-old)], with white space allowed around the
// separators. Digit runs are unbounded here; clampCount deals with length.
const COUNTS =
  /^(\d+)[ \t]*\/[ \t]*(\d+)(?:[ \t]*\([ \t]*(\d+)[ \t]*\/[ \t]*(\d+)[ \t]*\))?$/;
// RFC 3986 scheme ":" then visible ASCII only: no spaces, no controls.
const URI = /^[A-Za-z][A-Za-z0-9+.\-]*:[\x21-\x7E]+$/;
const LINE_BREAK = /\r\n|\r|\n/;
const MAX_COUNT_DIGITS = String(MAX_COUNT).length;

const decoder = new TextDecoder("utf-8"); // non-fatal: bad bytes become U+FFFD

interface Field {
  name: string;
  value: string;
  line: number; // 1-based physical line the field starts on
}

type Failure = { ok: false; reason: string };

export function parseMessageSummary(body: string | Uint8Array): ParseResult {
  try {
    return parse(body);
  } catch (err) {
    // Should be unreachable; the promise is "never throws", so keep it.
    return fail(`internal parser error: ${oneLine(String(err))}`);
  }
}

function parse(body: string | Uint8Array): ParseResult {
  const decoded = toText(body);
  if (typeof decoded !== "string") return decoded;

  const lines = decoded.split(LINE_BREAK);
  let i = 0;
  // Leading blank lines carry no meaning; skip rather than misreport.
  while (i < lines.length && isBlank(lines[i]!)) i++;
  if (i === lines.length) return fail("empty body: missing required Messages-Waiting header");

  // Summary part: strict.
  const fields: Field[] = [];
  for (; i < lines.length && !isBlank(lines[i]!); i++) {
    const line = lines[i]!;
    const n = i + 1;
    if (hasControl(line)) return fail(`line ${n}: control character in ${snippet(line)}`);
    if (isWsp(line.charCodeAt(0))) {
      const last = fields[fields.length - 1];
      if (!last) return fail(`line ${n}: continuation line with no header before it`);
      last.value = joinFold(last.value, line);
      continue;
    }
    const field = splitHeader(line, n);
    if (!field) return fail(`line ${n}: expected "Name: value", got ${snippet(line)}`);
    if (!isToken(field.name)) return fail(`line ${n}: invalid header name ${snippet(field.name)}`);
    fields.push(field);
  }

  let waiting: boolean | undefined;
  let account: string | undefined;
  const classes: Record<string, MessageClassCounts> = {};
  for (const f of fields) {
    const name = f.name.toLowerCase();
    const value = trimWsp(f.value);
    if (name === "messages-waiting") {
      if (waiting !== undefined) return fail(`line ${f.line}: duplicate Messages-Waiting header`);
      const v = value.toLowerCase();
      if (v !== "yes" && v !== "no") {
        return fail(`line ${f.line}: Messages-Waiting must be "yes" or "no", got ${snippet(value)}`);
      }
      waiting = v === "yes";
    } else if (name === "message-account") {
      if (account !== undefined) return fail(`line ${f.line}: duplicate Message-Account header`);
      // Tolerate the name-addr style "<uri>" some servers send.
      const uri = value.startsWith("<") && value.endsWith(">") ? value.slice(1, -1) : value;
      if (!URI.test(uri)) return fail(`line ${f.line}: Message-Account is not a URI: ${snippet(value)}`);
      account = uri;
    } else if (name.endsWith("-message")) {
      // RFC 3842: any "<token>-Message" header is a message-context line.
      const cls = name.slice(0, -"-message".length);
      if (cls === "") return fail(`line ${f.line}: message-context line with an empty class`);
      if (Object.hasOwn(classes, cls)) return fail(`line ${f.line}: duplicate ${f.name} header`);
      const m = COUNTS.exec(value);
      if (!m) {
        return fail(
          `line ${f.line}: malformed ${f.name} counts ${snippet(value)} ` +
            `(expected "new/old" or "new/old (urgent-new/urgent-old)")`,
        );
      }
      setOwn(classes, cls, {
        newCount: clampCount(m[1]!),
        oldCount: clampCount(m[2]!),
        urgentNew: m[3] === undefined ? 0 : clampCount(m[3]),
        urgentOld: m[4] === undefined ? 0 : clampCount(m[4]),
      });
    }
    // Anything else in the summary part is an extension header: ignored.
  }
  if (waiting === undefined) return fail("missing required Messages-Waiting header");

  // A copy, so that a caller editing one does not silently edit the other.
  const voice = Object.hasOwn(classes, "voice") ? { ...classes["voice"]! } : zeroCounts();
  const summary: MessageSummary = { waiting, classes, voice, messages: parseMessageBlocks(lines, i) };
  if (account !== undefined) summary.account = account;
  return { ok: true, summary };
}

/**
 * The optional per-message headers: blank-line-separated blocks of RFC 2822
 * style headers. Informational only, so lines that are not headers are
 * dropped instead of failing the notification.
 */
function parseMessageBlocks(lines: string[], start: number): SummaryMessageHeaders[] {
  const blocks: SummaryMessageHeaders[] = [];
  let block: Field[] = [];
  let lastValid = false; // may a continuation line extend the previous field?
  const flush = (): void => {
    if (block.length > 0) blocks.push(toMessageHeaders(block));
    block = [];
    lastValid = false;
  };
  for (let i = start; i < lines.length; i++) {
    const line = lines[i]!;
    if (isBlank(line)) {
      flush();
    } else if (hasControl(line)) {
      lastValid = false;
    } else if (isWsp(line.charCodeAt(0))) {
      if (lastValid) {
        const last = block[block.length - 1]!;
        last.value = joinFold(last.value, line);
      }
    } else {
      const field = splitHeader(line, i + 1);
      lastValid = field !== undefined && isToken(field.name);
      if (lastValid) block.push(field!);
    }
  }
  flush();
  return blocks;
}

function toMessageHeaders(fields: Field[]): SummaryMessageHeaders {
  const headers: Record<string, string> = {};
  for (const f of fields) {
    const name = f.name.toLowerCase();
    if (!Object.hasOwn(headers, name)) setOwn(headers, name, trimWsp(f.value));
  }
  const out: SummaryMessageHeaders = { headers };
  const pick = (key: keyof Omit<SummaryMessageHeaders, "headers">, name: string): void => {
    if (Object.hasOwn(headers, name)) out[key] = headers[name]!;
  };
  pick("from", "from");
  pick("to", "to");
  pick("date", "date");
  pick("subject", "subject");
  pick("priority", "priority");
  pick("messageId", "message-id");
  return out;
}

/** Builds a valid body (CRLF line endings). Throws on values no body can carry. */
export function formatMessageSummary(summary: {
  waiting: boolean;
  account?: string;
  voice: MessageClassCounts;
}): string {
  const { newCount, oldCount, urgentNew, urgentOld } = summary.voice;
  for (const [k, v] of Object.entries({ newCount, oldCount, urgentNew, urgentOld })) {
    if (!Number.isInteger(v) || v < 0 || v > MAX_COUNT) {
      throw new RangeError(`voice.${k} must be an integer in 0..${MAX_COUNT}, got ${v}`);
    }
  }
  let out = `Messages-Waiting: ${summary.waiting ? "yes" : "no"}\r\n`;
  if (summary.account !== undefined) {
    if (!URI.test(summary.account)) throw new RangeError(`account is not a URI: ${snippet(summary.account)}`);
    out += `Message-Account: ${summary.account}\r\n`;
  }
  out += `Voice-Message: ${newCount}/${oldCount}`;
  if (urgentNew !== 0 || urgentOld !== 0) out += ` (${urgentNew}/${urgentOld})`;
  return out + "\r\n";
}

// ---------------------------------------------------------------- helpers

function toText(body: unknown): string | Failure {
  const tooBig = `body too large: over the ${MAX_BODY_BYTES}-byte limit`;
  if (typeof body === "string") {
    // Cheap length checks first so a huge string is never scanned.
    if (body.length > MAX_BODY_BYTES) return fail(tooBig);
    if (body.length * 3 > MAX_BODY_BYTES && Buffer.byteLength(body, "utf8") > MAX_BODY_BYTES) {
      return fail(tooBig);
    }
    return body.charCodeAt(0) === 0xfeff ? body.slice(1) : body; // the decoder drops the BOM too
  }
  if (body instanceof Uint8Array) {
    if (body.byteLength > MAX_BODY_BYTES) return fail(tooBig);
    return decoder.decode(body);
  }
  return fail("body must be a string or a Uint8Array");
}

/** "Name : value" -> field; the name keeps no trailing white space (HCOLON). */
function splitHeader(line: string, n: number): Field | undefined {
  const colon = line.indexOf(":");
  if (colon < 0) return undefined;
  return { name: trimWsp(line.slice(0, colon)), value: line.slice(colon + 1), line: n };
}

/** Clamp a digit string of any length to MAX_COUNT without going through a lossy Number. */
function clampCount(digits: string): number {
  let i = 0;
  while (i < digits.length - 1 && digits.charCodeAt(i) === 0x30) i++; // leading zeros
  const significant = digits.length - i;
  if (significant > MAX_COUNT_DIGITS) return MAX_COUNT;
  const n = Number(digits.slice(i)); // at most 10 digits: exact
  return n > MAX_COUNT ? MAX_COUNT : n;
}

function zeroCounts(): MessageClassCounts {
  return { newCount: 0, oldCount: 0, urgentNew: 0, urgentOld: 0 };
}

function isWsp(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/** A whitespace-only line counts as the separator, not as an empty fold. */
function isBlank(line: string): boolean {
  for (let i = 0; i < line.length; i++) if (!isWsp(line.charCodeAt(i))) return false;
  return true;
}

/** Control characters other than HTAB (line breaks are already split off). */
function hasControl(line: string): boolean {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return true;
  }
  return false;
}

function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || TOKEN_CHARS[c] === 0) return false;
  }
  return true;
}

function trimWsp(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isWsp(s.charCodeAt(a))) a++;
  while (b > a && isWsp(s.charCodeAt(b - 1))) b--;
  return s.slice(a, b);
}

/** Unfold: the line break plus leading white space becomes one space. */
function joinFold(value: string, continuation: string): string {
  const base = trimWsp(value);
  const more = trimWsp(continuation);
  return base !== "" && more !== "" ? `${base} ${more}` : base + more;
}

/** Plain assignment would treat a "__proto__" key as the prototype. */
function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  if (key === "__proto__") {
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    obj[key] = value; // the fast path: defineProperty would deoptimise every object
  }
}

const snippet = (s: string): string => quoteForLog(s, 40);

function oneLine(s: string): string {
  return s.replace(/[\x00-\x1F\x7F]+/g, " ").slice(0, 200);
}

function fail(reason: string): Failure {
  return { ok: false, reason };
}
