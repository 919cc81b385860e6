import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { randomBytes } from "node:crypto";
import { SecretBox } from "../../src/store/secretBox.js";

describe("SecretBox", () => {
  it("seals and opens; the sealed text holds no plain text and differs each time", () => {
    const box = SecretBox.fromKey(randomBytes(32));
    const a = box.seal('{"username":"1001","password":"hunter2"}');
    const b = box.seal('{"username":"1001","password":"hunter2"}');
    assert.notEqual(a, b);
    assert.ok(!a.includes("hunter2"));
    assert.match(a, /^v1:/);
    assert.equal(box.open(a), '{"username":"1001","password":"hunter2"}');
  });

  it("refuses another key, tampering and garbage with a clear error", () => {
    const box = SecretBox.fromKey(randomBytes(32));
    const sealed = box.seal("secret");
    assert.throws(() => SecretBox.fromKey(randomBytes(32)).open(sealed), /wrong key or damaged/);
    const raw = Buffer.from(sealed.slice(3), "base64");
    raw[raw.length - 1]! ^= 1;
    assert.throws(() => box.open(`v1:${raw.toString("base64")}`), /wrong key or damaged/);
    assert.throws(() => box.open("plain text"), /not a sealed secret/);
    assert.throws(() => box.open("v1:AAAA"), /truncated/);
  });

  it("refuses a key of the wrong size", () => {
    assert.throws(() => SecretBox.fromKey(randomBytes(16)), /32 bytes/);
  });

  it("creates a private key file once and reuses it", () => {
    const dir = mkdtempSync(join(tmpdir(), "secretbox-"));
    const keyFile = join(dir, "sub", "credentials.key");
    const first = SecretBox.fromConfig({ keyFile });
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    const key = readFileSync(keyFile, "utf8");
    const sealed = first.seal("x");
    const second = SecretBox.fromConfig({ keyFile });
    assert.equal(readFileSync(keyFile, "utf8"), key, "the key file is not replaced");
    assert.equal(second.open(sealed), "x");
  });

  it("a configured key wins over the key file and tightens nothing it does not own", () => {
    const dir = mkdtempSync(join(tmpdir(), "secretbox-"));
    const keyFile = join(dir, "credentials.key");
    writeFileSync(keyFile, randomBytes(32).toString("base64"));
    const key = randomBytes(32);
    const box = SecretBox.fromConfig({ key: key.toString("base64"), keyFile });
    assert.equal(SecretBox.fromKey(key).open(box.seal("y")), "y");
  });
});
