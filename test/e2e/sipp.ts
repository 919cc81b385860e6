// SIPp (Debian package sip-tester) as a peer of the SIP tests: installed on demand, run as a child
// process bound to 127.0.0.1, with -timeout/-timeout_error so it always stops by itself.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freeSipPort } from "../testbed/ports.js";

// dist/test/e2e/x.js -> repository root -> test/sipp
const SCENARIOS = path.resolve(fileURLToPath(import.meta.url), "../../../../test/sipp");

// ---------------------------------------------------------------- sipp availability

function sippWorks(): boolean {
  const r = spawnSync("sipp", ["-v"], { stdio: "ignore", timeout: 10_000 });
  return r.error === undefined && r.status !== null && r.status !== 127;
}

/** sipp, installed on demand when we are root on a Debian-like system. */
export function ensureSipp(): { ok: true } | { ok: false; reason: string } {
  if (sippWorks()) return { ok: true };
  if (process.getuid?.() === 0 && spawnSync("apt-get", ["--version"], { stdio: "ignore" }).status === 0) {
    spawnSync("apt-get", ["install", "-y", "--no-install-recommends", "sip-tester"], { stdio: "ignore", timeout: 180_000 });
    if (sippWorks()) return { ok: true };
    return { ok: false, reason: "sipp missing and `apt-get install sip-tester` did not provide it" };
  }
  return { ok: false, reason: "sipp not installed (Debian: apt-get install sip-tester)" };
}

// ---------------------------------------------------------------- helpers

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls /proc/net/{udp,tcp} until something listens on 127.0.0.1:port (no probe traffic). */
async function waitListening(port: number, proto: "udp" | "tcp", timeoutMs = 5000): Promise<void> {
  const needle = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const lines = readFileSync(`/proc/net/${proto}`, "utf8").split("\n");
      // TCP must be in LISTEN (0A); an UDP socket is just bound.
      if (lines.some((l) => l.includes(` ${needle} `) && (proto === "udp" || / 0A /.test(l)))) return;
    } catch {
      await sleep(300); // no /proc: give it a moment and hope
      return;
    }
    await sleep(30);
  }
  throw new Error(`nothing listens on ${proto} 127.0.0.1:${port}`);
}

export interface SippRun {
  port: number;
  done: Promise<{ code: number | null; diagnostics: string }>;
  kill(): void;
}

/**
 * Starts sipp with a scenario from test/sipp. `remote` makes it a UAC sending to that address.
 * It always ends on its own (-timeout, and a hard kill a little later as a last resort).
 */
export async function runSipp(
  scenario: string,
  o: { transport: "udp" | "tcp"; calls: number; timeoutS?: number; set?: Record<string, string>; remote?: string; port?: number },
): Promise<SippRun> {
  // A given port: a peer configured before SIPp starts (a PBX's static contact) knows where it is.
  const port = o.port ?? (await freeSipPort());
  const cwd = mkdtempSync(path.join(tmpdir(), "sipp-"));
  const timeoutS = o.timeoutS ?? 20;
  const args = [
    "-sf", path.join(SCENARIOS, scenario),
    "-i", "127.0.0.1", "-bind_local",
    "-p", String(port),
    "-t", o.transport === "udp" ? "u1" : "t1",
    "-m", String(o.calls),
    "-nostdin", "-nd",
    "-timeout", `${timeoutS}s`, "-timeout_error",
    "-trace_err", "-trace_logs",
  ];
  for (const [k, v] of Object.entries(o.set ?? {})) args.push("-set", k, v);
  if (o.remote) args.push(o.remote);
  const child = spawn("sipp", args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  child.stderr.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  const hardKill = setTimeout(() => child.kill("SIGKILL"), (timeoutS + 10) * 1000);
  const done = new Promise<{ code: number | null; diagnostics: string }>((resolve) => {
    child.on("close", (code) => {
      clearTimeout(hardKill);
      let files = "";
      for (const f of readdirSync(cwd)) files += `\n--- ${f}\n${readFileSync(path.join(cwd, f), "utf8").slice(-3000)}`;
      rmSync(cwd, { recursive: true, force: true });
      resolve({ code, diagnostics: `sipp ${args.join(" ")}\nexit ${code}\n${out.slice(-1500)}${files}` });
    });
  });
  if (!o.remote) await waitListening(port, o.transport);
  return { port, done, kill: () => child.kill("SIGKILL") };
}

export async function sippSucceeded(run: SippRun, logs: string[]): Promise<void> {
  const { code, diagnostics } = await run.done;
  assert.equal(code, 0, `${diagnostics}\n--- UA log (tail)\n${logs.slice(-40).join("\n")}`);
}

