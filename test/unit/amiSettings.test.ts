import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { ConfigError, configWarnings, parseConfigYaml } from "../../src/config/load.js";

// dist/test/unit/x.js -> repository root
const SAMPLE = readFileSync(join(fileURLToPath(import.meta.url), "../../../../config.sample.yaml"), "utf8");

/** The sample with its commented ami system switched on. */
function sampleWithAmi(edit: (block: string) => string = (b) => b): string {
  const lines = SAMPLE.split("\n");
  const begin = lines.findIndex((l) => l.includes("BEGIN ami sample"));
  const end = lines.findIndex((l) => l.includes("END ami sample"));
  assert.ok(begin > 0 && end > begin, "the sample has the ami block");
  const block = lines.slice(begin + 1, end).map((l) => l.replace(/^ {2}# /, "  ")).join("\n");
  return [...lines.slice(0, begin), edit(block), ...lines.slice(end + 1)].join("\n");
}

const amiOf = (text: string) => {
  const config = parseConfigYaml(text);
  return { config, system: config.systems.find((s) => s.id === "pbx") as unknown as { kind: string; ami: Record<string, unknown> } };
};

describe("kind: ami settings", () => {
  it("the sample's ami system validates, with the defaults filled in", () => {
    const { config, system } = amiOf(sampleWithAmi());
    assert.equal(system.kind, "ami");
    assert.deepEqual(system.ami, {
      host: "127.0.0.1",
      port: 5038,
      username: "voicemail-bridge",
      secret: "change-me",
      context: "default",
      keepAliveSeconds: 30,
      actionTimeoutSeconds: 10,
      resync: { concurrency: 4, perSecond: 20 },
      verifyCall: { dialString: "PJSIP/{mailbox}", ringSeconds: 30 },
    });
    assert.deepEqual(configWarnings(config).filter((w) => w.includes("ami")), []);
  });

  it("fills port, context and resync; verifyCall stays off unless given", () => {
    const { system } = amiOf(sampleWithAmi((b) => b.split("\n").filter((l) => !/^\s+(port|context|keepAlive|actionTimeout|resync|verifyCall):/.test(l)).join("\n")));
    assert.equal(system.ami.port, 5038);
    assert.equal(system.ami.context, "default");
    assert.deepEqual(system.ami.resync, { concurrency: 4, perSecond: 20 });
    assert.equal(system.ami.verifyCall, undefined);
  });

  it("refuses values that could break AMI headers or dial strings, and a dial string without {mailbox}", () => {
    const refused = (from: string, to: string, why: RegExp) =>
      assert.throws(() => parseConfigYaml(sampleWithAmi((b) => b.replace(from, to))), (e: ConfigError) => why.test(e.message), `${to}`);
    refused("context: default", "context: \"def\\r\\nAction: Originate\"", /context/);
    refused('secret: "change-me"', 'secret: "a\\r\\nb"', /secret/);
    refused("username: voicemail-bridge", 'username: "a b"', /username/);
    refused('dialString: "PJSIP/{mailbox}"', 'dialString: "PJSIP/{mailbox}&DAHDI/1"', /dialString/);
    refused('dialString: "PJSIP/{mailbox}"', 'dialString: "PJSIP/2001"', /has no \{mailbox\}/);
    refused("port: 5038", "port: 5038\n      bogus: 1", /bogus|additional/);
  });

  it("warns of AMI off loopback (plain text)", () => {
    const config = parseConfigYaml(sampleWithAmi((b) => b.replace("host: 127.0.0.1", "host: pbx.example.org")));
    assert.ok(configWarnings(config).some((w) => /ami\.host: AMI is plain text/.test(w)));
  });
});
