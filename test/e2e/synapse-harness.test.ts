// Proves the Synapse harness: two users on a real Synapse (inside the testbed tree) talk.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { MatrixClient } from "matrix-js-sdk";
import { freePort, startSynapse } from "../testbed/synapse.js";
import { loginClient, sendText, waitForEvent, waitForInvite, waitForState } from "../testbed/matrixClient.js";
import { requireTestbed } from "./world.js";

test("synapse harness: invite, join, message, restart", { timeout: 300_000 }, async (t) => {
  if (!(await requireTestbed(t))) return;

  const t0 = Date.now();
  const hs = await startSynapse({ port: await freePort() });
  t.diagnostic(`synapse ready in ${Date.now() - t0} ms (${hs.url}, log ${hs.logFile})`);
  const clients: MatrixClient[] = [];
  try {
    const alice = await hs.registerUser("alice", "alice-password", true);
    const bob = await hs.registerUser("bob", "bob-password");
    assert.equal(alice.userId, "@alice:localhost");
    assert.equal(bob.userId, "@bob:localhost");

    const a = await loginClient(hs.url, alice.userId, alice.accessToken, alice.deviceId);
    const b = await loginClient(hs.url, bob.userId, bob.accessToken, bob.deviceId);
    clients.push(a, b);

    const { room_id: roomId } = await a.createRoom({ name: "harness", invite: [bob.userId] });
    assert.equal(await waitForInvite(b, alice.userId, 20_000), roomId);
    await b.joinRoom(roomId);
    await waitForState(a, roomId, "m.room.member", bob.userId, (ev) => ev.getContent().membership === "join", 20_000);

    const eventId = await sendText(a, roomId, "hello bob");
    const seen = await waitForEvent(b, roomId, (ev) => ev.getType() === "m.room.message" && ev.getContent().body === "hello bob", 20_000);
    assert.equal(seen.getId(), eventId);
    assert.equal(seen.getSender(), alice.userId);

    // restart keeps the data: bob's token still works and the message is already in his timeline.
    for (const c of clients.splice(0)) c.stopClient();
    const t1 = Date.now();
    await hs.restart();
    t.diagnostic(`synapse restarted in ${Date.now() - t1} ms`);
    const b2 = await loginClient(hs.url, bob.userId, bob.accessToken, bob.deviceId);
    clients.push(b2);
    const again = await waitForEvent(b2, roomId, (ev) => ev.getId() === eventId, 20_000);
    assert.equal(again.getContent().body, "hello bob");
  } finally {
    for (const c of clients) c.stopClient();
    await hs.stop();
  }
});
