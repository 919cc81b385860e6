/** Ring-to-verify linking in the core: codes bound to user and mailbox, single use, expiring, tries limited. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { randomBytes } from "node:crypto";
import type { Logger } from "matrix-appservice-bridge";
import { MailboxService } from "../../src/app/mailboxService.js";
import { CODE_TTL_MS, VerificationCodes } from "../../src/app/verificationCodes.js";
import type { DeliveryService } from "../../src/delivery/deliveryService.js";
import type { VerificationCallResult, VoicemailGateway } from "../../src/gateway/gateway.js";
import { MemoryStore } from "../../src/store/memoryStore.js";
import { SecretBox } from "../../src/store/secretBox.js";

const ALICE = "@alice:x";
const BOB = "@bob:x";
const noop = () => undefined;
const log = { debug: noop, info: noop, warn: noop, error: noop } as unknown as Logger;

function setup(answer: VerificationCallResult = { ok: true }) {
  let now = 1_000_000;
  const calls: { mailbox: string; code: string }[] = [];
  const watched = new Set<string>();
  const gateway: VoicemailGateway = {
    systemId: "pbx",
    start: async () => undefined,
    stop: async () => undefined,
    watching: { watch: async (m) => void watched.add(m), unwatch: async (m) => void watched.delete(m), systemCredentials: true },
    callVerification: {
      accepts: (m) => /^\d+$/.test(m),
      ring: async (mailbox, code) => (calls.push({ mailbox, code }), answer),
    },
  };
  const delivery = { enqueueChange: async () => [], enqueueNotice: async () => "k", kick: noop, dropQueued: async () => 0, prepareChange: async () => [] } as unknown as DeliveryService;
  const store = new MemoryStore();
  const limits = { userFailures: 5, userWindowMinutes: 15, mailboxFailures: 4, mailboxWindowMinutes: 60 };
  const service = new MailboxService(store, new Map([["pbx", gateway]]), delivery, SecretBox.fromKey(randomBytes(32)), log, undefined, limits, () => now);
  return { service, store, calls, watched, tick: (ms: number) => (now += ms) };
}

describe("ring-to-verify", () => {
  it("rings with a six-digit code; the right code links the mailbox once, for that user only", async () => {
    const { service, store, calls, watched } = setup();
    const call = await service.ringToVerify("pbx", ALICE, "1001");
    assert.equal(call.ok, true);
    const code = calls[0]!.code;
    assert.match(code, /^\d{6}$/);
    assert.deepEqual(await service.verifyCode(BOB, code), { ok: false, reason: "none" }, "Bob cannot use Alice's code");
    assert.deepEqual(await service.verifyCode(ALICE, code), { ok: true, systemId: "pbx", mailbox: "1001", outcome: "linked" });
    assert.deepEqual((await store.listLinks(ALICE)).map((l) => [l.systemId, l.mailbox, l.linkedBy]), [["pbx", "1001", ALICE]]);
    assert.ok(watched.has("1001"));
    assert.deepEqual(await service.verifyCode(ALICE, code), { ok: false, reason: "none" }, "single use");
  });

  it("a wrong code links nothing, and three kill the code", async () => {
    const { service, store, calls } = setup();
    await service.ringToVerify("pbx", ALICE, "1001");
    const code = calls[0]!.code;
    const wrong = code === "000000" ? "000001" : "000000";
    for (let i = 0; i < 3; i++) assert.deepEqual(await service.verifyCode(ALICE, wrong), { ok: false, reason: "wrong" });
    assert.deepEqual(await service.verifyCode(ALICE, code), { ok: false, reason: "none" });
    assert.deepEqual(await store.listLinks(ALICE), []);
  });

  it("codes expire after ten minutes; a new call replaces the code of the one before", async () => {
    const { service, calls, tick } = setup();
    await service.ringToVerify("pbx", ALICE, "1001");
    tick(CODE_TTL_MS);
    assert.deepEqual(await service.verifyCode(ALICE, calls[0]!.code), { ok: false, reason: "expired" });
    await service.ringToVerify("pbx", ALICE, "1001");
    await service.ringToVerify("pbx", ALICE, "1002");
    const [, second, third] = calls;
    if (second!.code !== third!.code) assert.deepEqual(await service.verifyCode(ALICE, second!.code), { ok: false, reason: "wrong" });
    assert.equal((await service.verifyCode(ALICE, third!.code)).ok, true);
  });

  it("calls count as tries: one mailbox cannot be rung over and over, by anyone", async () => {
    const { service, calls, tick } = setup();
    for (let i = 0; i < 4; i++) assert.equal((await service.ringToVerify("pbx", i % 2 ? ALICE : BOB, "1001")).ok, true);
    const refused = await service.ringToVerify("pbx", "@carol:x", "1001");
    assert.ok("tooManyTriesUntil" in refused);
    assert.equal(calls.length, 4, "no fifth call");
    tick(60 * 60_000);
    assert.equal((await service.ringToVerify("pbx", "@carol:x", "1001")).ok, true);
  });

  it("a call that never left does not count; a mailbox the system cannot ring is refused without a call", async () => {
    const { service, calls } = setup({ ok: false, reason: "the voice mail system could not be reached; try again later", transient: true });
    for (let i = 0; i < 8; i++) assert.equal((await service.ringToVerify("pbx", ALICE, "1001")).ok, false);
    assert.equal(calls.length, 8, "no limit hit: none counted");
    assert.deepEqual(await service.ringToVerify("pbx", ALICE, "1001&x"), { ok: false, reason: "that is not a mailbox of this system" });
    assert.equal(calls.length, 8);
  });
});

describe("VerificationCodes", () => {
  it("pads codes to six digits and compares whole codes only", () => {
    const codes = new VerificationCodes(() => 0, () => 42);
    const { code } = codes.issue(ALICE, "pbx", "1001", { forget: noop });
    assert.equal(code, "000042");
    assert.equal(codes.check(ALICE, "42").ok, false);
    assert.equal(codes.check(ALICE, "0000420").ok, false);
    assert.equal(codes.check(ALICE, "000042").ok, true);
  });
});

describe("!link and !verify on a ring-to-verify system (command router)", () => {
  it("rings instead of asking a password, and !verify links; a wrong code does not; no password is taken", async () => {
    const { world, ALICE: alice } = await import("./commandHarness.js");
    const w = await world();
    try {
      const rung: string[] = [];
      // The carrier system becomes an AMI-like one: no password proof, ring-to-verify instead.
      Object.defineProperty(w.gateway, "linking", { value: undefined });
      Object.defineProperty(w.gateway, "callVerification", {
        value: { accepts: () => true, ring: async (_m: string, code: string) => (rung.push(code), { ok: true }) },
      });
      const reply = () => w.bots.sent.at(-1)?.body ?? "";
      await w.send(alice, w.rooms.aliceCarrier, "!link 1001");
      assert.match(reply(), /^Ringing the phone of Carrier mailbox 1001: .* Answer here with !verify <code> before \d\d:\d\d\.$/);
      assert.equal(rung.length, 1);
      await w.send(alice, w.rooms.aliceCarrier, `!verify ${rung[0] === "123456" ? "654321" : "123456"}`);
      assert.equal(reply(), "That is not the code. Nothing was linked.");
      await w.send(alice, w.rooms.aliceCarrier, "!verify 12ab");
      assert.equal(reply(), "A code is the digits the phone showed or said.");
      await w.send(alice, w.rooms.aliceCarrier, `!verify ${rung[0]}`);
      assert.equal(reply(), "Linked Carrier mailbox 1001.");
      await w.send(alice, w.rooms.aliceCarrier, "!link 1001");
      assert.equal(reply(), "Carrier mailbox 1001 is already linked.");
      assert.equal(rung.length, 1, "no call for a mailbox already linked");
      await w.send(alice, w.rooms.aliceCarrier, "!link 1002 --password x");
      assert.match(reply(), /takes no password/);
      assert.equal(rung.length, 1);
    } finally {
      await w.close();
    }
  });
});

describe("!mwi on a kind that watches without an upstream switch (AMI)", () => {
  it("off releases the watch once nobody else wants it; on watches again", async () => {
    const { service, watched } = setup();
    await service.link(ALICE, "pbx", "1001", "@admin:x");
    await service.link(BOB, "pbx", "1001", "@admin:x");
    assert.ok(watched.has("1001"));
    await service.setMwi(ALICE, await service.selectLinks(ALICE, "pbx"), false);
    assert.ok(watched.has("1001"), "Bob still wants it");
    await service.setMwi(BOB, await service.selectLinks(BOB, "pbx"), false);
    assert.ok(!watched.has("1001"), "released: the bridge stops asking");
    await service.setMwi(ALICE, await service.selectLinks(ALICE, "pbx"), true);
    assert.ok(watched.has("1001"));
  });
});
