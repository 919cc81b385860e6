import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import yaml from "js-yaml";

import { ConfigError, loadConfig, parseConfigYaml, validateConfig } from "../../src/config/load.js";
import {
  botLocalparts,
  botNamespaceRegex,
  buildRegistration,
  readRegistration,
  registrationMismatch,
  writeRegistration,
  type RegistrationFile,
} from "../../src/config/registration.js";
import { SYSTEM_KINDS } from "../../src/config/schema.js";
import type { BridgeConfig, SystemConfig, WebhookSystemConfig } from "../../src/config/types.js";

// ---------------------------------------------------------------- helpers

/** The repository root: the nearest directory above this file holding config.sample.yaml. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "config.sample.yaml")) && existsSync(join(dir, "package.json"))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error("config.sample.yaml not found above the test file");
    dir = parent;
  }
}

const SAMPLE_TEXT = readFileSync(join(repoRoot(), "config.sample.yaml"), "utf8");

/** The sample as plain data, before validation fills anything in. */
function rawSample(): Record<string, any> {
  return yaml.load(SAMPLE_TEXT) as Record<string, any>;
}

/** A small valid config with two systems, before defaults. */
function rawTwoSystems(): Record<string, any> {
  return {
    homeserver: { url: "https://matrix.example.org", domain: "example.org" },
    appservice: { port: 9000, url: "http://127.0.0.1:9000" },
    systems: [
      { id: "carrier", name: "Carrier", botLocalpart: "vm_carrier", kind: "webhook", webhook: { secret: "0123456789abcdef0123456789abcdef" } },
      { id: "office", name: "Office", botLocalpart: "vm_office", kind: "webhook", webhook: { secret: "fedcba9876543210fedcba9876543210" } },
    ],
  };
}

/** The problems validateConfig reports for `raw`; fails the test when it validates. */
function problemsOf(raw: unknown): string[] {
  try {
    validateConfig(raw);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.ok(err.message.startsWith("invalid configuration:"), err.message);
    for (const p of err.problems) assert.ok(err.message.includes(p), `message lists "${p}"`);
    return err.problems;
  }
  assert.fail("expected the config to be rejected");
}

function yamlProblems(text: string): string[] {
  try {
    parseConfigYaml(text);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail("expected the YAML to be rejected");
}

/** The system narrowed to the webhook kind (fails the test otherwise). */
function webhookSystem(system: SystemConfig | undefined): WebhookSystemConfig {
  assert.ok(system, "the system exists");
  assert.equal(system.kind, "webhook");
  return system as WebhookSystemConfig;
}

function mutated(change: (raw: Record<string, any>) => void): Record<string, any> {
  const raw = rawSample();
  change(raw);
  return raw;
}

// ---------------------------------------------------------------- the sample

describe("config.sample.yaml", () => {
  it("validates and comes back with every default filled in", () => {
    const config = parseConfigYaml(SAMPLE_TEXT);
    // Section by section: other sections may be added to the schema later.
    assert.deepEqual(config.homeserver, { url: "http://127.0.0.1:8008", domain: "localhost" });
    assert.deepEqual(config.appservice, {
      bindAddress: "127.0.0.1",
      port: 9000,
      url: "http://127.0.0.1:9000",
      botLocalpart: "voicemail",
      botDisplayName: "Voicemail",
    });
    assert.deepEqual(config.database, { uri: "nedb:./data" });
    assert.deepEqual(config.permissions, { localhost: "user", "@admin:localhost": "admin" });
    assert.equal(config.defaultTimezone, "UTC");
    assert.deepEqual(config.systems, [
      {
        id: "carrier",
        name: "Carrier Voicemail",
        botLocalpart: "vm_carrier",
        kind: "webhook",
        footer: "Dial *86 to listen",
        webhook: { secret: "change-me-to-a-long-random-string", maxBodyBytes: 16384, legacySignature: false },
      },
    ]);
    assert.deepEqual(config.logging, { level: "info" });
    assert.deepEqual(config.metrics, { enabled: true });
  });

  it("fills logging.level, metrics.enabled and webhook.maxBodyBytes when the keys are left out", () => {
    const raw = mutated((r) => {
      delete r.logging;
      delete r.metrics;
      delete r.systems[0].webhook.maxBodyBytes;
    });
    const config = validateConfig(raw);
    assert.equal(config.logging.level, "info");
    assert.equal(config.metrics.enabled, true);
    assert.equal(webhookSystem(config.systems[0]).webhook.maxBodyBytes, 16384);
  });

  it("fills the defaults of a minimal config", () => {
    const config = validateConfig(rawTwoSystems());
    assert.deepEqual(config.appservice, {
      port: 9000,
      url: "http://127.0.0.1:9000",
      bindAddress: "127.0.0.1",
      botLocalpart: "voicemail",
      botDisplayName: "Voicemail",
    });
    assert.deepEqual(config.database, { uri: "nedb:./data" });
    assert.deepEqual(config.permissions, {});
    assert.equal(config.defaultTimezone, "UTC");
    assert.deepEqual(config.logging, { level: "info" });
    assert.deepEqual(config.metrics, { enabled: true });
    assert.deepEqual(
      config.systems.map((s) => webhookSystem(s).webhook.maxBodyBytes),
      [16384, 16384],
    );
  });

  it("keeps values that are given instead of the defaults", () => {
    const raw = rawTwoSystems();
    raw.logging = { level: "debug", file: "./vm.log" };
    raw.metrics = { enabled: false };
    raw.systems[0].webhook.maxBodyBytes = 4096;
    raw.defaultTimezone = "Europe/Berlin";
    const config = validateConfig(raw);
    assert.deepEqual(config.logging, { level: "debug", file: "./vm.log" });
    assert.equal(config.metrics.enabled, false);
    assert.equal(webhookSystem(config.systems[0]).webhook.maxBodyBytes, 4096);
    assert.equal(webhookSystem(config.systems[1]).webhook.maxBodyBytes, 16384);
    assert.equal(config.defaultTimezone, "Europe/Berlin");
  });

  it("returns the same object it was given, filled in place", () => {
    const raw = rawTwoSystems();
    const config = validateConfig(raw);
    assert.equal(config, raw);
    assert.equal(raw.logging.level, "info");
  });

  it("loadConfig reads a file and names a missing one", () => {
    const dir = mkdtempSync(join(tmpdir(), "vm-config-"));
    try {
      const path = join(dir, "config.yaml");
      writeFileSync(path, SAMPLE_TEXT);
      assert.equal(loadConfig(path).systems[0]!.id, "carrier");
      const missing = join(dir, "nope.yaml");
      assert.throws(
        () => loadConfig(missing),
        (err: unknown) => err instanceof ConfigError && err.problems.length === 1 && err.problems[0] === `cannot read ${missing}: ENOENT`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------- bad configs

describe("validateConfig: each problem names its key path", () => {
  it("a missing webhook secret", () => {
    assert.deepEqual(problemsOf(mutated((r) => delete r.systems[0].webhook.secret)), ["systems[0].webhook.secret: is required"]);
  });

  it("a missing top-level section", () => {
    assert.deepEqual(problemsOf(mutated((r) => delete r.homeserver)), ["homeserver: is required"]);
    assert.deepEqual(problemsOf(mutated((r) => delete r.systems)), ["systems: is required"]);
  });

  it("a missing nested key", () => {
    assert.deepEqual(problemsOf(mutated((r) => delete r.appservice.port)), ["appservice.port: is required"]);
    assert.deepEqual(problemsOf(mutated((r) => delete r.systems[0].name)), ["systems[0].name: is required"]);
  });

  it(
    "a system without kind: only the missing kind is reported",
    () => {
      assert.deepEqual(problemsOf(mutated((r) => delete r.systems[0].kind)), ["systems[0].kind: is required"]);
    },
  );

  it("a system without kind is refused, naming systems[0].kind", () => {
    assert.ok(problemsOf(mutated((r) => delete r.systems[0].kind)).includes("systems[0].kind: is required"));
  });

  it("an unknown key at the top, in a section, in a system and in its webhook block", () => {
    assert.deepEqual(problemsOf(mutated((r) => (r.colour = "blue"))), ["colour: is not a known key"]);
    assert.deepEqual(problemsOf(mutated((r) => (r.appservice.botname = "x"))), ["appservice.botname: is not a known key"]);
    assert.deepEqual(problemsOf(mutated((r) => (r.systems[0].secret = "x"))), ["systems[0].secret: is not a known key"]);
    assert.deepEqual(problemsOf(mutated((r) => (r.systems[0].webhook.sekret = "x"))), ["systems[0].webhook.sekret: is not a known key"]);
    assert.deepEqual(problemsOf(mutated((r) => (r.metrics.port = 1))), ["metrics.port: is not a known key"]);
  });

  it("a value outside an enum lists the allowed ones", () => {
    assert.deepEqual(problemsOf(mutated((r) => (r.logging.level = "verbose"))), [
      "logging.level: must be one of debug, info, warn, error",
    ]);
    assert.deepEqual(problemsOf(mutated((r) => (r.permissions["@bob:localhost"] = "root"))), [
      "permissions.@bob:localhost: must be one of none, user, admin",
    ]);
    assert.deepEqual(problemsOf(mutated((r) => (r.systems[0].kind = "sip-trunk"))), [
      `systems[0].kind: must be one of ${SYSTEM_KINDS.join(", ")}`,
    ]);
    assert.ok(SYSTEM_KINDS.includes("webhook"));
  });

  it("bad ports", () => {
    assert.deepEqual(problemsOf(mutated((r) => (r.appservice.port = 70000))), ["appservice.port: must be <= 65535"]);
    assert.deepEqual(problemsOf(mutated((r) => (r.appservice.port = 0))), ["appservice.port: must be >= 1"]);
    assert.deepEqual(problemsOf(mutated((r) => (r.appservice.port = "9000"))), ["appservice.port: must be integer"]);
    assert.deepEqual(problemsOf(mutated((r) => (r.systems[0].webhook.port = 90.5))), ["systems[0].webhook.port: must be integer"]);
    assert.deepEqual(problemsOf(mutated((r) => (r.systems[0].webhook.port = 65536))), ["systems[0].webhook.port: must be <= 65535"]);
  });

  it("accepts the edge ports 1 and 65535", () => {
    assert.equal(validateConfig(mutated((r) => (r.appservice.port = 1))).appservice.port, 1);
    assert.equal(webhookSystem(validateConfig(mutated((r) => (r.systems[0].webhook.port = 65535))).systems[0]).webhook.port, 65535);
  });

  it("wrong formats and sizes", () => {
    assert.deepEqual(problemsOf(mutated((r) => (r.homeserver.url = "ftp://h"))), [
      "homeserver.url: has an invalid format (expected to match ^https?://[^\\s/]+)",
    ]);
    assert.deepEqual(problemsOf(mutated((r) => (r.systems[0].id = "Carrier!"))), [
      "systems[0].id: has an invalid format (expected to match ^[a-z0-9_-]+$)",
    ]);
    assert.deepEqual(problemsOf(mutated((r) => (r.systems[0].webhook.secret = "short"))), [
      "systems[0].webhook.secret: must be at least 32 characters long (a long random string, e.g. from `openssl rand -hex 32`)",
    ]);
    // 31 characters: what passed before (8 did) is refused.
    assert.deepEqual(problemsOf(mutated((r) => (r.systems[0].webhook.secret = "x".repeat(31)))), [
      "systems[0].webhook.secret: must be at least 32 characters long (a long random string, e.g. from `openssl rand -hex 32`)",
    ]);
    assert.deepEqual(problemsOf(mutated((r) => (r.systems[0].webhook.legacySignature = "yes"))), ["systems[0].webhook.legacySignature: must be boolean"]);
    assert.deepEqual(problemsOf(mutated((r) => (r.systems[0].webhook.maxBodyBytes = 100))), [
      "systems[0].webhook.maxBodyBytes: must be >= 256",
    ]);
    assert.deepEqual(problemsOf(mutated((r) => (r.database.uri = "mysql://db"))), [
      "database.uri: has an invalid format (expected to match ^(nedb:.+|postgres(ql)?://.+|memory:)$)",
    ]);
    assert.doesNotThrow(() => validateConfig(mutated((r) => (r.database.uri = "memory:"))));
    assert.doesNotThrow(() => validateConfig(mutated((r) => (r.database.uri = "postgres://bridge:pw@db:5432/voicemail"))));
    assert.doesNotThrow(() => validateConfig(mutated((r) => (r.database.uri = "postgresql://db/voicemail"))));
    assert.deepEqual(problemsOf(mutated((r) => (r.metrics.enabled = "yes"))), ["metrics.enabled: must be boolean"]);
    assert.deepEqual(problemsOf(mutated((r) => (r.systems = []))), ["systems: must NOT have fewer than 1 items"]);
  });

  it("reports every problem at once", () => {
    const problems = problemsOf(
      mutated((r) => {
        delete r.systems[0].webhook.secret;
        r.logging.level = "loud";
        r.extra = true;
      }),
    );
    assert.deepEqual([...problems].sort(), [
      "extra: is not a known key",
      "logging.level: must be one of debug, info, warn, error",
      "systems[0].webhook.secret: is required",
    ]);
  });

  it("never reports the generic if/then wrapper error", () => {
    const problems = problemsOf(mutated((r) => delete r.systems[0].webhook));
    assert.deepEqual(problems, ["systems[0].webhook: is required"]);
    assert.ok(!problems.some((p) => p.includes('must match "then" schema')));
  });

  it("a duplicate system id", () => {
    const raw = rawTwoSystems();
    raw.systems[1].id = "carrier";
    assert.deepEqual(problemsOf(raw), ['systems[1].id: "carrier" is used by another system']);
  });

  it("a duplicate system botLocalpart", () => {
    const raw = rawTwoSystems();
    raw.systems[1].botLocalpart = "vm_carrier";
    assert.deepEqual(problemsOf(raw), ['systems[1].botLocalpart: "vm_carrier" is used by another bot']);
  });

  it("a system botLocalpart equal to the main bot's (default or explicit)", () => {
    const byDefault = rawTwoSystems();
    byDefault.systems[0].botLocalpart = "voicemail";
    assert.deepEqual(problemsOf(byDefault), ['systems[0].botLocalpart: "voicemail" is used by another bot']);

    const explicit = rawTwoSystems();
    explicit.appservice.botLocalpart = "vm_main";
    explicit.systems[1].botLocalpart = "vm_main";
    assert.deepEqual(problemsOf(explicit), ['systems[1].botLocalpart: "vm_main" is used by another bot']);
  });

  it("a bad defaultTimezone", () => {
    assert.deepEqual(problemsOf(mutated((r) => (r.defaultTimezone = "Mars/Olympus_Mons"))), [
      'defaultTimezone: "Mars/Olympus_Mons" is not an IANA time zone',
    ]);
    assert.deepEqual(problemsOf(mutated((r) => (r.defaultTimezone = ""))), ["defaultTimezone: must NOT have fewer than 1 characters"]);
  });

  it("defaultRegion: optional; a region of the numbering plan, in capitals", () => {
    assert.equal(validateConfig(rawTwoSystems()).defaultRegion, undefined);
    const raw = rawTwoSystems();
    raw.defaultRegion = "DE";
    assert.equal(validateConfig(raw).defaultRegion, "DE");
    assert.deepEqual(problemsOf(mutated((r) => (r.defaultRegion = "XX"))), [
      'defaultRegion: "XX" is not a region of the phone numbering plan (an ISO 3166 code such as US, DE, GB)',
    ]);
    for (const bad of ["de", "DEU", "", "U S"]) {
      assert.deepEqual(problemsOf(mutated((r) => (r.defaultRegion = bad))), ["defaultRegion: has an invalid format (expected to match ^[A-Z]{2}$)"], bad);
    }
    assert.deepEqual(problemsOf(mutated((r) => (r.defaultRegion = 49))), ["defaultRegion: must be string"]);
  });

  it("cross checks report all their problems together", () => {
    const raw = rawTwoSystems();
    raw.systems[1].id = "carrier";
    raw.systems[1].botLocalpart = "voicemail";
    raw.defaultTimezone = "Nowhere/Atall";
    assert.deepEqual(problemsOf(raw), [
      'systems[1].id: "carrier" is used by another system',
      'systems[1].botLocalpart: "voicemail" is used by another bot',
      'defaultTimezone: "Nowhere/Atall" is not an IANA time zone',
    ]);
  });

  it("something that is not a mapping", () => {
    for (const raw of [null, undefined, 42, "text", [], [1, 2]]) {
      assert.deepEqual(problemsOf(raw), ["(top level): must be a mapping of keys"], JSON.stringify(raw));
    }
  });
});

describe("validateConfig: listeners that would collide at start", () => {
  /** rawTwoSystems with the two webhooks' blocks changed. */
  function withWebhooks(first: Record<string, unknown>, second: Record<string, unknown> = {}): Record<string, any> {
    const raw = rawTwoSystems();
    Object.assign(raw.systems[0].webhook, first);
    Object.assign(raw.systems[1].webhook, second);
    return raw;
  }
  function sip(id: string, local: Record<string, unknown>): Record<string, unknown> {
    return { id, name: id, botLocalpart: `vm_${id}`, kind: "sip", sip: { server: { host: "127.0.0.1" }, local } };
  }

  it("a webhook port equal to appservice.port", () => {
    assert.deepEqual(problemsOf(withWebhooks({ port: 9000 })), ["systems[0].webhook.port: port 9000 on 127.0.0.1 is taken by appservice.port"]);
    assert.deepEqual(problemsOf(withWebhooks({ port: 9000, bindAddress: "127.0.0.1" })), [
      "systems[0].webhook.port: port 9000 on 127.0.0.1 is taken by appservice.port",
    ]);
    // A wildcard address takes the port on every address, the appservice's too.
    assert.deepEqual(problemsOf(withWebhooks({ port: 9000, bindAddress: "0.0.0.0" })), [
      "systems[0].webhook.port: port 9000 on 0.0.0.0 is taken by appservice.port",
    ]);
    assert.deepEqual(problemsOf(withWebhooks({ port: 9000, bindAddress: "::" })), ["systems[0].webhook.port: port 9000 on :: is taken by appservice.port"]);
  });

  it("the appservice port on another address is fine", () => {
    assert.equal(validateConfig(withWebhooks({ port: 9000, bindAddress: "127.0.0.2" })).systems.length, 2);
  });

  it("two webhooks on one address and port share a listener; on two addresses of one port they are two", () => {
    assert.equal(validateConfig(withWebhooks({ port: 9001 }, { port: 9001 })).systems.length, 2);
    assert.equal(validateConfig(withWebhooks({ port: 9001, bindAddress: "127.0.0.1" }, { port: 9001 })).systems.length, 2);
    assert.equal(validateConfig(withWebhooks({ port: 9001, bindAddress: "127.0.0.2" }, { port: 9001, bindAddress: "127.0.0.3" })).systems.length, 2);
    // Two listeners, one of them on every address: the second cannot bind.
    assert.deepEqual(problemsOf(withWebhooks({ port: 9001, bindAddress: "0.0.0.0" }, { port: 9001, bindAddress: "127.0.0.1" })), [
      "systems[1].webhook.port: port 9001 on 127.0.0.1 is taken by systems[0].webhook.port",
    ]);
  });

  it("two SIP systems on one local address and port; port 0 collides with nothing", () => {
    const raw = rawTwoSystems();
    raw.systems.push(sip("pbx1", {}), sip("pbx2", {}));
    assert.deepEqual(problemsOf(raw), ["systems[3].sip.local: port 5070 on 0.0.0.0 is taken by systems[2].sip.local"]);
    const free = rawTwoSystems();
    free.systems.push(sip("pbx1", { port: 0 }), sip("pbx2", { port: 0 }), sip("pbx3", { port: 5070, bindAddress: "127.0.0.1" }), sip("pbx4", { port: 5070, bindAddress: "127.0.0.2" }));
    assert.equal(validateConfig(free).systems.length, 6);
  });

  it("a SIP system on the TCP port of a webhook or of the appservice (TCP only for transport tcp)", () => {
    const tcp = (system: Record<string, any>) => ((system.sip.server.transport = "tcp"), system);
    const raw = withWebhooks({ port: 5070, bindAddress: "127.0.0.1" });
    raw.systems.push(tcp(sip("pbx", { bindAddress: "127.0.0.1" })));
    assert.deepEqual(problemsOf(raw), ["systems[2].sip.local: port 5070 on 127.0.0.1 is taken by systems[0].webhook.port"]);
    const onAppservice = rawTwoSystems();
    onAppservice.systems.push(tcp(sip("pbx", { port: 9000 })));
    assert.deepEqual(problemsOf(onAppservice), ["systems[2].sip.local: port 9000 on 0.0.0.0 is taken by appservice.port"]);
    const udp = rawTwoSystems();
    udp.systems.push(sip("pbx", { port: 9000 }));
    assert.equal(validateConfig(udp).systems.length, 3, "over UDP the SIP system opens no TCP port");
  });
});

describe("parseConfigYaml", () => {
  it("invalid YAML becomes one problem saying so", () => {
    const problems = yamlProblems("homeserver: [1, 2\n");
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^not valid YAML: /);
    assert.ok(!problems[0]!.includes("\n"), "only the first line of the YAML error");
  });

  it("duplicate keys are invalid YAML", () => {
    const problems = yamlProblems("metrics:\n  enabled: true\nmetrics:\n  enabled: false\n");
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^not valid YAML: duplicated mapping key/);
  });

  it("an empty document or a scalar is not a mapping", () => {
    assert.deepEqual(yamlProblems(""), ["(top level): must be a mapping of keys"]);
    assert.deepEqual(yamlProblems("just a string"), ["(top level): must be a mapping of keys"]);
    assert.deepEqual(yamlProblems("- a\n- b\n"), ["(top level): must be a mapping of keys"]);
  });

  it("schema problems come through from YAML too", () => {
    assert.deepEqual(yamlProblems(SAMPLE_TEXT.replace("level: info", "level: loud")), [
      "logging.level: must be one of debug, info, warn, error",
    ]);
  });
});

// ---------------------------------------------------------------- registration

/** Python's re.match (what Synapse uses): anchored at the start only. */
const synapseMatch = (regex: string, id: string) => new RegExp(`^(?:${regex})`).test(id);
/** A whole-string match. */
const fullMatch = (regex: string, id: string) => new RegExp(`^(?:${regex})$`).test(id);

describe("registration", () => {
  const config = (): BridgeConfig => validateConfig(rawTwoSystems());

  it("botLocalparts lists the main bot first, then each system's", () => {
    assert.deepEqual(botLocalparts(config()), ["voicemail", "vm_carrier", "vm_office"]);
  });

  it("the namespace regex escapes the domain and names each bot", () => {
    assert.equal(botNamespaceRegex(config()), "^@(voicemail|vm_carrier|vm_office):example\\.org$");
  });

  it("builds a fresh registration with new tokens", () => {
    const reg = buildRegistration(config(), undefined);
    assert.equal(reg.id, "voicemail");
    assert.equal(reg.url, "http://127.0.0.1:9000");
    assert.equal(reg.sender_localpart, "voicemail");
    assert.equal(reg.rate_limited, false);
    assert.equal(reg.receive_ephemeral, true);
    assert.equal(reg["de.sorunome.msc2409.push_ephemeral"], true);
    assert.match(reg.as_token, /^[A-Za-z0-9_-]{43}$/);
    assert.match(reg.hs_token, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(reg.as_token, reg.hs_token);
    assert.deepEqual(reg.namespaces, {
      users: [{ exclusive: true, regex: "^@(voicemail|vm_carrier|vm_office):example\\.org$" }],
      aliases: [],
      rooms: [],
    });
    const again = buildRegistration(config(), undefined);
    assert.notEqual(again.as_token, reg.as_token);
    assert.notEqual(again.hs_token, reg.hs_token);
  });

  it("an explicit url wins over appservice.url", () => {
    assert.equal(buildRegistration(config(), undefined, { url: "http://bridge:9000" }).url, "http://bridge:9000");
  });

  it("keeps the id and tokens of a previous registration", () => {
    const previous: Partial<RegistrationFile> = { id: "my-vm", as_token: "AS-old", hs_token: "HS-old" };
    const reg = buildRegistration(config(), previous);
    assert.equal(reg.id, "my-vm");
    assert.equal(reg.as_token, "AS-old");
    assert.equal(reg.hs_token, "HS-old");
  });

  it("replaces the tokens when regenerateTokens is set", () => {
    const previous: Partial<RegistrationFile> = { id: "my-vm", as_token: "AS-old", hs_token: "HS-old" };
    const reg = buildRegistration(config(), previous, { regenerateTokens: true });
    assert.notEqual(reg.as_token, "AS-old");
    assert.notEqual(reg.hs_token, "HS-old");
    assert.match(reg.as_token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(reg.id, "voicemail");
  });

  it("fills a token the previous registration lacks", () => {
    const reg = buildRegistration(config(), { as_token: "AS-old" });
    assert.equal(reg.as_token, "AS-old");
    assert.match(reg.hs_token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(reg.id, "voicemail");
  });

  it("the namespace covers exactly the bots", () => {
    const regex = buildRegistration(config(), undefined).namespaces.users[0]!.regex;
    for (const id of ["@voicemail:example.org", "@vm_carrier:example.org", "@vm_office:example.org"]) {
      assert.ok(fullMatch(regex, id), `${id} is covered`);
      assert.ok(synapseMatch(regex, id), `${id} is covered under re.match`);
    }
    for (const id of [
      "@vm_carrierX:example.org",
      "@xvm_carrier:example.org",
      "@vm_carrier:exampleXorg",
      "@vm_carrier:other.org",
      "@alice:example.org",
      "@vm_:example.org",
      "@:example.org",
      "@vm_carrier|vm_office:example.org",
      "vm_carrier:example.org",
    ]) {
      assert.ok(!fullMatch(regex, id), `${id} is not covered`);
      assert.ok(!synapseMatch(regex, id), `${id} is not covered under re.match`);
    }
  });

  it("a whole-string match does not cover the bots' names on other domains", () => {
    const regex = buildRegistration(config(), undefined).namespaces.users[0]!.regex;
    assert.ok(!fullMatch(regex, "@vm_carrier:example.org.evil.net"));
    assert.ok(!fullMatch(regex, "@voicemail:example.orgx"));
  });

  it(
    "under Synapse's re.match (start-anchored) the namespace does not cover other domains",
    () => {
      const regex = buildRegistration(config(), undefined).namespaces.users[0]!.regex;
      assert.ok(!synapseMatch(regex, "@vm_carrier:example.org.evil.net"));
      assert.ok(!synapseMatch(regex, "@voicemail:example.orgx"));
    },
  );

  it("escapes regex characters in localparts and domains", () => {
    const raw = rawTwoSystems();
    raw.appservice.botLocalpart = "vm.main";
    raw.systems[0].botLocalpart = "vm/a=b";
    raw.homeserver.domain = "[::1]:8448";
    const cfg = validateConfig(raw);
    const regex = botNamespaceRegex(cfg);
    assert.ok(fullMatch(regex, "@vm.main:[::1]:8448"));
    assert.ok(fullMatch(regex, "@vm/a=b:[::1]:8448"));
    assert.ok(!fullMatch(regex, "@vmXmain:[::1]:8448"));
    assert.ok(!fullMatch(regex, "@vm.main:1:8448"));
  });

  it("registrationMismatch: none for a fresh registration", () => {
    const cfg = config();
    assert.equal(registrationMismatch(cfg, buildRegistration(cfg, undefined)), undefined);
  });

  it("registrationMismatch: a bot added after the registration was written", () => {
    const before = validateConfig(rawTwoSystems());
    const reg = buildRegistration(before, undefined);
    const raw = rawTwoSystems();
    raw.systems.push({ id: "home", name: "Home", botLocalpart: "vm_home", kind: "webhook", webhook: { secret: "abcdefgh12345678abcdefgh12345678" } });
    const after = validateConfig(raw);
    assert.equal(registrationMismatch(after, reg), "the user namespace does not cover the bot(s) vm_home");
  });

  it("registrationMismatch: a non-exclusive namespace does not count", () => {
    const cfg = config();
    const reg = buildRegistration(cfg, undefined);
    reg.namespaces.users[0]!.exclusive = false;
    assert.equal(registrationMismatch(cfg, reg), "the user namespace does not cover the bot(s) voicemail, vm_carrier, vm_office");
  });

  it("registrationMismatch: a different sender_localpart", () => {
    const cfg = config();
    const reg = buildRegistration(cfg, undefined);
    reg.sender_localpart = "oldbot";
    assert.equal(registrationMismatch(cfg, reg), 'sender_localpart is "oldbot" but appservice.botLocalpart is "voicemail"');
  });

  it("registrationMismatch: a registration without namespaces", () => {
    const cfg = config();
    const reg = buildRegistration(cfg, undefined) as Partial<RegistrationFile>;
    delete reg.namespaces;
    assert.equal(
      registrationMismatch(cfg, reg as RegistrationFile),
      "the user namespace does not cover the bot(s) voicemail, vm_carrier, vm_office",
    );
  });

  it("writeRegistration writes mode 0600, keeps tokens on rewrite and replaces them on request", () => {
    const dir = mkdtempSync(join(tmpdir(), "vm-reg-"));
    try {
      const path = join(dir, "registration.yaml");
      const cfg = config();
      const first = writeRegistration(cfg, path);
      assert.equal(first.keptTokens, false);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      const onDisk = readRegistration(path);
      assert.deepEqual(onDisk, first.registration);

      const second = writeRegistration(cfg, path, { url: "http://other:9000" });
      assert.equal(second.keptTokens, true);
      assert.equal(second.registration.as_token, first.registration.as_token);
      assert.equal(second.registration.hs_token, first.registration.hs_token);
      assert.equal(readRegistration(path).url, "http://other:9000");
      assert.equal(statSync(path).mode & 0o777, 0o600);

      const third = writeRegistration(cfg, path, { regenerateTokens: true });
      assert.equal(third.keptTokens, false);
      assert.notEqual(third.registration.as_token, first.registration.as_token);
      assert.notEqual(third.registration.hs_token, first.registration.hs_token);
      assert.equal(readRegistration(path).as_token, third.registration.as_token);
      assert.equal(statSync(path).mode & 0o777, 0o600);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("writeRegistration tightens a file that was world-readable", () => {
    const dir = mkdtempSync(join(tmpdir(), "vm-reg-"));
    try {
      const path = join(dir, "registration.yaml");
      writeFileSync(path, yaml.dump({ id: "x", as_token: "A", hs_token: "H" }), { mode: 0o644 });
      const { registration, keptTokens } = writeRegistration(config(), path);
      assert.equal(keptTokens, true);
      assert.equal(registration.as_token, "A");
      assert.equal(registration.id, "x");
      assert.equal(statSync(path).mode & 0o777, 0o600);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("readRegistration refuses a file without tokens", () => {
    const dir = mkdtempSync(join(tmpdir(), "vm-reg-"));
    try {
      const path = join(dir, "registration.yaml");
      writeFileSync(path, "id: x\nurl: http://a\n");
      assert.throws(() => readRegistration(path), { message: `${path} is not a registration file (as_token and hs_token are missing)` });
      writeFileSync(path, "");
      assert.throws(() => readRegistration(path), /is not a registration file/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
