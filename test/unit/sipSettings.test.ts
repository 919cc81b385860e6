/** Config validation of SIP systems: what start would refuse, validation refuses; what is dangerous, it warns of. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { Logger } from "matrix-appservice-bridge";
import { ConfigError, configWarnings, validateConfig } from "../../src/config/load.js";
import type { SipSystemConfig } from "../../src/config/types.js";
import { SipGateway } from "../../src/gateway/sip/sipGateway.js";

function raw(sip: Record<string, unknown>): Record<string, any> {
  return {
    homeserver: { url: "https://matrix.example.org", domain: "example.org" },
    appservice: { port: 9000, url: "http://127.0.0.1:9000" },
    systems: [{ id: "pbx", name: "PBX", botLocalpart: "vm_pbx", kind: "sip", sip: { server: { host: "127.0.0.1" }, ...sip } }],
  };
}

function problems(config: Record<string, any>): string[] {
  try {
    validateConfig(config);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  assert.fail("expected a ConfigError");
}

const quiet = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger;

describe("SIP settings: unsolicitedSources", () => {
  for (const [source, problem] of [
    ["10.0.0.0/99", 'systems[0].sip.unsolicitedSources[0]: "10.0.0.0/99" has a prefix length outside 0..32'],
    ["999.1.1.1", 'systems[0].sip.unsolicitedSources[0]: "999.1.1.1" is not an IP address or CIDR range'],
    ["abc", 'systems[0].sip.unsolicitedSources[0]: "abc" is not an IP address or CIDR range'],
    ["::1/129", 'systems[0].sip.unsolicitedSources[0]: "::1/129" has a prefix length outside 0..128'],
  ] as const) {
    it(`refuses ${source}, as start would`, () => {
      const config = raw({ unsolicitedSources: [source] });
      assert.deepEqual(problems(config), [problem]);
      // The same parser at start: the gateway refuses it too (it used to throw only there).
      const system = { ...config.systems[0], sip: { ...config.systems[0].sip, local: { port: 0 }, unsolicitedSources: [source] } } as unknown as SipSystemConfig;
      assert.throws(() => new SipGateway(system, { acceptUpdate: async () => undefined, log: quiet }), /unsolicitedSources\[0\]/);
    });
  }

  it("takes addresses and ranges; warns of one that lets everybody in", () => {
    const ok = validateConfig(raw({ unsolicitedSources: ["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"] }));
    assert.deepEqual(configWarnings(ok), []);
    const open = validateConfig(raw({ unsolicitedSources: ["0.0.0.0/0", "::/0"] }));
    const warnings = configWarnings(open);
    assert.equal(warnings.length, 2);
    assert.match(warnings[0]!, /^systems\[0\]\.sip\.unsolicitedSources\[0\]: "0\.0\.0\.0\/0" takes MWI NOTIFYs from every address/);
  });

  it("warns of TLS without verification and of allowAuthUser", () => {
    const config = validateConfig(raw({ server: { host: "pbx.example.org", transport: "tls", rejectUnauthorized: false }, allowAuthUser: true }));
    assert.deepEqual(
      configWarnings(config).map((w) => w.split(":")[0]),
      ["systems[0].sip.server.rejectUnauthorized", "systems[0].sip.allowAuthUser"],
    );
  });

  it("defaults: allowAuthUser off, no bindAddress (chosen at start), connection caps and timeouts", () => {
    const sip = (validateConfig(raw({})).systems[0] as SipSystemConfig).sip;
    assert.equal(sip.allowAuthUser, false);
    assert.equal(sip.local.bindAddress, undefined);
    assert.deepEqual(
      { ...sip.local },
      { port: 5070, maxConnections: 64, maxConnectionsPerSource: 8, idleTimeoutSeconds: 120, messageTimeoutSeconds: 10 },
    );
  });

  it("validate-config prints the warnings and still passes the config", () => {
    const dir = mkdtempSync(join(tmpdir(), "vm-sip-config-"));
    try {
      const file = join(dir, "config.yaml");
      writeFileSync(file, JSON.stringify(raw({ unsolicitedSources: ["0.0.0.0/0"] })));
      const main = join(dirname(fileURLToPath(import.meta.url)), "../../src/main.js");
      const run = spawnSync(process.execPath, [main, "validate-config", "-c", file], { encoding: "utf8" });
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stderr, /warning: systems\[0\]\.sip\.unsolicitedSources\[0\]: "0\.0\.0\.0\/0" takes MWI NOTIFYs from every address/);
      assert.match(run.stdout, /is valid: 1 voice mail system\(s\), 1 warning\(s\)\./);
      writeFileSync(file, JSON.stringify(raw({ unsolicitedSources: ["abc"] })));
      const bad = spawnSync(process.execPath, [main, "validate-config", "-c", file], { encoding: "utf8" });
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /systems\[0\]\.sip\.unsolicitedSources\[0\]: "abc" is not an IP address/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
