/**
 * The few parts of a mail the voicemail rules read, taken with mailparser from a bounded prefix of
 * the raw mail (the server sends at most `maxFetchBytes` of header and of text): hostile mails
 * (huge headers, odd encodings, endless parts) cost at most that much. Every value is cut to a
 * fixed length before any rule sees it.
 */
import { simpleParser, type AddressObject, type HeaderValue } from "mailparser";

/** Longest subject, header value or address list a rule sees. */
export const MAX_FIELD_CHARS = 2000;
/** Longest body text a rule sees. */
export const MAX_BODY_CHARS = 16_384;

export interface MailFields {
  subject: string;
  /** Lower-case header name -> its first value, decoded, cut. */
  headers: Map<string, string>;
  /** Addresses of To (and Delivered-To), lower case. */
  to: string[];
  /** Addresses of From, lower case. */
  from: string[];
  /** The Date header, when it parses. */
  date?: Date;
  /** The decoded plain text (or HTML made text) of the first text part, when fetched. */
  body?: string;
  /** Why mailparser could not read the mail (its fields are then empty). */
  unreadable?: string;
}

const cut = (s: string, max = MAX_FIELD_CHARS): string => (s.length > max ? s.slice(0, max) : s);

/** RFC 2047 encoded words (`=?UTF-8?B?...?=`), which mailparser leaves in unknown headers. */
export function decodeEncodedWords(value: string): string {
  return value.replace(/=\?([A-Za-z0-9_.:-]{1,40})(?:\*[A-Za-z-]{1,20})?\?([BbQq])\?([^?\s]{0,1000})\?=(?:\s+(?==\?))?/g, (whole, charset: string, enc: string, text: string) => {
    try {
      const bytes =
        enc.toUpperCase() === "B"
          ? Buffer.from(text, "base64")
          : Buffer.from(
              text.replace(/_/g, " ").replace(/=([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))),
              "latin1",
            );
      return new TextDecoder(charset.toLowerCase(), { fatal: false }).decode(bytes);
    } catch {
      return whole;
    }
  });
}

function headerText(value: HeaderValue | undefined): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return headerText(value[0] as HeaderValue);
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "object" && "text" in value && typeof value.text === "string") return value.text;
  if (typeof value === "object" && "value" in value && typeof value.value === "string") return value.value;
  return undefined;
}

function addresses(value: AddressObject | AddressObject[] | undefined): string[] {
  const out: string[] = [];
  const walk = (list: AddressObject["value"]): void => {
    for (const a of list) {
      if (out.length >= 50) return;
      if (a.address) out.push(cut(a.address.toLowerCase(), 256));
      if (a.group) walk(a.group);
    }
  };
  for (const obj of value === undefined ? [] : Array.isArray(value) ? value : [value]) walk(obj.value);
  return out;
}

/**
 * UTF-8 read as Latin-1 ("JÃ¶rg"): Asterisk 22 writes the caller's name into its mail body as
 * UTF-8 under `charset=ISO-8859-1`. Decoded again where that yields clean UTF-8, else unchanged.
 */
export function repairUtf8AsLatin1(text: string): string {
  if (!/[\u00c2-\u00f4][\u0080-\u00bf]/.test(text) || /[^\u0000-\u00ff]/.test(text)) return text;
  const again = Buffer.from(text, "latin1").toString("utf8");
  return again.includes("\ufffd") ? text : again;
}

/**
 * Reads the fields from a raw mail or its header alone (`withBody` false: nothing after the
 * header is looked at). Never throws: a mail mailparser cannot read yields empty fields.
 */
export async function readMailFields(raw: Buffer, withBody: boolean): Promise<MailFields> {
  // A header alone must end with its blank line, or mailparser waits for it in vain.
  const source = withBody ? raw : Buffer.concat([raw, Buffer.from("\r\n\r\n")]);
  let parsed;
  try {
    parsed = await simpleParser(source, {
      skipImageLinks: true,
      skipTextLinks: true,
      skipTextToHtml: true,
      maxHtmlLengthToParse: MAX_BODY_CHARS * 4,
      keepCidLinks: false,
    });
  } catch (err) {
    return { subject: "", headers: new Map(), to: [], from: [], unreadable: cut(String((err as Error)?.message ?? err), 200) };
  }
  const headers = new Map<string, string>();
  for (const [key, value] of parsed.headers) {
    if (headers.size >= 200) break;
    if (key === "priority") continue;
    const text = headerText(value);
    if (text !== undefined) headers.set(key.toLowerCase(), cut(decodeEncodedWords(cut(text, MAX_FIELD_CHARS * 2))));
  }
  // mailparser folds X-Priority, Importance and Priority into one "priority": the raw ones tell urgency.
  for (const line of parsed.headerLines) {
    if (["x-priority", "importance", "priority"].includes(line.key) && !headers.has(line.key)) {
      headers.set(line.key, cut(line.line.slice(line.line.indexOf(":") + 1).trim(), 100));
    }
  }
  // The raw Date (mailparser turns a broken one into "now").
  const rawDate = parsed.headerLines.find((l) => l.key === "date")?.line.replace(/^date:\s*/i, "");
  const date = rawDate ? new Date(Date.parse(cut(rawDate, 200))) : undefined;
  const deliveredTo = addresses(parsed.headers.get("delivered-to") as AddressObject | undefined);
  const fields: MailFields = {
    subject: cut(parsed.subject ?? ""),
    headers,
    to: [...addresses(parsed.to), ...deliveredTo],
    from: addresses(parsed.from),
    ...(date && !Number.isNaN(date.getTime()) ? { date } : {}),
  };
  if (withBody) {
    const text = typeof parsed.text === "string" ? parsed.text : "";
    fields.body = repairUtf8AsLatin1(cut(text, MAX_BODY_CHARS));
  }
  return fields;
}
