/**
 * Runs the real bridge as a child process, the way an admin does (`cli.js start`), for the
 * end-to-end tests and the sandbox.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import yaml from "js-yaml";
import { signBody, signRequest } from "../../src/gateway/webhook/signature.js";

const CLI = resolve(fileURLToPath(import.meta.url), "../../../src/main.js");

export interface BridgeFiles {
  dir: string;
  configPath: string;
  registrationPath: string;
  logPath: string;
}

/** Writes a config object and generates the registration for it with the real CLI. */
export async function prepareBridge(dir: string, config: Record<string, unknown>): Promise<BridgeFiles> {
  mkdirSync(dir, { recursive: true });
  const files: BridgeFiles = {
    dir,
    configPath: join(dir, "config.yaml"),
    registrationPath: join(dir, "registration.yaml"),
    logPath: join(dir, "bridge.log"),
  };
  writeFileSync(files.configPath, yaml.dump(config));
  await runCli(["generate-registration", "-c", files.configPath, "-f", files.registrationPath], dir);
  return files;
}

export function runCli(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, ["--no-deprecation", CLI, ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("close", (code) => resolvePromise({ code: code ?? -1, stdout, stderr }));
  });
}

export class BridgeProcess {
  private child?: ChildProcess;
  private exited?: Promise<void>;

  constructor(
    readonly files: BridgeFiles,
    readonly url: string,
  ) {}

  async start(timeoutMs = 30_000): Promise<void> {
    const logStart = this.log().length;
    const log = createWriteStream(this.files.logPath, { flags: "a" });
    const child = spawn(process.execPath, ["--no-deprecation", CLI, "start", "-c", this.files.configPath, "-f", this.files.registrationPath], {
      cwd: this.files.dir,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    // One log stream per start, closed once the child's output has ended: streams left open
    // pile up over restarts and kept a test process spinning in its exit clean-up.
    child.once("close", () => log.end());
    this.exited = new Promise((r) => child.once("close", () => r()));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`bridge exited with ${child.exitCode}:\n${this.logTail()}`);
      if (this.log().slice(logStart).includes("ready:")) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`bridge not ready after ${timeoutMs} ms:\n${this.logTail()}`);
  }

  log(): string {
    try {
      return readFileSync(this.files.logPath, "utf8");
    } catch {
      return "";
    }
  }

  logTail(lines = 30): string {
    return this.log().split("\n").slice(-lines).join("\n");
  }

  /** A clean stop (SIGTERM), as systemd does. */
  async stop(): Promise<void> {
    if (!this.child || this.child.exitCode !== null) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child?.kill("SIGKILL"), 10_000);
    await this.exited;
    clearTimeout(timer);
  }

  /** A crash: no chance to clean up. */
  async kill(): Promise<void> {
    if (!this.child || this.child.exitCode !== null) return;
    this.child.kill("SIGKILL");
    await this.exited;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

export interface WebhookResult {
  status: number;
  body: Record<string, unknown>;
}

/** The seconds each request was signed at, so that no two are one signature (see postWebhook). */
const signedAt = new Set<string>();

/**
 * POSTs to the bridge's webhook, signed with `secret` unless a signature is given: with
 * X-Signature-Timestamp and the signature over "<timestamp>.<body>", or over the body alone
 * with `legacy`. The same body sent twice in one second would be the same signature, which
 * the bridge refuses as a replay: a repeat is signed a second earlier, as a sender that
 * re-signs each attempt does. `timestamp` (unix seconds) signs at that time instead.
 */
export async function postWebhook(
  baseUrl: string,
  systemId: string,
  body: string | Record<string, unknown>,
  options: { secret?: string; signature?: string | null; legacy?: boolean; timestamp?: number } = {},
): Promise<WebhookResult> {
  const raw = typeof body === "string" ? body : JSON.stringify(body);
  const headers: Record<string, string> = { "content-type": "application/json" };
  let timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  if (options.timestamp === undefined) {
    while (signedAt.has(`${options.secret}\n${systemId}\n${timestamp}\n${raw}`)) timestamp--;
    signedAt.add(`${options.secret}\n${systemId}\n${timestamp}\n${raw}`);
  }
  if (!options.legacy && options.signature !== null) headers["x-signature-timestamp"] = String(timestamp);
  const sign = (secret: string) => (options.legacy ? signBody(secret, raw) : signRequest(secret, timestamp, raw));
  const signature = options.signature === undefined ? (options.secret ? sign(options.secret) : undefined) : options.signature;
  if (signature) headers["x-signature-256"] = signature;
  const response = await fetch(`${baseUrl}/webhook/${systemId}`, { method: "POST", headers, body: raw });
  const text = await response.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    parsed = { raw: text };
  }
  return { status: response.status, body: parsed };
}
