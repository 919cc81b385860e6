// Proves the Asterisk harness against the REAL Asterisk of the testbed tree, with a minimal raw
// SIP client (UDP) and a raw AMI client written here: RFC 3842 SUBSCRIBE with digest auth, MWI
// NOTIFYs after real voicemails, persisted subscriptions across a restart, unsubscribe, wrong
// password, unsolicited MWI, AMI MailboxCount.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { freePort } from "../testbed/synapse.js";
import { freeSipPort, startAsterisk, type RunningAsterisk } from "../testbed/asterisk.js";
import { requireTestbed } from "./world.js";

// ---------------------------------------------------------------------------------------------
// A minimal SIP user agent over UDP

interface SipMessage {
  raw: string;
  /** Set for requests. */
  method?: string;
  requestUri?: string;
  /** Set for responses. */
  status?: number;
  reason?: string;
  headers: [string, string][];
  body: string;
  from: string;
  port: number;
  /** Date.now() at reception. */
  at: number;
}

const COMPACT: Record<string, string> = { v: "via", f: "from", t: "to", i: "call-id", m: "contact", l: "content-length", c: "content-type", o: "event", k: "supported" };

function parseSip(raw: string, from: string, port: number): SipMessage {
  const sep = raw.indexOf("\r\n\r\n");
  const head = sep >= 0 ? raw.slice(0, sep) : raw;
  const body = sep >= 0 ? raw.slice(sep + 4) : "";
  const lines = head.split("\r\n");
  const start = lines.shift() ?? "";
  const headers: [string, string][] = [];
  for (const line of lines) {
    if (/^[ \t]/.test(line) && headers.length) {
      headers[headers.length - 1]![1] += " " + line.trim();
      continue;
    }
    const i = line.indexOf(":");
    if (i <= 0) continue;
    const name = line.slice(0, i).trim().toLowerCase();
    headers.push([COMPACT[name] ?? name, line.slice(i + 1).trim()]);
  }
  const msg: SipMessage = { raw, headers, body, from, port, at: Date.now() };
  const resp = /^SIP\/2\.0 (\d{3}) ?(.*)$/.exec(start);
  if (resp) {
    msg.status = Number(resp[1]);
    msg.reason = resp[2];
  } else {
    const [method, uri] = start.split(" ");
    msg.method = method;
    msg.requestUri = uri;
  }
  return msg;
}

function hdr(m: SipMessage, name: string): string | undefined {
  return m.headers.find(([n]) => n === name.toLowerCase())?.[1];
}

function hdrAll(m: SipMessage, name: string): string[] {
  return m.headers.filter(([n]) => n === name.toLowerCase()).map(([, v]) => v);
}

function tagOf(headerValue: string | undefined): string | undefined {
  return /;\s*tag=([^;>\s]+)/i.exec(headerValue ?? "")?.[1];
}

function md5(s: string): string {
  return createHash("md5").update(s).digest("hex");
}

function rand(n = 8): string {
  return randomBytes(n).toString("hex");
}

/** Parses one `Digest k=v, k="v"` challenge. */
function parseChallenge(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([a-zA-Z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]+))/g;
  for (const m of value.replace(/^\s*Digest\s+/i, "").matchAll(re)) out[m[1]!.toLowerCase()] = m[2] ?? m[3] ?? "";
  return out;
}

function digestAuthorization(challengeHeaders: string[], method: string, uri: string, user: string, password: string): string {
  const md5Challenges = challengeHeaders.filter((h) => /^\s*Digest/i.test(h)).map(parseChallenge).filter((c) => !c.algorithm || /^md5$/i.test(c.algorithm));
  const c = md5Challenges[0];
  if (!c) throw new Error(`no MD5 digest challenge in ${JSON.stringify(challengeHeaders)}`);
  const ha1 = md5(`${user}:${c.realm}:${password}`);
  const ha2 = md5(`${method}:${uri}`);
  const parts = [`username="${user}"`, `realm="${c.realm}"`, `nonce="${c.nonce}"`, `uri="${uri}"`, "algorithm=MD5"];
  if (c.qop && c.qop.split(",").map((q) => q.trim()).includes("auth")) {
    const cnonce = rand(8);
    const nc = "00000001";
    parts.push(`response="${md5(`${ha1}:${c.nonce}:${nc}:${cnonce}:auth:${ha2}`)}"`, "qop=auth", `nc=${nc}`, `cnonce="${cnonce}"`);
  } else {
    parts.push(`response="${md5(`${ha1}:${c.nonce}:${ha2}`)}"`);
  }
  if (c.opaque !== undefined) parts.push(`opaque="${c.opaque}"`);
  return "Digest " + parts.join(", ");
}

class SipUa {
  readonly sock: UdpSocket;
  port = 0;
  /** Every message received, in order (for the report). */
  readonly log: SipMessage[] = [];
  private queue: SipMessage[] = [];
  private waiters: { pred: (m: SipMessage) => boolean; resolve: (m: SipMessage) => void }[] = [];

  constructor(readonly name: string) {
    this.sock = createSocket("udp4");
    this.sock.on("message", (buf, rinfo) => this.onMessage(parseSip(buf.toString("utf8"), rinfo.address, rinfo.port)));
  }

  async open(): Promise<void> {
    await new Promise<void>((resolve) => this.sock.bind(0, "127.0.0.1", resolve));
    this.port = this.sock.address().port;
  }

  close(): void {
    this.sock.close();
  }

  send(text: string, port: number): void {
    this.sock.send(Buffer.from(text, "utf8"), port, "127.0.0.1");
  }

  private onMessage(m: SipMessage): void {
    this.log.push(m);
    // Every NOTIFY gets a 200 at once (RFC 6665 wants a quick answer).
    if (m.method === "NOTIFY") {
      const copy = ["via", "from", "to", "call-id", "cseq"].flatMap((n) => hdrAll(m, n).map((v) => `${n === "call-id" ? "Call-ID" : n === "cseq" ? "CSeq" : n[0]!.toUpperCase() + n.slice(1)}: ${v}`));
      const to = hdr(m, "to") ?? "";
      const toLine = tagOf(to) ? [] : [`To: ${to};tag=${rand(4)}`];
      const lines = copy.filter((l) => !(toLine.length && l.startsWith("To:")));
      this.send(["SIP/2.0 200 OK", ...lines, ...toLine, "Content-Length: 0", "", ""].join("\r\n"), m.port);
    }
    const i = this.waiters.findIndex((w) => w.pred(m));
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1);
      w!.resolve(m);
    } else {
      this.queue.push(m);
    }
  }

  /** The next message (queued or future) matching pred. */
  next(what: string, pred: (m: SipMessage) => boolean, timeoutMs = 10_000): Promise<SipMessage> {
    const i = this.queue.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0]!);
    return new Promise<SipMessage>((resolve, reject) => {
      const waiter = {
        pred,
        resolve: (m: SipMessage) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms; received so far:\n${this.log.map((m) => m.raw.split("\r\n")[0]).join("\n")}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Messages matching pred that are waiting in the queue (removed). */
  drain(pred: (m: SipMessage) => boolean): SipMessage[] {
    const out = this.queue.filter(pred);
    this.queue = this.queue.filter((m) => !pred(m));
    return out;
  }
}

/** One RFC 6665 subscription dialog to message-summary. */
class MwiSubscription {
  readonly callId = `${rand(10)}@127.0.0.1`;
  readonly fromTag = rand(6);
  cseq = 0;
  toTag: string | undefined;
  remoteTarget: string;
  routeSet: string[] = [];

  constructor(
    readonly ua: SipUa,
    readonly serverPort: number,
    readonly mailbox: string,
    readonly authUser: string,
    public password: string,
  ) {
    this.remoteTarget = `sip:${mailbox}@127.0.0.1:${serverPort}`;
  }

  private request(expires: number, authorization?: string): { text: string; cseq: number } {
    const cseq = ++this.cseq;
    const branch = `z9hG4bK${rand(8)}`;
    const text = [
      `SUBSCRIBE ${this.remoteTarget} SIP/2.0`,
      `Via: SIP/2.0/UDP 127.0.0.1:${this.ua.port};branch=${branch};rport`,
      "Max-Forwards: 70",
      `From: <sip:${this.mailbox}@127.0.0.1>;tag=${this.fromTag}`,
      `To: <sip:${this.mailbox}@127.0.0.1>${this.toTag ? `;tag=${this.toTag}` : ""}`,
      `Call-ID: ${this.callId}`,
      `CSeq: ${cseq} SUBSCRIBE`,
      ...this.routeSet.map((r) => `Route: ${r}`),
      `Contact: <sip:${this.mailbox}@127.0.0.1:${this.ua.port}>`,
      "Event: message-summary",
      "Accept: application/simple-message-summary",
      `Expires: ${expires}`,
      ...(authorization ? [`Authorization: ${authorization}`] : []),
      "User-Agent: asterisk-harness-test",
      "Content-Length: 0",
      "",
      "",
    ].join("\r\n");
    return { text, cseq };
  }

  private async transact(expires: number, authorization?: string): Promise<SipMessage> {
    const { text, cseq } = this.request(expires, authorization);
    this.ua.send(text, this.serverPort);
    return await this.ua.next(
      `final response to SUBSCRIBE CSeq ${cseq}`,
      (m) => m.status !== undefined && m.status >= 200 && hdr(m, "call-id") === this.callId && hdr(m, "cseq") === `${cseq} SUBSCRIBE`,
    );
  }

  /**
   * Sends SUBSCRIBE; on 401/407 answers the challenge once with `password` (or `wrongPassword`).
   * Returns the first and the final response.
   */
  async subscribe(expires: number, wrongPassword?: string): Promise<{ first: SipMessage; final: SipMessage }> {
    const first = await this.transact(expires);
    let final = first;
    if (first.status === 401 || first.status === 407) {
      const challenges = hdrAll(first, first.status === 401 ? "www-authenticate" : "proxy-authenticate");
      const auth = digestAuthorization(challenges, "SUBSCRIBE", this.remoteTarget, this.authUser, wrongPassword ?? this.password);
      final = await this.transact(expires, auth);
    }
    if (final.status === 200 || final.status === 202) {
      if (!this.toTag) {
        this.toTag = tagOf(hdr(final, "to"));
        const contact = /<([^>]+)>/.exec(hdr(final, "contact") ?? "")?.[1];
        if (contact) this.remoteTarget = contact;
        this.routeSet = hdrAll(final, "record-route").reverse();
      }
    }
    return { first, final };
  }

  nextNotify(what: string, timeoutMs = 10_000): Promise<SipMessage> {
    return this.ua.next(`NOTIFY (${what})`, (m) => m.method === "NOTIFY" && hdr(m, "call-id") === this.callId, timeoutMs);
  }
}

/** Waits for a NOTIFY in the dialog whose body matches, skipping older ones (which are returned too). */
async function notifyMatching(sub: MwiSubscription, what: string, re: RegExp, timeoutMs = 15_000): Promise<{ match: SipMessage; skipped: SipMessage[] }> {
  const until = Date.now() + timeoutMs;
  const skipped: SipMessage[] = [];
  for (;;) {
    const n = await sub.nextNotify(what, Math.max(1, until - Date.now()));
    if (re.test(n.body)) return { match: n, skipped };
    skipped.push(n);
  }
}

// ---------------------------------------------------------------------------------------------
// A raw AMI client

async function amiSession(port: number, user: string, secret: string, actions: Record<string, string>[]): Promise<{ greeting: string; packets: Record<string, string>[] }> {
  return await new Promise((resolve, reject) => {
    const sock = connect({ host: "127.0.0.1", port });
    sock.setEncoding("utf8");
    let buf = "";
    let greeting = "";
    const packets: Record<string, string>[] = [];
    const want = new Set(actions.map((_, i) => `t${i}`));
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`AMI: timeout; got ${JSON.stringify(packets)}`));
    }, 10_000);
    sock.on("error", reject);
    sock.on("data", (chunk: string) => {
      buf += chunk;
      if (!greeting) {
        const nl = buf.indexOf("\r\n");
        if (nl < 0) return;
        greeting = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        const all = [{ Action: "Login", Username: user, Secret: secret, Events: "off" }, ...actions];
        sock.write(all.map((a, i) => Object.entries({ ...a, ActionID: i === 0 ? "login" : `t${i - 1}` }).map(([k, v]) => `${k}: ${v}\r\n`).join("") + "\r\n").join(""));
      }
      let end: number;
      while ((end = buf.indexOf("\r\n\r\n")) >= 0) {
        const p: Record<string, string> = {};
        for (const line of buf.slice(0, end).split("\r\n")) {
          const i = line.indexOf(": ");
          if (i > 0) p[line.slice(0, i)] = line.slice(i + 2);
        }
        buf = buf.slice(end + 4);
        packets.push(p);
        if (p.ActionID) want.delete(p.ActionID);
        if (want.size === 0) {
          clearTimeout(timer);
          sock.end("Action: Logoff\r\n\r\n");
          resolve({ greeting, packets });
          return;
        }
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------

test("asterisk harness: MWI SUBSCRIBE/NOTIFY, real voicemail, restart, AMI", { timeout: 300_000 }, async (t) => {
  if (!(await requireTestbed(t))) return;

  const tStart = Date.now();
  const mark = (what: string): void => t.diagnostic(`+${Date.now() - tStart} ms: ${what}`);
  const ua = new SipUa("ua");
  const unsolUa = new SipUa("unsolicited-ua");
  await ua.open();
  await unsolUa.open();
  let ast: RunningAsterisk | undefined;
  const show = (m: SipMessage): string => m.raw.replace(/\r\n/g, "\n");
  const diag = (title: string, text: string): void => {
    t.diagnostic(`${title}:`);
    for (const line of text.trimEnd().split(/\r?\n/)) t.diagnostic(`  | ${line}`);
  };
  try {
    const sipPort = await freeSipPort();
    const amiPort = await freePort();
    let t0 = Date.now();
    ast = await startAsterisk({
      sipPort,
      amiPort,
      mailboxes: [
        { mailbox: "1001", password: "pw-1001-secret", vmPin: "4321" },
        { mailbox: "1002", password: "pw-1002-secret", authUser: "alice" },
      ],
      unsolicitedMwiTo: [{ mailbox: "1002", contact: `sip:1002@127.0.0.1:${unsolUa.port}` }],
    });
    t.diagnostic(`asterisk ready in ${Date.now() - t0} ms (SIP ${sipPort}, AMI ${amiPort}, log ${ast.logFile})`);

    // A port already in use fails clearly before anything starts.
    await assert.rejects(startAsterisk({ sipPort, amiPort: await freePort(), mailboxes: [{ mailbox: "1001", password: "x" }] }), /port\(s\) in use.*SIP port/);

    // --- SUBSCRIBE with digest auth: 401, then 200 and a first NOTIFY "no".
    const sub = new MwiSubscription(ua, sipPort, "1001", "1001", "pw-1001-secret");
    const { first, final } = await sub.subscribe(120);
    assert.equal(first.status, 401, show(first));
    assert.ok(hdrAll(first, "www-authenticate").some((h) => /nonce=/.test(h)), show(first));
    assert.equal(final.status, 200, show(final));
    t.diagnostic(`401 challenge: ${hdrAll(first, "www-authenticate").join(" | ")}`);
    t.diagnostic(`200 to SUBSCRIBE: Expires: ${hdr(final, "expires")}, Contact: ${hdr(final, "contact")}`);
    assert.ok(sub.toTag, "200 has a To tag");
    const n0 = await sub.nextNotify("initial");
    diag(`initial NOTIFY`, show(n0));
    assert.match(hdr(n0, "event") ?? "", /message-summary/);
    assert.match(hdr(n0, "content-type") ?? "", /application\/simple-message-summary/);
    assert.match(hdr(n0, "subscription-state") ?? "", /^active/);
    assert.match(n0.body, /^Messages-Waiting: no\r?$/m);
    assert.match(n0.body, /Voice-Message: 0\/0/);

    // --- a real voicemail: NOTIFY yes 1/0, spool file with the caller ID.
    t0 = Date.now();
    const left = await ast.leaveVoicemail("1001", { number: "+15551234567" });
    t.diagnostic(`leaveVoicemail (default 2 s) took ${Date.now() - t0} ms`);
    const { match: n1, skipped: s1 } = await notifyMatching(sub, "after voicemail", /Messages-Waiting: yes/);
    diag(`NOTIFY after leaveVoicemail`, n1.body);
    assert.equal(s1.length, 0, `no NOTIFY before the one with yes: ${s1.map((n) => n.body).join("|")}`);
    assert.match(n1.body, /^Voice-Message: 1\/0\b/m);
    assert.match(left.txtFile, /\/INBOX\/msg0000\.txt$/);
    const txt = readFileSync(`${ast.spoolDir}/default/1001/INBOX/msg0000.txt`, "utf8");
    diag(`msg0000.txt`, txt);
    assert.match(txt, /^callerid=.*\+15551234567/m);
    assert.match(txt, /^origmailbox=1001$/m);
    assert.deepEqual(await ast.counts("1001"), { new: 1, old: 0, urgent: 0 });

    // --- moveToOld: NOTIFY 0/1.
    t0 = Date.now();
    await ast.moveToOld("1001");
    const { match: n2 } = await notifyMatching(sub, "after moveToOld", /Voice-Message: 0\/1\b/);
    diag(`moveToOld + NOTIFY took ${Date.now() - t0} ms, NOTIFY body`, n2.body);
    assert.match(n2.body, /^Messages-Waiting: no\r?$/m);
    assert.deepEqual(await ast.counts("1001"), { new: 0, old: 1, urgent: 0 });

    // --- urgent voicemail with a caller name and a redirecting number (DNIS).
    mark("urgent voicemail begins");
    t0 = Date.now();
    const urgent = await ast.leaveVoicemail("1001", { name: "Bob, Jr.", number: "+15550001111" }, { urgent: true, seconds: 3, rdnis: "+15557654321" });
    t.diagnostic(`urgent leaveVoicemail (3 s) took ${Date.now() - t0} ms; ${urgent.txtFile}`);
    assert.equal(urgent.folder, "Urgent");
    assert.equal(urgent.info.callerid, '"Bob, Jr." <+15550001111>');
    assert.equal(urgent.info.rdnis, "+15557654321");
    assert.equal(urgent.info.exten, "1001");
    assert.ok(Number(urgent.info.duration) >= 1, `duration ${urgent.info.duration}`);
    const { match: n3 } = await notifyMatching(sub, "after urgent voicemail", /Messages-Waiting: yes/);
    diag(`NOTIFY after urgent voicemail`, n3.body);
    // res_pjsip_mwi_body_generator always writes "(0/0)": urgent counts never reach SIP subscribers.
    assert.match(n3.body, /^Voice-Message: 1\/1 \(0\/0\)\r?$/m);
    assert.deepEqual(await ast.counts("1001"), { new: 1, old: 1, urgent: 1 });

    mark("AMI begins");
    // --- AMI by hand: Login, MailboxCount (replies UrgMessages, not UrgentMessages as documented), MailboxStatus.
    const session = await amiSession(amiPort, ast.amiUser, ast.amiSecret, [
      { Action: "MailboxCount", Mailbox: "1001@default" },
      { Action: "MailboxStatus", Mailbox: "1001@default" },
    ]);
    const login = session.packets.find((p) => p.ActionID === "login");
    const count = session.packets.find((p) => p.ActionID === "t0");
    const mstatus = session.packets.find((p) => p.ActionID === "t1");
    t.diagnostic(`AMI greeting ${JSON.stringify(session.greeting)}; MailboxCount ${JSON.stringify(count)}; MailboxStatus ${JSON.stringify(mstatus)}`);
    assert.equal(login?.Response, "Success");
    assert.equal(count?.Response, "Success");
    assert.equal(count?.UrgMessages, "1");
    assert.equal(count?.UrgentMessages, undefined);
    assert.equal(count?.NewMessages, "0", "MailboxCount's NewMessages leaves the urgent message out");
    assert.equal(count?.OldMessages, "1");
    assert.equal(mstatus?.Response, "Success");

    // --- the subscription is listed.
    const subs = await ast.inboundSubscriptions();
    diag(`pjsip show subscriptions inbound`, subs);
    assert.match(subs, /1001/);
    assert.match(subs, /message-summary/);

    mark("unsolicited part begins");
    // --- unsolicited MWI for 1002 (static contact, no subscription).
    const unsol = await unsolUa.next("unsolicited NOTIFY", (m) => m.method === "NOTIFY", 15_000);
    diag(`first unsolicited NOTIFY`, show(unsol));
    await ast.leaveVoicemail("1002", { number: "+15559998888" }, { seconds: 1 });
    const unsolYes = await unsolUa.next("unsolicited NOTIFY yes", (m) => m.method === "NOTIFY" && /Messages-Waiting: yes/.test(m.body), 15_000);
    diag(`unsolicited NOTIFY after voicemail`, show(unsolYes));
    assert.match(unsolYes.body, /Voice-Message: 1\/0/);

    mark("1002 subscription begins");
    // --- 1002 authenticates with its authUser "alice".
    const sub2 = new MwiSubscription(ua, sipPort, "1002", "alice", "pw-1002-secret");
    const r2 = await sub2.subscribe(120);
    assert.equal(r2.final.status, 200, show(r2.final));
    const n2a = await sub2.nextNotify("1002 initial");
    assert.match(n2a.body, /Messages-Waiting: yes/);
    assert.match(n2a.body, /Voice-Message: 1\/0/);
    const un2 = await sub2.subscribe(0);
    assert.equal(un2.final.status, 200, show(un2.final));

    // --- restart: same spool; the subscription was persisted in astdb.
    ua.drain(() => true);
    mark("restart begins");
    t0 = Date.now();
    await ast.restart();
    mark("restart done");
    t.diagnostic(`asterisk restarted in ${Date.now() - t0} ms`);
    assert.deepEqual(await ast.counts("1001"), { new: 1, old: 1, urgent: 1 });
    // Asterisk recreates the subscription from astdb and sends a NOTIFY in the old dialog at boot.
    const afterRestart = await sub.nextNotify("after restart", 5_000);
    diag(`NOTIFY after restart (persisted subscription)`, show(afterRestart));
    assert.match(hdr(afterRestart, "subscription-state") ?? "", /^active/);
    assert.match(afterRestart.body, /Voice-Message: 1\/1/);
    const subsAfter = await ast.inboundSubscriptions();
    diag(`subscriptions after restart`, subsAfter);
    assert.match(subsAfter, new RegExp(sub.callId.replace(/\./g, "\\.")));

    // --- refresh in the dialog, then unsubscribe with Expires: 0.
    const refresh = await sub.subscribe(120);
    t.diagnostic(`in-dialog refresh after restart: ${refresh.first.status}${refresh.first !== refresh.final ? ` then ${refresh.final.status}` : ""}, Expires: ${hdr(refresh.final, "expires")}`);
    assert.equal(refresh.final.status, 200, show(refresh.final));
    const refreshNotify = await sub.nextNotify("after refresh");
    diag("NOTIFY after the refresh", show(refreshNotify));
    assert.match(hdr(refreshNotify, "subscription-state") ?? "", /^active/);
    const unsub = await sub.subscribe(0);
    t.diagnostic(`unsubscribe: ${unsub.first.status}${unsub.first !== unsub.final ? ` then ${unsub.final.status}` : ""}, Expires: ${hdr(unsub.final, "expires")}`);
    assert.equal(unsub.final.status, 200, show(unsub.final));
    const term = await sub.ua.next("terminated NOTIFY", (m) => m.method === "NOTIFY" && hdr(m, "call-id") === sub.callId && /^terminated/i.test(hdr(m, "subscription-state") ?? ""));
    diag("NOTIFY after Expires: 0", show(term));
    let listed = await ast.inboundSubscriptions();
    for (let i = 0; i < 20 && /1001/.test(listed); i++) {
      await new Promise((r) => setTimeout(r, 100));
      listed = await ast.inboundSubscriptions();
    }
    diag(`subscriptions after unsubscribe`, listed);
    assert.doesNotMatch(listed, /1001/);

    t.diagnostic("every NOTIFY of the 1001 dialog (CSeq, Subscription-State, Voice-Message):");
    const dialogNotifies = ua.log.filter((m) => m.method === "NOTIFY" && hdr(m, "call-id") === sub.callId);
    for (const m of dialogNotifies) {
      t.diagnostic(`  +${m.at - tStart} ms | ${hdr(m, "cseq")} | ${hdr(m, "subscription-state")} | ${/Voice-Message: .*/.exec(m.body)?.[0] ?? ""}`);
    }
    // One NOTIFY per change (pollmailboxes is off by default; with it on, Asterisk repeats some).
    assert.deepEqual(
      dialogNotifies.map((m) => `${(hdr(m, "subscription-state") ?? "").replace(/;.*/, "")} ${/Voice-Message: (\S+)/.exec(m.body)?.[1]}`),
      ["active 0/0", "active 1/0", "active 0/1", "active 1/1", "active 1/1", "active 1/1", "terminated 1/1"],
      "initial, voicemail, moveToOld, urgent voicemail, restart, refresh, unsubscribe",
    );
    const cseqs = dialogNotifies.map((m) => Number.parseInt(hdr(m, "cseq") ?? "", 10));
    assert.ok(cseqs.every((c, i) => i === 0 || c === cseqs[i - 1]! + 1), `NOTIFY CSeqs go on across the restart: ${cseqs.join(",")}`);

    // --- wrong password: challenged again.
    const bad = new MwiSubscription(ua, sipPort, "1001", "1001", "pw-1001-secret");
    const badResult = await bad.subscribe(120, "not-the-password");
    t.diagnostic(`wrong password: ${badResult.first.status} then ${badResult.final.status}: ${hdrAll(badResult.final, "www-authenticate").join(" | ")}`);
    assert.equal(badResult.first.status, 401);
    assert.equal(badResult.final.status, 401, show(badResult.final));
    assert.ok(hdrAll(badResult.final, "www-authenticate").length > 0, "second challenge");

    // --- an expiry below sub_min_expiry (60) is refused with 423.
    const brief = new MwiSubscription(ua, sipPort, "1001", "1001", "pw-1001-secret");
    const briefResult = await brief.subscribe(30);
    t.diagnostic(`Expires: 30: ${briefResult.first.status} then ${briefResult.final.status} ${briefResult.final.reason}, Min-Expires: ${hdr(briefResult.final, "min-expires")}`);
    diag("423 to Expires: 30", show(briefResult.final));
    assert.equal(briefResult.final.status, 423, show(briefResult.final));
    // Asterisk 22 leaves out Min-Expires (RFC 3261 21.4.17 requires it): a client has to guess.
    assert.equal(hdr(briefResult.final, "min-expires"), undefined);

    // --- deleteAll empties the mailbox.
    await ast.deleteAll("1001");
    assert.deepEqual(await ast.counts("1001"), { new: 0, old: 0, urgent: 0 });
  } finally {
    ua.close();
    unsolUa.close();
    if (ast) {
      const t1 = Date.now();
      await ast.stop();
      t.diagnostic(`asterisk stopped in ${Date.now() - t1} ms`);
    }
  }
});
