import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { Logger } from "matrix-appservice-bridge";
import type { MwiUpdate } from "../../src/core/mwi.js";
import { AmiGateway } from "../../src/gateway/ami/amiGateway.js";
import type { AmiSettings } from "../../src/gateway/ami/settings.js";
import { FakeAmi, until } from "./amiServer.js";

const gateways: AmiGateway[] = [];
const servers: FakeAmi[] = [];
afterEach(async () => {
  for (const g of gateways.splice(0)) await g.stop();
  for (const s of servers.splice(0)) await s.close();
});

async function setup(settings: Partial<AmiSettings> = {}, accept?: (u: MwiUpdate) => Promise<void>) {
  const ami = await FakeAmi.start();
  servers.push(ami);
  const updates: MwiUpdate[] = [];
  const ami_: AmiSettings = {
    host: "127.0.0.1",
    port: ami.port,
    username: "bridge",
    secret: "s3cret",
    context: "default",
    keepAliveSeconds: 30,
    actionTimeoutSeconds: 2,
    resync: { concurrency: 2, perSecond: 100 },
    ...settings,
  };
  const gateway = new AmiGateway({ id: "pbx", kind: "ami", ami: ami_ }, {
    acceptUpdate: accept ?? (async (u) => void updates.push(u)),
    log: new Logger("test"),
  });
  gateways.push(gateway);
  await gateway.start();
  return { ami, gateway, updates };
}

const loggedIn = (ami: FakeAmi, n = 1) => until("login", () => ami.logins >= n);

describe("AMI gateway", () => {
  it("watch stores the counts (urgent included in new) and the newest message's caller", async () => {
    const { ami, gateway, updates } = await setup();
    await loggedIn(ami);
    Object.assign(ami.mailbox("1001@default"), { urgent: 1, new: 1, old: 3 });
    ami.mailbox("1001@default").details.push({ Folder: "Urgent", CallerID: '"Grace Caller" <5551234>', ID: "1796129450-00000000", Duration: "12" });
    assert.equal(gateway.watching.systemCredentials, true);
    await gateway.watching.watch("1001");
    assert.equal(updates.length, 1);
    assert.deepEqual(updates[0]!.counts, { waiting: true, new: 2, old: 3, urgentNew: 1, urgentOld: 0 });
    assert.deepEqual(updates[0]!.message, { dnis: "1001", ani: "5551234", callerName: "Grace Caller", time: new Date(1796129450_000).toISOString(), duration: 12 });
    assert.equal(gateway.callVerification, undefined, "no ring-to-verify unless configured");
  });

  it("MessageWaiting for a watched mailbox updates it; for one nobody watches, or after unwatch, nothing", async () => {
    const { ami, gateway, updates } = await setup();
    await loggedIn(ami);
    await gateway.watching.watch("1001@sales");
    updates.length = 0;
    ami.mailbox("1001@sales").new = 1;
    ami.event({ Event: "MessageWaiting", Mailbox: "2002@sales", Waiting: "1", New: "1", Old: "0" });
    ami.event({ Event: "MessageWaiting", Mailbox: "1001@sales", Waiting: "1", New: "1", Old: "0" });
    await until("the update", () => updates.length === 1);
    assert.equal(updates[0]!.mailbox, "1001@sales");
    assert.equal(updates[0]!.counts.new, 1);
    await gateway.watching.unwatch("1001@sales");
    const asked = ami.actions.length;
    ami.event({ Event: "MessageWaiting", Mailbox: "1001@sales", Waiting: "0", New: "0", Old: "1" });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(updates.length, 1);
    assert.equal(ami.actions.length, asked, "the bridge asks nothing for a mailbox it does not watch");
  });

  it("keeps the order of one mailbox's updates: the last state wins, nothing overtakes", async () => {
    const stored: number[] = [];
    const { ami, gateway } = await setup({}, async (u) => {
      await new Promise((r) => setTimeout(r, 5));
      stored.push(u.counts.new);
    });
    await loggedIn(ami);
    await gateway.watching.watch("1001");
    for (let n = 1; n <= 5; n++) {
      ami.mailbox("1001@default").new = n;
      ami.event({ Event: "MessageWaiting", Mailbox: "1001@default", Waiting: "1", New: String(n), Old: "0" });
      await new Promise((r) => setTimeout(r, 2));
    }
    await until("the last state", () => stored.at(-1) === 5);
    assert.deepEqual([...stored].sort((a, b) => a - b), stored, `stored in order: ${stored.join(",")}`);
  });

  it("after a reconnect every watched mailbox is asked again, a few at a time", async () => {
    const { ami, gateway, updates } = await setup({ resync: { concurrency: 2, perSecond: 50 } });
    await loggedIn(ami);
    for (const m of ["1", "2", "3", "4", "5"]) await gateway.watching.watch(m);
    updates.length = 0;
    for (const m of ["1", "2", "3", "4", "5"]) ami.mailbox(`${m}@default`).old = 7;
    ami.dropAll();
    await loggedIn(ami, 2);
    await until("five updates", () => updates.length === 5, 5_000);
    assert.deepEqual(updates.map((u) => u.mailbox).sort(), ["1", "2", "3", "4", "5"]);
    assert.ok(updates.every((u) => u.counts.old === 7));
  });

  it("a hostile MessageWaiting is one log line, never an update", async () => {
    const { ami, gateway, updates } = await setup();
    await loggedIn(ami);
    await gateway.watching.watch("1001");
    updates.length = 0;
    ami.event({ Event: "MessageWaiting", Mailbox: "../../etc@x,y", New: "99999999999999999999", Old: "-1" });
    ami.event({ Event: "MessageWaiting", Mailbox: "1001@default", New: "lots", Old: "-1" });
    await until("the update", () => updates.length === 1);
    // The event's garbage only triggered a MailboxCount: the counts are the PBX's.
    assert.deepEqual(updates[0]!.counts, { waiting: false, new: 0, old: 0, urgentNew: 0, urgentOld: 0 });
  });

  it("ring-to-verify originates the call with the code as caller ID and SayDigits", async () => {
    const { ami, gateway } = await setup({ verifyCall: { dialString: "PJSIP/{mailbox}", ringSeconds: 20 } });
    await loggedIn(ami);
    const ring = gateway.callVerification!;
    assert.equal(ring.accepts("1001"), true);
    assert.equal(ring.accepts("1001&PJSIP/2002"), false);
    assert.deepEqual(await ring.ring("1001@sales", "042917"), { ok: true });
    const originate = ami.actions.find((a) => a.Action === "Originate")!;
    assert.deepEqual(
      { ...originate, ActionID: undefined },
      { Action: "Originate", Channel: "PJSIP/1001", Application: "SayDigits", Data: "042917", CallerID: '"042917" <042917>', Timeout: "20000", Async: "true", ActionID: undefined },
    );
    await assert.rejects(ring.ring("1001", "12ab"), /digits only/);
    await gateway.stop();
    assert.deepEqual(await ring.ring("1001", "123456"), { ok: false, reason: "the voice mail system could not be reached; try again later", transient: true });
  });
});
