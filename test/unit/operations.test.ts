/**
 * Operations: the Prometheus figures (names, labels, no user IDs or mailbox numbers in any
 * label), the gauges read on scrape, /ready's logic, and the bridge info state event (MSC2346)
 * in new and existing DMs, once.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { PrometheusMetrics } from "matrix-appservice-bridge";
import { Registry } from "prom-client";
import { addScrapeGauges, createMetrics, type VoicemailMetrics } from "../../src/util/metrics.js";
import { readiness, readinessAnswer, ReadinessState, serveHealth } from "../../src/app/readiness.js";
import { BRIDGE_INFO_EVENT_TYPES, bridgeInfoContent, bridgeInfoStateKey } from "../../src/matrix/bridgeInfo.js";
import type { Bot } from "../../src/matrix/bots.js";
import type { SystemConfig } from "../../src/config/types.js";
import { Logger } from "matrix-appservice-bridge";
import { AmiGateway } from "../../src/gateway/ami/amiGateway.js";
import { FakeAmi, until } from "./amiServer.js";
import { SipGateway } from "../../src/gateway/sip/sipGateway.js";
import { ImapGateway } from "../../src/gateway/imap/imapGateway.js";
import { DEFAULT_RULES } from "../../src/gateway/imap/settings.js";
import type { SipSystemConfig } from "../../src/config/types.js";
import { CARRIER_BOT, FakeBridge, MAIN_BOT, QUICK, type FakeRequest } from "./fakeMatrix.js";

const ALICE = "@alice:localhost";

/** The exposition text as /metrics serves it (collectors run first). */
async function scrape(prometheus: PrometheusMetrics): Promise<string> {
  const inside = prometheus as unknown as { refresh(): Promise<void>; register: { metrics(): Promise<string> } };
  await inside.refresh();
  return inside.register.metrics();
}

/** Every label value of every sample in an exposition text. */
function labelValues(text: string): string[] {
  const values: string[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    for (const m of line.matchAll(/[a-z_]+="((?:[^"\\]|\\.)*)"/g)) values.push(m[1]!);
  }
  return values;
}

let bridge: FakeBridge | undefined;
afterEach(async () => {
  await bridge?.stop();
  bridge = undefined;
});

describe("metrics", () => {
  it("a delivery is counted under the documented names; no label carries a user ID, a room or a mailbox", async () => {
    const prometheus = new PrometheusMetrics(new Registry());
    const metrics = createMetrics(prometheus);
    addScrapeGauges(prometheus, { outbox: async () => ({ depth: 0 }), systems: () => [] });
    const b = (bridge = new FakeBridge(QUICK, {}, metrics));
    await b.start();
    await b.link(ALICE, "5551234");
    await b.mwi("5551234", 0);
    const room = await b.accept(ALICE);
    await b.mwi("5551234", 1);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "delivered");
    metrics.commands.inc({ command: "list", outcome: "ok" });
    metrics.updatesReceived.inc({ system: "carrier", kind: "webhook" });
    const text = await scrape(prometheus);
    for (const name of [
      "bridge_voicemail_updates_received_total",
      "bridge_voicemail_mwi_updates_total",
      "bridge_voicemail_notifications_total",
      "bridge_voicemail_delivery_failures_total",
      "bridge_voicemail_commands_total",
      "bridge_voicemail_outbox_entries",
      "bridge_voicemail_outbox_oldest_age_seconds",
      "bridge_voicemail_system_connections",
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, "m"), name);
    }
    assert.match(text, /^bridge_voicemail_notifications_total\{outcome="delivered"\} [1-9]/m);
    assert.match(text, /^bridge_voicemail_mwi_updates_total\{system="carrier",changed="true"\} 2$/m);
    assert.match(text, /^bridge_voicemail_updates_received_total\{system="carrier",kind="webhook"\} 1$/m);
    assert.match(text, /^bridge_voicemail_commands_total\{command="list",outcome="ok"\} 1$/m);
    const values = labelValues(text);
    assert.ok(values.length > 5, "labels were read");
    for (const v of values) {
      assert.ok(!v.includes("@") && !v.includes("!") && !v.includes("5551234"), `label value ${JSON.stringify(v)} names a user, room or mailbox`);
    }
    assert.ok(!text.includes(ALICE) && !text.includes(room) && !text.includes("5551234"));
  });

  it("a homeserver refusal counts as a failure that is retried, then as delivered", async () => {
    const prometheus = new PrometheusMetrics(new Registry());
    const metrics: VoicemailMetrics = createMetrics(prometheus);
    const b = (bridge = new FakeBridge(QUICK, {}, metrics));
    await b.start();
    await b.link(ALICE);
    await b.mwi("1001", 0);
    await b.accept(ALICE);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "first state");
    b.hs.failNext((r: FakeRequest) => r.op === "send" && r.as === CARRIER_BOT, "502");
    await b.mwi("1001", 1);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "delivered");
    const text = await scrape(prometheus);
    assert.match(text, /^bridge_voicemail_delivery_failures_total\{kind="retry"\} 1$/m);
  });

  it("the outbox gauges and each system's connections are read on scrape; a state that emptied reads nothing", async () => {
    const prometheus = new PrometheusMetrics(new Registry());
    let outbox: { depth: number; oldestCreatedAt?: number } = { depth: 3, oldestCreatedAt: 10_000 };
    let status: Record<string, number> = { active: 2, pending: 1 };
    addScrapeGauges(prometheus, {
      outbox: async () => outbox,
      systems: () => [
        { systemId: "pbx", kind: "sip", status },
        { systemId: "carrier", kind: "webhook" },
      ],
      now: () => 70_000,
    });
    let text = await scrape(prometheus);
    assert.match(text, /^bridge_voicemail_outbox_entries 3$/m);
    assert.match(text, /^bridge_voicemail_outbox_oldest_age_seconds 60$/m);
    assert.match(text, /^bridge_voicemail_system_connections\{system="pbx",kind="sip",state="active"\} 2$/m);
    assert.match(text, /^bridge_voicemail_system_connections\{system="pbx",kind="sip",state="pending"\} 1$/m);
    outbox = { depth: 0 };
    status = { active: 3 };
    text = await scrape(prometheus);
    assert.match(text, /^bridge_voicemail_outbox_entries 0$/m);
    assert.match(text, /^bridge_voicemail_outbox_oldest_age_seconds 0$/m);
    assert.match(text, /^bridge_voicemail_system_connections\{system="pbx",kind="sip",state="active"\} 3$/m);
    assert.doesNotMatch(text, /state="pending"/);
  });
});

describe("gateway status for the connections gauge", () => {
  it("AMI: retrying while the PBX is away, connected once logged in, retrying again when it goes", async () => {
    const ami = await FakeAmi.start();
    const port = ami.port;
    await ami.close();
    const gateway = new AmiGateway(
      { id: "pbx", kind: "ami", ami: { host: "127.0.0.1", port, username: "bridge", secret: "s3cret", context: "default", keepAliveSeconds: 30, actionTimeoutSeconds: 2, resync: { concurrency: 2, perSecond: 100 } } },
      { acceptUpdate: async () => undefined, log: new Logger("test") },
    );
    const up = await FakeAmi.start();
    try {
      await gateway.start();
      assert.deepEqual(gateway.status(), { connected: 0, retrying: 1 });
      await gateway.stop();
      const live = new AmiGateway(
        { id: "pbx", kind: "ami", ami: { host: "127.0.0.1", port: up.port, username: "bridge", secret: "s3cret", context: "default", keepAliveSeconds: 30, actionTimeoutSeconds: 2, resync: { concurrency: 2, perSecond: 100 } } },
        { acceptUpdate: async () => undefined, log: new Logger("test") },
      );
      await live.start();
      await until("connected", () => live.status().connected === 1);
      await up.close();
      await until("retrying", () => live.status().retrying === 1);
      await live.stop();
    } finally {
      await up.close().catch(() => undefined);
    }
  });

  it("IMAP: the shared account's session reads retrying while the server cannot be reached; none once stopped", async () => {
    const closed = await FakeAmi.start();
    const port = closed.port;
    await closed.close();
    const imap = { host: "127.0.0.1", port, tls: false, rejectUnauthorized: true, folder: "INBOX", pollSeconds: 60, maxMessages: 100, maxFetchBytes: 65536, senders: [], rules: DEFAULT_RULES, username: "voicemail", password: "pw" };
    const gw = new ImapGateway({ id: "mail", kind: "imap", imap }, { acceptUpdate: async () => undefined, log: new Logger("test") });
    assert.deepEqual(gw.status(), { connected: 0, retrying: 0 });
    await gw.start();
    assert.deepEqual(gw.status(), { connected: 0, retrying: 1 });
    await gw.stop();
    assert.deepEqual(gw.status(), { connected: 0, retrying: 0 });
  });

  it("SIP: a subscription not answered yet counts as init; one unwatched is gone from the counts", async () => {
    const system = {
      id: "office",
      name: "Office",
      botLocalpart: "vm_office",
      kind: "sip",
      sip: {
        // The discard port: nothing answers, the subscription stays where it starts.
        server: { host: "127.0.0.1", port: 9, transport: "udp", rejectUnauthorized: true },
        local: { bindAddress: "127.0.0.1", port: 0, maxConnections: 64, maxConnectionsPerSource: 8, idleTimeoutSeconds: 120, messageTimeoutSeconds: 10 },
        expires: 3600,
        allowAuthUser: false,
        unsolicitedSources: [],
      },
    } as unknown as SipSystemConfig;
    const gw = new SipGateway(system, { acceptUpdate: async () => undefined, log: new Logger("test") });
    await gw.start();
    try {
      assert.deepEqual(gw.status(), { init: 0, pending: 0, active: 0, terminated: 0 });
      void gw.watching.watch("2001", { username: "2001", password: "pw" });
      await until("subscribing", () => gw.status().init === 1);
      await gw.watching.unwatch("2001");
      assert.equal(gw.status().init, 0);
    } finally {
      await gw.stop();
    }
  });
});

describe("readiness", () => {
  it("ready only with the store open, the homeserver answered and every system started", () => {
    assert.deepEqual(readiness({ storeOpen: true, homeserverAnswered: true, systems: { a: "started", b: "started" } }), { ready: true, notReady: [] });
    assert.deepEqual(readiness({ storeOpen: true, homeserverAnswered: true, systems: {} }).ready, true);
    const r = readiness({ storeOpen: false, homeserverAnswered: false, systems: { a: "started", b: "starting", c: "stopped" } });
    assert.equal(r.ready, false);
    assert.deepEqual(r.notReady, ["store: not open", "homeserver: has not answered yet", "system b: starting", "system c: stopped"]);
    assert.deepEqual(readiness({ storeOpen: true, storeProblem: "stopped after a failed write", homeserverAnswered: true, systems: {} }), {
      ready: false,
      notReady: ["store: stopped after a failed write"],
    });
  });

  it("the state goes from starting to ready and back on stop; 503 names what is missing", () => {
    const state = new ReadinessState(["pbx", "carrier"]);
    assert.deepEqual(readinessAnswer(state.now()), {
      status: 503,
      body: { ready: false, notReady: ["store: not open", "homeserver: has not answered yet", "system pbx: starting", "system carrier: starting"] },
    });
    state.storeOpen = true;
    state.homeserverAnswered = true;
    state.systems.pbx = "started";
    assert.equal(readinessAnswer(state.now()).status, 503);
    state.systems.carrier = "started";
    assert.deepEqual(readinessAnswer(state.now()), { status: 200, body: { ready: true } });
    state.storeProblem = () => "stopped after a failed write";
    assert.deepEqual(readinessAnswer(state.now()).body.notReady, ["store: stopped after a failed write"]);
    state.storeProblem = () => undefined;
    state.systems.pbx = "stopped";
    assert.deepEqual(readinessAnswer(state.now()).body.notReady, ["system pbx: stopped"]);
  });
});

describe("health routes", () => {
  const state = Object.assign(new ReadinessState(["pbx"]), { storeOpen: true, homeserverAnswered: true });
  it("/live is 200 always; /ready follows the state, without a token", () => {
    const routes = new Map<string, { authenticate?: boolean; handler: (req: unknown, res: never) => void }>();
    serveHealth({ addAppServicePath: (o) => void routes.set(o.path, o) }, state);
    const call = (path: string) => {
      let answer: { status: number; body: unknown } | undefined;
      routes.get(path)!.handler({}, { status: (status: number) => ({ json: (body: unknown) => void (answer = { status, body }) }) } as never);
      return answer!;
    };
    assert.equal(routes.get("/live")!.authenticate, false);
    assert.equal(routes.get("/ready")!.authenticate, false);
    assert.deepEqual(call("/live"), { status: 200, body: { live: true } });
    assert.deepEqual(call("/ready"), { status: 503, body: { ready: false, notReady: ["system pbx: starting"] } });
    state.systems.pbx = "started";
    assert.deepEqual(call("/ready"), { status: 200, body: { ready: true } });
    assert.deepEqual(call("/live"), { status: 200, body: { live: true } });
  });
});

const systemBot = (id: string, name: string): Bot => ({ userId: `@vm_${id}:localhost`, localpart: `vm_${id}`, displayName: name, system: { id, name } as SystemConfig });

describe("bridge info (MSC2346)", () => {
  it("content and state key: the bridge bot, the DM's bot, the protocol, the system as network, the user as channel", () => {
    const bot = systemBot("carrier", "Carrier Voicemail");
    assert.equal(bridgeInfoStateKey(bot, ALICE), "org.voicemail://carrier/@alice:localhost");
    assert.deepEqual(bridgeInfoContent(MAIN_BOT, bot, ALICE), {
      bridgebot: MAIN_BOT,
      creator: "@vm_carrier:localhost",
      protocol: { id: "voicemail", displayname: "Voicemail" },
      network: { id: "carrier", displayname: "Carrier Voicemail" },
      channel: { id: ALICE, displayname: "Carrier Voicemail" },
    });
    const main: Bot = { userId: MAIN_BOT, localpart: "voicemail", displayName: "Voicemail" };
    assert.equal(bridgeInfoStateKey(main, ALICE), "org.voicemail://@alice:localhost");
    assert.equal(bridgeInfoContent(MAIN_BOT, main, ALICE).network, undefined);
    // A `/` in an ID cannot make the key ambiguous.
    assert.equal(bridgeInfoStateKey(systemBot("a/b", "x"), "@c/d:e"), "org.voicemail://a%2Fb/@c%2Fd:e");
    assert.equal(bridgeInfoStateKey(systemBot("a%2Fb", "x"), "@c"), "org.voicemail://a%252Fb/@c");
  });

  it("a new DM is created with both events (initial_state): no state request of its own, none after deliveries", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    await b.link(ALICE);
    await b.mwi("1001", 0);
    const room = await b.accept(ALICE);
    await b.mwi("1001", 1);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "delivered");
    for (const type of BRIDGE_INFO_EVENT_TYPES) {
      const events = b.hs.stateEvents(room, type);
      assert.equal(events.length, 1, type);
      assert.equal(events[0]!.state_key, "org.voicemail://carrier/@alice:localhost");
      assert.equal((events[0]!.content as { bridgebot?: string }).bridgebot, MAIN_BOT);
    }
    assert.equal(b.hs.requests.filter((r) => BRIDGE_INFO_EVENT_TYPES.includes(r.type as never)).length, 0, "no request for it after creation");
  });

  it("a DM made before gets the events once, at its next delivery; more deliveries and a restart add none", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    const room = b.hs.createRoom(CARRIER_BOT, [ALICE], "Carrier");
    b.hs.setMembership(ALICE, room, "join");
    await b.store.saveDmRoom({ userId: ALICE, botUserId: CARRIER_BOT, roomId: room, userJoined: true, createdAt: 1, lastName: "Carrier" });
    await b.link(ALICE);
    await b.mwi("1001", 1);
    await b.until(async () => b.hs.stateEvents(room, "m.bridge").length === 1 && b.hs.stateEvents(room, "uk.half-shot.bridge").length === 1, "bridge info set");
    await b.mwi("1001", 2);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "delivered");
    await b.restart();
    await b.mwi("1001", 3);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "delivered after the restart");
    await b.mwi("1001", 4);
    await b.until(async () => (await b.store.outboxEntries()).length === 0, "delivered again");
    assert.equal(b.hs.stateEvents(room, "m.bridge").length, 1, "m.bridge sent once");
    assert.equal(b.hs.stateEvents(room, "uk.half-shot.bridge").length, 1, "uk.half-shot.bridge sent once");
    const reads = b.hs.requests.filter((r) => r.op === "other" && r.type === "m.bridge").length;
    assert.equal(reads, 2, "read once per process: before the first delivery's, and after the restart");
    assert.equal(b.hs.messages(room, CARRIER_BOT).length, 4, "every change told");
  });

  it("a DM the user made and invited the bot into gets it when the bot adopts it", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    const room = b.hs.createRoom(ALICE, [CARRIER_BOT]);
    b.hs.setMembership(CARRIER_BOT, room, "join");
    await b.dms.adopt(ALICE, b.bots.forSystem("carrier"), room);
    await b.until(() => b.hs.stateEvents(room, "uk.half-shot.bridge").length === 1, "bridge info set");
    assert.equal(b.hs.stateEvents(room, "m.bridge")[0]!.state_key, "org.voicemail://carrier/@alice:localhost");
  });

  it("a room the bridge opens for an extra account carries it from creation: the owner's voicemail, told by the main bot", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    await b.link(ALICE);
    await b.targets.add(ALICE, "@erin:localhost");
    const erinRoom = b.hs.roomOf(MAIN_BOT, "@erin:localhost")!;
    b.hs.setMembership("@erin:localhost", erinRoom, "join");
    await b.mwi("1001", 1);
    await b.until(() => b.hs.messages(erinRoom, MAIN_BOT).length > 0, "erin is told");
    for (const type of BRIDGE_INFO_EVENT_TYPES) {
      const events = b.hs.stateEvents(erinRoom, type);
      assert.equal(events.length, 1, type);
      assert.equal(events[0]!.state_key, "org.voicemail://@alice:localhost");
      assert.deepEqual((events[0]!.content as { channel?: unknown }).channel, { id: ALICE, displayname: "Voicemail" });
    }
  });

  it("a failure to set it is one log line and tried again with the next delivery; the delivery is not held up", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    const room = b.hs.createRoom(CARRIER_BOT, [ALICE], "Carrier");
    b.hs.setMembership(ALICE, room, "join");
    await b.store.saveDmRoom({ userId: ALICE, botUserId: CARRIER_BOT, roomId: room, userJoined: true, createdAt: 1, lastName: "Carrier" });
    await b.link(ALICE);
    b.hs.failNext((r) => r.op === "state" && r.type === "m.bridge", "refused");
    await b.mwi("1001", 1);
    await b.until(async () => b.log.lines.some((l) => l.message.includes("could not set the bridge info")), "the failure logged");
    assert.equal(b.hs.stateEvents(room, "m.bridge").length, 0);
    assert.equal(b.hs.messages(room, CARRIER_BOT).length, 1, "the notification went out all the same");
    await b.mwi("1001", 2);
    await b.until(async () => b.hs.stateEvents(room, "m.bridge").length === 1, "set with the next delivery");
    assert.equal(b.hs.stateEvents(room, "uk.half-shot.bridge").length, 1);
  });
});
