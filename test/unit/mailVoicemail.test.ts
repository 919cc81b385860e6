/**
 * Voicemail e-mails to MWI: the mail fields mailparser gives and the rules of the imap kind,
 * on a mail exactly as Asterisk 22 writes it (captured from the test bed, attachment cut),
 * mails made from FreeSWITCH's and FreePBX's documented default templates, and broken or
 * hostile mails.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { parseConfigYaml } from "../../src/config/load.js";
import { imapKind } from "../../src/gateway/imap/kind.js";
import { decodeEncodedWords, MAX_BODY_CHARS, MAX_FIELD_CHARS, readMailFields, repairUtf8AsLatin1 } from "../../src/gateway/imap/mailFields.js";
import { DEFAULT_RULES, type ImapSettings, type MailRules } from "../../src/gateway/imap/settings.js";
import { compileRules, isUrgent, parseDuration, voicemailOf } from "../../src/gateway/imap/voicemailRules.js";
import { ASTERISK_MAIL, crlf } from "./mailSamples.js";

/** FreeSWITCH's conf/voicemail.tpl with its variables filled in. */
const FREESWITCH_MAIL = crlf([
  "From: FreeSWITCH mod_voicemail <1000@pbx.example.org>",
  "To: <alice@example.org>",
  "Subject: 42 sec Voicemail from Grace Caller 5551234",
  "X-Priority: 3",
  "X-Mailer: FreeSWITCH",
  "Date: Tue, 01 Dec 2026 09:10:08 +0000",
  "Content-Type: multipart/alternative; ",
  "\tboundary=000XXX000",
  "",
  "--000XXX000",
  "Content-Type: text/plain; charset=ISO-8859-1; Format=Flowed",
  "Content-Disposition: inline",
  "Content-Transfer-Encoding: 7bit",
  "",
  "Created: Tuesday, December 01 2026, 09 10 AM",
  "From: Grace Caller 5551234",
  "Duration: 00:00:42",
  "Account: 1000@pbx.example.org",
  "",
  "--000XXX000",
  "Content-Type: text/html; charset=ISO-8859-1",
  "Content-Disposition: inline",
  "Content-Transfer-Encoding: 7bit",
  "",
  "<font face=arial><b>Message From Grace Caller 5551234</b><br></font>",
  "",
  "--000XXX000--",
  "",
]);

/** The FreeSWITCH rules the README documents. */
const FREESWITCH_RULES: MailRules = {
  mailbox: [{ from: "body", pattern: "^Account: ([^@\\s]+)@" }],
  ani: [{ from: "subject", pattern: "Voicemail from .* (\\+?\\d+)$" }],
  callerName: [{ from: "subject", pattern: "Voicemail from (.*) \\+?\\d+$" }],
  dnis: [],
  duration: [{ from: "subject", pattern: "^(\\d+) sec Voicemail" }],
  time: [],
  // X-Priority 1 or 2 marks urgent ones; FreeSWITCH's subject says nothing of it.
  urgent: [],
};

/** FreePBX's default e-mail (subject "PBX Voicemail Notification"), sent by Asterisk with its X-Asterisk headers. */
const FREEPBX_MAIL = crlf([
  "Date: Tue, 01 Dec 2026 09:10:08 +0000",
  "From: Voicemail <vm@freepbx.example.org>",
  "To: Alice <alice@example.org>",
  "Subject: PBX Voicemail Notification",
  "X-Asterisk-CallerID: 5551234",
  "X-Asterisk-CallerIDName: Grace Caller",
  "Content-Type: text/plain; charset=UTF-8",
  "",
  "Alice,",
  "",
  "There is a new voicemail in mailbox 2001:",
  "",
  '\tFrom:\t"Grace Caller" <5551234>',
  "\tLength:\t0:42 seconds",
  "\tDate:\tTuesday, December 01, 2026 at 09:10:08 AM",
  "",
  "Dial *98 to access your voicemail by phone.",
  "",
]);

const defaults = () => compileRules(DEFAULT_RULES);

async function map(raw: string, rules = defaults(), withBody = true) {
  return voicemailOf(rules, await readMailFields(Buffer.from(raw, "latin1"), withBody));
}

describe("voicemail mails to MWI", () => {
  it("reads Asterisk's own mail: mailbox, caller, caller name, called number, duration, time", async () => {
    const vm = await map(ASTERISK_MAIL);
    assert.deepEqual(vm, {
      mailbox: "2001",
      urgent: false,
      info: { ani: "5551234", callerName: "Grace Caller", dnis: "2001", duration: 11, time: "2026-12-01T13:06:12.000Z" },
    });
  });

  it("knows the mailbox and caller of Asterisk's mail from its header alone (the duration needs the body)", async () => {
    const header = ASTERISK_MAIL.slice(0, ASTERISK_MAIL.indexOf("\r\n\r\n") + 2);
    const vm = await map(header, defaults(), false);
    assert.equal(vm?.mailbox, "2001");
    assert.equal(vm?.info.ani, "5551234");
    assert.equal(vm?.info.duration, undefined);
  });

  it("maps a FreeSWITCH mail made from its documented template with the README's rules", async () => {
    const vm = await map(FREESWITCH_MAIL, compileRules(FREESWITCH_RULES));
    assert.deepEqual(vm, {
      mailbox: "1000",
      urgent: false,
      info: { ani: "5551234", callerName: "Grace Caller", dnis: "1000", duration: 42, time: "2026-12-01T09:10:08.000Z" },
    });
    // The defaults do not take it for an Asterisk voicemail.
    assert.equal(await map(FREESWITCH_MAIL), undefined);
  });

  it("maps FreePBX's default mail with the defaults (mailbox from the body)", async () => {
    const vm = await map(FREEPBX_MAIL);
    assert.equal(vm?.mailbox, "2001");
    assert.equal(vm?.info.ani, "5551234");
    assert.equal(vm?.info.callerName, "Grace Caller");
    assert.equal(vm?.info.duration, 42);
  });

  it("ignores mails that are not voicemails, also those that mention a mailbox", async () => {
    assert.equal(await map(crlf(["From: bob@example.org", "Subject: Lunch", "", "In mailbox 2001 or not, lunch is at noon.", ""])), undefined);
    assert.equal(await map(crlf(["Subject: Re: [PBX]: New message 1 in mailbox", "", "hi", ""])), undefined);
    assert.equal(await map(""), undefined);
  });

  it("knows Asterisk's urgent mail by its subject (\"New Urgent message\"): it has no priority header", async () => {
    // As Asterisk 22.10 wrote it for VoiceMail(2001@default,sU).
    const vm = await map(ASTERISK_MAIL.replace("Subject: [PBX]: New message 1 in mailbox 2001", "Subject: [PBX]: New Urgent message 1 in mailbox 2001"));
    assert.equal(vm?.mailbox, "2001");
    assert.equal(vm?.urgent, true);
    assert.equal(vm?.info.duration, 11);
    assert.equal((await map(ASTERISK_MAIL))?.urgent, false);
  });

  it("takes urgency from X-Priority 1 or 2, Importance: high and Priority: urgent, and not from X-Priority 3", async () => {
    const urgent = async (header: string) => (await map(ASTERISK_MAIL.replace("MIME-Version", `${header}\r\nMIME-Version`)))?.urgent;
    assert.equal(await urgent("X-Priority: 1 (Highest)"), true);
    assert.equal(await urgent("X-Priority: 2"), true);
    assert.equal(await urgent("Importance: High"), true);
    assert.equal(await urgent("Priority: urgent"), true);
    assert.equal(await urgent("X-Priority: 3"), false);
    assert.equal(await urgent("Importance: low"), false);
    assert.equal(isUrgent({ subject: "", headers: new Map(), to: [], from: [] }), false);
  });

  it("maps by a header or the To address for other PBXs and carriers", async () => {
    const rules = compileRules({ ...DEFAULT_RULES, mailbox: [{ from: "header:X-Voicemail-Box" }, { from: "to", pattern: "^vm-(\\d+)@" }] });
    const mail = (extra: string) => crlf(["From: carrier@example.net", "To: Alice <vm-3003@carrier.example.net>", extra, "Subject: You have a voicemail", "", "."]);
    assert.equal((await map(mail("X-Voicemail-Box: 4004"), rules))?.mailbox, "4004");
    assert.equal((await map(mail("X-Other: 1"), rules))?.mailbox, "3003");
  });

  it("accepts only the configured senders when some are given", async () => {
    assert.equal(await map(ASTERISK_MAIL, compileRules(DEFAULT_RULES, ["pbx@example.org"])), undefined);
    assert.equal((await map(ASTERISK_MAIL, compileRules(DEFAULT_RULES, ["Asterisk@localhost"])))?.mailbox, "2001");
  });

  it("leaves out what is not a number, a mailbox or a duration; Unknown callers have no name", async () => {
    const vm = await map(
      ASTERISK_MAIL.replace("X-Asterisk-CallerID: 5551234", "X-Asterisk-CallerID: Unknown")
        .replace("X-Asterisk-CallerIDName: Grace Caller", "X-Asterisk-CallerIDName: Unknown")
        .replace("from Grace Caller,", "from Unknown,")
        .replace("0:11 long", "9:99 long"),
    );
    assert.equal(vm?.mailbox, "2001");
    assert.equal(vm?.info.ani, undefined);
    assert.equal(vm?.info.callerName, undefined);
    assert.equal(vm?.info.duration, undefined);
    assert.equal(await map(ASTERISK_MAIL.replace("in mailbox 2001", "in mailbox ../../etc").replaceAll("mailbox 2001", "mailbox <script>")), undefined);
  });

  it("decodes encoded words and odd charsets, and strips control and bidi characters from the caller's name", async () => {
    // The header alone (the body's name would come first).
    const vm = await map(ASTERISK_MAIL.replace("X-Asterisk-CallerIDName: Grace Caller", "X-Asterisk-CallerIDName: =?UTF-8?B?R3LDpGNlIOKArkNhbGxlcg==?="), defaults(), false);
    assert.equal(vm?.info.callerName, "Gräce Caller");
    assert.equal(decodeEncodedWords("=?ISO-8859-1?Q?J=F6rg_M=FCller?="), "Jörg Müller");
    assert.equal(decodeEncodedWords("=?x-no-such-charset?B?QUJD?="), "=?x-no-such-charset?B?QUJD?=");
    assert.equal(typeof decodeEncodedWords("=?UTF-8?B?###?="), "string");
  });

  it("reads a non-ASCII caller name from Asterisk's body, which is UTF-8 under charset=ISO-8859-1 (the header has lost it)", async () => {
    // As Asterisk 22.10 wrote it for a caller named "Jörg Müller".
    const raw = Buffer.concat([
      Buffer.from(ASTERISK_MAIL.replace("X-Asterisk-CallerIDName: Grace Caller", "X-Asterisk-CallerIDName: Jrg Mller").split("from Grace Caller")[0]!, "latin1"),
      Buffer.from("from Jörg Müller", "utf8"),
      Buffer.from(ASTERISK_MAIL.split("from Grace Caller")[1]!, "latin1"),
    ]);
    const vm = voicemailOf(defaults(), await readMailFields(raw, true));
    assert.equal(vm?.info.callerName, "Jörg Müller");
    assert.equal(repairUtf8AsLatin1("plain"), "plain");
    assert.equal(repairUtf8AsLatin1("Ã©tÃ©"), "été");
    assert.equal(repairUtf8AsLatin1("Ãx"), "Ãx", "no valid UTF-8: unchanged");
    assert.equal(repairUtf8AsLatin1("Ã© €"), "Ã© €", "not all Latin-1: unchanged");
    // Without a name the body names the number: no caller name then.
    const numberOnly = ASTERISK_MAIL.replace("from Grace Caller,", "from 5551234,").replace("X-Asterisk-CallerIDName: Grace Caller", "X-Asterisk-CallerIDName: 5551234");
    assert.equal((await map(numberOnly))?.info.callerName, undefined);
  });

  it("bounds what a hostile mail costs: a 1 MB subject, 10,000 headers, a huge body", async () => {
    const huge = "A".repeat(1_000_000);
    const raw = Buffer.from(crlf([`Subject: [PBX]: New message 1 in mailbox 2001 ${huge}`, ...Array.from({ length: 10_000 }, (_, i) => `X-H${i}: ${i}`), "", huge, ""]));
    const t0 = Date.now();
    // Whole, mailparser refuses it (its own header limit): no fields, not a voicemail, no throw.
    const whole = await readMailFields(raw, true);
    assert.equal(voicemailOf(defaults(), whole), undefined);
    assert.match(whole.unreadable ?? "", /header/i, "the reason is kept for the log line");
    // As the session fetches it (the first maxFetchBytes), the subject is there, cut.
    const fields = await readMailFields(raw.subarray(0, 65_536), true);
    assert.ok(fields.subject.length <= MAX_FIELD_CHARS);
    assert.equal(voicemailOf(defaults(), fields)?.mailbox, "2001");
    const many = await readMailFields(Buffer.from(crlf(["Subject: [PBX]: New message 1 in mailbox 2001", ...Array.from({ length: 3_000 }, (_, i) => `X-H${i}: ${i}`), "", huge, ""])).subarray(0, 131_072), true);
    assert.ok(many.headers.size <= 200);
    assert.ok((many.body ?? "").length <= MAX_BODY_CHARS);
    assert.ok(Date.now() - t0 < 5_000, `took ${Date.now() - t0} ms`);
  });

  it("reads a mail cut off anywhere (the bounded fetch) without throwing", async () => {
    for (let n = 0; n < ASTERISK_MAIL.length; n += 37) await map(ASTERISK_MAIL.slice(0, n));
    assert.equal((await map(ASTERISK_MAIL.slice(0, 700)))?.mailbox, "2001");
  });

  it("parses durations as m:ss, h:mm:ss or seconds", () => {
    assert.equal(parseDuration("0:11"), 11);
    assert.equal(parseDuration("1:02:03"), 3723);
    assert.equal(parseDuration("42"), 42);
    assert.equal(parseDuration("00:00:42"), 42);
    assert.equal(parseDuration("1:60"), undefined);
    assert.equal(parseDuration("abc"), undefined);
    assert.equal(parseDuration(""), undefined);
  });

  it("refuses a rule with a broken pattern, naming it", () => {
    assert.throws(() => compileRules({ ...DEFAULT_RULES, ani: [{ from: "subject", pattern: "(" }] }), /rules\.ani\[0\]\.pattern/);
  });
});

describe("imap settings", () => {
  const config = (imap: string) =>
    parseConfigYaml(
      [
        "homeserver: { url: 'http://127.0.0.1:8008', domain: localhost }",
        "appservice: { port: 9000, url: 'http://127.0.0.1:9000' }",
        "systems:",
        "  - id: mail",
        "    name: Carrier Voicemail",
        "    botLocalpart: vm_mail",
        "    kind: imap",
        `    imap: ${imap}`,
      ].join("\n"),
    );

  it("fills in the defaults (port 143, INBOX, the Asterisk rules)", () => {
    const system = config("{ host: 127.0.0.1, username: voicemail, password: secret }").systems[0] as unknown as { imap: Record<string, unknown> };
    assert.equal(system.imap.port, 143);
    assert.equal(system.imap.tls, false);
    assert.equal(system.imap.folder, "INBOX");
    assert.deepEqual((system.imap.rules as MailRules).mailbox, DEFAULT_RULES.mailbox);
  });

  it("a rules block that gives only some lists keeps the defaults of the others (the README's FreeSWITCH example)", () => {
    const system = config("{ host: 127.0.0.1, rules: { mailbox: [{ from: body, pattern: '^Account: ([^@\\s]+)@' }] } }").systems[0] as unknown as { imap: ImapSettings };
    assert.equal(system.imap.rules.mailbox.length, 1);
    assert.deepEqual(system.imap.rules.ani, DEFAULT_RULES.ani);
    assert.deepEqual(system.imap.rules.duration, DEFAULT_RULES.duration);
  });

  it("refuses unknown keys, a username without a password and a broken rule; warns of clear text off loopback", () => {
    assert.throws(() => config("{ host: 127.0.0.1, user: voicemail }"), /imap/);
    const check = (s: Record<string, unknown>) => imapKind.check!({ ...(config("{ host: 127.0.0.1 }").systems[0] as unknown as { imap: object }).imap, ...s } as never);
    assert.deepEqual(check({ username: "voicemail" }).problems, ["password: is required with username"]);
    assert.match(check({ rules: { ...DEFAULT_RULES, time: [{ from: "body", pattern: "[" }] } }).problems.join(), /rules\.time\[0\]/);
    assert.match(check({ host: "mail.example.org" }).warnings.join(), /clear text/);
    assert.deepEqual(check({}).warnings, []);
  });

  it("the commented imap system of config.sample.yaml is valid, also with every commented key in it", () => {
    const sample = readFileSync(new URL("../../../config.sample.yaml", import.meta.url), "utf8").split("\n");
    const start = sample.findIndex((l) => l.startsWith("  # - id: mail"));
    assert.ok(start > 0, "the sample has a commented imap system");
    let end = start;
    while (end < sample.length && sample[end]!.startsWith("  #")) end++;
    const once = sample.slice(start, end).map((l) => l.replace(/^ {2}# ?/, "  "));
    // Then the commented keys (a key, a list item), not the prose.
    const twice = once.map((l) => l.replace(/^(\s*)# (?=\s*[A-Za-z]+:|\s*- )/, "$1"));
    for (const lines of [once, twice]) {
      const text = [
        "homeserver: { url: 'http://127.0.0.1:8008', domain: localhost }",
        "appservice: { port: 9000, url: 'http://127.0.0.1:9000' }",
        "systems:",
        ...lines.filter((l) => !/^\s*#/.test(l)).map((l) => l.replace(/\s+#\s.*$/, "")),
      ].join("\n");
      const system = parseConfigYaml(text).systems[0] as unknown as { kind: string; imap: ImapSettings };
      assert.equal(system.kind, "imap");
      assert.equal(system.imap.host, "mail.example.org");
      assert.deepEqual(imapKind.check!(system.imap).problems, []);
      if (lines === twice) {
        assert.deepEqual(system.imap.senders, ["asterisk@pbx.example.org"]);
        assert.equal(system.imap.rules.mailbox.length, 1, "the sample's rules were read");
      }
    }
  });
});
