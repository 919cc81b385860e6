// PostgreSQL harness: a throw-away server from Debian's `postgresql` package on loopback, for the
// PostgreSQL store engine's tests. It never uses the system's service: initdb into a fresh temp
// directory, one server on a free port with its socket in that directory, stopped and removed by
// stop(). PostgreSQL refuses to run as root, so under root it runs as the `postgres` user the
// package creates. fsync is off: a test server need not survive a power cut, and it starts faster.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import assert from "node:assert/strict";
import postgres from "postgres";
import { freePort } from "./ports.js";

/** Where Debian installs PostgreSQL's versions (env VOICEMAIL_POSTGRES_ROOT overrides it). */
const pgRoot = () => process.env.VOICEMAIL_POSTGRES_ROOT || "/usr/lib/postgresql";

export interface RunningPostgres {
  port: number;
  /** The password-protected role the bridge connects as (owner of every database made here). */
  user: string;
  password: string;
  /** postgres://user:password@127.0.0.1:port/<database> */
  uri(database: string): string;
  /** A fresh, empty database owned by the bridge's role; returns its URI. */
  createDatabase(name?: string): Promise<string>;
  /**
   * A fresh, empty schema in one shared database, owned by the bridge's role: its URI names it as
   * `?search_path=` (much quicker than a database each, for suites that open many stores).
   */
  createSchema(): Promise<string>;
  /** SQL as the superuser, over the socket (for tests that look under the store). */
  admin(database?: string): postgres.Sql;
  /** Stops the server but keeps its data for resume(): an outage. */
  pause(): Promise<void>;
  resume(): Promise<void>;
  stop(): Promise<void>;
}

/** The newest installed PostgreSQL's bin directory, or why there is none. */
function pgBin(): { dir?: string; reason?: string } {
  const PG_ROOT = pgRoot();
  if (!existsSync(PG_ROOT)) return { reason: `${PG_ROOT} is missing: install Debian's postgresql package` };
  const versions = readdirSync(PG_ROOT).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  const dir = versions.map((v) => join(PG_ROOT, v, "bin")).find((d) => existsSync(join(d, "initdb")) && existsSync(join(d, "postgres")));
  return dir ? { dir } : { reason: `no initdb and postgres under ${PG_ROOT}/*/bin: install Debian's postgresql package (not only the client)` };
}

/** Who the server runs as: ourselves, or `postgres` when we are root. */
function serverUser(): { uid?: number; gid?: number; reason?: string } {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => spawnSync("id", [flag, "postgres"], { encoding: "utf8" });
  const uid = id("-u");
  const gid = id("-g");
  if (uid.status !== 0 || gid.status !== 0) return { reason: "running as root, and there is no postgres user to run the server as" };
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** Why no server can be started here; undefined when one can. */
export function postgresUnavailable(): string | undefined {
  return pgBin().reason ?? serverUser().reason;
}

/**
 * For tests that need the server: true when it can run; false (after a loud note, the test
 * skipped) when not, outside CI; under CI a missing server fails the test.
 */
export function requirePostgres(t: TestContext): boolean {
  const reason = postgresUnavailable();
  if (!reason) return true;
  if (process.env.CI === "true") assert.fail(`PostgreSQL is unavailable under CI: ${reason}`);
  console.error(`\n${"!".repeat(72)}\n!!! SKIPPING PostgreSQL tests: ${reason}\n${"!".repeat(72)}\n`);
  t.skip(reason);
  return false;
}

let databases = 0;

export async function startPostgres(options: { startTimeoutMs?: number } = {}): Promise<RunningPostgres> {
  const { dir: bin, reason } = pgBin();
  if (!bin) throw new Error(reason);
  const owner = serverUser();
  if (owner.reason) throw new Error(owner.reason);
  const as = owner.uid === undefined ? {} : { uid: owner.uid, gid: owner.gid! };

  const root = mkdtempSync(join(tmpdir(), "vm-postgres-"));
  if (as.uid !== undefined) chownSync(root, as.uid, as.gid);
  const data = join(root, "data");
  const cleanup = () => rmSync(root, { recursive: true, force: true });

  const initdb = spawnSync(
    join(bin, "initdb"),
    ["-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
    { ...as, encoding: "utf8", cwd: root, env: { ...process.env, LC_ALL: "C.UTF-8" } },
  );
  if (initdb.status !== 0) {
    cleanup();
    throw new Error(`initdb failed (${initdb.status}): ${(initdb.stderr || initdb.stdout).trim().slice(-2000)}`);
  }

  let port = await freePort();
  let server!: ChildProcess;
  let exited = true;
  let stderr = "";
  const spawnServer = () => {
    server = spawn(
      join(bin, "postgres"),
      ["-D", data, "-p", String(port), "-k", root, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
      { ...as, cwd: root, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, LC_ALL: "C.UTF-8" } },
    );
    exited = false;
    server.stderr!.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-8000);
    });
    server.once("exit", () => (exited = true));
  };
  // A test process that dies must not leave a server behind.
  const killOnExit = () => server.kill("SIGINT");
  process.once("exit", killOnExit);

  const superuser = (database = "postgres") =>
    postgres({ path: join(root, `.s.PGSQL.${port}`), username: "postgres", database, onnotice: () => undefined, max: 2 });
  const halt = async () => {
    if (exited) return;
    // SIGINT: "fast shutdown", every session ended at once.
    server.kill("SIGINT");
    const deadline = Date.now() + 10_000;
    while (!exited && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (!exited) server.kill("SIGKILL");
  };
  const stopServer = async () => {
    await halt();
    process.removeListener("exit", killOnExit);
    cleanup();
  };

  let su = superuser();
  const ready = async () => {
    const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
    for (;;) {
      try {
        await su`SELECT 1`;
        return;
      } catch (err) {
        if (exited || Date.now() > deadline) {
          throw new Error(`PostgreSQL did not start on 127.0.0.1:${port} (${(err as Error).message}): ${stderr.trim().slice(-2000)}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  // The port was free when picked; another test may take it before the server binds it.
  for (let attempt = 1; ; attempt++) {
    spawnServer();
    try {
      await ready();
      break;
    } catch (err) {
      await su.end({ timeout: 1 }).catch(() => undefined);
      await halt();
      if (attempt < 3 && /Address already in use|could not create any TCP\/IP sockets/.test(stderr)) {
        port = await freePort();
        su = superuser();
        stderr = "";
        continue;
      }
      await stopServer();
      throw err;
    }
  }

  const user = "bridge";
  const password = `pw-${Math.random().toString(36).slice(2)}-${Date.now()}`;
  await su.unsafe(`CREATE ROLE ${user} LOGIN PASSWORD '${password}'`);
  const admins: postgres.Sql[] = [su];
  let shared: Promise<{ base: string; sql: postgres.Sql }> | undefined;
  let schemas = 0;
  const uri = (database: string) => `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;

  const createDatabase = async (name = `vm_${process.pid}_${++databases}`) => {
    await su.unsafe(`CREATE DATABASE "${name}" OWNER ${user}`);
    return uri(name);
  };
  const admin = (database = "postgres") => {
    const sql = superuser(database);
    admins.push(sql);
    return sql;
  };

  return {
    port,
    user,
    password,
    uri,
    createDatabase,
    async createSchema() {
      shared ??= createDatabase(`vm_${process.pid}_schemas`).then((base) => ({ base, sql: admin(new URL(base).pathname.slice(1)) }));
      const { base, sql } = await shared;
      const name = `s${++schemas}`;
      await sql.unsafe(`CREATE SCHEMA ${name} AUTHORIZATION ${user}`);
      return `${base}?search_path=${name}`;
    },
    admin,
    pause: halt,
    async resume() {
      spawnServer();
      await ready();
    },
    async stop() {
      await Promise.all(admins.map((sql) => sql.end({ timeout: 1 }).catch(() => undefined)));
      await stopServer();
    },
  };
}
