import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import AjvModule, { type ErrorObject } from "ajv";
import { canonicalTimeZone } from "../core/format.js";
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
    case "pattern":
      return `${at}: has an invalid format (expected to match ${String(error.params.pattern)})`;
    default:
      return `${at || "(top level)"}: ${error.message ?? "is invalid"}`;
  }
}

/** Checks that a schema cannot express: uniqueness across systems and bots. */
function crossChecks(config: BridgeConfig): string[] {
  const problems: string[] = [];
  const ids = new Set<string>();
  const localparts = new Set<string>([config.appservice.botLocalpart]);
  const sipAddresses = new Set<string>();
  config.systems.forEach((system, i) => {
    if (ids.has(system.id)) problems.push(`systems[${i}].id: "${system.id}" is used by another system`);
    ids.add(system.id);
    if (localparts.has(system.botLocalpart)) {
      problems.push(`systems[${i}].botLocalpart: "${system.botLocalpart}" is used by another bot`);
    }
    localparts.add(system.botLocalpart);
    if (system.kind === "sip" && system.sip.local.port !== 0) {
      const address = `${system.sip.local.bindAddress}:${system.sip.local.port}`;
      if (sipAddresses.has(address)) problems.push(`systems[${i}].sip.local: ${address} is used by another SIP system`);
      sipAddresses.add(address);
    }
  });
  if (!canonicalTimeZone(config.defaultTimezone)) {
    problems.push(`defaultTimezone: "${config.defaultTimezone}" is not an IANA time zone`);
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
