/** TargetService over the memory store and a homeserver in memory. */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { TargetError } from "../../src/app/targetService.js";
import { FakeBridge, MAIN_BOT } from "./fakeMatrix.js";

const ALICE = "@alice:localhost";
const ERIN = "@erin:localhost";

let bridge: FakeBridge | undefined;
afterEach(async () => {
  await bridge?.stop();
  bridge = undefined;
});

describe("TargetService", () => {
  it("invites an account once; a second add of the same address is refused", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    assert.match(await b.targets.add(ALICE, ERIN), /^Invited @erin:localhost/);
    const room = b.hs.roomOf(MAIN_BOT, ERIN);
    assert.ok(room, "a DM with the main bot, Erin invited");
    await assert.rejects(b.targets.add(ALICE, ERIN), (err: Error) => err instanceof TargetError && /already one of your targets/.test(err.message));
    await assert.rejects(b.targets.add(ALICE, ALICE), TargetError);
    const [target] = await b.targets.list(ALICE);
    assert.equal(target!.status, "invited");
    assert.equal(target!.roomId, room);
  });

  it("an invite that cannot be sent leaves no target behind", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    b.hs.failNext((r) => r.op === "createRoom", "refused");
    await assert.rejects(b.targets.add(ALICE, ERIN), /Could not invite/);
    assert.deepEqual(await b.targets.list(ALICE), []);
    assert.match(await b.targets.add(ALICE, ERIN), /^Invited/);
  });

  it("acceptance and refusal change the status; removal forgets it", async () => {
    const b = (bridge = new FakeBridge());
    await b.start();
    await b.targets.add(ALICE, ERIN);
    const [target] = await b.targets.list(ALICE);
    assert.equal(await b.targets.onMembership(target!.roomId!, ERIN, "join"), true);
    assert.equal((await b.targets.list(ALICE))[0]!.status, "active");
    await b.targets.onMembership(target!.roomId!, ERIN, "leave");
    assert.equal((await b.targets.list(ALICE))[0]!.status, "refused");
    assert.equal(await b.targets.onMembership("!elsewhere:localhost", ERIN, "join"), false);
    assert.equal(await b.targets.remove(ALICE, ERIN), true);
    assert.equal(await b.targets.remove(ALICE, ERIN), false);
  });
});
