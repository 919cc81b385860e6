/** The `adminApi` config block: off unless given, its defaults, the sample's commented block, the checks. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { ConfigError, configWarnings, parseConfigYaml, validateConfig } from "../../src/config/load.js";
import { BearerToken, ClientRateLimit } from "../../src/app/adminApi/access.js";
import type { IncomingMessage } from "node:http";

const SAMPLE = readFileSync(new URL("../../../config.sample.yaml", import.meta.url), "utf8");
const TOKEN = "0123456789abcdef0123456789abcdef";

/** The sample with its admin API block switched on (its `#` taken off). */
function sampleWithAdminApi(): string {
  const lines = SAMPLE.split("\n");
  const start = lines.findIndex((l) => l === "#adminApi:");
  assert.ok(start > 0, "config.sample.yaml has a commented adminApi block");
  let end = start;
  while (lines[end]?.startsWith("#")) end++;
  for (let i = start; i < end; i++) lines[i] = lines[i]!.slice(1);
  return lines.join("\n");
}

const problems = (yamlText: string) => {
  try {
    parseConfigYaml(yamlText);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.message;
  }
  return "";
};

describe("adminApi config", () => {
  it("is off in the sample, and its commented block validates with the documented defaults", () => {
    assert.equal(parseConfigYaml(SAMPLE).adminApi, undefined);
    const config = parseConfigYaml(sampleWithAdminApi());
    assert.deepEqual(config.adminApi, {
      token: "change-me-to-32-or-more-random-characters",
      bindAddress: "127.0.0.1",
      port: 9001,
      rateLimit: { requests: 120, windowSeconds: 60 },
      maxBodyBytes: 65536,
    });
    assert.deepEqual(configWarnings(config).filter((w) => w.startsWith("adminApi")), []);
  });

  it("fills the defaults in when only token and port are given", () => {
    const raw = { ...(parseConfigYaml(SAMPLE) as object), adminApi: { token: TOKEN, port: 9100 } };
    const config = validateConfig(JSON.parse(JSON.stringify(raw)));
    assert.deepEqual(config.adminApi, { token: TOKEN, port: 9100, bindAddress: "127.0.0.1", rateLimit: { requests: 120, windowSeconds: 60 }, maxBodyBytes: 65536 });
  });

  it("refuses a short token, one with spaces, no port, unknown keys, a port the appservice has", () => {
    const withBlock = (block: string) => `${SAMPLE}\nadminApi:\n${block}`;
    assert.match(problems(withBlock(`  token: short\n  port: 9100\n`)), /adminApi\.token/);
    assert.match(problems(withBlock(`  token: "${TOKEN} x"\n  port: 9100\n`)), /adminApi\.token/);
    assert.match(problems(withBlock(`  token: ${TOKEN}\n`)), /adminApi.*port/);
    assert.match(problems(withBlock(`  token: ${TOKEN}\n  port: 9100\n  tokn: x\n`)), /adminApi/);
    assert.match(problems(withBlock(`  token: ${TOKEN}\n  port: 9000\n`)), /adminApi\.port: port 9000 on 127\.0\.0\.1 is taken by appservice\.port/);
  });

  it("warns when it listens beyond loopback (plain HTTP, the token in clear)", () => {
    const config = parseConfigYaml(`${SAMPLE}\nadminApi:\n  token: ${TOKEN}\n  port: 9100\n  bindAddress: 0.0.0.0\n`);
    assert.ok(configWarnings(config).some((w) => /^adminApi\.bindAddress: 0\.0\.0\.0 is not loopback/.test(w)));
    assert.ok(!configWarnings(config).some((w) => w.includes(TOKEN)));
  });
});

describe("admin API access checks", () => {
  const req = (authorization?: string) => ({ headers: authorization === undefined ? {} : { authorization } }) as IncomingMessage;

  it("accepts the bearer token only, in any case of the scheme", () => {
    const token = new BearerToken(TOKEN);
    assert.equal(token.check(req(`Bearer ${TOKEN}`)), "ok");
    assert.equal(token.check(req(`bearer ${TOKEN}`)), "ok");
    assert.equal(token.check(req(`Bearer ${TOKEN}x`)), "wrong");
    assert.equal(token.check(req(`Bearer ${TOKEN.slice(1)}`)), "wrong");
    assert.equal(token.check(req(`Bearer ${TOKEN} extra`)), "missing");
    assert.equal(token.check(req(`Basic ${TOKEN}`)), "missing");
    assert.equal(token.check(req("Bearer ")), "missing");
    assert.equal(token.check(req()), "missing");
  });

  it("counts per address in fixed windows and forgets windows that are over", () => {
    let now = 0;
    const limit = new ClientRateLimit({ requests: 2, windowSeconds: 10 }, () => now);
    assert.equal(limit.take("a"), undefined);
    assert.equal(limit.take("a"), undefined);
    assert.equal(limit.take("a"), 10);
    assert.equal(limit.take("b"), undefined);
    now = 9_001;
    assert.equal(limit.take("a"), 1);
    now = 10_000;
    assert.equal(limit.take("a"), undefined);
    // Many addresses: the map is swept of finished windows instead of growing without end.
    for (let i = 0; i < 10_000; i++) limit.take(`x${i}`);
    now = 30_000;
    for (let i = 0; i < 5; i++) assert.equal(limit.take(`y${i}`), undefined);
    assert.ok((limit as unknown as { windows: Map<string, unknown> }).windows.size <= 10);
  });
});
