import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FrameParser, serializeAction, type Frame } from "../../src/gateway/ami/frame.js";
import { newestMessage, parseAmiMailbox, parseCallerId, parseOrigDate } from "../../src/gateway/ami/mailbox.js";
import { AmiPacket } from "../../src/gateway/ami/frame.js";
import { countsFrom } from "../../src/gateway/ami/voicemailActions.js";
import { dialStringFor } from "../../src/gateway/ami/amiGateway.js";

const BANNER = "Asterisk Call Manager/11.0.0\r\n";
const parse = (text: string, parser = new FrameParser()) => parser.push(Buffer.from(text));
const packets = (frames: Frame[]) => frames.flatMap((f) => (f.type === "packet" ? [f.packet] : []));

describe("AMI frame parser", () => {
  it("reads the banner, then packets of Key: Value lines ended by an empty line", () => {
    const frames = parse(`${BANNER}Response: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\nEvent: MessageWaiting\r\nMailbox: 1001@default\r\nNew: 1\r\n\r\n`);
    assert.deepEqual(frames[0], { type: "banner", text: "Asterisk Call Manager/11.0.0" });
    const [login, mwi] = packets(frames);
    assert.equal(login!.get("response"), "Success");
    assert.equal(login!.get("ActionID"), "1");
    assert.equal(mwi!.get("Mailbox"), "1001@default");
  });

  it("gives the same packets however the bytes are split, CRLF or bare LF", () => {
    const text = `${BANNER}Event: A\r\nOutput: one\r\nOutput: two\r\n\r\nEvent: B\nKey: v: with colon\n\n`;
    const whole = packets(parse(text)).map((p) => p.headers);
    for (let cut = 1; cut < text.length; cut++) {
      const parser = new FrameParser();
      const split = packets([...parser.push(Buffer.from(text.slice(0, cut))), ...parser.push(Buffer.from(text.slice(cut)))]).map((p) => p.headers);
      assert.deepEqual(split, whole, `cut at ${cut}`);
    }
    const [a, b] = packets(parse(text));
    assert.deepEqual(a!.all("Output"), ["one", "two"]);
    assert.equal(b!.get("Key"), "v: with colon");
  });

  it("splits UTF-8 caller names cut in the middle of a character correctly", () => {
    const bytes = Buffer.from(`${BANNER}Event: VoicemailBoxDetail\r\nCallerID: "Zoë Ångström" <5551234>\r\n\r\n`);
    const at = bytes.indexOf(0xc3) + 1;
    const parser = new FrameParser();
    const frames = [...parser.push(bytes.subarray(0, at)), ...parser.push(bytes.subarray(at))];
    assert.equal(packets(frames)[0]!.get("CallerID"), '"Zoë Ångström" <5551234>');
  });

  it("refuses a peer that is not AMI, and stops after an error", () => {
    const parser = new FrameParser();
    assert.deepEqual(parser.push(Buffer.from("HTTP/1.1 400 Bad Request\r\n\r\n")), [{ type: "error", reason: "no AMI banner (is this an Asterisk manager port?)" }]);
    assert.deepEqual(parser.push(Buffer.from("Event: X\r\n\r\n")), []);
  });

  it("bounds a line, a packet's headers and its size: a hostile peer cannot grow memory", () => {
    const limits = { maxLineBytes: 100, maxHeaders: 5, maxPacketBytes: 300 };
    const endless = new FrameParser(limits);
    endless.push(Buffer.from(BANNER));
    let frames: Frame[] = [];
    for (let i = 0; i < 5 && !frames.length; i++) frames = endless.push(Buffer.alloc(40, 0x41));
    assert.deepEqual(frames, [{ type: "error", reason: "a line longer than 100 bytes" }]);
    assert.deepEqual(parse(`${BANNER}${"H: v\r\n".repeat(6)}\r\n`, new FrameParser(limits)).at(-1), { type: "error", reason: "a packet with more than 5 headers" });
    const big = `${BANNER}${`K: ${"x".repeat(90)}\r\n`.repeat(4)}\r\n`;
    assert.deepEqual(parse(big, new FrameParser(limits)).at(-1), { type: "error", reason: "a packet larger than 300 bytes" });
  });

  it("a stray CR inside a line becomes a space (found by the fuzzer)", () => {
    const [p] = packets(parse(`${BANNER}A:\r  \r\nCaller\rID: x\ry\n\n`));
    assert.deepEqual(p!.headers, [["A", "   "], ["Caller ID", "x y"]]);
  });

  it("skips lines without a key instead of trusting them", () => {
    const [p] = packets(parse(`${BANNER}Event: X\r\n: no key\r\nno colon\r\nA: 1\r\n\r\n`));
    assert.deepEqual(p!.headers, [["Event", "X"], ["A", "1"]]);
  });

  it("writes actions, and refuses a key or value that would add a header or an action", () => {
    assert.equal(serializeAction([["Action", "Ping"], ["ActionID", "a-1"]]), "Action: Ping\r\nActionID: a-1\r\n\r\n");
    assert.throws(() => serializeAction([["Action", "Ping\r\nAction: Originate"]]), /line break/);
    assert.throws(() => serializeAction([["Mailbox", "1001\nChannel: x"]]), /line break/);
    assert.throws(() => serializeAction([["Bad Key", "v"]]), /not allowed/);
  });
});

describe("AMI mailboxes and answers", () => {
  it("takes 1001 and 1001@sales, refuses everything that could break a header or a dial string", () => {
    assert.deepEqual(parseAmiMailbox("1001", "default"), { box: "1001", context: "default" });
    assert.deepEqual(parseAmiMailbox("1001@sales", "default"), { box: "1001", context: "sales" });
    assert.deepEqual(parseAmiMailbox("*97#", "default"), { box: "*97#", context: "default" });
    for (const bad of ["", "1001\r\nAction: Originate", "1001&PJSIP/2002", "1001,1", "1001/2", "1001|x", "a@b@c", "1001@", "@sales", "..", ".hidden", "1001 x", "1001@sa#les", "x".repeat(81)]) {
      assert.equal(parseAmiMailbox(bad, "default"), undefined, JSON.stringify(bad));
    }
  });

  it("reads caller IDs as Asterisk writes them", () => {
    assert.deepEqual(parseCallerId('"Grace Caller" <5551234>'), { number: "5551234", name: "Grace Caller" });
    assert.deepEqual(parseCallerId("<+15551234567>"), { number: "+15551234567" });
    assert.deepEqual(parseCallerId("5551234"), { number: "5551234" });
    assert.deepEqual(parseCallerId('"Unknown" <Unknown>'), {});
    assert.deepEqual(parseCallerId(undefined), {});
    assert.deepEqual(parseCallerId('"A <b>" <123>'), { number: "123", name: "A <b>" });
  });

  it("reads origdate only in UTC/GMT (a zone abbreviation names no offset)", () => {
    assert.equal(parseOrigDate("Tue Dec  1 12:50:50 PM UTC 2026"), Date.UTC(2026, 11, 1, 12, 50, 50) / 1000);
    assert.equal(parseOrigDate("Tue Dec  1 12:05:00 AM GMT 2026"), Date.UTC(2026, 11, 1, 0, 5, 0) / 1000);
    assert.equal(parseOrigDate("Tue Dec  1 12:50:50 PM CET 2026"), undefined);
    assert.equal(parseOrigDate("garbage"), undefined);
  });

  it("takes the newest unheard message: by the msg_id's time, INBOX or Urgent only", () => {
    const info = newestMessage(
      [
        { folder: "INBOX", callerId: '"Old News" <1>', id: "1796129000-00000000", duration: "3" },
        { folder: "Urgent", callerId: '"Grace Caller" <5551234>', id: "1796129450-00000001", duration: "42", date: "Tue Dec  1 12:50:50 PM UTC 2026" },
        { folder: "Old", callerId: '"Heard" <2>', id: "1796129999-00000002" },
      ],
      "1001",
    );
    assert.deepEqual(info, { dnis: "1001", ani: "5551234", callerName: "Grace Caller", time: new Date(1796129450_000).toISOString(), duration: 42 });
    assert.equal(newestMessage([{ folder: "Old" }], "1001"), undefined);
  });

  it("counts: UrgMessages (not the documented UrgentMessages) is left out of NewMessages; our new includes it", () => {
    const p = new AmiPacket([["Response", "Success"], ["UrgMessages", "2"], ["NewMessages", "3"], ["OldMessages", "4"]]);
    assert.deepEqual(countsFrom(p), { waiting: true, new: 5, old: 4, urgentNew: 2, urgentOld: 0 });
    assert.deepEqual(countsFrom(new AmiPacket([["NewMessages", "-1"], ["OldMessages", "1e9"]])), { waiting: false, new: 0, old: 0, urgentNew: 0, urgentOld: 0 });
  });

  it("puts the mailbox into the dial string", () => {
    assert.equal(dialStringFor("PJSIP/{mailbox}", { box: "1001", context: "sales" }), "PJSIP/1001");
    assert.equal(dialStringFor("Local/{mailbox}@phones-{context}", { box: "1001", context: "sales" }), "Local/1001@phones-sales");
  });
});
