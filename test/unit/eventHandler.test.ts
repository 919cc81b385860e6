/**
 * The event handler against a fake homeserver and a real NeDB store in a temp dir: invites,
 * memberships, the per-room order of events and commands that are never dropped in silence.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { WeakEvent } from "matrix-appservice-bridge";
import { EventHandler, type EventHandlerDeps } from "../../src/app/eventHandler.js";
import type { BridgeConfig } from "../../src/config/types.js";
import { DmRooms } from "../../src/matrix/dmRooms.js";
import { openStore } from "../../src/store/openStore.js";
import type { VoicemailStore } from "../../src/store/store.js";
import { KeyedQueue } from "../../src/util/keyedQueue.js";
import { CARRIER_BOT, FakeHomeserver, MAIN_BOT, botDirectory, recordingLogger, testConfig } from "./fakeMatrixSide.js";

const ALICE = "@alice:localhost";
const BOB = "@bob:localhost";

let root: string;
const stores: VoicemailStore[] = [];
before(() => {
  root = mkdtempSync(join(tmpdir(), "vm-events-"));
});
after(async () => {
  for (const store of stores) await store.close();
  rmSync(root, { recursive: true, force: true });
});

let counter = 0;
async function world(options: { config?: BridgeConfig; hs?: FakeHomeserver; store?: VoicemailStore } = {}) {
  const config = options.config ?? testConfig();
  const hs = options.hs ?? new FakeHomeserver();
  const store = options.store ?? (await openStore(`nedb:${join(root, `store-${++counter}`)}`));
  stores.push(store);
  const bots = botDirectory(hs, config);
  const log = recordingLogger();
  const dms = new DmRooms(store, bots, recordingLogger());
  const kicked: string[] = [];
  const deps = {
    config,
    store,
    bots,
    dms,
    mailboxes: {},
    views: { systems: new Map() },
    targets: { onMembership: async () => false, invitedInto: () => true, onPowerLevels: async () => undefined },
    delivery: { kickPerson: async (userId: string) => void kicked.push(userId) },
    presence: { update: () => false },
    userQueue: new KeyedQueue(),
    log,
  } as unknown as EventHandlerDeps;
  return { hs, store, bots, dms, log, kicked, handler: new EventHandler(deps), get carrier() { return bots.forSystem("carrier"); } };
}

let eventCounter = 0;
const member = (roomId: string, sender: string, stateKey: string, membership: string, extra: Record<string, unknown> = {}): WeakEvent =>
  ({ type: "m.room.member", room_id: roomId, sender, state_key: stateKey, event_id: `$m${++eventCounter}`, content: { membership, ...extra }, origin_server_ts: 0 }) as unknown as WeakEvent;
const message = (roomId: string, sender: string, body: string): WeakEvent =>
  ({ type: "m.room.message", room_id: roomId, sender, event_id: `$t${++eventCounter}`, content: { msgtype: "m.text", body }, origin_server_ts: 0 }) as unknown as WeakEvent;

const bodiesIn = (hs: FakeHomeserver, roomId: string) => hs.sent.filter((m) => m.roomId === roomId).map((m) => String(m.content.body));

describe("invites", () => {
  it("a user's 1:1 room with a system bot becomes their DM: joined, greeted, stored, in m.direct", async () => {
    const { hs, store, handler, kicked } = await world();
    const roomId = hs.createRoomAs(ALICE, [CARRIER_BOT]);
    await handler.onEvent(member(roomId, ALICE, CARRIER_BOT, "invite"));
    assert.equal(hs.room(roomId).members.get(CARRIER_BOT), "join");
    assert.match(bodiesIn(hs, roomId)[0]!, /message waiting indication of Carrier Voicemail/);
    const dm = await store.getDmRoom(ALICE, CARRIER_BOT);
    assert.equal(dm?.roomId, roomId);
    assert.equal(dm?.userJoined, true);
    assert.deepEqual(hs.accountData.get(CARRIER_BOT)?.get("m.direct"), { [ALICE]: [roomId] });
    assert.deepEqual(kicked, [ALICE], "what waited for this user goes out");
  });

  it("someone without permission gets the bot to leave at once", async () => {
    const config = { ...testConfig(), permissions: { localhost: "user", "@mallory:localhost": "none" } } as unknown as BridgeConfig;
    const { hs, store, handler } = await world({ config });
    const roomId = hs.createRoomAs("@mallory:localhost", [MAIN_BOT]);
    await handler.onEvent(member(roomId, "@mallory:localhost", MAIN_BOT, "invite", { is_direct: true }));
    assert.equal(hs.room(roomId).members.get(MAIN_BOT), "leave");
    assert.equal(await store.getDmRoomById(roomId), undefined);
  });

  it("a system bot says why and leaves a room with more people; the main bot stays as a possible target", async () => {
    const { hs, store, handler } = await world();
    const group = hs.createRoomAs(ALICE, [BOB, CARRIER_BOT, MAIN_BOT]);
    await handler.onEvent(member(group, ALICE, CARRIER_BOT, "invite"));
    await handler.onEvent(member(group, ALICE, MAIN_BOT, "invite"));
    assert.equal(hs.room(group).members.get(CARRIER_BOT), "leave");
    assert.equal(hs.room(group).members.get(MAIN_BOT), "join");
    assert.match(bodiesIn(hs, group).join("\n"), /only work in direct chats/);
    assert.match(bodiesIn(hs, group).join("\n"), /!target add/);
    assert.equal(await store.getDmRoomById(group), undefined);
  });

  it("a command sent the moment the bot joined a new DM is answered (events of one room in order)", async () => {
    const { hs, handler } = await world();
    const roomId = hs.createRoomAs(ALICE, [CARRIER_BOT]);
    // Back to back, as in one transaction: the second does not wait for the first to be handled.
    const invited = handler.onEvent(member(roomId, ALICE, CARRIER_BOT, "invite"));
    const asked = handler.onEvent(message(roomId, ALICE, "!help"));
    await Promise.all([invited, asked]);
    const bodies = bodiesIn(hs, roomId);
    assert.equal(bodies.length, 2, bodies.join("\n---\n"));
    assert.match(bodies[0]!, /Hello!/);
    assert.match(bodies[1]!, /^Commands:/);
  });
});

describe("commands that cannot be taken", () => {
  it("say why in one log line: no DM known", async () => {
    const { hs, handler, log } = await world();
    const roomId = hs.createRoomAs(ALICE, [CARRIER_BOT]);
    hs.setMembership(roomId, CARRIER_BOT, "join");
    await handler.onEvent(message(roomId, ALICE, "!help"));
    assert.equal(hs.sent.length, 0);
    assert.equal(log.lines.length, 1);
    assert.match(log.lines[0]!, /^(INFO|DEBUG) command .* from @alice:localhost .* not taken: the room is no DM of the bridge/);
  });

  it("say why in one log line: not the sender's DM", async () => {
    const { hs, handler, log } = await world();
    const roomId = hs.createRoomAs(ALICE, [CARRIER_BOT]);
    await handler.onEvent(member(roomId, ALICE, CARRIER_BOT, "invite"));
    log.lines.length = 0;
    await handler.onEvent(message(roomId, BOB, "!help"));
    assert.equal(log.lines.length, 1);
    assert.match(log.lines[0]!, /not taken: the DM of @alice:localhost, not theirs/);
  });

  it("plain chat is no command and logs nothing", async () => {
    const { hs, handler, log } = await world();
    const roomId = hs.createRoomAs(ALICE, [CARRIER_BOT]);
    await handler.onEvent(message(roomId, ALICE, "hello there"));
    assert.deepEqual(log.lines, []);
  });
});

describe("memberships", () => {
  it("the user joining their DM marks it joined and sends what waited", async () => {
    const { hs, store, dms, handler, kicked, carrier } = await world();
    const dm = await dms.ensure(ALICE, carrier);
    hs.setMembership(dm.roomId, ALICE, "join");
    await handler.onEvent(member(dm.roomId, ALICE, ALICE, "join"));
    assert.equal((await store.getDmRoom(ALICE, CARRIER_BOT))?.userJoined, true);
    assert.deepEqual(kicked, [ALICE]);
  });

  it("the user leaving their DM: forgotten, the bot leaves, m.direct drops it", async () => {
    const { hs, store, dms, handler, carrier } = await world();
    const dm = await dms.ensure(ALICE, carrier);
    hs.setMembership(dm.roomId, ALICE, "leave");
    await handler.onEvent(member(dm.roomId, ALICE, ALICE, "leave"));
    assert.equal(await store.getDmRoomById(dm.roomId), undefined);
    assert.equal(hs.room(dm.roomId).members.get(CARRIER_BOT), "leave");
    assert.deepEqual(hs.accountData.get(CARRIER_BOT)?.get("m.direct"), {});
  });

  it("a third person in a DM: the user is told, the DM is forgotten", async () => {
    const { hs, store, dms, handler, carrier } = await world();
    const dm = await dms.ensure(ALICE, carrier);
    hs.setMembership(dm.roomId, ALICE, "join");
    hs.setMembership(dm.roomId, BOB, "join");
    await handler.onEvent(member(dm.roomId, BOB, BOB, "join"));
    assert.match(bodiesIn(hs, dm.roomId).join("\n"), /no longer private/);
    assert.equal(await store.getDmRoomById(dm.roomId), undefined);
  });

  it("a leave in the DM of a system removed from the config is handled: forgotten, one line, no error", async () => {
    const first = await world();
    const dm = await first.dms.ensure(ALICE, first.carrier);
    // Restarted without the carrier system, on the same homeserver and store.
    const config = testConfig([{ id: "office", name: "Office", botLocalpart: "vm_office" }]);
    const later = await world({ config, hs: first.hs, store: first.store });
    first.hs.setMembership(dm.roomId, ALICE, "leave");
    await later.handler.onEvent(member(dm.roomId, ALICE, ALICE, "leave"));
    assert.equal(await first.store.getDmRoomById(dm.roomId), undefined);
    assert.ok(!later.log.lines.some((l) => l.startsWith("ERROR") || l.startsWith("WARN")), later.log.lines.join("\n"));
  });

  it("a third person in the DM of a removed system: forgotten without an error", async () => {
    const first = await world();
    const dm = await first.dms.ensure(ALICE, first.carrier);
    const config = testConfig([{ id: "office", name: "Office", botLocalpart: "vm_office" }]);
    const later = await world({ config, hs: first.hs, store: first.store });
    await later.handler.onEvent(member(dm.roomId, BOB, BOB, "join"));
    assert.equal(await first.store.getDmRoomById(dm.roomId), undefined);
    assert.ok(!later.log.lines.some((l) => l.startsWith("ERROR") || l.startsWith("WARN")), later.log.lines.join("\n"));
  });

  it("the user joins a 1:1 room a bot made whose answer was lost: it becomes their DM, the never-joined one goes", async () => {
    const { hs, store, dms, handler, kicked, carrier } = await world();
    const lost = hs.createRoomAs(CARRIER_BOT, [ALICE]);
    const recorded = await dms.ensure(ALICE, carrier);
    hs.setMembership(lost, ALICE, "join");
    await handler.onEvent(member(lost, ALICE, ALICE, "join"));
    assert.equal((await store.getDmRoom(ALICE, CARRIER_BOT))?.roomId, lost);
    assert.equal(hs.room(recorded.roomId).members.get(CARRIER_BOT), "leave");
    assert.deepEqual(hs.roomsWith(ALICE, CARRIER_BOT), [lost], "one DM");
    assert.deepEqual(kicked, [ALICE]);
  });

  it("a user joining some other room of the main bot changes nothing", async () => {
    const { hs, store, handler } = await world();
    const group = hs.createRoomAs(ALICE, [MAIN_BOT, BOB]);
    hs.setMembership(group, MAIN_BOT, "join");
    hs.setMembership(group, BOB, "join");
    await handler.onEvent(member(group, BOB, BOB, "join"));
    assert.equal(hs.room(group).members.get(MAIN_BOT), "join");
    assert.equal(await store.getDmRoom(BOB, MAIN_BOT), undefined);
  });
});
