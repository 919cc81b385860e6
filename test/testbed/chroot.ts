// What the chroot harnesses (synapse.ts, asterisk.ts) share: daemons started inside the testbed
// tree as the leaders of their own process groups, one registry of those groups and bind mounts
// that the exit hooks clean up, the /proc and /dev mounts, host directories made visible inside
// the tree, and small helpers for their startup loops.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import path from "node:path";

/** Environment of the commands run inside the tree (the host's PATH need not fit the tree). */
export const CHROOT_ENV = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C.UTF-8", HOME: "/root" };

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The last lines of a log file, for error messages. */
export function tail(file: string, lines = 40): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

// ---------------------------------------------------------------------------------------------
// Process bookkeeping: no daemon outlives the node process.
//
// One registry and one set of exit hooks for every harness in the process: with a set per
// harness, a test using both would have two handlers per signal, each would see the other
// listener, and neither would re-raise the signal (Ctrl-C would no longer end the run).

const liveGroups = new Set<number>();
const liveBindMounts = new Set<string>();
let exitHooksInstalled = false;

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    /* already gone */
  }
}

function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  const cleanupNow = (): void => {
    for (const pid of liveGroups) killGroup(pid, "SIGKILL");
    liveGroups.clear();
    for (const target of liveBindMounts) spawnSync("umount", ["-l", target], { stdio: "ignore" });
    liveBindMounts.clear();
  };
  process.on("exit", cleanupNow);
  // The daemons run in their own process groups, so a Ctrl-C does not reach them: forward fatal
  // signals, then let the default action happen unless someone else handles the signal.
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const handler = (): void => {
      cleanupNow();
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, handler);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, handler);
  }
}

/** A daemon running inside the tree as the leader of its own process group. */
export interface GroupProcess {
  proc: ChildProcess;
  /** Resolves once the process has exited (or could not be spawned). */
  exited: Promise<void>;
  /** How it ended ("exit code …, signal …" or the spawn error); undefined while it runs. */
  exitInfo(): string | undefined;
}

/**
 * Runs `chroot <root> <args...>` detached (its own process group, so stop can kill whatever it
 * forks), stdout and stderr appended to stdioFile. The group is registered for the exit hooks
 * until stopGroup() or forgetGroup().
 */
export function spawnInChroot(root: string, args: string[], env: NodeJS.ProcessEnv, stdioFile: string): GroupProcess {
  const fd = openSync(stdioFile, "a");
  let proc: ChildProcess;
  try {
    proc = spawn("chroot", [root, ...args], { cwd: "/", env, detached: true, stdio: ["ignore", fd, fd] });
  } finally {
    closeSync(fd);
  }
  let exitInfo: string | undefined;
  const exited = new Promise<void>((resolve) => {
    proc.once("exit", (code, signal) => {
      exitInfo = `exit code ${code}, signal ${signal}`;
      resolve();
    });
    proc.once("error", (err) => {
      exitInfo = String(err);
      resolve();
    });
  });
  if (proc.pid !== undefined) {
    liveGroups.add(proc.pid);
    installExitHooks();
  }
  return { proc, exited, exitInfo: () => exitInfo };
}

/** Drops a group from the registry (its leader exited on its own). */
export function forgetGroup(g: GroupProcess): void {
  if (g.proc.pid !== undefined) liveGroups.delete(g.proc.pid);
}

/** SIGTERM to the group, SIGKILL after 10 s without exit, then SIGKILL to whatever is left in it. */
export async function stopGroup(g: GroupProcess): Promise<void> {
  const { proc } = g;
  if (proc.pid === undefined) return;
  const pid = proc.pid;
  if (proc.exitCode === null && proc.signalCode === null) {
    killGroup(pid, "SIGTERM");
    const escalate = setTimeout(() => killGroup(pid, "SIGKILL"), 10_000);
    await g.exited;
    clearTimeout(escalate);
  }
  // Anything left in the group (there should be nothing) goes too.
  for (let i = 0; groupAlive(pid) && i < 50; i++) {
    killGroup(pid, "SIGKILL");
    await sleep(100);
  }
  liveGroups.delete(pid);
}

/**
 * Removes the directories <base>/<prefix>* left by crashed runs: those older than maxAgeMs whose
 * daemon (pid in <dir>/<pidFile>) is gone. A live pid keeps a directory, whatever its age.
 */
export function pruneStaleDirs(base: string, prefix: string, pidFile: string, maxAgeMs: number): void {
  if (!existsSync(base)) return;
  for (const name of readdirSync(base)) {
    if (!name.startsWith(prefix)) continue;
    const dir = path.join(base, name);
    try {
      const pidPath = path.join(dir, pidFile);
      if (existsSync(pidPath)) {
        const pid = Number(readFileSync(pidPath, "utf8").trim());
        if (pid > 0 && existsSync(`/proc/${pid}`)) continue;
      }
      if (Date.now() - statSync(dir).mtimeMs > maxAgeMs) rmSync(dir, { recursive: true, force: true });
    } catch {
      /* ignore */
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Mounts. Every mount and umount in a tree holds <root>.mount.lock, shared by all harnesses and
// test processes, so that concurrent `mountpoint -q || mount` never mount twice.

/** Mounts /proc and /dev into the tree once and leaves them mounted (idempotent, locked). */
export function ensureSystemMounts(root: string): void {
  const script = [
    "set -e",
    'R="$1"',
    'mountpoint -q "$R/proc" || mount -t proc proc "$R/proc"',
    'mountpoint -q "$R/dev" || mount --bind /dev "$R/dev"',
  ].join("\n");
  const r = spawnSync("flock", [`${root}.mount.lock`, "sh", "-c", script, "sh", root], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`testbed: mounting /proc and /dev into ${root} failed: ${r.stderr || r.error}`);
}

/**
 * Makes a host directory visible inside the tree; returns its path inside the chroot. A directory
 * outside the tree is bind-mounted at /<extDir>/ext-<hash of its host path> (undo with unbind()).
 */
export function chrootPathFor(root: string, hostDir: string, extDir: string): { inner: string; bindMounted: boolean } {
  const rel = path.relative(root, hostDir);
  if (rel && !rel.startsWith("..") && !path.isAbsolute(rel)) return { inner: "/" + rel, bindMounted: false };
  const name = "ext-" + createHash("sha1").update(hostDir).digest("hex").slice(0, 16);
  const inner = `/${extDir}/${name}`;
  const target = path.join(root, inner);
  mkdirSync(target, { recursive: true });
  const r = spawnSync("flock", [`${root}.mount.lock`, "sh", "-c", 'mountpoint -q "$2" || mount --bind "$1" "$2"', "sh", hostDir, target], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`testbed: bind-mounting ${hostDir} into the tree failed: ${r.stderr || r.error}`);
  liveBindMounts.add(target);
  installExitHooks();
  return { inner, bindMounted: true };
}

/** Undoes a bind mount of chrootPathFor() (target is its host path, root + inner). */
export function unbind(root: string, target: string): void {
  spawnSync("flock", [`${root}.mount.lock`, "umount", target], { stdio: "ignore" });
  liveBindMounts.delete(target);
}

/**
 * An instance's data directory: the one given (kept after stop), or a fresh one under `base`
 * inside the tree, after `prune` removed what crashed runs left there.
 */
export function instanceDataDir(root: string, given: string | undefined, base: string, prefix: string, prune: () => void): { dataDir: string; owned: boolean } {
  if (given) {
    const dataDir = path.resolve(given);
    mkdirSync(dataDir, { recursive: true });
    return { dataDir, owned: false };
  }
  prune();
  const parent = path.join(root, base);
  mkdirSync(parent, { recursive: true });
  return { dataDir: mkdtempSync(path.join(parent, prefix)), owned: true };
}
