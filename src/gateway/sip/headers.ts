/**
 * SIP header values (RFC 3261 §20, §25): the grammar pieces the user agent needs, each a small
 * parser that returns undefined on bad input instead of throwing, because every value here came
 * off the network.
 */

/** Header names: compact forms (RFC 3261 §7.3.3 and later RFCs) to their long names. */
const COMPACT: Record<string, string> = {
  i: "call-id",
  f: "from",
  t: "to",
  v: "via",
  m: "contact",
  l: "content-length",
  c: "content-type",
  k: "supported",
  o: "event", // RFC 6665
  u: "allow-events", // RFC 6665
  e: "content-encoding",
  s: "subject",
  r: "refer-to",
  b: "referred-by",
  x: "session-expires",
  a: "accept-contact",
  j: "reject-contact",
  d: "request-disposition",
  y: "identity",
};

/** The spelling we write for the names we know; other names are written as they came. */
const CANONICAL: Record<string, string> = {
  "call-id": "Call-ID",
  cseq: "CSeq",
  "www-authenticate": "WWW-Authenticate",
  "mime-version": "MIME-Version",
  "content-id": "Content-ID",
};

/** The long, lower-case key under which a header is stored and looked up. */
export function headerKey(name: string): string {
  const lower = name.toLowerCase();
  return COMPACT[lower] ?? lower;
}

/** Long name in the usual spelling ("call-id" -> "Call-ID", "max-forwards" -> "Max-Forwards"). */
export function canonicalName(name: string): string {
  const key = headerKey(name);
  const known = CANONICAL[key];
  if (known) return known;
  return key.replace(/(^|-)([a-z])/g, (_m, sep: string, c: string) => sep + c.toUpperCase());
}

const TOKEN = /^[A-Za-z0-9\-.!%*_+`'~]+$/;

export function isToken(s: string): boolean {
  return TOKEN.test(s);
}

/**
 * Splits on `sep` outside double quotes (with backslash escapes) and outside <...>, so a comma
 * inside a display name or a URI does not break a Contact or Via list.
 */
export function splitTopLevel(value: string, sep: string): string[] {
  const out: string[] = [];
  let quoted = false;
  let angle = false;
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (quoted) {
      if (ch === "\\") i++;
      else if (ch === '"') quoted = false;
    } else if (ch === '"') quoted = true;
    else if (ch === "<") angle = true;
    else if (ch === ">") angle = false;
    else if (ch === sep && !angle) {
      out.push(value.slice(start, i));
      start = i + 1;
    }
  }
  out.push(value.slice(start));
  return out;
}

/** Removes the quotes and backslash escapes of a quoted-string; other text is returned trimmed. */
export function unquote(s: string): string {
  const t = s.trim();
  if (t.length >= 2 && t.startsWith('"') && t.endsWith('"')) {
    return t.slice(1, -1).replace(/\\(.)/g, "$1");
  }
  return t;
}

export function quote(s: string): string {
  return `"${s.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** `;a=b;c;d="x y"` -> lower-case names, unquoted values, "" for a flag (e.g. `rport`, `lr`). */
export type Params = Map<string, string>;

export function parseParams(s: string): Params {
  const params: Params = new Map();
  for (const raw of splitTopLevel(s, ";")) {
    const part = raw.trim();
    if (part === "") continue;
    const eq = part.indexOf("=");
    const name = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    if (name === "" || params.has(name)) continue;
    params.set(name, eq < 0 ? "" : unquote(part.slice(eq + 1)));
  }
  return params;
}

function formatParams(params: Params): string {
  let out = "";
  for (const [k, v] of params) {
    if (v === "") out += `;${k}`;
    else out += `;${k}=${isToken(v) || /^[\w.:[\]-]+$/.test(v) ? v : quote(v)}`;
  }
  return out;
}

// ------------------------------------------------------------------ hosts and URIs

/** Brackets an IPv6 literal for use in a URI or Via. */
export function formatHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** "host", "host:port", "[v6]", "[v6]:port" -> parts, or undefined when malformed. */
function parseHostPort(s: string): { host: string; port?: number } | undefined {
  const t = s.trim();
  let host: string;
  let rest: string;
  if (t.startsWith("[")) {
    const close = t.indexOf("]");
    if (close < 0) return undefined;
    host = t.slice(1, close);
    rest = t.slice(close + 1);
  } else {
    const colon = t.indexOf(":");
    host = colon < 0 ? t : t.slice(0, colon);
    rest = colon < 0 ? "" : t.slice(colon);
  }
  if (host === "" || !/^[A-Za-z0-9.\-_:%]+$/.test(host)) return undefined;
  if (rest === "") return { host };
  const m = /^:(\d{1,5})$/.exec(rest);
  if (!m) return undefined;
  const port = Number(m[1]);
  if (port < 1 || port > 65535) return undefined;
  return { host, port };
}

export interface SipUri {
  scheme: "sip" | "sips";
  user?: string;
  host: string;
  port?: number;
  params: Params;
}

/** sip:/sips: URIs only; the user's password part and `?headers` are dropped. */
export function parseSipUri(uri: string): SipUri | undefined {
  const m = /^(sips?):([^?]*)(?:\?.*)?$/i.exec(uri.trim());
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase() as "sip" | "sips";
  let rest = m[2]!;
  let user: string | undefined;
  const at = rest.lastIndexOf("@");
  if (at >= 0) {
    user = rest.slice(0, at).split(":")[0];
    rest = rest.slice(at + 1);
    if (!user) return undefined;
  }
  const semi = rest.indexOf(";");
  const hostPort = parseHostPort(semi < 0 ? rest : rest.slice(0, semi));
  if (!hostPort) return undefined;
  const out: SipUri = { scheme, host: hostPort.host, params: parseParams(semi < 0 ? "" : rest.slice(semi)) };
  if (user !== undefined) out.user = user;
  if (hostPort.port !== undefined) out.port = hostPort.port;
  return out;
}

// ------------------------------------------------------------------ Via

export interface Via {
  /** "UDP", "TCP", "TLS", ... upper case. */
  transport: string;
  host: string;
  port?: number;
  params: Params;
  branch?: string;
}

export function parseVia(value: string): Via | undefined {
  const m = /^\s*SIP\s*\/\s*2\.0\s*\/\s*([A-Za-z0-9\-]+)\s+([^;]+)(.*)$/i.exec(value);
  if (!m) return undefined;
  const hostPort = parseHostPort(m[2]!);
  if (!hostPort) return undefined;
  const params = parseParams(m[3]!);
  const via: Via = { transport: m[1]!.toUpperCase(), host: hostPort.host, params };
  if (hostPort.port !== undefined) via.port = hostPort.port;
  const branch = params.get("branch");
  if (branch) via.branch = branch;
  return via;
}

export function formatVia(via: Via): string {
  const port = via.port === undefined ? "" : `:${via.port}`;
  return `SIP/2.0/${via.transport} ${formatHost(via.host)}${port}${formatParams(via.params)}`;
}

// ------------------------------------------------------------------ name-addr

export interface NameAddr {
  display?: string;
  uri: string;
  /** Header parameters (after the URI), e.g. tag, expires. */
  params: Params;
  tag?: string;
}

/** `"Name" <sip:a@b>;tag=x`, `Name <sip:a@b>`, `<sip:a@b>` or a bare `sip:a@b;tag=x`. */
export function parseNameAddr(value: string): NameAddr | undefined {
  const v = value.trim();
  let display: string | undefined;
  let uri: string;
  let rest: string;
  const lt = findUnquoted(v, "<");
  if (lt >= 0) {
    const gt = v.indexOf(">", lt);
    if (gt < 0) return undefined;
    const d = v.slice(0, lt).trim();
    if (d !== "") display = unquote(d);
    uri = v.slice(lt + 1, gt).trim();
    rest = v.slice(gt + 1);
  } else {
    // addr-spec form: parameters after the first ";" belong to the header, not the URI.
    const semi = v.indexOf(";");
    uri = (semi < 0 ? v : v.slice(0, semi)).trim();
    rest = semi < 0 ? "" : v.slice(semi);
  }
  if (!/^[A-Za-z][A-Za-z0-9+.\-]*:\S+$/.test(uri)) return undefined;
  const params = parseParams(rest);
  const out: NameAddr = { uri, params };
  if (display !== undefined) out.display = display;
  const tag = params.get("tag");
  if (tag) out.tag = tag;
  return out;
}

export function formatNameAddr(addr: { display?: string; uri: string; params?: Params }): string {
  const display = addr.display ? `${quote(addr.display)} ` : "";
  return `${display}<${addr.uri}>${addr.params ? formatParams(addr.params) : ""}`;
}

function findUnquoted(s: string, ch: string): number {
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quoted) {
      if (c === "\\") i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === ch) return i;
  }
  return -1;
}

// ------------------------------------------------------------------ CSeq, Event, states

export interface CSeq {
  seq: number;
  method: string;
}

export function parseCSeq(value: string): CSeq | undefined {
  const m = /^\s*(\d{1,10})\s+([A-Za-z0-9\-.!%*_+`'~]+)\s*$/.exec(value);
  if (!m) return undefined;
  const seq = Number(m[1]);
  // RFC 3261 §8.1.1.5: less than 2^31.
  if (seq >= 2 ** 31) return undefined;
  return { seq, method: m[2]!.toUpperCase() };
}

export interface EventHeader {
  /** Lower-case package name, e.g. "message-summary". */
  package: string;
  id?: string;
  params: Params;
}

export function parseEvent(value: string): EventHeader | undefined {
  const semi = value.indexOf(";");
  const pkg = (semi < 0 ? value : value.slice(0, semi)).trim().toLowerCase();
  if (!isToken(pkg)) return undefined;
  const params = parseParams(semi < 0 ? "" : value.slice(semi));
  const out: EventHeader = { package: pkg, params };
  const id = params.get("id");
  if (id !== undefined) out.id = id;
  return out;
}

export interface SubscriptionStateHeader {
  /** "active" | "pending" | "terminated", or an unknown extension value in lower case. */
  state: string;
  reason?: string;
  expires?: number;
  retryAfter?: number;
}

export function parseSubscriptionState(value: string): SubscriptionStateHeader | undefined {
  const ev = parseEvent(value); // same shape: token *(;param)
  if (!ev) return undefined;
  const out: SubscriptionStateHeader = { state: ev.package };
  const reason = ev.params.get("reason");
  if (reason) out.reason = reason.toLowerCase();
  const expires = parseSeconds(ev.params.get("expires"));
  if (expires !== undefined) out.expires = expires;
  const retryAfter = parseSeconds(ev.params.get("retry-after"));
  if (retryAfter !== undefined) out.retryAfter = retryAfter;
  return out;
}

/** Delta-seconds; values past 2^32-1 are clamped (RFC 3261 §20.19 asks for that). */
export function parseSeconds(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const t = v.trim();
  if (!/^\d+$/.test(t)) return undefined;
  return t.length > 10 ? 4294967295 : Math.min(Number(t), 4294967295);
}

/** `Retry-After: 120 (comment);duration=60` -> 120. */
export function parseRetryAfter(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = /^\s*(\d+)/.exec(value);
  return m ? parseSeconds(m[1]) : undefined;
}
