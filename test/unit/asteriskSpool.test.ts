import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parseCallerId } from "../../src/gateway/ami/mailbox.js";
import { messageInfoFrom, newestInboxMessage, parseMessageFile } from "../../src/gateway/sip/asteriskSpool.js";

const callerName = (callerid: string | undefined) => parseCallerId(callerid).name;
const callerNumber = (callerid: string | undefined) => parseCallerId(callerid).number;

const MSG = (callerid: string, origtime: number, extra = "") => `;
; Message Information file
;
[message]
origmailbox=1001
context=default
macrocontext=
exten=1001
rdnis=unknown
priority=2
callerchan=Local/1001@default-00000000;2
callerid=${callerid}
origdate=Wed Nov 25 02:03:00 PM UTC 2026
origtime=${origtime}
category=
msg_id=1764079380-00000000
flag=
duration=7
${extra}`;

describe("Asterisk spool", () => {
  it("parses msgNNNN.txt", () => {
    const fields = parseMessageFile(MSG('"Alice" <+15551234567>', 1764079380));
    assert.equal(fields.callerid, '"Alice" <+15551234567>');
    assert.equal(fields.origtime, "1764079380");
    assert.equal(fields.exten, "1001");
  });

  it("takes the name out of a caller ID", () => {
    assert.equal(callerName('"Grace Caller" <5551234>'), "Grace Caller");
    assert.equal(callerName("Grace <5551234>"), "Grace");
    assert.equal(callerName("<5551234>"), undefined);
    assert.equal(callerName("5551234"), undefined);
    assert.equal(callerName('"Unknown" <5551234>'), undefined);
    assert.equal(messageInfoFrom(parseMessageFile(MSG('"Alice" <+15551234567>', 1764079380)), "1001").callerName, "Alice");
  });

  it("takes the number out of a caller ID", () => {
    assert.equal(callerNumber('"Alice" <+15551234567>'), "+15551234567");
    assert.equal(callerNumber("+15551234567"), "+15551234567");
    assert.equal(callerNumber("Unknown"), undefined);
    assert.equal(callerNumber('"Bob" <>'), undefined);
    assert.equal(callerNumber(undefined), undefined);
  });

  it("uses rdnis as the called number when known, else the extension", () => {
    const base = parseMessageFile(MSG("+1555", 1764079380));
    assert.deepEqual(messageInfoFrom(base, "1001"), { ani: "+1555", dnis: "1001", time: "2025-11-25T14:03:00.000Z", duration: 7 });
    assert.equal(messageInfoFrom({ ...base, rdnis: "+15557654321" }, "1001").dnis, "+15557654321");
    assert.equal(messageInfoFrom({ ...base, exten: "s" }, "2002").dnis, "2002");
  });

  it("finds the newest message of the INBOX, and nothing outside the spool", async () => {
    const spool = mkdtempSync(join(tmpdir(), "spool-"));
    const inbox = join(spool, "default", "1001", "INBOX");
    mkdirSync(inbox, { recursive: true });
    writeFileSync(join(inbox, "msg0000.txt"), MSG("+1111", 1764000000));
    writeFileSync(join(inbox, "msg0001.txt"), MSG("+2222", 1764079380));
    writeFileSync(join(inbox, "msg0001.wav"), "not text");
    assert.equal((await newestInboxMessage(spool, "default", "1001"))?.ani, "+2222");
    assert.equal(await newestInboxMessage(spool, "default", "1002"), undefined);
    assert.equal(await newestInboxMessage(spool, "default", "../default/1001"), undefined);
    assert.equal(await newestInboxMessage(spool, "default", ".."), undefined);
  });
});
