/**
 * Mailbox credentials are stored encrypted (AES-256-GCM) with a key that is not in the store:
 * from the config, or from a key file the bridge creates with owner-only permissions. A copy of
 * the data directory alone reveals no password.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

const VERSION = "v1";
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

export class SecretBox {
  private constructor(private readonly key: Buffer) {}

  static fromKey(key: Buffer): SecretBox {
    if (key.length !== KEY_BYTES) throw new Error(`the credentials key must be ${KEY_BYTES} bytes, not ${key.length}`);
    return new SecretBox(key);
  }

  /** `key` (base64) wins; otherwise the key file, created with a fresh random key if missing. */
  static fromConfig(options: { key?: string; keyFile: string }): SecretBox {
    if (options.key) return SecretBox.fromKey(Buffer.from(options.key, "base64"));
    if (!existsSync(options.keyFile)) {
      mkdirSync(dirname(options.keyFile), { recursive: true });
      writeFileSync(options.keyFile, randomBytes(KEY_BYTES).toString("base64") + "\n", { mode: 0o600, flag: "wx" });
    }
    chmodSync(options.keyFile, 0o600);
    return SecretBox.fromKey(Buffer.from(readFileSync(options.keyFile, "utf8").trim(), "base64"));
  }

  seal(plain: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    const body = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
    return `${VERSION}:${Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64")}`;
  }

  /** Throws when the text was sealed with another key or was tampered with. */
  open(sealed: string): string {
    const [version, payload] = sealed.split(":", 2);
    if (version !== VERSION || !payload) throw new Error("not a sealed secret");
    const raw = Buffer.from(payload, "base64");
    if (raw.length < IV_BYTES + TAG_BYTES) throw new Error("sealed secret is truncated");
    const decipher = createDecipheriv("aes-256-gcm", this.key, raw.subarray(0, IV_BYTES));
    decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString("utf8");
    } catch {
      throw new Error("sealed secret does not open with this key (wrong key or damaged data)");
    }
  }
}
