/**
 * Fuzzing of what people read: caller fields and counts from outside, through the phone number
 * formatter and the notification texts. Nothing throws, the HTML holds only the renderer's own
 * tags and says what the plain body says, the first line is never empty. The seed is printed and
 * FC_SEED=<n> replays a failure.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";

import { renderAggregate, renderNotification, type MailboxView } from "../../src/core/format.js";
import { cleanMessageInfo, type MailboxChange, type MailboxState, type MessageInfo } from "../../src/core/mwi.js";
import { formatPhoneNumber, PHONE_REGIONS } from "../../src/core/phone.js";

const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
console.log(`format fuzz properties: FC_SEED=${seed}`);
const runs = (numRuns: number) => ({ numRuns, seed, includeErrorInReport: true });

const hostile = fc.constantFrom("<script>alert(1)</script>", "&amp;", '"', "'", "\u202e", "\u2028", "\n", "\r\n", "+", "00", "(", ")", "-", " ", "@room", "<b>", "﷽", "\u0000");
const numberish = fc
  .tuple(fc.constantFrom("", "+", "00", "0", "011", "1"), fc.array(fc.oneof(fc.constantFrom(" ", "-", "(", ")", ".", "/"), fc.integer({ min: 0, max: 9 }).map(String)), { maxLength: 20 }))
  .map(([prefix, parts]) => prefix + parts.join(""));
const field = fc.oneof(numberish, fc.string({ maxLength: 40 }), fc.array(fc.oneof(hostile, fc.string({ maxLength: 4 })), { maxLength: 8 }).map((a) => a.join("")));
const region = fc.option(fc.constantFrom(...PHONE_REGIONS), { nil: undefined });

const message: fc.Arbitrary<MessageInfo> = fc.record(
  {
    ani: field,
    callerName: field,
    dnis: field,
    time: fc.oneof(fc.constant("2026-11-25T14:03:00.000Z"), fc.string({ maxLength: 30 })),
    duration: fc.oneof(fc.nat({ max: 100_000 }), fc.double({ noNaN: true, min: 0, max: 1e7 })),
  },
  { requiredKeys: [] },
);
const count = fc.nat({ max: 5000 });
const state = (lastMessage?: MessageInfo) =>
  fc.record({ new: count, old: count, urgentNew: fc.nat({ max: 3 }), urgentOld: fc.nat({ max: 3 }) }).map(
    (c): MailboxState => ({ systemId: "sys", mailbox: "1001", waiting: c.new > 0, ...c, updated: Date.UTC(2026, 10, 25, 14, 4), ...(lastMessage ? { lastMessage } : {}) }),
  );
const change: fc.Arbitrary<MailboxChange> = fc
  .tuple(fc.option(message, { nil: undefined }), fc.option(state(), { nil: undefined }), fc.boolean())
  .chain(([m, previous, raw]) => {
    const info = m && (raw ? m : cleanMessageInfo(m));
    return state(info).map((current): MailboxChange => ({
      kind: current.new > (previous?.new ?? 0) ? "new-message" : "counts",
      current,
      ...(previous ? { previous } : {}),
    }));
  });

const TAGS = new Set(["p", "br", "strong", "em", "ul", "li"]);
/** The HTML's text: tags out, the renderer's numeric references decoded. */
const textOf = (html: string) => html.replace(/<[^>]*>/g, "\n").replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)));

function checkRendered(n: { body: string; html: string; msgtype: string }): void {
  for (const [, tag] of n.html.matchAll(/<\/?([a-zA-Z]+)/g)) assert.ok(TAGS.has(tag!), `tag <${tag}> in ${n.html}`);
  assert.ok(!/[<>"']/.test(textOf(n.html).replace(/<|>|"|'/g, "")), "nothing raw outside the tags");
  assert.ok(!/<(?!\/?(p|br|strong|em|ul|li)>)/.test(n.html), `only bare tags: ${n.html}`);
  const text = textOf(n.html);
  for (const line of n.body.split("\n")) assert.ok(text.includes(line), `the HTML says "${line}" too`);
  assert.ok(n.body.split("\n")[0]!.trim().length > 0, "a first line to show");
  assert.ok(n.msgtype === "m.text" || n.msgtype === "m.notice");
}

describe("format fuzz", () => {
  it("formatPhoneNumber never throws, returns the input or a + number, and is stable", () => {
    fc.assert(
      fc.property(field, region, (value, r) => {
        const out = formatPhoneNumber(value, r);
        assert.ok(out === value || /^\+\d[\d ]*$/.test(out), `${JSON.stringify(value)} -> ${JSON.stringify(out)}`);
        if (out !== value) assert.equal(formatPhoneNumber(out, r), out, "formatting a formatted number changes nothing");
      }),
      runs(3000),
    );
  });

  it("renderNotification: only its own tags, the same words in HTML and plain, a first line", () => {
    fc.assert(
      fc.property(change, field, fc.option(field, { nil: undefined }), region, fc.option(fc.nat({ max: 3600_000 }), { nil: undefined }), (c, systemName, footer, r, ago) => {
        // Names and footers come from the config; they too are escaped.
        const n = renderNotification({
          change: c,
          systemName: systemName.replace(/\n|\r/g, " ") || "X",
          timeZone: "Europe/Berlin",
          others: [],
          ...(footer ? { footer: footer.replace(/\n|\r/g, " ") } : {}),
          ...(r ? { region: r } : {}),
          ...(ago !== undefined ? { since: c.current.updated - ago } : {}),
        });
        if (!c.current.lastMessage || !Object.values(c.current.lastMessage).some((v) => typeof v === "string" && /[\n\r]/.test(v))) checkRendered(n);
        assert.equal(n.msgtype, c.kind === "new-message" ? "m.text" : "m.notice");
      }),
      runs(1500),
    );
  });

  it("renderAggregate: the same for several mailboxes", () => {
    fc.assert(
      fc.property(fc.array(change, { minLength: 1, maxLength: 4 }), region, (changes, r) => {
        const named = changes.map((c, i) => ({ systemName: `S${i}`, change: { ...c, current: { ...c.current, systemId: `s${i}` } } }));
        const all: MailboxView[] = named.map((c) => ({ systemId: c.change.current.systemId, systemName: c.systemName, mailbox: "1001", state: c.change.current }));
        const n = renderAggregate({ changes: named, all, timeZone: "UTC", footers: [], ...(r ? { region: r } : {}) });
        const clean = named.every((c) => !c.change.current.lastMessage || !Object.values(c.change.current.lastMessage).some((v) => typeof v === "string" && /[\n\r]/.test(v)));
        if (clean) checkRendered(n);
      }),
      runs(800),
    );
  });
});
