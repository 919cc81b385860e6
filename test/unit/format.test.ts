import { describe, it } from "node:test";
import assert from "node:assert/strict";

import {
  countsText,
  dmRoomName,
  escapeHtml,
  formatTimestamp,
  renderMailboxList,
  renderNotification,
  type MailboxView,
  type NotificationInput,
} from "../../src/core/format.js";
import type { MailboxChange, MailboxState, MessageInfo } from "../../src/core/mwi.js";

const T_MESSAGE = Date.parse("2026-11-25T14:03:00Z");
const T_RECEIVED = Date.parse("2026-11-25T14:04:00Z");

function state(overrides: Partial<MailboxState> = {}): MailboxState {
  return {
    systemId: "carrier",
    mailbox: "1001",
    waiting: true,
    new: 2,
    old: 5,
    urgentNew: 0,
    urgentOld: 0,
    updated: T_RECEIVED,
    ...overrides,
  };
}

const CALLER: MessageInfo = { ani: "+15551234567", dnis: "+15557654321", time: "2026-11-25T14:03:00.000Z", duration: 42 };

function input(change: MailboxChange, overrides: Partial<NotificationInput> = {}): NotificationInput {
  return { change, systemName: "Carrier Voicemail", footer: "Dial *86 to listen", timeZone: "UTC", others: [], ...overrides };
}

const OFFICE: MailboxView = {
  systemId: "office",
  systemName: "Office",
  mailbox: "22",
  state: state({ systemId: "office", mailbox: "22", waiting: false, new: 0, old: 3 }),
};
const NO_DATA: MailboxView = { systemId: "home", systemName: "Home", mailbox: "9" };

describe("formatTimestamp", () => {
  it("shows a UTC instant in the zone it is given, with the zone named", () => {
    assert.equal(formatTimestamp(T_MESSAGE, "UTC"), "25 Nov 2026, 14:03 UTC");
    assert.equal(formatTimestamp(T_MESSAGE, "Europe/Berlin"), "25 Nov 2026, 15:03 CET");
    assert.equal(formatTimestamp(T_MESSAGE, "America/New_York"), "25 Nov 2026, 09:03 GMT-5");
    assert.equal(formatTimestamp(T_MESSAGE, "Asia/Kolkata"), "25 Nov 2026, 19:33 GMT+5:30");
  });

  it("follows summer time", () => {
    assert.equal(formatTimestamp(Date.parse("2026-07-01T09:05:00Z"), "Europe/Berlin"), "1 Jul 2026, 11:05 CEST");
    assert.equal(formatTimestamp(Date.parse("2026-07-01T09:05:00Z"), "America/New_York"), "1 Jul 2026, 05:05 GMT-4");
  });

  it("crosses the date line into the previous or next day", () => {
    const t = Date.parse("2026-01-01T02:30:00Z");
    assert.equal(formatTimestamp(t, "America/Los_Angeles"), "31 Dec 2025, 18:30 GMT-8");
    assert.equal(formatTimestamp(Date.parse("2025-12-31T23:30:00Z"), "Asia/Tokyo"), "1 Jan 2026, 08:30 GMT+9");
  });

  it("throws for a zone that does not exist", () => {
    assert.throws(() => formatTimestamp(T_MESSAGE, "Mars/Olympus_Mons"), RangeError);
  });
});

describe("countsText", () => {
  it("plain counts, and urgent counts only when there are any", () => {
    assert.equal(countsText(undefined), "no data yet");
    assert.equal(countsText(state()), "2 new, 5 old");
    assert.equal(countsText(state({ urgentNew: 1 })), "2 new, 5 old (1 urgent new, 0 urgent old)");
    assert.equal(countsText(state({ urgentOld: 3 })), "2 new, 5 old (0 urgent new, 3 urgent old)");
    assert.equal(countsText(state({ new: 0, old: 0 })), "0 new, 0 old");
  });
});

describe("escapeHtml", () => {
  it("escapes the five HTML-special characters as numeric references", () => {
    assert.equal(escapeHtml(`<a href="x">'&'</a>`), "&#60;a href=&#34;x&#34;&#62;&#39;&#38;&#39;&#60;/a&#62;");
    assert.equal(escapeHtml("plain +1 555 · ok"), "plain +1 555 · ok");
  });
});

const GRACE: MessageInfo = { ...CALLER, callerName: "Grace Caller" };
const arrival = (current: MailboxState, previous: MailboxState = state({ new: current.new - 1, old: current.old })): MailboxChange => ({
  kind: "new-message",
  previous,
  current,
});
const counts = (previous: Partial<MailboxState> | undefined, current: Partial<MailboxState>): MailboxChange => ({
  kind: "counts",
  ...(previous ? { previous: state(previous) } : {}),
  current: state(current),
});

describe("renderNotification: a new voicemail", () => {
  it("leads with who called and how long, then the mailbox and its counts, the called number and the time, the footer", () => {
    const n = renderNotification(input(arrival(state({ lastMessage: GRACE }))));
    assert.equal(n.msgtype, "m.text");
    assert.equal(
      n.body,
      [
        "New voicemail from Grace Caller (+1 555 123 4567), 0:42",
        "Carrier Voicemail mailbox 1001: 2 new, 5 old",
        "To +1 555 765 4321 · 25 Nov 2026, 14:03 UTC",
        "Dial *86 to listen",
      ].join("\n"),
    );
    assert.equal(
      n.html,
      "<p><strong>New voicemail from Grace Caller (+1 555 123 4567), 0:42</strong><br>" +
        "Carrier Voicemail mailbox 1001: 2 new, 5 old<br>" +
        "To +1 555 765 4321 · 25 Nov 2026, 14:03 UTC</p>" +
        "<p><em>Dial *86 to listen</em></p>",
    );
  });

  it("an urgent one says so, and the counts keep the urgent part", () => {
    const n = renderNotification(input(arrival(state({ urgentNew: 1, lastMessage: GRACE }))));
    assert.equal(n.body.split("\n")[0], "New voicemail from Grace Caller (+1 555 123 4567), 0:42, urgent");
    const kept = renderNotification(input(arrival(state({ urgentNew: 1, lastMessage: GRACE }), state({ new: 1, urgentNew: 1 }))));
    assert.equal(kept.body.split("\n")[0], "New voicemail from Grace Caller (+1 555 123 4567), 0:42", "the urgent one was the one before");
    assert.equal(n.body.split("\n")[1], "Carrier Voicemail mailbox 1001: 2 new, 5 old (1 urgent new, 0 urgent old)");
  });

  it("no urgent part when both urgent counts are 0", () => {
    const n = renderNotification(input(arrival(state())));
    assert.equal(n.body.split("\n")[0], "New voicemail");
    assert.ok(!n.body.includes("urgent"));
    assert.ok(!n.html.includes("urgent"));
  });

  it("the name only, the number only, or neither, as far as they are known", () => {
    const line = (lastMessage: MessageInfo) => renderNotification(input(arrival(state({ lastMessage })))).body.split("\n")[0];
    assert.equal(line({ callerName: "Grace Caller" }), "New voicemail from Grace Caller");
    assert.equal(line({ ani: "+15551234567" }), "New voicemail from +1 555 123 4567");
    assert.equal(line({ ani: "+15551234567", duration: 65 }), "New voicemail from +1 555 123 4567, 1:05");
    assert.equal(line({ duration: 3725 }), "New voicemail, 1:02:05");
    assert.equal(line({ ani: "100", duration: 0 }), "New voicemail from 100, 0:00");
    // A PBX that knows no name sends the number as the name: it is said once.
    assert.equal(line({ ani: "+15551234567", callerName: "+1 (555) 123-4567" }), "New voicemail from +1 555 123 4567");
    assert.equal(line({ ani: "2001", callerName: "2001" }), "New voicemail from 2001");
  });

  it("the called number only where it says more than the mailbox", () => {
    const second = (lastMessage: MessageInfo) => renderNotification(input(arrival(state({ lastMessage })))).body.split("\n")[2];
    assert.equal(second({ dnis: "1001" }), "25 Nov 2026, 14:04 UTC");
    assert.equal(second({ dnis: "+15557654321" }), "To +1 555 765 4321 · 25 Nov 2026, 14:04 UTC");
    assert.equal(
      renderNotification(input(arrival(state({ mailbox: "1001@sales", lastMessage: { dnis: "1001" } })))).body.split("\n")[2],
      "25 Nov 2026, 14:04 UTC",
    );
  });

  it("national numbers are read in the configured region", () => {
    const de = renderNotification(input(arrival(state({ lastMessage: { ani: "030 1234567", dnis: "089 9876543" } })), { region: "DE" }));
    assert.equal(de.body.split("\n")[0], "New voicemail from +49 30 1234567");
    assert.match(de.body, /^To \+49 89 9876543 · /m);
    const none = renderNotification(input(arrival(state({ lastMessage: { ani: "030 1234567" } }))));
    assert.equal(none.body.split("\n")[0], "New voicemail from 030 1234567", "no region: shown as given");
  });

  it("without a message time (or with a broken one) the update's time is shown", () => {
    const none = renderNotification(input(arrival(state({ lastMessage: { ani: "+1" } }))));
    assert.match(none.body, /14:04 UTC/);
    const broken = renderNotification(input(arrival(state({ lastMessage: { ani: "+1", time: "garbage" } }))));
    assert.match(broken.body, /14:04 UTC/);
  });

  it("the time stamp is in the user's time zone", () => {
    const change = arrival(state({ lastMessage: CALLER }));
    const berlin = renderNotification(input(change, { timeZone: "Europe/Berlin" }));
    const newYork = renderNotification(input(change, { timeZone: "America/New_York" }));
    assert.equal(berlin.body.split("\n")[2], "To +1 555 765 4321 · 25 Nov 2026, 15:03 CET");
    assert.equal(newYork.body.split("\n")[2], "To +1 555 765 4321 · 25 Nov 2026, 09:03 GMT-5");
    assert.ok(berlin.html.includes("15:03 CET"));
    assert.ok(newYork.html.includes("09:03 GMT-5"));
  });

  it("delayed: one that waited reads like any other, and says '1 new' once", () => {
    const n = renderNotification(input(arrival(state({ new: 1, old: 0, lastMessage: GRACE }), state({ new: 0, old: 0 })), { since: T_MESSAGE - 3600_000 }));
    assert.equal(n.body.split("\n")[0], "New voicemail from Grace Caller (+1 555 123 4567), 0:42");
    assert.equal(n.body.match(/1 new/g)?.length, 1, n.body);
    assert.ok(!n.body.includes("since"));
  });

  it("delayed: several say since when, and name the newest caller", () => {
    const n = renderNotification(input(arrival(state({ new: 3, lastMessage: GRACE }), state({ new: 0 })), { since: Date.parse("2026-11-25T08:50:00Z") }));
    assert.equal(n.body.split("\n")[0], "3 voicemails since 08:50, the last from Grace Caller (+1 555 123 4567), 0:42");
    assert.equal(n.body.split("\n")[1], "Carrier Voicemail mailbox 1001: 3 new, 5 old");
    assert.equal(n.body.match(/3 new/g)?.length, 1, n.body);
  });

  it("not delayed, several new at once (the first state seen): the newest caller, no guess how many", () => {
    const first = renderNotification(input({ kind: "new-message", current: state({ new: 2, lastMessage: GRACE }) }));
    assert.deepEqual(first.body.split("\n").slice(0, 2), ["New voicemail from Grace Caller (+1 555 123 4567), 0:42", "Carrier Voicemail mailbox 1001: 2 new, 5 old"]);
    const unknown = renderNotification(input(arrival(state({ new: 2 }), state({ new: 0 }))));
    assert.equal(unknown.body.split("\n")[0], "New voicemail");
  });
});

describe("renderNotification: other changes say what happened", () => {
  const headline = (change: MailboxChange) => renderNotification(input(change, { footer: undefined })).body.split("\n")[0];

  it("is an m.notice with the time of the update, and no caller even when one is kept", () => {
    const n = renderNotification(input(counts({ new: 2, old: 5 }, { new: 0, old: 7, lastMessage: GRACE })));
    assert.equal(n.msgtype, "m.notice");
    assert.equal(n.body, ["All voicemail heard in mailbox 1001: 7 old", "25 Nov 2026, 14:04 UTC", "Dial *86 to listen"].join("\n"));
    assert.equal(n.html, "<p><strong>All voicemail heard in mailbox 1001: 7 old</strong><br>25 Nov 2026, 14:04 UTC</p><p><em>Dial *86 to listen</em></p>");
    assert.ok(!n.body.includes("555") && !n.html.includes("555") && !n.body.includes("Grace"));
  });

  it("derives heard, deleted and the rest from the counts before and after", () => {
    assert.equal(headline(counts({ new: 2, old: 5 }, { new: 1, old: 6 })), "1 voicemail heard in mailbox 1001: 1 new, 6 old");
    assert.equal(headline(counts({ new: 3, old: 5 }, { new: 1, old: 7 })), "2 voicemails heard in mailbox 1001: 1 new, 7 old");
    assert.equal(headline(counts({ new: 1, old: 5, urgentOld: 1 }, { new: 0, old: 6, urgentOld: 1 })), "All voicemail heard in mailbox 1001: 6 old (1 urgent)");
    assert.equal(headline(counts({ new: 2, old: 5 }, { new: 2, old: 4 })), "1 voicemail deleted in mailbox 1001: 2 new, 4 old");
    assert.equal(headline(counts({ new: 2, old: 5 }, { new: 1, old: 5 })), "1 voicemail deleted in mailbox 1001: 1 new, 5 old");
    assert.equal(headline(counts({ new: 2, old: 5 }, { new: 0, old: 0, waiting: false })), "All voicemail deleted in mailbox 1001");
    assert.equal(headline(counts({ new: 3, old: 5 }, { new: 0, old: 6 })), "Voicemail heard and deleted in mailbox 1001: 6 old");
    // Left and heard while the user was away (told together): one more old one.
    assert.equal(headline(counts({ new: 0, old: 4 }, { new: 0, old: 5 })), "1 voicemail heard in mailbox 1001: 5 old");
    assert.equal(headline(counts({ new: 0, old: 5 }, { new: 1, old: 4 })), "1 voicemail marked new in mailbox 1001: 1 new, 4 old");
    assert.equal(headline(counts({ new: 2, old: 5 }, { new: 2, old: 5, urgentNew: 1 })), "Voicemail in mailbox 1001: 2 new, 5 old (1 urgent new, 0 urgent old)");
  });

  it("the state when first seen (a resync) names the system", () => {
    assert.equal(headline(counts(undefined, { new: 2, old: 5 })), "Carrier Voicemail mailbox 1001: 2 new, 5 old");
  });

  it("no footer line when the system has none", () => {
    const n = renderNotification(input(counts(undefined, {}), { footer: undefined }));
    assert.equal(n.body, "Carrier Voicemail mailbox 1001: 2 new, 5 old\n25 Nov 2026, 14:04 UTC");
    assert.ok(!n.html.includes("<em>"));
    const empty = renderNotification(input(counts(undefined, {}), { footer: "" }));
    assert.equal(empty.body, n.body);
  });

  it("the user's other mailboxes side by side", () => {
    const n = renderNotification(input(counts(undefined, {}), { others: [OFFICE, NO_DATA] }));
    assert.equal(
      n.body,
      [
        "Carrier Voicemail mailbox 1001: 2 new, 5 old",
        "25 Nov 2026, 14:04 UTC",
        "Other mailboxes: Office 22: 0 new, 3 old · Home 9: no data yet",
        "Dial *86 to listen",
      ].join("\n"),
    );
    assert.ok(n.html.includes("<p>Other mailboxes: Office 22: 0 new, 3 old · Home 9: no data yet</p>"));
    const alone = renderNotification(input(counts(undefined, {})));
    assert.ok(!alone.body.includes("Other mailboxes"));
    assert.ok(!alone.html.includes("Other mailboxes"));
  });
});

describe("renderNotification: what comes from outside", () => {
  it("escapes HTML in the system name, footer, caller, called number and other mailboxes, but not in the body", () => {
    const n = renderNotification(
      input(arrival(state({ lastMessage: { ani: "<script>alert(1)</script>", callerName: "<b>Eve</b> & co", dnis: "a&b" } })), {
        systemName: `<script>alert("name")</script>`,
        footer: "<script>alert('footer')</script>",
        others: [{ ...OFFICE, systemName: "<img src=x onerror=alert(1)>" }],
      }),
    );
    assert.ok(!n.html.includes("<script>"), n.html);
    assert.ok(!n.html.includes("<img"), n.html);
    assert.ok(!n.html.includes("<b>"), n.html);
    assert.ok(n.html.includes("&#60;script&#62;alert(&#34;name&#34;)&#60;/script&#62;"));
    assert.ok(n.html.includes("<em>&#60;script&#62;alert(&#39;footer&#39;)&#60;/script&#62;</em>"));
    assert.ok(n.html.includes("from &#60;b&#62;Eve&#60;/b&#62; &#38; co (&#60;script&#62;alert(1)&#60;/script&#62;)"));
    assert.ok(n.html.includes("To a&#38;b · "));
    assert.ok(n.html.includes("&#60;img src=x onerror=alert(1)&#62;"));
    // The plain body is text: it stays as it was.
    assert.ok(n.body.includes(`<script>alert("name")</script> mailbox 1001`));
    assert.ok(n.body.includes("<script>alert('footer')</script>"));
    assert.ok(n.body.includes("from <b>Eve</b> & co (<script>alert(1)</script>)"));
  });

  it("the html has only the tags the renderer puts in", () => {
    const n = renderNotification(input(arrival(state({ lastMessage: GRACE })), { others: [OFFICE], footer: "a < b > c" }));
    const tags = [...n.html.matchAll(/<\/?([a-z]+)/g)].map((m) => m[1]);
    assert.deepEqual([...new Set(tags)].sort(), ["br", "em", "p", "strong"]);
  });
});

describe("dmRoomName", () => {
  it("adds the new count only when there are new messages", () => {
    assert.equal(dmRoomName("Carrier Voicemail", 0), "Carrier Voicemail");
    assert.equal(dmRoomName("Carrier Voicemail", 1), "Carrier Voicemail (1)");
    assert.equal(dmRoomName("Carrier Voicemail", 12), "Carrier Voicemail (12)");
  });
});

describe("renderMailboxList", () => {
  it("says so when there is nothing linked", () => {
    assert.deepEqual(renderMailboxList([], "UTC"), {
      body: "You have no linked mailboxes.",
      html: "You have no linked mailboxes.",
    });
  });

  it("one line per mailbox, the update time in the user's zone", () => {
    const views: MailboxView[] = [{ ...OFFICE, state: { ...OFFICE.state!, updated: T_MESSAGE } }, NO_DATA];
    const list = renderMailboxList(views, "Europe/Berlin");
    assert.equal(
      list.body,
      ["Your mailboxes (2 mailboxes):", "- Office 22: 0 new, 3 old (updated 25 Nov 2026, 15:03 CET)", "- Home 9: no data yet"].join("\n"),
    );
    assert.equal(
      list.html,
      "<p><strong>Your mailboxes (2 mailboxes):</strong></p>" +
        "<table><thead><tr><th>System</th><th>Mailbox</th><th>Messages</th><th>Updated</th></tr></thead><tbody>" +
        "<tr><td>Office</td><td>22</td><td>0 new, 3 old</td><td>25 Nov 2026, 15:03 CET</td></tr>" +
        "<tr><td>Home</td><td>9</td><td>no data yet</td><td></td></tr>" +
        "</tbody></table>",
    );
  });

  it("one mailbox is singular", () => {
    assert.equal(renderMailboxList([NO_DATA], "UTC").body, "Your mailboxes (1 mailbox):\n- Home 9: no data yet");
  });

  it("escapes names and mailboxes in the table", () => {
    const list = renderMailboxList([{ systemId: "x", systemName: "<b>X</b>", mailbox: "1\"<2" }], "UTC");
    assert.ok(list.html.includes("<td>&#60;b&#62;X&#60;/b&#62;</td><td>1&#34;&#60;2</td>"));
    assert.ok(!list.html.includes("<b>"));
    assert.ok(list.body.includes("- <b>X</b> 1\"<2: no data yet"));
  });
});
