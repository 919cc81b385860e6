import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import AjvModule, { type ErrorObject } from "ajv";
import { canonicalTimeZone } from "../core/format.js";
import { PHONE_REGIONS } from "../core/phone.js";
import { checkSystem, listenersOf } from "../gateway/registry.js";
import { configSchema } from "./schema.js";
import type { BridgeConfig } from "./types.js";

// ajv is CommonJS with a default export; under NodeNext the class sits on `.default`.
const Ajv = AjvModule.default;
const validateSchema = new Ajv({ allErrors: true, useDefaults: true, strict: false }).compile(configSchema);

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

/** `/systems/0/webhook/secret` -> `systems[0].webhook.secret` */
function keyPath(pointer: string): string {
  return pointer
    .split("/")
    .slice(1)
    .map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce((path, part) => (/^\d+$/.test(part) ? `${path}[${part}]` : path ? `${path}.${part}` : part), "");
}

function describe(error: ErrorObject): string {
  const at = keyPath(error.instancePath);
  switch (error.keyword) {
    case "required":
      return `${at ? at + "." : ""}${String(error.params.missingProperty)}: is required`;
    case "additionalProperties":
      return `${at ? at + "." : ""}${String(error.params.additionalProperty)}: is not a known key`;
    case "enum":
      return `${at || "(top level)"}: must be one of ${(error.params.allowedValues as unknown[]).join(", ")}`;
    case "const":
      return `${at || "(top level)"}: must be ${JSON.stringify(error.params.allowedValue)}`;
    case "minLength": {
      const limit = Number(error.params.limit);
      if (limit <= 1) return `${at || "(top level)"}: ${error.message ?? "is invalid"}`;
      // Only secrets need more than one character today: say how to make a good one.
      const hint = at.endsWith(".secret") ? " (a long random string, e.g. from `openssl rand -hex 32`)" : "";
      return `${at}: must be at least ${limit} characters long${hint}`;
    }
    case "pattern":
      return `${at}: has an invalid format (expected to match ${String(error.params.pattern)})`;
    default:
      return `${at || "(top level)"}: ${error.message ?? "is invalid"}`;
  }
}

interface Listener {
  /** The config key that sets it. */
  at: string;
  kind: string;
  protocols: readonly string[];
  address: string;
  port: number;
  shared: boolean;
}

/** Whether two bind addresses take the same port: the same one, or a wildcard over the other. */
function overlap(a: string, b: string): boolean {
  const v6 = (address: string) => address.includes(":");
  return a === b || a === "::" || b === "::" || (a === "0.0.0.0" && !v6(b)) || (b === "0.0.0.0" && !v6(a));
}

function collide(a: Listener, b: Listener): boolean {
  if (a.port === 0 || a.port !== b.port || !a.protocols.some((p) => b.protocols.includes(p))) return false;
  // Systems of one kind on the same address and port share a listener (the webhooks' router).
  if (a.shared && b.shared && a.kind === b.kind && a.address === b.address) return false;
  return overlap(a.address, b.address);
}

/** Every port the bridge will open: its appservice listener and those its systems ask for. */
function listeners(config: BridgeConfig): Listener[] {
  const { bindAddress, port } = config.appservice;
  const all: Listener[] = [{ at: "appservice.port", kind: "appservice", protocols: ["tcp"], address: bindAddress, port, shared: false }];
  config.systems.forEach((system, i) => {
    for (const l of listenersOf(system)) {
      all.push({ at: `systems[${i}].${l.key}`, kind: system.kind, protocols: l.protocols, address: l.bindAddress ?? bindAddress, port: l.port, shared: l.shared ?? false });
    }
  });
  if (config.adminApi) {
    all.push({ at: "adminApi.port", kind: "adminApi", protocols: ["tcp"], address: config.adminApi.bindAddress, port: config.adminApi.port, shared: false });
  }
  return all;
}

/** Checks that a schema cannot express: uniqueness across systems, bots and listeners. */
function crossChecks(config: BridgeConfig): string[] {
  const problems: string[] = [];
  const ids = new Set<string>();
  const localparts = new Set<string>([config.appservice.botLocalpart]);
  config.systems.forEach((system, i) => {
    if (ids.has(system.id)) problems.push(`systems[${i}].id: "${system.id}" is used by another system`);
    ids.add(system.id);
    if (localparts.has(system.botLocalpart)) {
      problems.push(`systems[${i}].botLocalpart: "${system.botLocalpart}" is used by another bot`);
    }
    localparts.add(system.botLocalpart);
    for (const problem of checkSystem(system).problems) problems.push(`systems[${i}].${problem}`);
  });
  const opened = listeners(config);
  opened.forEach((listener, i) => {
    const taken = opened.slice(0, i).find((earlier) => collide(earlier, listener));
    if (taken) problems.push(`${listener.at}: port ${listener.port} on ${listener.address} is taken by ${taken.at}`);
  });
  if (!canonicalTimeZone(config.defaultTimezone)) {
    problems.push(`defaultTimezone: "${config.defaultTimezone}" is not an IANA time zone`);
  }
  if (config.defaultRegion !== undefined && !PHONE_REGIONS.includes(config.defaultRegion)) {
    problems.push(`defaultRegion: "${config.defaultRegion}" is not a region of the phone numbering plan (an ISO 3166 code such as US, DE, GB)`);
  }
  return problems;
}

/** Validates a parsed config object, fills defaults in place and returns it typed. */
export function validateConfig(raw: unknown): BridgeConfig {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError(["(top level): must be a mapping of keys"]);
  }
  if (!validateSchema(raw)) {
    const problems = (validateSchema.errors ?? [])
      // The `if`/`then` wrapper adds a generic error beside the real one.
      .filter((e) => e.keyword !== "if")
      .map(describe);
    throw new ConfigError([...new Set(problems)]);
  }
  const config = raw as BridgeConfig;
  const problems = crossChecks(config);
  if (problems.length) throw new ConfigError(problems);
  return config;
}

/**
 * What a valid config allows but an admin should know is dangerous (one line each, with its
 * key): validate-config prints these, start logs them.
 */
export function configWarnings(config: BridgeConfig): string[] {
  const warnings = config.systems.flatMap((system, i) => checkSystem(system).warnings.map((w) => `systems[${i}].${w}`));
  const admin = config.adminApi;
  if (admin && !isLoopback(admin.bindAddress)) {
    warnings.push(`adminApi.bindAddress: ${admin.bindAddress} is not loopback: the API speaks plain HTTP, so its token crosses the network in clear unless a TLS proxy sits in front`);
  }
  return warnings;
}

function isLoopback(address: string): boolean {
  return address === "localhost" || address === "::1" || /^127\.\d+\.\d+\.\d+$/.test(address);
}

export function parseConfigYaml(text: string): BridgeConfig {
  let raw: unknown;
  try {
    raw = yaml.load(text);
  } catch (err) {
    throw new ConfigError([`not valid YAML: ${(err as Error).message.split("\n")[0]}`]);
  }
  return validateConfig(raw);
}

export function loadConfig(path: string): BridgeConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError([`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]);
  }
  return parseConfigYaml(text);
}
