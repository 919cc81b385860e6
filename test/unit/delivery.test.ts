import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { coalesce } from "../../src/core/coalesce.js";
import { formatSince, renderAggregate, renderNotification, type MailboxView } from "../../src/core/format.js";
import type { MailboxChange, MailboxState } from "../../src/core/mwi.js";
import { classifyFailure } from "../../src/delivery/roomWriter.js";
import { extraTarget, mainTarget, parseTarget, systemTarget } from "../../src/delivery/targets.js";

const T0 = Date.UTC(2026, 10, 25, 9, 12);
const state = (mailbox: string, n: number, old = 0, systemId = "carrier", updated = T0): MailboxState => ({
  systemId,
  mailbox,
  waiting: n > 0,
  new: n,
  old,
  urgentNew: 0,
  urgentOld: 0,
  updated,
});
const change = (kind: MailboxChange["kind"], current: MailboxState, previous?: MailboxState): MailboxChange => ({
  kind,
  current,
  ...(previous ? { previous } : {}),
});

describe("coalesce", () => {
  it("keeps one change per mailbox, from the first previous state to the last current one", () => {
    const merged = coalesce([
      { change: change("new-message", state("1001", 1), state("1001", 0)), createdAt: 1 },
      { change: change("new-message", state("2002", 1, 0, "office"), state("2002", 0, 0, "office")), createdAt: 2 },
      { change: change("new-message", state("1001", 3), state("1001", 1)), createdAt: 3 },
    ]);
    assert.equal(merged.length, 2);
    assert.equal(merged[0]!.current.new, 3);
    assert.equal(merged[0]!.previous?.new, 0);
    assert.equal(merged[0]!.firstAt, 1);
    assert.equal(merged[0]!.merged, 2);
    assert.equal(merged[0]!.kind, "new-message");
    assert.equal(merged[1]!.current.mailbox, "2002");
  });

  it("a voicemail that arrived and was listened to while away is no news", () => {
    const [merged] = coalesce([
      { change: change("new-message", state("1001", 1, 4), state("1001", 0, 4)), createdAt: 1 },
      { change: change("counts", state("1001", 0, 5), state("1001", 1, 4)), createdAt: 2 },
    ]);
    assert.equal(merged!.kind, "counts");
    assert.equal(merged!.current.old, 5);
  });

  it("nothing in, nothing out", () => {
    assert.deepEqual(coalesce([]), []);
  });
});

describe("delayed and aggregate messages", () => {
  it("says how many arrived since when, and '3 new' only once", () => {
    const n = renderNotification({
      change: change("new-message", state("1001", 3, 5, "carrier", T0 + 3600_000), state("1001", 0, 5)),
      systemName: "Carrier",
      timeZone: "UTC",
      others: [],
      since: T0,
    });
    assert.equal(n.msgtype, "m.text");
    assert.deepEqual(n.body.split("\n").slice(0, 2), ["3 voicemails since 09:12", "Carrier mailbox 1001: 3 new, 5 old"]);
  });

  it("formatSince names the day when it is not today", () => {
    assert.equal(formatSince(T0, T0 + 60_000, "UTC"), "09:12");
    assert.equal(formatSince(T0, T0 + 2 * 86400_000, "UTC"), "25 Nov, 09:12");
    assert.equal(formatSince(T0, T0 + 60_000, "Asia/Tokyo"), "18:12");
  });

  const GRACE = { ani: "+15551234567", callerName: "Grace Caller", dnis: "+15557654321", time: new Date(T0).toISOString(), duration: 42 };

  it("leads with the caller, then the mailbox, the called number and time, then the total: 3 new voicemails in 2 mailboxes", () => {
    const office = state("1001", 2, 0, "office");
    const mobile = { ...state("555", 1, 3, "mobile"), lastMessage: GRACE };
    const all: MailboxView[] = [
      { systemId: "office", systemName: "Office", mailbox: "1001", state: office },
      { systemId: "mobile", systemName: "Mobile", mailbox: "555", state: mobile },
    ];
    const n = renderAggregate({
      changes: [{ systemName: "Mobile", change: change("new-message", mobile, state("555", 0, 3, "mobile")) }],
      all,
      timeZone: "UTC",
      footers: ["Dial *86", "Global <b>"],
      region: "US",
    });
    assert.equal(n.msgtype, "m.text");
    assert.deepEqual(n.body.split("\n"), [
      "New voicemail from Grace Caller (+1 555 123 4567), 0:42",
      "Mobile mailbox 555: 1 new, 3 old",
      "To +1 555 765 4321 · 25 Nov 2026, 09:12 UTC",
      "3 new voicemails in 2 mailboxes: Office 2, Mobile 1",
      "Dial *86",
      "Global <b>",
    ]);
    assert.equal(
      n.html,
      "<p><strong>New voicemail from Grace Caller (+1 555 123 4567), 0:42</strong><br>Mobile mailbox 555: 1 new, 3 old<br>" +
        "To +1 555 765 4321 · 25 Nov 2026, 09:12 UTC</p><p>3 new voicemails in 2 mailboxes: Office 2, Mobile 1</p>" +
        "<p><em>Dial *86</em></p><p><em>Global &#60;b&#62;</em></p>",
    );
  });

  it("several changes: the newest caller first, one list item per mailbox, since when said once", () => {
    const office = { ...state("1001", 2, 0, "office", T0 + 120_000), lastMessage: GRACE };
    const mobile = state("555", 0, 4, "mobile", T0 + 60_000);
    const all: MailboxView[] = [
      { systemId: "office", systemName: "Office", mailbox: "1001", state: office },
      { systemId: "mobile", systemName: "Mobile", mailbox: "555", state: mobile },
    ];
    const n = renderAggregate({
      changes: [
        { systemName: "Mobile", change: change("counts", mobile, state("555", 1, 3, "mobile")) },
        { systemName: "Office", change: change("new-message", office, state("1001", 0, 0, "office")) },
      ],
      all,
      timeZone: "UTC",
      footers: [],
      since: T0,
    });
    assert.equal(n.msgtype, "m.text");
    assert.deepEqual(n.body.split("\n"), [
      "2 voicemails since 09:12, the last from Grace Caller (+1 555 123 4567), 0:42",
      "All voicemail heard in Mobile mailbox 555: 4 old",
      "Office mailbox 1001: 2 new, 0 old",
      "25 Nov 2026, 09:14 UTC",
    ]);
    assert.ok(!n.body.includes("new voicemails in"), "no total where it says nothing more than the list");
    assert.match(n.html, /^<p><strong>2 voicemails since 09:12, [^<]*<\/strong><\/p><ul><li>All voicemail heard in Mobile mailbox 555: 4 old<\/li><li>Office mailbox 1001: 2 new, 0 old<\/li><\/ul>/);
  });

  it("names the mailbox where a system has several, and says what happened when nothing is new", () => {
    const a = state("1001", 0, 1);
    const all: MailboxView[] = [
      { systemId: "carrier", systemName: "Carrier", mailbox: "1001", state: a },
      { systemId: "carrier", systemName: "Carrier", mailbox: "1002", state: state("1002", 2) },
    ];
    const n = renderAggregate({ changes: [{ systemName: "Carrier", change: change("counts", a, state("1001", 1)) }], all, timeZone: "UTC", footers: [] });
    assert.equal(n.msgtype, "m.notice");
    assert.equal(n.body.split("\n")[0], "All voicemail heard in Carrier mailbox 1001: 1 old");
    assert.match(n.body, /^2 new voicemails in Carrier 1002$/m);
    const none = renderAggregate({ changes: [{ systemName: "Carrier", change: change("counts", { ...a, old: 0, waiting: false }, a) }], all: [all[0]!], timeZone: "UTC", footers: [] });
    assert.equal(none.body.split("\n")[0], "All voicemail deleted in Carrier mailbox 1001");
    assert.ok(!none.body.includes("new voicemails in"), "one mailbox: no total line");
    const both = renderAggregate({
      changes: [
        { systemName: "Carrier", change: change("counts", a, state("1001", 1)) },
        { systemName: "Carrier", change: change("counts", state("1002", 2, 3), state("1002", 2, 4)) },
      ],
      all,
      timeZone: "UTC",
      footers: [],
    });
    assert.equal(both.body.split("\n")[0], "Voicemail changed in 2 mailboxes");
    const allHeard = renderAggregate({
      changes: [{ systemName: "Carrier", change: change("counts", a, state("1001", 1)) }],
      all: [all[0]!, { ...all[1]!, state: state("1002", 0, 2) }],
      timeZone: "UTC",
      footers: [],
    });
    assert.equal(allHeard.body.split("\n").at(-1), "No new voicemail in your mailboxes");
  });
});

describe("delivery plumbing", () => {
  it("classifies homeserver failures", () => {
    assert.deepEqual(classifyFailure({ statusCode: 429, errcode: "M_LIMIT_EXCEEDED", retryAfterMs: 1234 }, 1).kind, "retry");
    const asked = (classifyFailure({ statusCode: 429, body: { retry_after_ms: 777 } }, 1) as { afterMs: number }).afterMs;
    assert.ok(asked >= 777 && asked <= 777 * 1.1, `retry_after_ms is honoured (${asked})`);
    assert.equal(classifyFailure({ statusCode: 403, errcode: "M_FORBIDDEN" }, 1).kind, "gone");
    assert.equal(classifyFailure({ statusCode: 400, errcode: "M_BAD_JSON" }, 1).kind, "fatal");
    assert.equal(classifyFailure({ statusCode: 502 }, 1).kind, "retry");
    const down = classifyFailure(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }), 10);
    assert.equal(down.kind, "retry");
    assert.ok((down as { afterMs: number }).afterMs <= 60_000, "backoff is capped");
  });

  it("knows which failures cannot have stored the request, and which may have", () => {
    const refused = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    const reset = Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
    assert.equal(classifyFailure(refused, 1).maybeStored, false);
    assert.equal(classifyFailure({ statusCode: 429, errcode: "M_LIMIT_EXCEEDED" }, 1).maybeStored, false);
    assert.equal(classifyFailure({ statusCode: 400, errcode: "M_BAD_JSON" }, 1).maybeStored, false);
    assert.equal(classifyFailure(reset, 1).maybeStored, true);
    assert.equal(classifyFailure({ statusCode: 502 }, 1).maybeStored, true);
    assert.equal(classifyFailure(Object.assign(new Error("ESOCKETTIMEDOUT"), { code: "ESOCKETTIMEDOUT" }), 1).maybeStored, true);
  });

  it("target keys round-trip", () => {
    assert.deepEqual(parseTarget(systemTarget("@a:x", "carrier")), { kind: "sys", userId: "@a:x", systemId: "carrier" });
    assert.deepEqual(parseTarget(mainTarget("@a:x")), { kind: "main", userId: "@a:x" });
    assert.deepEqual(parseTarget(extraTarget("t1")), { kind: "extra", targetId: "t1" });
    assert.equal(parseTarget("bogus|x"), undefined);
    assert.equal(parseTarget('["sys","@a:x"]'), undefined);
    assert.equal(parseTarget("[not json"), undefined);
  });

  it("user IDs with | cannot confuse target keys", () => {
    assert.deepEqual(parseTarget(systemTarget("@a|b:x", "carrier")), { kind: "sys", userId: "@a|b:x", systemId: "carrier" });
    assert.deepEqual(parseTarget(mainTarget("@a|main|b:x")), { kind: "main", userId: "@a|main|b:x" });
    assert.notEqual(systemTarget("@a|b:x", "c"), systemTarget("@a:x", "b|c"));
  });

  it("keys stored before schema version 2 are still read", () => {
    assert.deepEqual(parseTarget("sys|@a|b:x|carrier"), { kind: "sys", userId: "@a|b:x", systemId: "carrier" });
    assert.deepEqual(parseTarget("main|@a|b:x"), { kind: "main", userId: "@a|b:x" });
    assert.deepEqual(parseTarget("extra|t1"), { kind: "extra", targetId: "t1" });
  });
});

describe("mailboxesTopic", () => {
  it("shows every mailbox side by side", async () => {
    const { mailboxesTopic } = await import("../../src/core/format.js");
    assert.equal(
      mailboxesTopic([
        { systemId: "office", systemName: "Office", mailbox: "1001", state: state("1001", 2, 5, "office") },
        { systemId: "mobile", systemName: "Mobile", mailbox: "555" },
      ]),
      "Office 1001: 2 new, 5 old · Mobile 555: no data yet",
    );
    assert.match(mailboxesTopic([]), /No linked mailboxes/);
  });
});
