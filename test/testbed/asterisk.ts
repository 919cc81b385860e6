// Asterisk harness for the end-to-end tests: a real Asterisk 22 (from the Debian unstable testbed
// tree that build-rootfs.sh builds, see synapse.ts) runs inside that tree through chroot(8), on
// loopback only. Each instance has its own directory ROOT/srv/voicemail-asterisk/<name>/ holding
// its configuration (etc/), control socket (run/), spool (spool/voicemail/...), logs (log/) and
// astdb (db/), so several instances can run side by side; modules, sounds and binaries are
// shared read-only from the tree.
//
// What is configured:
// - pjsip: UDP and TCP transports on 127.0.0.1:sipPort; per mailbox an endpoint and an AOR both
//   named after the mailbox, digest auth (username authUser ?? mailbox), the AOR carries
//   `mailboxes=<mailbox>@default`, so `SUBSCRIBE sip:<mailbox>@127.0.0.1` with
//   `Event: message-summary` gets 401, then 200 and NOTIFYs (RFC 3842 bodies).
// - app_voicemail: context `default`, file storage (wav), no e-mail, minsecs 0, pollmailboxes off (option).
// - dialplan context `vm-leave`, one extension per mailbox: sets caller ID (and optionally the
//   redirecting number, which becomes `rdnis` in the spool) from base64 channel variables, then
//   `VoiceMail(<mailbox>@default,s[U])`. leaveVoicemail() originates `Local/<mailbox>@vm-leave`
//   through AMI with application `Playback silence/<seconds>`; when the playback ends the Local
//   channel hangs up and app_voicemail keeps what it recorded (duration about seconds - 1: the
//   beep takes the first second).
// - AMI on 127.0.0.1:amiPort, one user with read/write `all`.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import path from "node:path";
import { CHROOT_ENV, chrootPathFor, ensureSystemMounts, forgetGroup, instanceDataDir, pruneStaleDirs, sleep, spawnInChroot, stopGroup, tail, unbind, type GroupProcess } from "./chroot.js";
import { tcpListening, tcpPortFree, udpPortFree } from "./ports.js";
import { ensureTestbed, testbedRoot } from "./synapse.js";

// Part of this module's API since before ports.ts existed (the e2e tests import it from here).
export { freeSipPort } from "./ports.js";

export interface MailboxSpec {
  /** Mailbox number; also the pjsip endpoint and AOR name (mailbox `<mailbox>@default`). */
  mailbox: string;
  /** SIP digest password of the endpoint. */
  password: string;
  /** Voicemail PIN; default "1234". */
  vmPin?: string;
  /** SIP digest username; default the mailbox. */
  authUser?: string;
  /** Full name in voicemail.conf; default "Mailbox <mailbox>". */
  fullName?: string;
  /** E-mail address of the mailbox: with AsteriskOptions.voicemailMail, each voicemail is mailed there. */
  email?: string;
}

/** Voicemail to e-mail (app_voicemail's own mails, default templates, the recording attached). */
export interface VoicemailMailOptions {
  /**
   * The command (run inside the tree by a shell) that gets each whole mail on stdin: for a
   * test Dovecot, its `deliveryCommand(user)` (dovecot-lda).
   */
  mailcmd: string;
}

/** A static contact that gets unsolicited (out-of-dialog) MWI NOTIFYs for a mailbox. */
export interface UnsolicitedMwiTarget {
  mailbox: string;
  /** SIP URI of the receiver, e.g. sip:1001@127.0.0.1:5070 (add ;transport=tcp for TCP). */
  contact: string;
}

export interface AsteriskOptions {
  /** SIP port on 127.0.0.1, UDP and TCP; default 5060. */
  sipPort?: number;
  /** AMI TCP port on 127.0.0.1; default 5038. */
  amiPort?: number;
  /** AMI user; default "voicemail-test". */
  amiUser?: string;
  /** AMI secret; default random. */
  amiSecret?: string;
  mailboxes: MailboxSpec[];
  /** Endpoints `unsol-<mailbox>` with a static contact, so Asterisk sends unsolicited MWI NOTIFYs there. */
  unsolicitedMwiTo?: UnsolicitedMwiTarget[];
  /** Minimum subscription expiry (pjsip sub_min_expiry) in seconds; default 60. */
  subMinExpiry?: number;
  /**
   * Host path of the instance directory (config, spool, logs, astdb); kept after stop(). A path
   * outside the testbed tree is bind-mounted into it. Default: a fresh directory under
   * ROOT/srv/voicemail-asterisk/, removed by stop() unless keepData.
   */
  dataDir?: string;
  /** Keep the default fresh instance directory after stop(). Default false. */
  keepData?: boolean;
  /**
   * voicemail.conf pollmailboxes: app_voicemail polls the spool every 2 s, so changes made to the
   * spool from outside (files moved by hand) reach MWI subscribers. Default false: with polling on,
   * Asterisk 22 sends a second NOTIFY with the same body after an urgent message and after a restart.
   * leaveVoicemail/moveToOld/deleteAll notify without polling.
   */
  pollMailboxes?: boolean;
  /** Log every SIP packet to the log file (`pjsip set logger on`). Default true. */
  sipTrace?: boolean;
  /** Readiness timeout in ms; default 30000. */
  startTimeoutMs?: number;
  /** More manager.conf users with exactly these rights (the AMI kind's minimal manager.conf). */
  amiUsers?: AmiUserSpec[];
  /**
   * Phones: a static contact on the mailbox's AOR (as if the phone had registered there), and the
   * modules for outgoing calls (chan_pjsip, res_pjsip_session, RTP, ulaw), so `PJSIP/<mailbox>` rings it.
   */
  phones?: PhoneSpec[];
  /** Mail every voicemail of the mailboxes that have an `email` through this mailcmd. Default: no e-mail. */
  voicemailMail?: VoicemailMailOptions;
}

/** A manager.conf user of its own: `read`/`write` as manager.conf takes them ("call", "call,originate"). */
export interface AmiUserSpec {
  username: string;
  secret: string;
  read: string;
  write: string;
  /** manager.conf `eventfilter` lines of this user, e.g. "Event: MessageWaiting". */
  eventFilters?: string[];
}

/** Where `PJSIP/<mailbox>` rings: a SIP URI such as sip:1001@127.0.0.1:5090. */
export interface PhoneSpec {
  mailbox: string;
  contact: string;
}

export interface MailboxCounts {
  /** Unheard messages, urgent ones included (INBOX + Urgent), as in the MWI `Voice-Message: new/old`. */
  new: number;
  /** Heard messages (Old). */
  old: number;
  /** Unheard urgent messages (Urgent folder). */
  urgent: number;
}

export interface LeftVoicemail {
  /** Spool folder the message landed in: "INBOX" or "Urgent". */
  folder: string;
  /** Host path of the msgNNNN.txt. */
  txtFile: string;
  /** The message's msg_id. */
  msgId: string;
  /** Parsed [message] section of msgNNNN.txt. */
  info: Record<string, string>;
}

export type AmiPacket = Record<string, string>;

export interface RunningAsterisk {
  sipPort: number;
  amiPort: number;
  amiUser: string;
  amiSecret: string;
  /** Voicemail context of all mailboxes ("default"). */
  vmContext: string;
  /** Host path of the instance directory. */
  dataDir: string;
  /** Host path of the voicemail spool: <dataDir>/spool/voicemail (mailbox dirs are <spoolDir>/default/<mailbox>/INBOX ...). */
  spoolDir: string;
  /** Host path of Asterisk's log (notice and up, verbose, SIP trace when on). */
  logFile: string;
  /** Runs a CLI command through the instance's control socket (`asterisk -rx`) and returns its output. */
  cli(command: string): Promise<string>;
  /**
   * One AMI action on a fresh connection (Login with Events: off, the action, Logoff). Returns the
   * response packet followed by the list events that belong to it (up to "EventList: Complete").
   */
  ami(action: AmiPacket): Promise<AmiPacket[]>;
  /**
   * Leaves a real voicemail: a Local channel runs `VoiceMail(<mailbox>@default,s[U])` with the given
   * caller ID, recording for `seconds` (default 2). Resolves when the new msgNNNN.txt is in the spool.
   */
  leaveVoicemail(
    mailbox: string,
    callerId: { name?: string; number: string },
    opts?: { urgent?: boolean; seconds?: number; rdnis?: string },
  ): Promise<LeftVoicemail>;
  /** Moves every unheard message (INBOX and Urgent) to Old with `voicemail move`; MWI goes out. */
  moveToOld(mailbox: string): Promise<void>;
  /** Removes every message of the mailbox with `voicemail remove`; MWI goes out. */
  deleteAll(mailbox: string): Promise<void>;
  /** Message counts from the spool. */
  counts(mailbox: string): Promise<MailboxCounts>;
  /** Output of `pjsip show subscriptions inbound`. */
  inboundSubscriptions(): Promise<string>;
  /** Stops and starts again with the same configuration, spool and astdb (persisted subscriptions). */
  restart(): Promise<void>;
  /** Stops Asterisk (SIGTERM, then SIGKILL of its process group). Idempotent. */
  stop(): Promise<void>;
}

export const VM_CONTEXT = "default";
const INSTANCES_DIR = "srv/voicemail-asterisk";
const MODULE_DIR = "/usr/lib/x86_64-linux-gnu/asterisk/modules";

/**
 * The modules loaded (modules.conf has autoload=no). Found by leaving each one out on Asterisk
 * 22.10 and checking boot, SUBSCRIBE (401, 200, NOTIFY) and leaveVoicemail (file, caller ID,
 * NOTIFY). Local channels, the manager (AMI), `$[...]` expressions and GotoIf are core.
 * Leaving out a required one gives:
 * - any res_sorcery_*, res_pjproject, res_pjsip: res_pjsip does not load (no `pjsip` commands);
 * - res_pjsip_authenticator_digest: SUBSCRIBE is accepted WITHOUT any challenge (200 at once);
 * - res_pjsip_endpoint_identifier_user: 401 forever (no endpoint matches);
 * - res_pjsip_pubsub: res_pjsip_mwi* do not load; res_pjsip_mwi or _mwi_body_generator: 489 Bad Event;
 * - app_playback, format_wav, format_gsm (the beep), codec_gsm: no message is recorded;
 * - pbx_config: Originate fails (no dialplan); func_callerid, func_base64: callerid=Unknown.
 * chan_pjsip and res_pjsip_session are not needed for MWI (nor for unsolicited NOTIFYs).
 */
export const ASTERISK_MODULES = [
  "res_sorcery_config.so",
  "res_sorcery_memory.so",
  "res_sorcery_astdb.so", // also where res_pjsip_pubsub persists subscriptions across restarts
  "res_pjproject.so",
  "res_pjsip.so",
  "res_pjsip_authenticator_digest.so",
  "res_pjsip_endpoint_identifier_user.so",
  "res_pjsip_pubsub.so",
  "res_pjsip_mwi.so",
  "res_pjsip_mwi_body_generator.so",
  "app_voicemail.so",
  "app_playback.so",
  "pbx_config.so",
  "func_callerid.so",
  "func_base64.so",
  "format_wav.so",
  "format_gsm.so",
  "codec_gsm.so",
  // Not needed for the tests, loaded for convenience:
  "res_pjsip_logger.so", // `pjsip set logger on` (sipTrace)
  "res_pjsip_registrar.so", // a client that REGISTERs first gets 200
  "res_clioriginate.so", // `channel originate` by hand from cli()
  "res_timing_timerfd.so", // a timing source for media generators
];

/** What outgoing calls to phones need besides ASTERISK_MODULES (see AsteriskOptions.phones). */
const CALL_MODULES = ["res_pjsip_session.so", "chan_pjsip.so", "res_rtp_asterisk.so", "res_pjsip_sdp_rtp.so", "codec_ulaw.so"];

function modulesFor(o: Pick<AsteriskOptions, "phones">): string[] {
  return o.phones?.length ? [...ASTERISK_MODULES, ...CALL_MODULES] : ASTERISK_MODULES;
}

/** manager.conf sections of the extra AMI users, loopback only. */
function amiUserSections(users: AmiUserSpec[]): string[] {
  return users.flatMap((u) => {
    checkName("amiUser", u.username);
    for (const v of [u.secret, u.read, u.write, ...(u.eventFilters ?? [])]) if (/[\r\n;]/.test(v)) throw new Error("testbed: AMI user fields must not contain ';' or line breaks");
    return ["", `[${u.username}]`, `secret = ${u.secret}`, "deny = 0.0.0.0/0.0.0.0", "permit = 127.0.0.1/255.255.255.255", `read = ${u.read}`, `write = ${u.write}`, ...(u.eventFilters ?? []).map((f) => `eventfilter = ${f}`)];
  });
}

/** The AOR lines that make `PJSIP/<mailbox>` ring a phone. */
function phoneContactLines(phones: PhoneSpec[], mailbox: string): string[] {
  return phones
    .filter((p) => p.mailbox === mailbox)
    .map((p) => {
      if (!/^sip:[A-Za-z0-9_.+-]+@[0-9.]+:\d+$/.test(p.contact)) throw new Error(`testbed: bad phone contact ${p.contact}`);
      return `contact = ${p.contact}`;
    });
}

/** unbind() plus removal of the then empty mount point, so ext-* directories do not pile up. */
function unbindAndRemove(root: string, target: string): void {
  unbind(root, target);
  try {
    rmdirSync(target); // only succeeds once unmounted (and empty)
  } catch {
    /* still mounted or not empty */
  }
}

// ---------------------------------------------------------------------------------------------
// Ports

async function assertPortsFree(sipPort: number, amiPort: number): Promise<void> {
  const problems: string[] = [];
  const udp = await udpPortFree(sipPort);
  if (udp) problems.push(`SIP port ${sipPort}/udp: ${udp}`);
  const tcp = (await tcpListening(sipPort)) ? "something is listening" : await tcpPortFree(sipPort);
  if (tcp) problems.push(`SIP port ${sipPort}/tcp: ${tcp}`);
  const ami = (await tcpListening(amiPort)) ? "something is listening" : await tcpPortFree(amiPort);
  if (ami) problems.push(`AMI port ${amiPort}/tcp: ${ami}`);
  if (problems.length) {
    throw new Error(`testbed: cannot start Asterisk on 127.0.0.1, port(s) in use (another Asterisk still running?): ${problems.join("; ")}`);
  }
}

// ---------------------------------------------------------------------------------------------
// AMI (tiny client: one connection per action)

function parseAmiPacket(text: string): AmiPacket {
  const packet: AmiPacket = {};
  for (const line of text.split("\r\n")) {
    const i = line.indexOf(":");
    if (i <= 0) continue;
    const key = line.slice(0, i);
    const value = line.slice(i + 1).trimStart();
    // Repeated keys (e.g. Output:) are joined with newlines.
    packet[key] = key in packet ? `${packet[key]}\n${value}` : value;
  }
  return packet;
}

function amiEscape(v: string): string {
  if (/[\r\n]/.test(v)) throw new Error(`AMI header value must not contain line breaks: ${JSON.stringify(v)}`);
  return v;
}

function serializeAmi(action: AmiPacket | [string, string][]): string {
  const entries = Array.isArray(action) ? action : Object.entries(action);
  return entries.map(([k, v]) => `${k}: ${amiEscape(v)}\r\n`).join("") + "\r\n";
}

/** One AMI action; `extra` are more headers (repeatable, e.g. several Variable: lines). */
async function amiAction(port: number, user: string, secret: string, action: AmiPacket, extra: [string, string][] = [], timeoutMs = 15_000): Promise<AmiPacket[]> {
  return await new Promise<AmiPacket[]>((resolve, reject) => {
    const sock: Socket = connect({ host: "127.0.0.1", port });
    let buf = "";
    let greeted = false;
    let loggedIn = false;
    const id = "h" + randomBytes(6).toString("hex");
    const collected: AmiPacket[] = [];
    const timer = setTimeout(() => finish(new Error(`AMI ${action.Action}: no answer within ${timeoutMs} ms`)), timeoutMs);
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      if (!sock.destroyed) {
        if (loggedIn) sock.end(serializeAmi({ Action: "Logoff" }));
        else sock.destroy();
      }
      if (err) reject(err);
      else resolve(collected);
    };
    sock.setEncoding("utf8");
    sock.on("error", (err) => finish(new Error(`AMI on 127.0.0.1:${port}: ${err.message}`)));
    sock.on("data", (chunk: string) => {
      buf += chunk;
      if (!greeted) {
        const nl = buf.indexOf("\r\n");
        if (nl < 0) return;
        greeted = true;
        buf = buf.slice(nl + 2);
        sock.write(serializeAmi({ Action: "Login", Username: user, Secret: secret, Events: "off", ActionID: `${id}-login` }));
      }
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) break;
        const packet = parseAmiPacket(buf.slice(0, end));
        buf = buf.slice(end + 4);
        if (packet.ActionID === `${id}-login`) {
          if (packet.Response !== "Success") return finish(new Error(`AMI login as ${user} failed: ${packet.Message ?? JSON.stringify(packet)}`));
          loggedIn = true;
          const { Action, ...rest } = action;
          sock.write(serializeAmi([["Action", Action ?? ""], ["ActionID", id], ...Object.entries(rest), ...extra]));
          continue;
        }
        if (packet.ActionID !== id) continue;
        collected.push(packet);
        if (collected.length === 1) {
          if (packet.Response === "Error") return finish(new Error(`AMI ${action.Action} failed: ${packet.Message ?? JSON.stringify(packet)}`));
          if (!/^start$/i.test(packet.EventList ?? "")) return finish();
        } else if (/^complete$/i.test(packet.EventList ?? "")) {
          return finish();
        }
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Configuration

interface Layout {
  inner: string; // instance dir inside the chroot
  host: string; // instance dir on the host
}

function confLines(lines: (string | false | undefined)[]): string {
  return lines.filter((l): l is string => typeof l === "string").join("\n") + "\n";
}

function checkName(kind: string, value: string): void {
  if (!/^[A-Za-z0-9_.+-]+$/.test(value)) throw new Error(`testbed: ${kind} ${JSON.stringify(value)} must match [A-Za-z0-9_.+-]+`);
}

function writeConfigs(l: Layout, o: Required<Pick<AsteriskOptions, "sipPort" | "amiPort" | "amiUser" | "amiSecret" | "subMinExpiry">> & AsteriskOptions, root: string): void {
  const etc = path.join(l.host, "etc");
  for (const d of ["etc", "run", "spool", "log", "db", "cache", "keys"]) mkdirSync(path.join(l.host, d), { recursive: true });
  const w = (name: string, text: string): void => writeFileSync(path.join(etc, name), text);

  w(
    "asterisk.conf",
    confLines([
      "[directories]",
      `astetcdir => ${l.inner}/etc`,
      `astmoddir => ${MODULE_DIR}`,
      "astvarlibdir => /var/lib/asterisk",
      `astdbdir => ${l.inner}/db`,
      `astkeydir => ${l.inner}/keys`,
      "astdatadir => /usr/share/asterisk",
      "astagidir => /usr/share/asterisk/agi-bin",
      `astspooldir => ${l.inner}/spool`,
      `astrundir => ${l.inner}/run`,
      `astlogdir => ${l.inner}/log`,
      `astcachedir => ${l.inner}/cache`,
      "astsbindir => /usr/sbin",
      "[options]",
      "verbose = 3",
      "debug = 0",
      "hideconnect = yes",
      "documentation_language = en_US",
    ]),
  );
  w("modules.conf", confLines(["[modules]", "autoload = no", ...modulesFor(o).map((m) => `load = ${m}`)]));
  w(
    "logger.conf",
    confLines(["[general]", "dateformat = %F %T.%3q", "[logfiles]", "console => error,warning,notice", "messages.log => error,warning,notice,verbose"]),
  );
  // Config files core parts look for; empty or minimal so the log stays free of noise.
  w("cdr.conf", "[general]\nenable = no\n");
  w("cel.conf", "[general]\nenable = no\n");
  for (const f of ["features.conf", "acl.conf", "udptl.conf", "pjproject.conf", "ccss.conf", "sorcery.conf", "extconfig.conf"]) w(f, "");
  const indications = path.join(root, "etc/asterisk/indications.conf");
  w("indications.conf", existsSync(indications) ? readFileSync(indications, "utf8") : "[general]\ncountry = us\n");
  w(
    "manager.conf",
    confLines([
      "[general]",
      "enabled = yes",
      "webenabled = no",
      "bindaddr = 127.0.0.1",
      `port = ${o.amiPort}`,
      "displayconnects = no",
      "",
      `[${o.amiUser}]`,
      `secret = ${o.amiSecret}`,
      "deny = 0.0.0.0/0.0.0.0",
      "permit = 127.0.0.1/255.255.255.255",
      "read = all",
      "write = all",
      ...amiUserSections(o.amiUsers ?? []),
    ]),
  );

  const pjsip: string[] = [
    "[global]",
    "type = global",
    "user_agent = voicemail-testbed-asterisk",
    "",
    "[transport-udp]",
    "type = transport",
    "protocol = udp",
    `bind = 127.0.0.1:${o.sipPort}`,
    "",
    "[transport-tcp]",
    "type = transport",
    "protocol = tcp",
    `bind = 127.0.0.1:${o.sipPort}`,
    "",
  ];
  const endpointCommon = ["context = vm-none", "disallow = all", "allow = ulaw"];
  for (const mb of o.mailboxes) {
    checkName("mailbox", mb.mailbox);
    if (mb.authUser) checkName("authUser", mb.authUser);
    if (/[\r\n;]/.test(mb.password)) throw new Error("testbed: SIP password must not contain ';' or line breaks");
    pjsip.push(
      `[${mb.mailbox}]`,
      "type = endpoint",
      ...endpointCommon,
      `auth = ${mb.mailbox}-auth`,
      `aors = ${mb.mailbox}`,
      "identify_by = username,auth_username",
      "allow_subscribe = yes",
      `sub_min_expiry = ${o.subMinExpiry}`,
      "mwi_subscribe_replaces_unsolicited = yes",
      "",
      `[${mb.mailbox}-auth]`,
      "type = auth",
      "auth_type = digest",
      `username = ${mb.authUser ?? mb.mailbox}`,
      `password = ${mb.password}`,
      "",
      `[${mb.mailbox}]`,
      "type = aor",
      "max_contacts = 1",
      "remove_existing = yes",
      `mailboxes = ${mb.mailbox}@${VM_CONTEXT}`,
      ...phoneContactLines(o.phones ?? [], mb.mailbox),
      "",
    );
  }
  for (const u of o.unsolicitedMwiTo ?? []) {
    checkName("mailbox", u.mailbox);
    if (/[\r\n;,]/.test(u.contact.replace(/;transport=\w+$/i, ""))) throw new Error(`testbed: bad unsolicited contact ${u.contact}`);
    pjsip.push(
      `[unsol-${u.mailbox}]`,
      "type = endpoint",
      ...endpointCommon,
      `aors = unsol-${u.mailbox}`,
      `mailboxes = ${u.mailbox}@${VM_CONTEXT}`,
      `from_user = ${u.mailbox}`,
      "",
      `[unsol-${u.mailbox}]`,
      "type = aor",
      `contact = ${u.contact}`,
      "",
    );
  }
  w("pjsip.conf", confLines(pjsip));

  w(
    "voicemail.conf",
    confLines([
      "[general]",
      "format = wav",
      ...voicemailMailGeneral(o.voicemailMail),
      "serveremail = asterisk@localhost",
      "maxmsg = 100",
      "maxsecs = 600",
      // minsecs stays at its default (0: keep every message); setting it makes Asterisk warn
      // "maxsilence should be less than minsecs" because maxsilence is 0 (off).
      "maxgreet = 60",
      "skipms = 3000",
      "maxlogins = 3",
      "review = no",
      "operator = no",
      "envelope = no",
      "sayduration = no",
      `pollmailboxes = ${o.pollMailboxes ?? false ? "yes" : "no"}`,
      "pollfreq = 2",
      "",
      `[${VM_CONTEXT}]`,
      ...o.mailboxes.map((mb) => `${mb.mailbox} => ${mb.vmPin ?? "1234"},${(mb.fullName ?? `Mailbox ${mb.mailbox}`).replace(/[,\r\n]/g, " ")},${voicemailMailBox(mb, o.voicemailMail)}`),
    ]),
  );

  w(
    "extensions.conf",
    confLines([
      "[general]",
      "static = yes",
      "writeprotect = yes",
      "",
      "[vm-none]",
      "",
      "; leaveVoicemail() calls Local/<mailbox>@vm-leave with VM_OPTS and base64 caller number/name",
      "; and redirecting number; the spool's exten= is then the mailbox, rdnis= the redirecting number.",
      "[vm-leave]",
      ...o.mailboxes.flatMap((mb) => [
        `exten => ${mb.mailbox},1,GotoIf($["\${VM_CID_NUM64}" = ""]?name)`,
        " same => n,Set(CALLERID(num)=${BASE64_DECODE(${VM_CID_NUM64})})",
        ' same => n(name),GotoIf($["${VM_CID_NAME64}" = ""]?rdnis)',
        " same => n,Set(CALLERID(name)=${BASE64_DECODE(${VM_CID_NAME64})})",
        ' same => n(rdnis),GotoIf($["${VM_RDNIS64}" = ""]?record)',
        " same => n,Set(REDIRECTING(from-num)=${BASE64_DECODE(${VM_RDNIS64})})",
        " same => n(record),Answer()",
        ` same => n,VoiceMail(\${EXTEN}@${VM_CONTEXT},\${VM_OPTS})`,
        " same => n,Hangup()",
      ]),
    ]),
  );
}

// ---------------------------------------------------------------------------------------------
// Voicemail to e-mail: [general] lines and each mailbox's e-mail fields of voicemail.conf.

function voicemailMailGeneral(mail: VoicemailMailOptions | undefined): string[] {
  if (!mail) return ["attach = no"];
  if (/[\r\n]/.test(mail.mailcmd)) throw new Error("testbed: mailcmd must be one line");
  // The default subject and body ([PBX]: New message N in mailbox M): what the bridge's defaults expect.
  return ["attach = yes", `mailcmd = ${mail.mailcmd}`];
}

/** "email,pager,options" of a mailbox line. */
function voicemailMailBox(mb: MailboxSpec, mail: VoicemailMailOptions | undefined): string {
  if (!mail || !mb.email) return ",,attach=no";
  if (!/^[A-Za-z0-9_.+-]+@[A-Za-z0-9.-]+$/.test(mb.email)) throw new Error(`testbed: bad e-mail address ${JSON.stringify(mb.email)}`);
  return `${mb.email},,attach=yes`;
}

// ---------------------------------------------------------------------------------------------
// Spool helpers

const FOLDERS = ["INBOX", "Old", "Urgent", "Work", "Family", "Friends", "Cust1", "Cust2", "Cust3", "Cust4", "Cust5", "Deleted"];

function parseMsgTxt(text: string): Record<string, string> {
  const info: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z_]+)=(.*)$/.exec(line);
    if (m) info[m[1]!] = m[2]!;
  }
  return info;
}

interface SpoolMsg {
  folder: string;
  txtFile: string;
  info: Record<string, string>;
}

function spoolMessages(spoolDir: string, mailbox: string, folders = FOLDERS): SpoolMsg[] {
  const out: SpoolMsg[] = [];
  for (const folder of folders) {
    const dir = path.join(spoolDir, VM_CONTEXT, mailbox, folder);
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names.sort()) {
      if (!/^msg\d{4}\.txt$/.test(name)) continue;
      const txtFile = path.join(dir, name);
      try {
        out.push({ folder, txtFile, info: parseMsgTxt(readFileSync(txtFile, "utf8")) });
      } catch {
        /* renamed under us */
      }
    }
  }
  return out;
}

function bareMailbox(mailbox: string): string {
  const [box, ctx] = mailbox.split("@");
  if (ctx && ctx !== VM_CONTEXT) throw new Error(`testbed: only the voicemail context "${VM_CONTEXT}" exists, not ${ctx}`);
  return box!;
}

// ---------------------------------------------------------------------------------------------

/** Starts Asterisk inside the testbed tree; resolves once it is fully booted with both SIP transports and AMI up. */
export async function startAsterisk(opts: AsteriskOptions): Promise<RunningAsterisk> {
  const status = await ensureTestbed();
  if (!status.ok) throw new Error(`testbed unavailable: ${status.reason}`);
  const root = status.root;
  if (!existsSync(path.join(root, "usr/sbin/asterisk"))) throw new Error(`testbed: no Asterisk in the testbed tree ${root} (usr/sbin/asterisk)`);
  if (!opts.mailboxes.length) throw new Error("testbed: startAsterisk needs at least one mailbox");
  const o = {
    ...opts,
    sipPort: opts.sipPort ?? 5060,
    amiPort: opts.amiPort ?? 5038,
    amiUser: opts.amiUser ?? "voicemail-test",
    amiSecret: opts.amiSecret ?? randomBytes(12).toString("hex"),
    subMinExpiry: opts.subMinExpiry ?? 60,
  };
  checkName("amiUser", o.amiUser);
  const startTimeoutMs = opts.startTimeoutMs ?? 30_000;
  const sipTrace = opts.sipTrace ?? true;
  await assertPortsFree(o.sipPort, o.amiPort);
  ensureSystemMounts(root);

  const { dataDir, owned: ownsDataDir } = instanceDataDir(root, opts.dataDir, INSTANCES_DIR, "ast-", () => pruneStaleAsteriskDirs());
  const { inner, bindMounted } = chrootPathFor(root, dataDir, INSTANCES_DIR);
  const confInner = `${inner}/etc/asterisk.conf`;
  const logFile = path.join(dataDir, "log", "messages.log");
  const stdioFile = path.join(dataDir, "asterisk.stdio.log");
  const spoolDir = path.join(dataDir, "spool", "voicemail");

  const cliRaw = (command: string, timeoutMs = 15_000): Promise<{ code: number | null; out: string }> =>
    new Promise((resolve) => {
      const child = spawn("chroot", [root, "asterisk", "-C", confInner, "-rx", command], { cwd: "/", env: CHROOT_ENV, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (out += d.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      child.on("error", (err) => {
        clearTimeout(timer);
        resolve({ code: -1, out: out + String(err) });
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        resolve({ code, out });
      });
    });
  const cli = async (command: string): Promise<string> => {
    const r = await cliRaw(command);
    if (r.code !== 0 || /^Unable to connect to remote asterisk/m.test(r.out)) {
      throw new Error(`testbed: asterisk -rx ${JSON.stringify(command)} failed (exit ${r.code}): ${r.out.trim()}`);
    }
    return r.out;
  };
  const ami = (action: AmiPacket, extra: [string, string][] = []): Promise<AmiPacket[]> => amiAction(o.amiPort, o.amiUser, o.amiSecret, action, extra);

  let child: GroupProcess | undefined;

  const stopProcess = async (): Promise<void> => {
    const g = child;
    child = undefined;
    // On SIGTERM Asterisk shuts down within about a second; subscriptions stay persisted in astdb.
    if (g) await stopGroup(g);
  };

  const launch = async (): Promise<void> => {
    const started = Date.now();
    // A stale control socket or pid file from a killed run confuses `asterisk -r`.
    for (const f of ["asterisk.ctl", "asterisk.pid"]) rmSync(path.join(dataDir, "run", f), { force: true });
    const g = spawnInChroot(root, ["asterisk", "-C", confInner, "-f", "-n"], CHROOT_ENV, stdioFile);
    child = g;
    const logs = (): string => `Log ${logFile}:\n${tail(logFile)}\n--- stdio ${stdioFile}:\n${tail(stdioFile, 20)}`;
    let last = "";
    for (;;) {
      const exitInfo = g.exitInfo();
      if (exitInfo) {
        forgetGroup(g);
        throw new Error(`testbed: Asterisk exited during startup (${exitInfo}). ${logs()}`);
      }
      if (Date.now() - started > startTimeoutMs) {
        await stopProcess();
        throw new Error(`testbed: Asterisk not ready after ${startTimeoutMs} ms (last check: ${last}). ${logs()}`);
      }
      const booted = await cliRaw("core waitfullybooted", 5_000);
      if (booted.code === 0 && /fully booted/i.test(booted.out)) {
        const transports = await cliRaw("pjsip show transports", 5_000);
        const bind = `127.0.0.1:${o.sipPort}`;
        const udp = new RegExp(`Transport:\\s+\\S+\\s+udp\\s+\\d+\\s+\\d+\\s+${bind.replace(/\./g, "\\.")}`).test(transports.out);
        const tcp = new RegExp(`Transport:\\s+\\S+\\s+tcp\\s+\\d+\\s+\\d+\\s+${bind.replace(/\./g, "\\.")}`).test(transports.out);
        const amiUp = await tcpListening(o.amiPort);
        if (udp && tcp && amiUp) break;
        last = `transports udp=${udp} tcp=${tcp}, AMI listening=${amiUp}: ${transports.out.trim().split("\n").slice(-4).join(" | ")}`;
      } else {
        last = booted.out.trim() || `exit ${booted.code}`;
      }
      await sleep(100);
    }
    // Every module of modules.conf must be running; name the ones that are not.
    const modules = await cli("module show");
    const missing = modulesFor(o).filter((m) => !new RegExp(`^${m.replace(/\./g, "\\.")}\\s.*\\bRunning\\b`, "m").test(modules));
    if (missing.length) {
      await stopProcess();
      const failed = tail(logFile, 400)
        .split("\n")
        .filter((line) => /(ERROR|WARNING)\[/.test(line) && /(load|module|declin)/i.test(line))
        .slice(-20)
        .join("\n");
      throw new Error(`testbed: Asterisk modules not running: ${missing.join(", ")}\n${failed}\n${logs()}`);
    }
    if (sipTrace) await cli("pjsip set logger on");
  };

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await stopProcess();
    if (bindMounted) unbindAndRemove(root, path.join(root, inner));
    if (ownsDataDir && !opts.keepData) rmSync(dataDir, { recursive: true, force: true });
  };

  const restart = async (): Promise<void> => {
    if (stopped) throw new Error("testbed: restart() after stop()");
    await stopProcess();
    await assertPortsFree(o.sipPort, o.amiPort);
    await launch();
  };

  const waitFor = async (what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (await cond()) return;
      if (Date.now() > until) throw new Error(`testbed: timed out after ${timeoutMs} ms waiting for ${what}. Log ${logFile}:\n${tail(logFile, 30)}`);
      await sleep(50);
    }
  };

  const counts = async (mailbox: string): Promise<MailboxCounts> => {
    const box = bareMailbox(mailbox);
    const msgs = spoolMessages(spoolDir, box, ["INBOX", "Old", "Urgent"]);
    const n = (f: string): number => msgs.filter((m) => m.folder === f).length;
    return { new: n("INBOX") + n("Urgent"), old: n("Old"), urgent: n("Urgent") };
  };

  const knownBox = (box: string): void => {
    if (!o.mailboxes.some((m) => m.mailbox === box)) throw new Error(`testbed: mailbox ${box} is not configured`);
  };

  const leaveVoicemail: RunningAsterisk["leaveVoicemail"] = async (mailbox, callerId, lvOpts = {}) => {
    const box = bareMailbox(mailbox);
    knownBox(box);
    const seconds = lvOpts.seconds ?? 2;
    const before = new Set(spoolMessages(spoolDir, box).map((m) => m.info.msg_id ?? m.txtFile));
    const b64 = (s: string | undefined): string => (s ? Buffer.from(s, "utf8").toString("base64") : "");
    // The calling side plays silence (the core sounds have silence/1..10): with Wait() alone the
    // recording stays empty (duration=0, a 44-byte wav), as a Local channel running Wait sends no frames.
    const chunks: string[] = [];
    for (let left = Math.max(1, Math.round(seconds)); left > 0; left -= 10) chunks.push(`silence/${Math.min(10, left)}`);
    await ami({ Action: "Originate", Channel: `Local/${box}@vm-leave`, Application: "Playback", Data: chunks.join("&"), Timeout: "10000" }, [
      ["Variable", `VM_OPTS=s${lvOpts.urgent ? "U" : ""}`],
      ["Variable", `VM_CID_NUM64=${b64(callerId.number)}`],
      ["Variable", `VM_CID_NAME64=${b64(callerId.name)}`],
      ["Variable", `VM_RDNIS64=${b64(lvOpts.rdnis)}`],
    ]);
    let found: SpoolMsg | undefined;
    await waitFor(
      `a new voicemail in ${box}@${VM_CONTEXT}`,
      () => {
        found = spoolMessages(spoolDir, box, ["INBOX", "Urgent"]).find((m) => !before.has(m.info.msg_id ?? m.txtFile) && "duration" in m.info);
        return found !== undefined;
      },
      seconds * 1000 + 15_000,
    );
    const msg = found!;
    return { folder: msg.folder, txtFile: msg.txtFile, msgId: msg.info.msg_id ?? "", info: msg.info };
  };

  const moveOrRemove = async (mailbox: string, folders: string[], op: (m: SpoolMsg) => string, done: (c: MailboxCounts) => boolean): Promise<void> => {
    const box = bareMailbox(mailbox);
    knownBox(box);
    for (const m of spoolMessages(spoolDir, box, folders)) {
      const id = m.info.msg_id;
      if (!id) throw new Error(`testbed: ${m.txtFile} has no msg_id`);
      const out = await cli(op(m));
      if (/fail|unable|error|not found|no such/i.test(out)) throw new Error(`testbed: ${op(m)}: ${out.trim()}`);
    }
    await waitFor(`the spool of ${box} to change`, async () => done(await counts(box)), 10_000);
  };

  const moveToOld = (mailbox: string): Promise<void> =>
    moveOrRemove(
      mailbox,
      ["INBOX", "Urgent"],
      (m) => `voicemail move ${bareMailbox(mailbox)} ${VM_CONTEXT} ${m.folder} ${m.info.msg_id} Old`,
      (c) => c.new === 0,
    );

  const deleteAll = (mailbox: string): Promise<void> =>
    moveOrRemove(
      mailbox,
      FOLDERS,
      (m) => `voicemail remove ${bareMailbox(mailbox)} ${VM_CONTEXT} ${m.folder} ${m.info.msg_id}`,
      (c) => c.new === 0 && c.old === 0,
    );

  try {
    writeConfigs({ inner, host: dataDir }, o, root);
    await launch();
  } catch (e) {
    // Keep the instance directory for post-mortem; just undo the bind mount.
    stopped = true;
    await stopProcess();
    if (bindMounted) unbindAndRemove(root, path.join(root, inner));
    throw e;
  }

  return {
    sipPort: o.sipPort,
    amiPort: o.amiPort,
    amiUser: o.amiUser,
    amiSecret: o.amiSecret,
    vmContext: VM_CONTEXT,
    dataDir,
    spoolDir,
    logFile,
    cli,
    ami: (action) => ami(action),
    leaveVoicemail,
    moveToOld,
    deleteAll,
    counts,
    inboundSubscriptions: () => cli("pjsip show subscriptions inbound"),
    restart,
    stop,
  };
}

/** Removes leftover default instance directories (from crashed runs) whose Asterisk is gone and that are older than maxAgeMs. */
export function pruneStaleAsteriskDirs(maxAgeMs = 24 * 3600_000): void {
  pruneStaleDirs(path.join(testbedRoot(), INSTANCES_DIR), "ast-", path.join("run", "asterisk.pid"), maxAgeMs);
}
