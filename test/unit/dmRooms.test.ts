import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { DmRooms } from "../../src/matrix/dmRooms.js";
import { openStore } from "../../src/store/openStore.js";
import type { VoicemailStore } from "../../src/store/store.js";
import { CARRIER_BOT, FakeHomeserver, botDirectory, recordingLogger, testConfig } from "./fakeMatrixSide.js";

const ALICE = "@alice:localhost";

let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), "vm-dmrooms-"));
});

let counter = 0;
async function world(config = testConfig()) {
  const hs = new FakeHomeserver();
  const store = await openStore(`nedb:${join(root, `store-${++counter}`)}`);
  const bots = botDirectory(hs, config);
  const log = recordingLogger();
  const dms = new DmRooms(store, bots, log);
  return { hs, store, bots, dms, log, carrier: bots.forSystem("carrier") };
}

const closeAll: VoicemailStore[] = [];
after(async () => {
  for (const store of closeAll) await store.close();
  rmSync(root, { recursive: true, force: true });
});

describe("DmRooms.ensure", () => {
  it("after a createRoom whose answer was lost, keeps the room it made: one invite, not two", async () => {
    const { hs, store, dms, carrier } = await world();
    closeAll.push(store);
    hs.loseNextCreateAnswer = true;
    await assert.rejects(dms.ensure(ALICE, carrier), /socket hang up/);
    assert.equal(hs.roomsWith(ALICE, CARRIER_BOT).length, 1, "the homeserver made the room all the same");

    const room = await dms.ensure(ALICE, carrier);
    assert.deepEqual(hs.roomsWith(ALICE, CARRIER_BOT), [room.roomId], "the user has one invite from the bot");
    assert.equal(room.userJoined, false);
    assert.equal((await store.getDmRoom(ALICE, CARRIER_BOT))?.roomId, room.roomId);
    assert.deepEqual(hs.accountData.get(CARRIER_BOT)?.get("m.direct"), { [ALICE]: [room.roomId] });
    // Found, so no longer in doubt: the next user's DM costs no scan.
    assert.deepEqual(hs.accountData.get(CARRIER_BOT)?.get("org.voicemail.pending_dms"), {});
  });

  it("finds the lost room after a restart too (the doubt is noted in the bot's account data)", async () => {
    const first = await world();
    closeAll.push(first.store);
    first.hs.loseNextCreateAnswer = true;
    await assert.rejects(first.dms.ensure(ALICE, first.carrier));
    // A new DmRooms (a restarted bridge) on the same homeserver and store.
    const restarted = new DmRooms(first.store, first.bots, recordingLogger());
    const room = await restarted.ensure(ALICE, first.carrier);
    assert.deepEqual(first.hs.roomsWith(ALICE, CARRIER_BOT), [room.roomId]);
  });

  it("keeps m.direct up to date and finds the DM there when the store lost it, without a scan", async () => {
    const { hs, store, dms, carrier } = await world();
    closeAll.push(store);
    const room = await dms.ensure(ALICE, carrier);
    assert.deepEqual(hs.accountData.get(CARRIER_BOT)?.get("m.direct"), { [ALICE]: [room.roomId] });
    hs.setMembership(room.roomId, ALICE, "join");
    await store.forgetDmRoom(room.roomId);
    hs.requests.length = 0;

    const again = await dms.ensure(ALICE, carrier);
    assert.equal(again.roomId, room.roomId);
    assert.equal(again.userJoined, true);
    assert.ok(!hs.requests.some((r) => r.includes("createRoom")), "no second room");
    assert.ok(!hs.requests.some((r) => r.includes("joined_rooms")), "m.direct is the cheap index: no scan");
  });

  it("bounds the work: a bot in many rooms opens a new user's DM without looking through them", async () => {
    const { hs, store, dms, carrier } = await world();
    closeAll.push(store);
    for (let i = 0; i < 50; i++) hs.createRoomAs(CARRIER_BOT, [`@user${i}:localhost`]);
    hs.requests.length = 0;
    await dms.ensure(ALICE, carrier);
    assert.ok(!hs.requests.some((r) => r.includes("joined_rooms") || r.includes("GET state")), hs.requests.join("\n"));
    assert.ok(hs.requests.length <= 6, `a handful of requests, not one per room:\n${hs.requests.join("\n")}`);
  });

  it("does not take a room with a third person in it for the user's DM", async () => {
    const { hs, store, dms, carrier } = await world();
    closeAll.push(store);
    const group = hs.createRoomAs(CARRIER_BOT, [ALICE, "@bob:localhost"]);
    hs.loseNextCreateAnswer = true;
    await assert.rejects(dms.ensure(ALICE, carrier));
    const [lost] = hs.roomsWith(ALICE, CARRIER_BOT).filter((r) => r !== group);
    const room = await dms.ensure(ALICE, carrier);
    assert.equal(room.roomId, lost);
  });

  it("opens a fresh DM when the user left the recorded one, and drops the old one from m.direct", async () => {
    const { hs, store, dms, carrier } = await world();
    closeAll.push(store);
    const room = await dms.ensure(ALICE, carrier);
    hs.setMembership(room.roomId, ALICE, "leave");
    const fresh = await dms.ensure(ALICE, carrier);
    assert.notEqual(fresh.roomId, room.roomId);
    assert.deepEqual(hs.accountData.get(CARRIER_BOT)?.get("m.direct"), { [ALICE]: [fresh.roomId] });
  });

  it("keeps per-user-and-bot creation one at a time: concurrent calls open one room", async () => {
    const { hs, store, dms, carrier } = await world();
    closeAll.push(store);
    const rooms = await Promise.all([1, 2, 3, 4].map(() => dms.ensure(ALICE, carrier)));
    assert.equal(new Set(rooms.map((r) => r.roomId)).size, 1);
    assert.equal(hs.roomsWith(ALICE, CARRIER_BOT).length, 1);
  });
});

describe("DmRooms.claim: a user joined a 1:1 room of a bot that the store did not know", () => {
  it("adopts it when the recorded DM was never joined, and the bot leaves the recorded one", async () => {
    const { hs, store, dms, carrier } = await world();
    closeAll.push(store);
    const unknown = hs.createRoomAs(CARRIER_BOT, [ALICE]);
    const recorded = await dms.ensure(ALICE, carrier);
    hs.setMembership(unknown, ALICE, "join");

    assert.equal(await dms.claim(ALICE, carrier, unknown), "adopted");
    assert.equal((await store.getDmRoom(ALICE, CARRIER_BOT))?.roomId, unknown);
    assert.equal((await store.getDmRoom(ALICE, CARRIER_BOT))?.userJoined, true);
    assert.equal(hs.room(recorded.roomId).members.get(CARRIER_BOT), "leave");
    assert.deepEqual(hs.roomsWith(ALICE, CARRIER_BOT), [unknown], "the user ends with one DM");
    assert.deepEqual(hs.accountData.get(CARRIER_BOT)?.get("m.direct"), { [ALICE]: [unknown] });
  });

  it("leaves the unknown one when the recorded DM is joined", async () => {
    const { hs, store, dms, carrier } = await world();
    closeAll.push(store);
    const recorded = await dms.ensure(ALICE, carrier);
    hs.setMembership(recorded.roomId, ALICE, "join");
    const unknown = hs.createRoomAs(CARRIER_BOT, [ALICE]);
    hs.setMembership(unknown, ALICE, "join");

    assert.equal(await dms.claim(ALICE, carrier, unknown), "declined");
    assert.equal((await store.getDmRoom(ALICE, CARRIER_BOT))?.roomId, recorded.roomId);
    assert.equal(hs.room(unknown).members.get(CARRIER_BOT), "leave");
    assert.ok(hs.sent.some((m) => m.roomId === unknown && /already have a direct chat/.test(String(m.content.body))));
  });
});

describe("DmRooms.forget", () => {
  it("forgets a DM of a bot whose system was removed from the config, in one log line, without throwing", async () => {
    const { store, dms, carrier, hs } = await world();
    closeAll.push(store);
    const room = await dms.ensure(ALICE, carrier);
    // The bridge restarted without the carrier system.
    const withoutCarrier = botDirectory(hs, testConfig([{ id: "office", name: "Office", botLocalpart: "vm_office" }]));
    const log = recordingLogger();
    const later = new DmRooms(store, withoutCarrier, log);
    await later.forget(room);
    assert.equal(await store.getDmRoomById(room.roomId), undefined);
    assert.equal(log.lines.length, 1);
    assert.match(log.lines[0]!, /^INFO .*no longer configured/);
  });
});
