/**
 * The load run (issue 8, "Tests and proof"): a real user keeps receiving correct MWI while the
 * bridge's ports are under attack from loopback. The world of the e2e tests (Synapse, the bridge
 * as a child process, the test bed's Asterisk) with one webhook system (on the appservice
 * listener), one SIP system over UDP (the user's mailbox 1001 in Asterisk) and one over TCP (its
 * listener only). One user, alice, linked to webhook mailbox 2001 and SIP mailbox 1001.
 *
 * 1. Baseline: a sequence of real MWI changes without load (webhooks signed with the secret,
 *    voicemails left in Asterisk and then deleted), each awaited as the DM's state event.
 * 2. The same sequence while, at the same time:
 *    - TCP connections to the appservice/webhook port and to the SIP TCP port are opened from
 *      other loopback addresses (127.0.0.2..) and left half-open, twice each per-source cap;
 *    - a UDP flood from loopback at the SIP UDP port: junk, and valid-looking SIP requests
 *      (OPTIONS, forged NOTIFYs for mailbox 1001 that claim 99 new messages);
 *    - a webhook flood: bad signatures, huge bodies, well-signed updates for an unlinked mailbox.
 * It prints what was sent, what the user got (each expected state seen, p50/p99 latency of the
 * updates with and without load) and exits 1 when an update was lost or the final state is wrong.
 *
 *   npm run soak                 the fault scenario, then this (SOAK_LOAD=0 skips it)
 *   node dist/bench/load.js      this alone; LOAD_SECONDS (default 60) bounds the load phase,
 *                                LOAD_SOURCES (default 4) the attacking loopback addresses
 */
import dgram from "node:dgram";
import net from "node:net";
import { performance } from "node:perf_hooks";
import { randomBytes } from "node:crypto";

import { MWI_EVENT_TYPE } from "../src/core/events.js";
import { signedHeaders } from "../src/gateway/webhook/signature.js";
import type { RunningAsterisk } from "../test/testbed/asterisk.js";
import type { World, User } from "../test/e2e/world.js";

// The users' SDK logs every /sync hiccup with a stack trace, and reads this when it loads.
process.env.MATRIX_SDK_LOG_LEVEL ??= "silent";
const { freeSipPort, startAsterisk } = await import("../test/testbed/asterisk.js");
const { waitForState } = await import("../test/testbed/matrixClient.js");
const { ensureTestbed, freePort } = await import("../test/testbed/synapse.js");
const { World: WorldClass } = await import("../test/e2e/world.js");

const num = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number >= 0, not ${raw}`);
  return n;
};

const LOAD_SECONDS = num("LOAD_SECONDS", 60);
const SOURCES = Math.max(1, Math.min(200, Math.floor(num("LOAD_SOURCES", 4))));
const SECRET = "load-run-webhook-secret-0123456789abcdef";
const SIP_PASSWORD = "Load-1001-Secret-pw";
const HOOK_BOT = "@vm_hook:localhost";
const OFFICE_BOT = "@vm_office:localhost";
const MAIN_BOT = "@voicemail:localhost";
/** An expected state must be seen within this; later counts as lost. */
const UPDATE_DEADLINE_MS = 45_000;
/** The listener caps the run exceeds (src/gateway/http.ts, src/gateway/sip/settings.ts defaults). */
const HTTP_PER_SOURCE = 64;
const SIP_TCP_PER_SOURCE = 8;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (line: string) => console.log(`load: ${line}`);
const t0 = performance.now();
const progress = (line: string) => console.error(`load … [${((performance.now() - t0) / 1000).toFixed(1)} s] ${line}`);

// ---------------------------------------------------------------- what was sent

const sent = {
  tcp: { http: { attempts: 0, connected: 0, refused: 0, closedByBridge: 0 }, sip: { attempts: 0, connected: 0, refused: 0, closedByBridge: 0 } },
  udp: { junk: 0, options: 0, forgedNotify: 0, errors: 0 },
  webhook: { badSignature: 0, hugeBody: 0, unlinkedMailbox: 0, byStatus: new Map<string, number>() },
};

// ---------------------------------------------------------------- attackers

/** Opens connections from `source` to `port` and leaves them half-open; reopens the ones the bridge closes. */
function halfOpen(kind: "http" | "sip", port: number, source: string, count: number, stop: { done: boolean }, sockets: Set<net.Socket>): void {
  const stats = sent.tcp[kind];
  const open = (): void => {
    if (stop.done) return;
    stats.attempts++;
    const socket = net.connect({ host: "127.0.0.1", port, localAddress: source });
    sockets.add(socket);
    let connected = false;
    socket.on("connect", () => {
      connected = true;
      stats.connected++;
      // A request (or a SIP message) begun and never finished.
      socket.write(kind === "http" ? "POST /webhook/hook HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n" : "NOTIFY sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP ");
    });
    socket.on("error", () => {
      if (!connected) stats.refused++;
    });
    socket.on("close", () => {
      sockets.delete(socket);
      if (connected && !stop.done) stats.closedByBridge++;
      if (!stop.done) setTimeout(open, 200);
    });
  };
  for (let i = 0; i < count; i++) open();
}

function sipRequest(method: string, port: number, source: string, body = ""): Buffer {
  const branch = `z9hG4bK${randomBytes(6).toString("hex")}`;
  return Buffer.from(
    `${method} sip:1001@127.0.0.1:${port} SIP/2.0\r\nVia: SIP/2.0/UDP ${source}:5999;branch=${branch}\r\nMax-Forwards: 70\r\n` +
      `From: <sip:attacker@${source}>;tag=${branch.slice(7)}\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: ${branch}@${source}\r\nCSeq: 1 ${method}\r\n` +
      (method === "NOTIFY" ? "Event: message-summary\r\nSubscription-State: active\r\nContent-Type: application/simple-message-summary\r\n" : "") +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/** Datagrams at the SIP UDP port from every source, ~`perTick` each 10 ms, until stopped. */
async function udpFlood(port: number, sources: string[], stop: { done: boolean }, perTick = 20): Promise<void> {
  const sockets = await Promise.all(
    sources.map(
      (address) =>
        new Promise<dgram.Socket>((resolve, reject) => {
          const s = dgram.createSocket("udp4");
          s.on("error", () => sent.udp.errors++);
          s.bind({ address, port: 0 }, () => resolve(s));
          s.once("error", reject);
        }),
    ),
  );
  const forged = "Messages-Waiting: yes\r\nMessage-Account: sip:1001@127.0.0.1\r\nVoice-Message: 99/99 (9/9)\r\n";
  let i = 0;
  while (!stop.done) {
    for (let k = 0; k < perTick; k++, i++) {
      const s = sockets[i % sockets.length]!;
      const source = sources[i % sources.length]!;
      let data: Buffer;
      if (i % 3 === 0) {
        data = randomBytes(1 + (i % 1400));
        sent.udp.junk++;
      } else if (i % 3 === 1) {
        data = sipRequest("OPTIONS", port, source);
        sent.udp.options++;
      } else {
        data = sipRequest("NOTIFY", port, source, forged);
        sent.udp.forgedNotify++;
      }
      s.send(data, port, "127.0.0.1", (err) => {
        if (err) sent.udp.errors++;
      });
    }
    await sleep(10);
  }
  for (const s of sockets) s.close();
}

/** Webhook requests that must all be refused, `concurrency` at a time from 127.0.0.1, until stopped. */
async function webhookFlood(bridgeUrl: string, stop: { done: boolean }, concurrency = 8): Promise<void> {
  const url = `${bridgeUrl}/webhook/hook`;
  const huge = JSON.stringify({ mailbox: "2001", waiting: true, new: 1, old: 0, pad: "x".repeat(1024 * 1024) });
  const worker = async (w: number): Promise<void> => {
    for (let i = w; !stop.done; i += concurrency) {
      const kind = i % 3;
      let body: string;
      let headers: Record<string, string> = { "content-type": "application/json" };
      if (kind === 0) {
        body = JSON.stringify({ mailbox: "2001", waiting: true, new: 99, old: 99 });
        headers = { ...headers, ...signedHeaders("not-the-secret-not-the-secret-0000", body) };
        sent.webhook.badSignature++;
      } else if (kind === 1) {
        body = huge;
        headers = { ...headers, ...signedHeaders(SECRET, body) };
        sent.webhook.hugeBody++;
      } else {
        body = JSON.stringify({ mailbox: `9${String(i).padStart(6, "0")}`, waiting: true, new: 1, old: 0 });
        headers = { ...headers, ...signedHeaders(SECRET, body) };
        sent.webhook.unlinkedMailbox++;
      }
      let status: string;
      try {
        const res = await fetch(url, { method: "POST", headers, body, signal: AbortSignal.timeout(15_000) });
        await res.arrayBuffer().catch(() => undefined);
        status = String(res.status);
      } catch (err) {
        status = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
      }
      const key = `${["bad signature", "huge body", "unlinked mailbox"][kind]} -> ${status}`;
      sent.webhook.byStatus.set(key, (sent.webhook.byStatus.get(key) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
}

// ---------------------------------------------------------------- the real user's updates

interface Seen {
  what: string;
  ms: number | undefined;
}

const percentile = (values: number[], p: number): number | undefined => {
  if (!values.length) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
};

class Mwi {
  /** The last count sent on the webhook; each update is one more. */
  hookCount = 0;
  webhookRetries = 0;

  constructor(
    private readonly world: World,
    private readonly asterisk: RunningAsterisk,
    private readonly alice: User,
    private readonly hookRoom: string,
    private readonly officeRoom: string,
  ) {}

  private async expect(room: string, key: string, what: string, started: number, ok: (c: Record<string, unknown>) => boolean): Promise<Seen> {
    try {
      await waitForState(this.alice.client, room, MWI_EVENT_TYPE, key, (e) => ok(e.getContent()), UPDATE_DEADLINE_MS);
      return { what, ms: performance.now() - started };
    } catch {
      return { what, ms: undefined };
    }
  }

  /** One signed webhook update (retried as a real sender does while refused for load: 503, resets). */
  async webhook(): Promise<Seen> {
    const count = ++this.hookCount;
    const started = performance.now();
    const body = JSON.stringify({ mailbox: "2001", waiting: true, new: count, old: 0 });
    for (let attempt = 0; performance.now() - started < UPDATE_DEADLINE_MS; attempt++) {
      if (attempt > 0) {
        this.webhookRetries++;
        await sleep(Math.min(2000, 100 * 2 ** attempt));
      }
      try {
        const res = await fetch(`${this.world.bridgeUrl}/webhook/hook`, {
          method: "POST",
          headers: { "content-type": "application/json", ...signedHeaders(SECRET, body, Date.now() - attempt * 1000) },
          body,
          signal: AbortSignal.timeout(10_000),
        });
        await res.text();
        if (res.status === 202) break;
        if (res.status < 500 && res.status !== 429) return { what: `webhook new=${count} (refused ${res.status})`, ms: undefined };
      } catch {
        // connection refused or reset under load: try again
      }
    }
    return this.expect(this.hookRoom, "hook/2001", `webhook new=${count}`, started, (c) => c.new === count && c.waiting === true);
  }

  /** A real voicemail in Asterisk: the NOTIFY must bring the spool's new count. */
  async voicemail(): Promise<Seen> {
    await this.asterisk.leaveVoicemail("1001", { number: "+15551234567" }, { seconds: 1 });
    const started = performance.now();
    const want = (await this.asterisk.counts("1001")).new;
    return this.expect(this.officeRoom, "office/1001", `voicemail new=${want}`, started, (c) => c.new === want);
  }

  async clear(): Promise<Seen> {
    await this.asterisk.deleteAll("1001");
    const started = performance.now();
    return this.expect(this.officeRoom, "office/1001", "voicemail deleted new=0", started, (c) => c.new === 0 && c.waiting === false);
  }

  /** The sequence: webhook, voicemail, webhook, voicemail, webhook, delete; as many rounds as fit. */
  async sequence(untilMs: number, minRounds = 1): Promise<Seen[]> {
    const seen: Seen[] = [];
    for (let round = 0; round < minRounds || performance.now() < untilMs; round++) {
      seen.push(await this.webhook(), await this.voicemail(), await this.webhook(), await this.voicemail(), await this.webhook(), await this.clear());
      progress(`round ${round + 1}: ${seen.slice(-6).map((s) => `${s.what} ${s.ms === undefined ? "LOST" : `${Math.round(s.ms)} ms`}`).join(", ")}`);
      if (seen.some((s) => s.ms === undefined)) break;
    }
    return seen;
  }
}

// ---------------------------------------------------------------- main

export async function runLoad(): Promise<number> {
  const status = await ensureTestbed();
  if (!status.ok) {
    console.error(`load: the test bed is unavailable: ${status.reason}`);
    return 2;
  }
  const sipPort = await freeSipPort();
  const asterisk = await startAsterisk({ sipPort, amiPort: await freePort(), mailboxes: [{ mailbox: "1001", password: SIP_PASSWORD }] });
  const udpLocal = await freeSipPort();
  let tcpLocal = await freeSipPort();
  while (tcpLocal === udpLocal) tcpLocal = await freeSipPort();
  let world: World;
  try {
    world = await WorldClass.create({
      synapsePort: await freePort(),
      bridgePort: await freePort(),
      logLevel: "info",
      systems: [
        { id: "hook", name: "Carrier Voicemail", botLocalpart: "vm_hook", kind: "webhook", webhook: { secret: SECRET } },
        {
          id: "office",
          name: "Office Voicemail",
          botLocalpart: "vm_office",
          kind: "sip",
          sip: { server: { host: "127.0.0.1", port: sipPort, transport: "udp" }, local: { bindAddress: "127.0.0.1", port: udpLocal }, expires: 60 },
        },
        {
          id: "pbx-tcp",
          name: "PBX over TCP",
          botLocalpart: "vm_pbxtcp",
          kind: "sip",
          sip: { server: { host: "127.0.0.1", port: sipPort, transport: "tcp" }, local: { bindAddress: "127.0.0.1", port: tcpLocal }, expires: 60 },
        },
      ],
    });
  } catch (err) {
    await asterisk.stop();
    throw err;
  }
  const stop = { done: false };
  const sockets = new Set<net.Socket>();
  try {
    progress("Synapse, Asterisk and the bridge are up; linking alice");
    const admin = await world.user("admin");
    const adminRoom = await world.openDm(admin, MAIN_BOT);
    const alice = await world.user("alice");
    const linked = await world.command(admin, adminRoom, MAIN_BOT, `!admin link ${alice.userId} hook 2001`);
    if (!/^Linked/.test(String(linked.getContent().body))) throw new Error(`admin link refused: ${linked.getContent().body}`);
    const hookRoom = await world.acceptDmFrom(alice, HOOK_BOT);
    const officeRoom = await world.openDm(alice, OFFICE_BOT);
    const reply = await world.command(alice, officeRoom, OFFICE_BOT, `!link office 1001 --password ${SIP_PASSWORD}`);
    if (!/^Linked/.test(String(reply.getContent().body))) throw new Error(`!link refused: ${reply.getContent().body}`);
    await waitForState(alice.client, officeRoom, MWI_EVENT_TYPE, "office/1001", undefined, 20_000);
    const mwi = new Mwi(world, asterisk, alice, hookRoom, officeRoom);

    progress("baseline: one sequence without load");
    const baseline = await mwi.sequence(0, 1);

    progress(`load for ${LOAD_SECONDS} s from ${SOURCES} loopback source(s)`);
    const sources = Array.from({ length: SOURCES }, (_, i) => `127.0.0.${i + 2}`);
    const bridgePort = Number(new URL(world.bridgeUrl).port);
    for (const source of sources) {
      halfOpen("http", bridgePort, source, 2 * HTTP_PER_SOURCE, stop, sockets);
      halfOpen("sip", tcpLocal, source, 2 * SIP_TCP_PER_SOURCE, stop, sockets);
    }
    const floods = Promise.all([udpFlood(udpLocal, sources, stop), webhookFlood(world.bridgeUrl, stop)]);
    await sleep(2_000); // the connections are up before the first update
    const underLoad = await mwi.sequence(performance.now() + LOAD_SECONDS * 1000 - 2_000, 1);
    stop.done = true;
    const heldAtEnd = sockets.size;
    for (const s of sockets) s.destroy();
    await floods;

    // The user's final state: what was last sent, not the forged 99s.
    await sleep(1_000);
    const state = (room: string, key: string) => alice.client.getRoom(room)?.currentState.getStateEvents(MWI_EVENT_TYPE, key)?.getContent();
    const hookFinal = state(hookRoom, "hook/2001");
    const officeFinal = state(officeRoom, "office/1001");
    const spool = await asterisk.counts("1001");
    const problems: string[] = [];
    if (hookFinal?.new !== mwi.hookCount) problems.push(`webhook mailbox shows new=${String(hookFinal?.new)}, last sent ${mwi.hookCount}`);
    if (officeFinal?.new !== spool.new || officeFinal?.waiting !== spool.new > 0) problems.push(`SIP mailbox shows new=${String(officeFinal?.new)}, Asterisk has ${spool.new}`);
    const lost = [...baseline, ...underLoad].filter((s) => s.ms === undefined);
    for (const s of lost) problems.push(`lost: ${s.what}`);

    const lat = (seen: Seen[]) => {
      const ms = seen.flatMap((s) => (s.ms === undefined ? [] : [s.ms]));
      return `${ms.length}/${seen.length} seen, p50 ${Math.round(percentile(ms, 50) ?? NaN)} ms, p99 ${Math.round(percentile(ms, 99) ?? NaN)} ms`;
    };
    const kinds = (seen: Seen[], re: RegExp) => seen.filter((s) => re.test(s.what));
    log(`sent in ${LOAD_SECONDS} s from ${SOURCES} loopback source(s) (127.0.0.2..):`);
    for (const k of ["http", "sip"] as const) {
      const t = sent.tcp[k];
      log(`  half-open TCP to the ${k === "http" ? "appservice/webhook" : "SIP TCP"} port: ${t.attempts} attempts, ${t.connected} connected, ${t.refused} refused, ${t.closedByBridge} closed by the bridge (per-source cap ${k === "http" ? HTTP_PER_SOURCE : SIP_TCP_PER_SOURCE}, ${2 * (k === "http" ? HTTP_PER_SOURCE : SIP_TCP_PER_SOURCE)} held open per source)`);
    }
    log(`  UDP datagrams to the SIP port: ${sent.udp.junk} junk, ${sent.udp.options} OPTIONS, ${sent.udp.forgedNotify} forged NOTIFYs (99 new), ${sent.udp.errors} send errors`);
    log(`  webhook flood: ${sent.webhook.badSignature} bad signatures, ${sent.webhook.hugeBody} 1 MiB bodies, ${sent.webhook.unlinkedMailbox} signed for unlinked mailboxes`);
    for (const [k, n] of [...sent.webhook.byStatus].sort()) log(`    ${k}: ${n}`);
    log(`  half-open connections held when the load stopped: ${heldAtEnd}`);
    log("what the user got:");
    log(`  without load: ${lat(baseline)} (webhook ${lat(kinds(baseline, /^webhook/))}; SIP ${lat(kinds(baseline, /^voicemail/))})`);
    log(`  under load:   ${lat(underLoad)} (webhook ${lat(kinds(underLoad, /^webhook/))}; SIP ${lat(kinds(underLoad, /^voicemail/))})`);
    log(`  webhook retries by the real sender: ${mwi.webhookRetries}`);
    log(`  final: webhook 2001 new=${String(hookFinal?.new)} (last sent ${mwi.hookCount}); SIP 1001 new=${String(officeFinal?.new)} waiting=${String(officeFinal?.waiting)} (Asterisk ${spool.new})`);
    log(problems.length ? `FAILED: ${problems.join("; ")}` : "every update arrived and the final state is right");
    return problems.length ? 1 : 0;
  } finally {
    stop.done = true;
    for (const s of sockets) s.destroy();
    await world.close();
    await asterisk.stop();
  }
}

// Run directly (node dist/bench/load.js), not when soak.ts imports it.
if (import.meta.url === `file://${process.argv[1]}`) {
  runLoad().then(
    (code) => process.exit(code),
    (err: Error) => {
      console.error(`load: ${err.stack ?? err.message}`);
      process.exit(2);
    },
  );
}
