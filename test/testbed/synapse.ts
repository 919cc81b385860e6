// Synapse harness for the end-to-end tests and the developer sandbox.
//
// Synapse is not packaged in Debian 12, so build-rootfs.sh builds (once, cached) a Debian
// unstable tree holding it; Synapse then runs inside that tree through chroot(8). Everything
// Synapse sees (data directory, registration files) lives under ROOT/srv/voicemail-testbed/.
// Synapse never talks to the outside world: no federation listener, no key servers, no stats.
import { spawn, spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import yaml from "js-yaml";
import { CHROOT_ENV, chrootPathFor, ensureSystemMounts, forgetGroup, instanceDataDir, pruneStaleDirs, sleep, spawnInChroot, stopGroup, tail, unbind, type GroupProcess } from "./chroot.js";
import { tcpBindError } from "./ports.js";

// Part of this module's API since before ports.ts existed (the e2e tests import it from here).
export { freePort } from "./ports.js";

export const DEFAULT_TESTBED_ROOT = "/var/cache/matrix-appservice-voicemail/testbed-rootfs";

/** Host path of the Debian unstable tree (env VOICEMAIL_TESTBED_ROOT overrides the default). */
export function testbedRoot(): string {
  return process.env.VOICEMAIL_TESTBED_ROOT || DEFAULT_TESTBED_ROOT;
}

export interface TestbedStatus {
  ok: boolean;
  /** Why the testbed is unusable (when ok is false). */
  reason?: string;
  root: string;
}

export interface SynapseOptions {
  /** TCP port on 127.0.0.1 for the client API; default 8008. */
  port?: number;
  /** Default "localhost". Fixed at first start of a data directory. */
  serverName?: string;
  /** Host paths of appservice registration YAML files; copied into the tree at every (re)start. */
  registrationFiles?: string[];
  /** Host path of the data directory; kept after stop. Default: a fresh directory, removed by stop() unless keepData. */
  dataDir?: string;
  /** Keep the default fresh data directory after stop() (for post-mortem). Default false. */
  keepData?: boolean;
  /** Readiness timeout in ms; default 60000. */
  startTimeoutMs?: number;
}

export interface RegisteredUser {
  userId: string;
  accessToken: string;
  deviceId: string;
}

export interface RunningSynapse {
  /** Client-server API base URL, e.g. http://127.0.0.1:8008 */
  url: string;
  serverName: string;
  /** registration_shared_secret of this homeserver. */
  sharedSecret: string;
  /** Host path of the data directory. */
  dataDir: string;
  /** Host path of Synapse's log file (INFO and above). */
  logFile: string;
  /** Creates a user through the shared-secret registration admin API. */
  registerUser(localpart: string, password: string, admin?: boolean): Promise<RegisteredUser>;
  /** Stops Synapse (SIGTERM, then SIGKILL of its process group). Idempotent. */
  stop(): Promise<void>;
  /** Stops then starts again with the same data, port and (re-copied) registration files. */
  restart(): Promise<void>;
  /** Stops the homeserver but keeps everything for resume(): an outage. */
  pause(): Promise<void>;
  resume(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Testbed tree

function findBuildScript(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    for (const candidate of [path.join(dir, "build-rootfs.sh"), path.join(dir, "test", "testbed", "build-rootfs.sh")]) {
      if (existsSync(candidate)) return candidate;
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("testbed: build-rootfs.sh not found above " + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

function commandExists(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

let testbedPromise: Promise<TestbedStatus> | undefined;
let testbedPromiseRoot: string | undefined;

/**
 * Makes sure the testbed tree exists (runs build-rootfs.sh, which returns at once when the tree
 * is cached; a build takes a few minutes). Never throws: ok:false with a reason instead.
 */
export function ensureTestbed(): Promise<TestbedStatus> {
  const root = testbedRoot();
  if (!testbedPromise || testbedPromiseRoot !== root) {
    testbedPromiseRoot = root;
    testbedPromise = buildTestbed(root);
  }
  return testbedPromise;
}

async function buildTestbed(root: string): Promise<TestbedStatus> {
  if (process.platform !== "linux") return { ok: false, root, reason: "the testbed needs Linux (chroot)" };
  if (typeof process.getuid !== "function" || process.getuid() !== 0) {
    return { ok: false, root, reason: "the testbed needs root (debootstrap, chroot, mount)" };
  }
  for (const cmd of ["chroot", "mount", "mountpoint", "flock"]) {
    if (!commandExists(cmd)) return { ok: false, root, reason: `the testbed needs ${cmd}` };
  }
  const ready = path.join(root, ".testbed-ready");
  if (!existsSync(ready) && !commandExists("apt-get")) {
    return { ok: false, root, reason: "the testbed tree is not built and there is no apt-get to build it" };
  }
  let script: string;
  try {
    script = findBuildScript();
  } catch (e) {
    return { ok: false, root, reason: (e as Error).message };
  }
  mkdirSync(path.dirname(root), { recursive: true });
  // The lock keeps concurrent test processes from building (rm -rf + debootstrap) at the same time.
  const result = await new Promise<{ code: number | null; output: string }>((resolve) => {
    const child = spawn("flock", [`${root}.lock`, "bash", script], {
      env: { ...process.env, VOICEMAIL_TESTBED_ROOT: root },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.on("error", (err) => resolve({ code: -1, output: output + String(err) }));
    child.on("close", (code) => resolve({ code, output }));
  });
  if (result.code !== 0) {
    const tail = result.output.trim().split("\n").slice(-15).join("\n");
    return { ok: false, root, reason: `build-rootfs.sh failed (exit ${result.code}):\n${tail}` };
  }
  if (!existsSync(path.join(root, "usr/lib/python3/dist-packages/synapse"))) {
    return { ok: false, root, reason: `no Synapse in the testbed tree ${root}` };
  }
  return { ok: true, root };
}

const TESTBED_SRV = "srv/voicemail-testbed";

async function assertPortFree(port: number): Promise<void> {
  const err = await tcpBindError(port);
  if (err) {
    throw new Error(
      err.code === "EADDRINUSE"
        ? `testbed: port ${port} on 127.0.0.1 is already in use (another Synapse still running?)`
        : `testbed: cannot bind port ${port}: ${err.message}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Configuration

const UNLIMITED = { per_second: 100000, burst_count: 1000000 };

function logConfig(innerLogFile: string): string {
  return yaml.dump({
    version: 1,
    formatters: { precise: { format: "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s" } },
    handlers: { file: { class: "logging.FileHandler", formatter: "precise", filename: innerLogFile, encoding: "utf8" } },
    loggers: {
      "synapse.storage.SQL": { level: "WARNING" },
      "synapse.access": { level: "INFO" },
      twisted: { level: "WARNING" },
    },
    root: { level: "INFO", handlers: ["file"] },
    disable_existing_loggers: false,
  });
}

function overrides(port: number, innerData: string, appserviceFiles: string[]): Record<string, unknown> {
  return {
    public_baseurl: `http://127.0.0.1:${port}/`,
    listeners: [
      {
        port,
        bind_addresses: ["127.0.0.1"],
        type: "http",
        tls: false,
        x_forwarded: false,
        resources: [{ names: ["client"], compress: false }],
      },
    ],
    log_config: `${innerData}/log.config`,
    report_stats: false,
    enable_metrics: false,
    enable_registration: false,
    trusted_key_servers: [],
    suppress_key_server_warning: true,
    federation_domain_whitelist: [],
    allow_public_rooms_over_federation: false,
    url_preview_enabled: false,
    app_service_config_files: appserviceFiles,
    presence: { enabled: true },
    use_presence: true,
    rc_message: UNLIMITED,
    rc_registration: UNLIMITED,
    rc_registration_token_validity: UNLIMITED,
    rc_login: { address: UNLIMITED, account: UNLIMITED, failed_attempts: UNLIMITED },
    rc_admin_redaction: UNLIMITED,
    rc_joins: { local: UNLIMITED, remote: UNLIMITED },
    rc_joins_per_room: UNLIMITED,
    rc_key_requests: UNLIMITED,
    rc_3pid_validation: UNLIMITED,
    rc_invites: { per_room: UNLIMITED, per_user: UNLIMITED, per_issuer: UNLIMITED },
    rc_third_party_invite: UNLIMITED,
    rc_media_create: UNLIMITED,
    rc_presence: { per_user: UNLIMITED },
    rc_delayed_event_mgmt: UNLIMITED,
    rc_room_creation: UNLIMITED,
    rc_reports: UNLIMITED,
    rc_user_directory: UNLIMITED,
    rc_federation: { window_size: 1000, sleep_limit: 10000, sleep_delay: 1, reject_limit: 100000, concurrent: 1000 },
  };
}

// ---------------------------------------------------------------------------------------------

/** Starts Synapse inside the testbed tree; resolves once /_matrix/client/versions answers. */
export async function startSynapse(opts: SynapseOptions = {}): Promise<RunningSynapse> {
  const status = await ensureTestbed();
  if (!status.ok) throw new Error(`testbed unavailable: ${status.reason}`);
  const root = status.root;
  const port = opts.port ?? 8008;
  const serverName = opts.serverName ?? "localhost";
  const startTimeoutMs = opts.startTimeoutMs ?? 60_000;
  await assertPortFree(port);
  ensureSystemMounts(root);

  const { dataDir, owned: ownsDataDir } = instanceDataDir(root, opts.dataDir, TESTBED_SRV, "synapse-", () => pruneStaleDataDirs());
  const { inner, bindMounted } = chrootPathFor(root, dataDir, TESTBED_SRV);
  const logFile = path.join(dataDir, "homeserver.log");
  const stdioFile = path.join(dataDir, "homeserver.stdio.log");
  const mainConfig = path.join(dataDir, "homeserver.yaml");
  const chrootEnv = { ...CHROOT_ENV, PYTHONDONTWRITEBYTECODE: "1" };

  let sharedSecret = "";
  const prepareConfig = (): void => {
    if (!existsSync(mainConfig)) {
      const gen = spawnSync(
        "chroot",
        [root, "python3", "-m", "synapse.app.homeserver", "--server-name", serverName,
          "--config-path", `${inner}/homeserver.yaml`, "--data-directory", inner, "--generate-config", "--report-stats=no"],
        { cwd: "/", env: chrootEnv, encoding: "utf8" },
      );
      if (gen.status !== 0) throw new Error(`testbed: synapse --generate-config failed:\n${gen.stdout}\n${gen.stderr}`);
    }
    const generated = yaml.load(readFileSync(mainConfig, "utf8")) as Record<string, unknown>;
    if (String(generated.server_name) !== serverName) {
      throw new Error(`testbed: data directory ${dataDir} belongs to server ${String(generated.server_name)}, not ${serverName}`);
    }
    sharedSecret = String(generated.registration_shared_secret);
  };
  const url = `http://127.0.0.1:${port}`;

  let child: GroupProcess | undefined;

  const writeConfig = (): string => {
    const asDir = path.join(dataDir, "appservices");
    rmSync(asDir, { recursive: true, force: true });
    mkdirSync(asDir, { recursive: true });
    const asFiles = (opts.registrationFiles ?? []).map((file, i) => {
      const name = `${i}-${path.basename(file)}`;
      copyFileSync(file, path.join(asDir, name));
      return `${inner}/appservices/${name}`;
    });
    writeFileSync(path.join(dataDir, "log.config"), logConfig(`${inner}/homeserver.log`));
    writeFileSync(path.join(dataDir, "testbed-overrides.yaml"), yaml.dump(overrides(port, inner, asFiles), { noRefs: true }));
    return `${inner}/testbed-overrides.yaml`;
  };

  const launch = async (): Promise<void> => {
    const overridePath = writeConfig();
    const started = Date.now();
    const g = spawnInChroot(
      root,
      ["python3", "-m", "synapse.app.homeserver", "--config-path", `${inner}/homeserver.yaml`, "--config-path", overridePath],
      chrootEnv,
      stdioFile,
    );
    child = g;
    for (;;) {
      const exitInfo = g.exitInfo();
      if (exitInfo) {
        forgetGroup(g);
        throw new Error(`testbed: Synapse exited during startup (${exitInfo}). Log ${logFile}:\n${tail(logFile)}\n--- stdio:\n${tail(stdioFile, 20)}`);
      }
      if (Date.now() - started > startTimeoutMs) {
        await stopProcess();
        throw new Error(`testbed: Synapse not ready on ${url} after ${startTimeoutMs} ms. Log ${logFile}:\n${tail(logFile)}\n--- stdio:\n${tail(stdioFile, 20)}`);
      }
      try {
        const res = await fetch(`${url}/_matrix/client/versions`, { signal: AbortSignal.timeout(2000) });
        if (res.ok) {
          await res.arrayBuffer();
          return;
        }
      } catch {
        /* not up yet */
      }
      await sleep(150);
    }
  };

  const stopProcess = async (): Promise<void> => {
    const g = child;
    child = undefined;
    if (g) await stopGroup(g);
  };

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await stopProcess();
    if (bindMounted) unbind(root, path.join(root, inner));
    if (ownsDataDir && !opts.keepData) rmSync(dataDir, { recursive: true, force: true });
  };

  const restart = async (): Promise<void> => {
    if (stopped) throw new Error("testbed: restart() after stop()");
    await stopProcess();
    await assertPortFree(port);
    await launch();
  };

  /** Takes the homeserver away, keeping its data, until resume(): an outage. */
  const pause = async (): Promise<void> => {
    if (stopped) throw new Error("testbed: pause() after stop()");
    await stopProcess();
  };

  const resume = async (): Promise<void> => {
    if (stopped) throw new Error("testbed: resume() after stop()");
    if (child) return;
    await assertPortFree(port);
    await launch();
  };

  const registerUser = async (localpart: string, password: string, admin = false): Promise<RegisteredUser> => {
    const endpoint = `${url}/_synapse/admin/v1/register`;
    const nonceRes = await fetch(endpoint);
    if (!nonceRes.ok) throw new Error(`testbed: GET ${endpoint}: ${nonceRes.status} ${await nonceRes.text()}`);
    const { nonce } = (await nonceRes.json()) as { nonce: string };
    const mac = createHmac("sha1", sharedSecret)
      .update([nonce, localpart, password, admin ? "admin" : "notadmin"].join("\0"))
      .digest("hex");
    const res = await fetch(endpoint, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ nonce, username: localpart, password, admin, mac }),
    });
    const body = (await res.json()) as { user_id?: string; access_token?: string; device_id?: string; error?: string };
    if (!res.ok || !body.user_id || !body.access_token || !body.device_id) {
      throw new Error(`testbed: registering ${localpart} failed: ${res.status} ${JSON.stringify(body)}`);
    }
    return { userId: body.user_id, accessToken: body.access_token, deviceId: body.device_id };
  };

  try {
    prepareConfig();
    await launch();
  } catch (e) {
    // Keep the data directory for post-mortem; just undo the bind mount.
    stopped = true;
    if (bindMounted) unbind(root, path.join(root, inner));
    throw e;
  }

  return { url, serverName, sharedSecret, dataDir, logFile, registerUser, stop, restart, pause, resume };
}

/** Removes leftover default data directories (from crashed runs) older than maxAgeMs. */
export function pruneStaleDataDirs(maxAgeMs = 24 * 3600_000): void {
  pruneStaleDirs(path.join(testbedRoot(), TESTBED_SRV), "synapse-", "homeserver.pid", maxAgeMs);
}
