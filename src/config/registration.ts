import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync, chmodSync } from "node:fs";
import yaml from "js-yaml";
import type { BridgeConfig } from "./types.js";

/** The appservice registration file as Synapse reads it. */
export interface RegistrationFile {
  id: string;
  url: string;
  as_token: string;
  hs_token: string;
  sender_localpart: string;
  rate_limited: boolean;
  namespaces: {
    users: { exclusive: boolean; regex: string }[];
    aliases: { exclusive: boolean; regex: string }[];
    rooms: { exclusive: boolean; regex: string }[];
  };
  receive_ephemeral: boolean;
  "de.sorunome.msc2409.push_ephemeral": boolean;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
}

/** Every user ID the bridge speaks as: the main bot and one bot per system. */
export function botLocalparts(config: BridgeConfig): string[] {
  return [config.appservice.botLocalpart, ...config.systems.map((s) => s.botLocalpart)];
}

export function botNamespaceRegex(config: BridgeConfig): string {
  const alternatives = botLocalparts(config).map(escapeRegex).join("|");
  return `^@(${alternatives}):${escapeRegex(config.homeserver.domain)}$`;
}

function token(): string {
  return randomBytes(32).toString("base64url");
}

export interface GenerateOptions {
  url?: string;
  /** Replace the tokens even when the file exists (breaks the running install until Synapse reloads). */
  regenerateTokens?: boolean;
}

export function buildRegistration(
  config: BridgeConfig,
  previous: Partial<RegistrationFile> | undefined,
  options: GenerateOptions = {},
): RegistrationFile {
  const keep = previous && !options.regenerateTokens;
  return {
    id: (keep && previous.id) || "voicemail",
    url: options.url ?? config.appservice.url,
    as_token: (keep && previous.as_token) || token(),
    hs_token: (keep && previous.hs_token) || token(),
    sender_localpart: config.appservice.botLocalpart,
    rate_limited: false,
    namespaces: {
      users: [{ exclusive: true, regex: botNamespaceRegex(config) }],
      aliases: [],
      rooms: [],
    },
    receive_ephemeral: true,
    "de.sorunome.msc2409.push_ephemeral": true,
  };
}

export function readRegistration(path: string): RegistrationFile {
  const parsed = yaml.load(readFileSync(path, "utf8")) as Partial<RegistrationFile> | undefined;
  if (!parsed || typeof parsed.as_token !== "string" || typeof parsed.hs_token !== "string") {
    throw new Error(`${path} is not a registration file (as_token and hs_token are missing)`);
  }
  return parsed as RegistrationFile;
}

/** Writes the registration with owner-only permissions: it holds both tokens. */
export function writeRegistration(config: BridgeConfig, path: string, options: GenerateOptions = {}): {
  registration: RegistrationFile;
  keptTokens: boolean;
} {
  const previous = existsSync(path) ? readRegistration(path) : undefined;
  const registration = buildRegistration(config, previous, options);
  writeFileSync(path, yaml.dump(registration, { lineWidth: -1 }), { mode: 0o600 });
  chmodSync(path, 0o600);
  return { registration, keptTokens: Boolean(previous && !options.regenerateTokens) };
}

/** Why a registration no longer fits the config, or undefined when it does. */
export function registrationMismatch(config: BridgeConfig, registration: RegistrationFile): string | undefined {
  if (registration.sender_localpart !== config.appservice.botLocalpart) {
    return `sender_localpart is "${registration.sender_localpart}" but appservice.botLocalpart is "${config.appservice.botLocalpart}"`;
  }
  const namespaces = registration.namespaces?.users ?? [];
  const uncovered = botLocalparts(config).filter(
    (lp) => !namespaces.some((ns) => ns.exclusive && new RegExp(ns.regex).test(`@${lp}:${config.homeserver.domain}`)),
  );
  if (uncovered.length) return `the user namespace does not cover the bot(s) ${uncovered.join(", ")}`;
  return undefined;
}
