/**
 * HTTP Digest authentication as SIP uses it (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760):
 * parse challenges, pick the strongest we support, compute credentials. The password never
 * leaves this module except hashed.
 */
import { createHash, randomBytes } from "node:crypto";
import { isToken, quote, splitTopLevel, unquote } from "./headers.js";

type DigestAlgorithm = "MD5" | "MD5-sess" | "SHA-256" | "SHA-256-sess" | "SHA-512-256" | "SHA-512-256-sess";

/** Strongest first: the order in which we pick among several challenges (RFC 7616 §3.7). */
const PREFERENCE: readonly DigestAlgorithm[] = ["SHA-512-256", "SHA-512-256-sess", "SHA-256", "SHA-256-sess", "MD5", "MD5-sess"];

const HASH: Record<string, string> = { MD5: "md5", "SHA-256": "sha256", "SHA-512-256": "sha512-256" };

export interface Challenge {
  /** Lower case, e.g. "digest". */
  scheme: string;
  /** Every auth-param, lower-case names, unquoted values. */
  params: Map<string, string>;
}

export interface DigestChallenge {
  /** Which response header carried it: 401 WWW-Authenticate or 407 Proxy-Authenticate. */
  proxy: boolean;
  realm: string;
  nonce: string;
  opaque?: string;
  algorithm: DigestAlgorithm;
  /** Offered qop values, lower case; empty = RFC 2069 style (no qop). */
  qop: string[];
  stale: boolean;
  userhash: boolean;
}

/**
 * Parses one or more challenges from header values: `Digest realm="a", nonce="b", Digest ...`.
 * Malformed pieces are skipped; never throws.
 */
export function parseChallenges(values: readonly string[]): Challenge[] {
  const out: Challenge[] = [];
  for (const value of values) {
    let current: Challenge | undefined;
    for (const item of splitAuthItems(value)) {
      // "Scheme" or "Scheme name=value" starts a challenge; "name=value" continues one.
      const m = /^([A-Za-z0-9\-.!%*_+`'~]+)(?:\s+(.*))?$/s.exec(item);
      const isScheme = m !== null && !/^[^=\s]+\s*=/.test(item);
      let param = item;
      if (isScheme) {
        current = { scheme: m[1]!.toLowerCase(), params: new Map() };
        out.push(current);
        param = m[2] ?? "";
      }
      if (!current || param.trim() === "") continue;
      const eq = param.indexOf("=");
      if (eq < 0) continue;
      const name = param.slice(0, eq).trim().toLowerCase();
      if (!isToken(name) || current.params.has(name)) continue;
      current.params.set(name, unquote(param.slice(eq + 1)));
    }
  }
  return out;
}

/** Items separated by commas outside quoted strings. */
function splitAuthItems(value: string): string[] {
  return splitTopLevel(value, ",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

/** A Digest challenge we can answer, or undefined (unknown algorithm, missing nonce...). */
function toDigestChallenge(c: Challenge, proxy: boolean): DigestChallenge | undefined {
  if (c.scheme !== "digest") return undefined;
  const realm = c.params.get("realm");
  const nonce = c.params.get("nonce");
  if (realm === undefined || !nonce) return undefined;
  const algName = c.params.get("algorithm") ?? "MD5";
  const algorithm = PREFERENCE.find((a) => a.toLowerCase() === algName.toLowerCase());
  if (!algorithm) return undefined;
  const qop = (c.params.get("qop") ?? "")
    .split(",")
    .map((q) => q.trim().toLowerCase())
    .filter((q) => q !== "");
  // qop offered but neither kind we know: cannot answer.
  if (qop.length > 0 && !qop.includes("auth") && !qop.includes("auth-int")) return undefined;
  const out: DigestChallenge = {
    proxy,
    realm,
    nonce,
    algorithm,
    qop,
    stale: (c.params.get("stale") ?? "").toLowerCase() === "true",
    userhash: (c.params.get("userhash") ?? "").toLowerCase() === "true",
  };
  const opaque = c.params.get("opaque");
  if (opaque !== undefined) out.opaque = opaque;
  return out;
}

/** The strongest answerable Digest challenge among header values, or undefined. */
export function selectChallenge(values: readonly string[], proxy: boolean): DigestChallenge | undefined {
  const usable = parseChallenges(values)
    .map((c) => toDigestChallenge(c, proxy))
    .filter((c): c is DigestChallenge => c !== undefined);
  usable.sort((a, b) => PREFERENCE.indexOf(a.algorithm) - PREFERENCE.indexOf(b.algorithm));
  return usable[0];
}

export interface CredentialInput {
  challenge: DigestChallenge;
  username: string;
  password: string;
  method: string;
  uri: string;
  /** Needed only for qop=auth-int. */
  body?: Uint8Array;
  /** Client nonce; random when omitted. */
  cnonce?: string;
  /** Nonce count (1 for the first use of a nonce). */
  nc?: number;
}

/** The value of an Authorization / Proxy-Authorization header. */
export function buildAuthorization(input: CredentialInput): string {
  const { challenge: ch, method, uri } = input;
  const H = (s: string | Uint8Array): string => createHash(HASH[ch.algorithm.replace(/-sess$/, "")]!).update(s).digest("hex");
  const qop = ch.qop.includes("auth") ? "auth" : ch.qop.includes("auth-int") ? "auth-int" : undefined;
  const cnonce = input.cnonce ?? randomBytes(12).toString("hex");
  const nc = (input.nc ?? 1).toString(16).padStart(8, "0");

  let ha1 = H(`${input.username}:${ch.realm}:${input.password}`);
  if (ch.algorithm.endsWith("-sess")) ha1 = H(`${ha1}:${ch.nonce}:${cnonce}`);
  const ha2 = qop === "auth-int" ? H(`${method}:${uri}:${H(input.body ?? new Uint8Array())}`) : H(`${method}:${uri}`);
  const response = qop ? H(`${ha1}:${ch.nonce}:${nc}:${cnonce}:${qop}:${ha2}`) : H(`${ha1}:${ch.nonce}:${ha2}`);

  const username = ch.userhash ? H(`${input.username}:${ch.realm}`) : input.username;
  const parts = [
    `username=${quote(username)}`,
    `realm=${quote(ch.realm)}`,
    `nonce=${quote(ch.nonce)}`,
    `uri=${quote(uri)}`,
    `response=${quote(response)}`,
    `algorithm=${ch.algorithm}`,
  ];
  if (ch.opaque !== undefined) parts.push(`opaque=${quote(ch.opaque)}`);
  if (qop) parts.push(`qop=${qop}`, `nc=${nc}`, `cnonce=${quote(cnonce)}`);
  if (ch.userhash) parts.push("userhash=true");
  return `Digest ${parts.join(", ")}`;
}

/**
 * Credentials for one identity across requests: remembers the last challenge per realm and
 * counts nonce uses (nc), so later requests may carry credentials up front.
 */
export class DigestClient {
  private readonly cache = new Map<string, { challenge: DigestChallenge; nc: number }>();
  // ES private: util.inspect and JSON.stringify of a subscription never show it.
  readonly #password: string;

  constructor(
    private readonly username: string,
    password: string,
  ) {
    this.#password = password;
  }

  /** Takes a 401/407 challenge into use (replacing the one for its realm). */
  accept(challenge: DigestChallenge): void {
    this.cache.set(`${challenge.proxy ? "p" : "w"}|${challenge.realm}`, { challenge, nc: 0 });
  }

  /** Forgets everything (for example after a rejected password). */
  reset(): void {
    this.cache.clear();
  }

  /**
   * Authorization headers for a request: every challenge not yet answered, and those with qop
   * again (nc counts up). A reused challenge without qop would be a replay, so it is not sent.
   */
  headers(method: string, uri: string, body?: Uint8Array): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const entry of this.cache.values()) {
      if (entry.nc > 0 && entry.challenge.qop.length === 0) continue;
      entry.nc++;
      const value = buildAuthorization({
        challenge: entry.challenge,
        username: this.username,
        password: this.#password,
        method,
        uri,
        nc: entry.nc,
        ...(body ? { body } : {}),
      });
      out.push([entry.challenge.proxy ? "Proxy-Authorization" : "Authorization", value]);
    }
    return out;
  }
}
