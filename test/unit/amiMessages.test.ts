/** The AMI kind's messages capability against the scripted AMI server: list, VoicemailMove to Old, VoicemailRemove. */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { Logger } from "matrix-appservice-bridge";
import type { MwiUpdate } from "../../src/core/mwi.js";
import { AmiGateway } from "../../src/gateway/ami/amiGateway.js";
import { FakeAmi, until } from "./amiServer.js";

const gateways: AmiGateway[] = [];
const servers: FakeAmi[] = [];
afterEach(async () => {
  for (const g of gateways.splice(0)) await g.stop();
  for (const s of servers.splice(0)) await s.close();
});

async function setup() {
  const ami = await FakeAmi.start();
  servers.push(ami);
  const updates: MwiUpdate[] = [];
  const gateway = new AmiGateway(
    {
      id: "pbx",
      kind: "ami",
      ami: { host: "127.0.0.1", port: ami.port, username: "bridge", secret: "s3cret", context: "default", keepAliveSeconds: 30, actionTimeoutSeconds: 2, resync: { concurrency: 2, perSecond: 100 } },
    },
    { acceptUpdate: async (u) => void updates.push(u), log: new Logger("test") },
  );
  gateways.push(gateway);
  await gateway.start();
  await until("login", () => ami.logins >= 1);
  const box = ami.mailbox("1001@default");
  Object.assign(box, { urgent: 1, new: 1, old: 1 });
  box.details.push(
    { Folder: "Old", CallerID: '"Old Caller" <5550001>', ID: "1796120000-00000000", Duration: "5" },
    { Folder: "INBOX", CallerID: '"Grace Caller" <5551234>', ID: "1796129450-00000001", Duration: "12" },
    { Folder: "Urgent", CallerID: "<5559999>", ID: "1796129999-00000002", Duration: "3" },
    { Folder: "Work", CallerID: "<5558888>", ID: "1796130000-00000003", Duration: "3" },
  );
  return { ami, gateway, updates, box };
}

describe("AMI messages", () => {
  it("lists INBOX, Urgent and Old newest first, urgent marked, the user's own folders left out", async () => {
    const { gateway } = await setup();
    const list = await gateway.messages.list("1001");
    assert.deepEqual(
      list.map((m) => [m.id, m.fresh, m.urgent, m.callerNumber, m.callerName, m.duration, m.time]),
      [
        ["1796129999-00000002", true, true, "5559999", undefined, 3, 1796129999_000],
        ["1796129450-00000001", true, false, "5551234", "Grace Caller", 12, 1796129450_000],
        ["1796120000-00000000", false, false, "5550001", "Old Caller", 5, 1796120000_000],
      ],
    );
  });

  it("markHeard sends VoicemailMove with Context, Mailbox, Folder, ID, ToFolder=Old for exactly the named unheard messages; the counts come back by MailboxCount", async () => {
    const { ami, gateway, updates } = await setup();
    await gateway.watching.watch("1001");
    updates.length = 0;
    await gateway.messages.markHeard("1001", ["1796129999-00000002", "1796120000-00000000", "no-such-id", "bad\r\nAction: Logoff"]);
    const moves = ami.actions.filter((a) => a.Action === "VoicemailMove");
    assert.deepEqual(
      moves.map(({ ActionID: _, ...rest }) => rest),
      [{ Action: "VoicemailMove", Context: "default", Mailbox: "1001", Folder: "Urgent", ID: "1796129999-00000002", ToFolder: "Old" }],
    );
    await until("recount", () => updates.length > 0);
    assert.deepEqual(updates.at(-1)!.counts, { waiting: true, new: 1, old: 2, urgentNew: 0, urgentOld: 0 });
  });

  it("remove sends VoicemailRemove for the one message, from the folder it is in", async () => {
    const { ami, gateway, box } = await setup();
    await gateway.messages.remove("1001", "1796129450-00000001");
    const removes = ami.actions.filter((a) => a.Action === "VoicemailRemove").map(({ ActionID: _, ...rest }) => rest);
    assert.deepEqual(removes, [{ Action: "VoicemailRemove", Context: "default", Mailbox: "1001", Folder: "INBOX", ID: "1796129450-00000001" }]);
    assert.equal(box.details.length, 3);
    await assert.rejects(gateway.messages.remove("1001", "1796129450-00000001"), /no such message/);
    await assert.rejects(gateway.messages.remove("1001", "x\r\nAction: Logoff"), /no such message/);
    assert.equal(ami.actions.filter((a) => a.Action === "VoicemailRemove").length, 1);
  });

  it("a refusal or a lost connection is a reason the user may read, without Asterisk's words", async () => {
    const { ami, gateway } = await setup();
    ami.silent.add("VoicemailBoxSummary");
    await assert.rejects(gateway.messages.list("1001"), /could not be reached|refused/);
    await assert.rejects(gateway.messages.list("not a mailbox"), /not a mailbox/);
  });
});
