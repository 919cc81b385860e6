// Dovecot harness for the end-to-end tests: a real Dovecot 2.4 (Debian unstable's dovecot-imapd,
// in the test bed tree that build-rootfs.sh builds) runs inside that tree through chroot(8), on a
// loopback port. Each instance has its own directory ROOT/srv/voicemail-dovecot/<name>/ with its
// dovecot.conf, base_dir (run/), state, log, a passwd-file and the users' maildirs (home/<user>),
// owned by a dedicated uid (Dovecot's mail processes refuse uid 0). Plain logins are allowed
// (loopback only, no TLS). Mail arrives the way a PBX's mailcmd delivers it: `dovecot-lda -d
// <user>` with this instance's config (deliveryCommand), or by APPEND from a test client.
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ImapFlow } from "imapflow";
import { CHROOT_ENV, chrootPathFor, ensureSystemMounts, forgetGroup, instanceDataDir, pruneStaleDirs, sleep, spawnInChroot, stopGroup, tail, unbind, type GroupProcess } from "./chroot.js";
import { freePort, tcpListening } from "./ports.js";
import { ensureTestbed, testbedRoot } from "./synapse.js";

export interface MailUser {
  /** Login name, e.g. "voicemail" or "grace@example.org". */
  user: string;
  password: string;
}

export interface DovecotOptions {
  /** IMAP port on 127.0.0.1; default a free one. */
  port?: number;
  users: MailUser[];
  /** Readiness timeout in ms; default 20000. */
  startTimeoutMs?: number;
  /** TLS: the server's certificate and key (PEM, host paths): STARTTLS offered on `port`, implicit TLS on `tlsPort`. */
  tls?: { certFile: string; keyFile: string };
  /** A server without IDLE: Dovecot leaves it out of its capabilities (clients must poll). */
  noIdle?: boolean;
}

export interface RunningDovecot {
  host: "127.0.0.1";
  port: number;
  /** With DovecotOptions.tls: the implicit-TLS (imaps) port. */
  tlsPort?: number;
  /** Host path of the instance directory. */
  dataDir: string;
  logFile: string;
  /** The config file as seen inside the tree (for dovecot-lda, doveadm). */
  configInner: string;
  /** A shell command (inside the tree) that delivers the mail on its stdin to the user's INBOX: Asterisk's mailcmd. */
  deliveryCommand(user: string): string;
  /** Delivers a raw mail with dovecot-lda, as a PBX's mailcmd would. */
  deliver(user: string, raw: string): void;
  /** An IMAP client logged in as the user (the user's own mail client); the caller logs it out. */
  client(user: string): Promise<ImapFlow>;
  /** APPENDs a raw mail to the user's INBOX with the given flags; returns its UID. */
  append(user: string, raw: string, flags?: string[]): Promise<number | undefined>;
  /** Sets (or clears) \Seen on every mail of the user's INBOX whose subject contains `subjectPart`, as a mail client does. */
  setSeen(user: string, subjectPart: string, seen?: boolean): Promise<number>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const INSTANCES_DIR = "srv/voicemail-dovecot";
/** The owner of every maildir: any uid above Dovecot's first_valid_uid (500) will do. */
const MAIL_UID = 5025;

function checkUser(user: string): void {
  if (!/^[A-Za-z0-9_.+@-]+$/.test(user)) throw new Error(`testbed: mail user ${JSON.stringify(user)} must match [A-Za-z0-9_.+@-]+`);
}

export async function startDovecot(opts: DovecotOptions): Promise<RunningDovecot> {
  const status = await ensureTestbed();
  if (!status.ok) throw new Error(`testbed unavailable: ${status.reason}`);
  const root = status.root;
  ensureSystemMounts(root);
  const port = opts.port ?? (await freePort());
  const tlsPort = opts.tls ? await freePort() : undefined;
  const { dataDir, owned } = instanceDataDir(root, undefined, INSTANCES_DIR, "dc-", () =>
    pruneStaleDirs(path.join(testbedRoot(), INSTANCES_DIR), "dc-", "run/master.pid", 24 * 3600_000),
  );
  const { inner, bindMounted } = chrootPathFor(root, dataDir, INSTANCES_DIR);
  // mkdtemp made it 0700: Dovecot's auth (user dovecot) and mail processes (MAIL_UID) must pass through.
  chmodSync(dataDir, 0o755);
  for (const d of ["run", "state", "log", "home"]) mkdirSync(path.join(dataDir, d), { recursive: true });
  const passwd: string[] = [];
  for (const u of opts.users) {
    checkUser(u.user);
    if (/[:\r\n]/.test(u.password)) throw new Error("testbed: mail password must not contain ':' or line breaks");
    const home = path.join(dataDir, "home", u.user);
    mkdirSync(home, { recursive: true });
    chownSync(home, MAIL_UID, MAIL_UID);
    passwd.push(`${u.user}:{PLAIN}${u.password}:${MAIL_UID}:${MAIL_UID}::${inner}/home/${u.user}::`);
  }
  writeFileSync(path.join(dataDir, "passwd"), passwd.join("\n") + "\n", { mode: 0o644 });
  if (opts.tls) {
    mkdirSync(path.join(dataDir, "tls"), { recursive: true });
    copyFileSync(opts.tls.certFile, path.join(dataDir, "tls", "cert.pem"));
    copyFileSync(opts.tls.keyFile, path.join(dataDir, "tls", "key.pem"));
  }
  const configInner = `${inner}/dovecot.conf`;
  const logFile = path.join(dataDir, "log", "dovecot.log");
  writeFileSync(
    path.join(dataDir, "dovecot.conf"),
    [
      "dovecot_config_version = 2.4.0",
      "dovecot_storage_version = 2.4.0",
      `base_dir = ${inner}/run`,
      `state_dir = ${inner}/state`,
      `log_path = ${inner}/log/dovecot.log`,
      `info_log_path = ${inner}/log/dovecot.log`,
      "protocols = imap",
      "listen = 127.0.0.1",
      ...(opts.tls ? ["ssl = yes", `ssl_server_cert_file = ${inner}/tls/cert.pem`, `ssl_server_key_file = ${inner}/tls/key.pem`] : ["ssl = no"]),
      "auth_allow_cleartext = yes",
      "auth_mechanisms = plain login",
      "first_valid_uid = 500",
      "passdb passwd-file {",
      `  passwd_file_path = ${inner}/passwd`,
      "}",
      "userdb passwd-file {",
      `  passwd_file_path = ${inner}/passwd`,
      "}",
      ...(opts.noIdle ? ["imap_capability {", "  IDLE = no", "}"] : []),
      "mail_driver = maildir",
      "mail_path = ~/Maildir",
      "service imap-login {",
      "  inet_listener imap {",
      `    port = ${port}`,
      "  }",
      "  inet_listener imaps {",
      `    port = ${tlsPort ?? 0}`,
      "  }",
      "}",
      "",
    ].join("\n"),
  );
  const stdioFile = path.join(dataDir, "dovecot.stdio.log");
  let child: GroupProcess | undefined;
  const startTimeoutMs = opts.startTimeoutMs ?? 20_000;

  const launch = async (): Promise<void> => {
    const g = spawnInChroot(root, ["dovecot", "-F", "-c", configInner], CHROOT_ENV, stdioFile);
    child = g;
    const until = Date.now() + startTimeoutMs;
    while (!(await tcpListening(port)) || (tlsPort !== undefined && !(await tcpListening(tlsPort)))) {
      const exitInfo = g.exitInfo();
      if (exitInfo) {
        forgetGroup(g);
        child = undefined;
        throw new Error(`testbed: Dovecot exited during startup (${exitInfo}).\n${tail(stdioFile)}\n${tail(logFile)}`);
      }
      if (Date.now() > until) throw new Error(`testbed: Dovecot not listening on ${port} after ${startTimeoutMs} ms.\n${tail(stdioFile)}\n${tail(logFile)}`);
      await sleep(50);
    }
  };
  const stopProcess = async (): Promise<void> => {
    const g = child;
    child = undefined;
    if (g) await stopGroup(g);
  };

  const password = (user: string): string => {
    const u = opts.users.find((x) => x.user === user);
    if (!u) throw new Error(`testbed: no mail user ${user}`);
    return u.password;
  };
  const client = async (user: string): Promise<ImapFlow> => {
    const c = new ImapFlow({ host: "127.0.0.1", port, secure: false, auth: { user, pass: password(user) }, logger: false, disableAutoIdle: true });
    c.on("error", () => undefined);
    await c.connect();
    return c;
  };
  const deliveryCommand = (user: string): string => {
    checkUser(user);
    return `/usr/lib/dovecot/dovecot-lda -c ${configInner} -d ${user}`;
  };

  let stopped = false;
  const running: RunningDovecot = {
    host: "127.0.0.1",
    port,
    ...(tlsPort !== undefined ? { tlsPort } : {}),
    dataDir,
    logFile,
    configInner,
    deliveryCommand,
    deliver(user, raw) {
      const r = spawnSync("chroot", [root, "sh", "-c", deliveryCommand(user)], { input: raw, env: CHROOT_ENV, encoding: "utf8" });
      if (r.status !== 0) throw new Error(`testbed: dovecot-lda for ${user} failed (exit ${r.status}): ${r.stderr}\n${tail(logFile)}`);
    },
    client,
    async append(user, raw, flags = []) {
      const c = await client(user);
      try {
        const r = await c.append("INBOX", raw, flags);
        return r && typeof r === "object" ? r.uid : undefined;
      } finally {
        await c.logout().catch(() => c.close());
      }
    },
    async setSeen(user, subjectPart, seen = true) {
      const c = await client(user);
      try {
        await c.mailboxOpen("INBOX");
        const found = await c.search({ subject: subjectPart }, { uid: true });
        const uids = Array.isArray(found) ? found : [];
        if (uids.length) {
          if (seen) await c.messageFlagsAdd(uids.join(","), ["\\Seen"], { uid: true });
          else await c.messageFlagsRemove(uids.join(","), ["\\Seen"], { uid: true });
        }
        return uids.length;
      } finally {
        await c.logout().catch(() => c.close());
      }
    },
    async restart() {
      if (stopped) throw new Error("testbed: restart() after stop()");
      await stopProcess();
      await launch();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopProcess();
      if (bindMounted) unbind(root, path.join(root, inner));
      if (owned) rmSync(dataDir, { recursive: true, force: true });
    },
  };
  try {
    await launch();
  } catch (err) {
    stopped = true;
    await stopProcess();
    throw err;
  }
  return running;
}
