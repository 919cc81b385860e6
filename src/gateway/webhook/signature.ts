/**
 * The webhook's signature (names fixed: other tools rely on them):
 *   X-Signature-Timestamp: <unix seconds>
 *   X-Signature-256: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">
 * accepted within five minutes of the bridge's clock, each signature once (replay.ts). The
 * body-only signature of old carries no time, so a captured request can be replayed forever:
 * it is accepted only where a system sets `webhook.legacySignature: true`.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "x-signature-256";
export const TIMESTAMP_HEADER = "x-signature-timestamp";
/** How far a request's timestamp may be from the bridge's clock, either way. */
export const SIGNATURE_WINDOW_SECONDS = 300;

/** The two headers as they came, if they did. */
export interface SignatureHeaders {
  signature: string | undefined;
  timestamp: string | undefined;
}

const SIGNATURE_FORMAT = /^sha256=[0-9a-fA-F]{64}$/;
// Digits only: no sign, fraction or exponent that would sign one request under many spellings.
const TIMESTAMP_FORMAT = /^[0-9]{1,12}$/;

function hmac(secret: string, parts: (Uint8Array | string)[]): string {
  const mac = createHmac("sha256", secret);
  for (const part of parts) mac.update(part);
  return `sha256=${mac.digest("hex")}`;
}

/** The legacy signature, over the body alone (`webhook.legacySignature: true`). */
export function signBody(secret: string, body: Uint8Array | string): string {
  return hmac(secret, [body]);
}

/** The signature of a request sent at `timestamp` (unix seconds): over "<timestamp>.<raw body>". */
export function signRequest(secret: string, timestamp: number | string, body: Uint8Array | string): string {
  return hmac(secret, [`${timestamp}.`, body]);
}

/** Both headers for a body signed now, as a sender sets them. */
export function signedHeaders(secret: string, body: Uint8Array | string, nowMs = Date.now()): Record<string, string> {
  const timestamp = String(Math.floor(nowMs / 1000));
  return { [TIMESTAMP_HEADER]: timestamp, [SIGNATURE_HEADER]: signRequest(secret, timestamp, body) };
}

/** Constant-time comparison of a `sha256=<hex>` header with the expected one. */
function matches(expected: string, header: string | undefined): boolean {
  if (!header || !SIGNATURE_FORMAT.test(header)) return false;
  return timingSafeEqual(Buffer.from(expected.slice(7), "hex"), Buffer.from(header.slice(7), "hex"));
}

/** Constant-time check of a body-only `sha256=<hex>` over the raw body bytes. */
export function verifySignature(secret: string, body: Uint8Array, header: string | undefined): boolean {
  return matches(signBody(secret, body), header);
}

export type SignatureVerdict =
  /** `replay`: the signature (lower-case hex) and until when it must be refused if seen again; absent for legacy ones. */
  | { ok: true; replay?: { key: string; refuseUntilMs: number } }
  | { ok: false; reason: string };

/** Judges a request's signature headers against its raw body and the bridge's clock. */
export function checkSignature(
  secret: string,
  body: Uint8Array,
  headers: SignatureHeaders,
  options: { nowMs: number; legacy: boolean },
): SignatureVerdict {
  const { signature, timestamp } = headers;
  if (timestamp === undefined) {
    if (options.legacy && verifySignature(secret, body, signature)) return { ok: true };
    return { ok: false, reason: "missing X-Signature-Timestamp or bad X-Signature-256" };
  }
  if (!TIMESTAMP_FORMAT.test(timestamp) || !matches(signRequest(secret, timestamp, body), signature)) {
    return { ok: false, reason: "missing or bad X-Signature-256 or X-Signature-Timestamp" };
  }
  // Told only to a sender that has the secret: a clock to fix, not a hint for an attacker.
  const seconds = Number(timestamp);
  if (Math.abs(options.nowMs / 1000 - seconds) > SIGNATURE_WINDOW_SECONDS) {
    return { ok: false, reason: "X-Signature-Timestamp is not within five minutes of the bridge's clock" };
  }
  // Past this the timestamp is refused anyway, so the seen signature can be forgotten.
  return { ok: true, replay: { key: signature!.slice(7).toLowerCase(), refuseUntilMs: (seconds + SIGNATURE_WINDOW_SECONDS + 1) * 1000 } };
}
