import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";

import { defineCommand } from "../../src/app/commands/declare.js";
import { COMMANDS, CommandError, text, type CommandContext } from "../../src/app/commands/commands.js";
import { ADMIN, ALICE, BOB, RIGHT_PASSWORD, eventCount, world, type World } from "./commandHarness.js";

/** Seeded property tests print their seed, so that a failure can be replayed (FC_SEED=...). */
const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
console.log(`commandRouter properties: FC_SEED=${seed}`);

let w: World;
afterEach(async () => w?.close());

const replies = (roomId?: string) => w.bots.sent.filter((s) => !roomId || s.roomId === roomId).map((s) => s.body);
const noReplyContains = (words: string[]) => {
  for (const s of w.bots.sent) for (const word of words) assert.ok(!s.body.includes(word) && !s.html.includes(word), `a reply repeats ${word}: ${s.body}`);
  for (const line of w.log.lines) for (const word of words) assert.ok(!line.includes(word), `the log repeats ${word}: ${line}`);
};

describe("command router: secrets", () => {
  beforeEach(async () => {
    w = await world();
  });

  it("--password my secret phrase: redacted, and the reply repeats neither secret nor phrase", async () => {
    const e = await w.send(ALICE, w.rooms.aliceCarrier, "!link carrier 1001 --password my secret phrase");
    assert.deepEqual(w.bots.redactions, [{ bot: w.bots.carrier.userId, roomId: w.rooms.aliceCarrier, eventId: e.event_id }]);
    assert.equal(replies().length, 1);
    assert.match(replies()[0]!, /^I could not read that !link, and I do not repeat it because it carried a password\. Usage: !link /);
    noReplyContains(["secret", "phrase"]);
  });

  it('"--password" hunter2: redacted, not echoed', async () => {
    const e = await w.send(ALICE, w.rooms.aliceCarrier, '!link carrier 1001 "--password" hunter2');
    assert.deepEqual(w.bots.redactions.map((r) => r.eventId), [e.event_id]);
    assert.equal(replies().length, 1);
    noReplyContains(["hunter2"]);
  });

  it("an edit that carries a password is redacted, and nothing else is said", async () => {
    const original = await w.send(ALICE, w.rooms.aliceCarrier, "!list");
    w.bots.sent.length = 0;
    const edit = await w.send(ALICE, w.rooms.aliceCarrier, "* !link carrier 1001 --password hunter2", {
      "m.new_content": { msgtype: "m.text", body: "!link carrier 1001 --password hunter2" },
      "m.relates_to": { rel_type: "m.replace", event_id: original.event_id },
    });
    assert.deepEqual(w.bots.redactions.map((r) => r.eventId), [edit.event_id]);
    assert.deepEqual(replies(), []);
    assert.equal(w.gateway.proofs.length, 0, "an edit is not run as a command");
  });

  it("an edit without a password is not run and not answered", async () => {
    await w.send(ALICE, w.rooms.aliceCarrier, "* !help", { "m.new_content": { msgtype: "m.text", body: "!help" }, "m.relates_to": { rel_type: "m.replace", event_id: "$x" } });
    assert.deepEqual(replies(), []);
    assert.deepEqual(w.bots.redactions, []);
  });

  it("a password in another user's DM is redacted there, and its sender told once in their own DM", async () => {
    const event = { "m.relates_to": undefined };
    const e = await w.send(ALICE, w.rooms.bobCarrier, "!link carrier 1001 --password hunter2", event);
    assert.deepEqual(w.bots.redactions, [{ bot: w.bots.carrier.userId, roomId: w.rooms.bobCarrier, eventId: e.event_id }]);
    assert.deepEqual(replies(w.rooms.bobCarrier), [], "nothing is said in someone else's room");
    assert.equal(replies(w.rooms.aliceMain).length, 1);
    assert.match(replies(w.rooms.aliceMain)[0]!, /carried a password: I removed it/);
    // The homeserver sends the same event again: told once.
    await w.router.onMessage({ ...e });
    assert.equal(replies(w.rooms.aliceMain).length, 1);
    assert.equal(w.gateway.proofs.length, 0, "not run outside the sender's DM");
    noReplyContains(["hunter2"]);
  });

  it("a password in a room that is no DM is redacted by the main bot; if it cannot, the user is asked to", async () => {
    w.bots.cannotRedact.add(w.bots.main.userId);
    await w.send(ALICE, w.rooms.elsewhere, "!link carrier 1001 --password=hunter2");
    assert.deepEqual(w.bots.redactions, []);
    assert.equal(replies(w.rooms.aliceMain).length, 1);
    assert.match(replies(w.rooms.aliceMain)[0]!, /could not remove it: please delete it yourself/);
    assert.ok(w.log.lines.some((l) => l.startsWith("WARN could not redact")));
    noReplyContains(["hunter2"]);
  });

  it("a failed redaction in the DM is told, and the command still runs", async () => {
    w.bots.cannotRedact.add(w.bots.carrier.userId);
    await w.send(ALICE, w.rooms.aliceCarrier, `!link 1001 --password ${RIGHT_PASSWORD}`);
    assert.match(replies()[0]!, /could not remove your message with the password/);
    assert.match(replies()[1]!, /^Linked Carrier mailbox 1001: 2 new/);
    noReplyContains([RIGHT_PASSWORD]);
  });

  it("a refusal of a command with a secret names none of its arguments", async () => {
    // The password typed first: yargs takes "my" as the password, "hunter2" as the system.
    await w.send(ALICE, w.rooms.aliceMain, "!link --password my hunter2 1001");
    assert.equal(replies()[0], "There is no such voice mail system. Systems: carrier.");
    await w.send(ALICE, w.rooms.aliceCarrier, '!link --password my "hunter 2"');
    assert.equal(replies()[1], "That is not a mailbox number.");
    await w.send(ALICE, w.rooms.aliceCarrier, "!link 1001 --password wrong-one");
    assert.equal(replies()[2], "Could not link Carrier mailbox 1001: the server refused the credentials. Nothing was stored.");
    // A mailbox typed after the password may be part of it: not tried, not named.
    await w.send(ALICE, w.rooms.aliceCarrier, "!link carrier --password 12 3456");
    assert.match(replies()[3]!, /^Give the mailbox before --password, and put a password with spaces in quotes: !link /);
    // A password that holds the mailbox number does not hide the mailbox.
    await w.send(ALICE, w.rooms.aliceCarrier, "!link carrier 1001 --password Not-the-1001-one");
    assert.equal(replies()[4], "Could not link Carrier mailbox 1001: the server refused the credentials. Nothing was stored.");
    noReplyContains(["hunter", "wrong-one", "3456", "Not-the-1001-one"]);
  });

  it("property: whatever the spelling and position of a secret, no reply and no log line contains it", async () => {
    const secretWord = fc.stringMatching(/^[A-Za-z0-9]{6,10}$/).map((s) => `Zq${s}9`);
    const marker = fc.constantFrom(
      "--password",
      "\u2014password",
      "\u2013password",
      "--Password",
      "--PASSWORD",
      "-password",
      "---password",
      "--pass",
      "--pw",
      '"--password"',
      "'--password'",
      "\u201c--password\u201d",
      "password",
    );
    const secretPart = fc.tuple(marker, fc.array(secretWord, { minLength: 1, maxLength: 3 }), fc.constantFrom("space", "equals", "quoted")).map(([m, words, form]) => ({
      words,
      text: form === "equals" ? `${m}=${words[0]}` : form === "quoted" ? `${m} "${words.join(" ")}"` : `${m} ${words.join(" ")}`,
    }));
    const other = fc.constantFrom("carrier", "1001", "2002", "office", "--auth-user", "bob", "on", "off", "timezone", "add", "link", "@bob:localhost", "x", "--", "-5", '"');
    const name = fc.constantFrom("!link", "!LINK", "!mwi", "!set", "!admin", "!unlink", "!target", "!help", "!list", "!frob", "");
    const room = fc.constantFrom("aliceCarrier", "aliceMain", "bobCarrier", "elsewhere") as fc.Arbitrary<keyof World["rooms"]>;
    await fc.assert(
      fc.asyncProperty(name, fc.array(other, { maxLength: 4 }), secretPart, fc.nat(), room, fc.boolean(), async (command, others, secret, at, roomName, acceptAny) => {
        w.bots.sent.length = 0;
        w.log.lines.length = 0;
        w.gateway.accepts = (r) => acceptAny || r.password === RIGHT_PASSWORD;
        const tokens: string[] = [...others];
        tokens.splice(at % (tokens.length + 1), 0, secret.text);
        const body = [command, ...tokens].filter(Boolean).join(" ");
        await w.send(ALICE, w.rooms[roomName], body);
        // Redacted wherever it is a command, and anywhere in the sender's own DMs.
        const redacted = w.bots.redactions.some((r) => r.roomId === w.rooms[roomName] && r.eventId === `$e${eventCount()}`);
        if (command || roomName.startsWith("alice")) assert.ok(redacted, `${JSON.stringify(body)} in ${roomName} was not redacted`);
        for (const s of w.bots.sent) {
          for (const word of secret.words) assert.ok(!s.body.includes(word) && !s.html.includes(word), `${JSON.stringify(body)} answered ${JSON.stringify(s.body)}`);
        }
        for (const line of w.log.lines) for (const word of secret.words) assert.ok(!line.includes(word), `${JSON.stringify(body)} logged ${line}`);
      }),
      { numRuns: 250, seed },
    );
  });
});

describe("command router: dedupe, permissions, metrics, order", () => {
  it("a reply lost to a homeserver hiccup is sent again", async () => {
    w = await world();
    w.bots.failSends.push(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }));
    await w.send(ALICE, w.rooms.aliceCarrier, "!help");
    assert.equal(replies().length, 1);
    assert.match(replies()[0]!, /^Commands:/);
    assert.ok(w.log.lines.some((l) => /^WARN the reply to \S+ failed \(ECONNRESET/.test(l)), w.log.lines.join("\n"));
  });

  it("an event delivered twice is answered once", async () => {
    w = await world();
    const e = await w.send(ALICE, w.rooms.aliceCarrier, "!list");
    await w.router.onMessage(e);
    assert.equal(replies().length, 1);
  });

  it("one clear reply for every refusal, each counted", async () => {
    w = await world({ permissions: { [ALICE]: "user", [ADMIN]: "admin" } });
    await w.store.saveDmRoom({ userId: "@eve:elsewhere", botUserId: w.bots.main.userId, roomId: "!eve:localhost", userJoined: true, createdAt: 1 });
    await w.store.saveDmRoom({ userId: ADMIN, botUserId: w.bots.main.userId, roomId: "!admin:localhost", userJoined: true, createdAt: 1 });
    await w.send("@eve:elsewhere", "!eve:localhost", "!help");
    await w.send(ALICE, w.rooms.aliceMain, "!admin link @x:y carrier 1001");
    await w.send(ALICE, w.rooms.aliceMain, "!mwi maybe");
    await w.send(ALICE, w.rooms.aliceMain, "!frob");
    await w.send(ALICE, w.rooms.aliceMain, "!set timezone Mars/Olympus");
    await w.send(ALICE, w.rooms.aliceMain, "!list");
    await w.send(ADMIN, "!admin:localhost", "!admin link not-a-user carrier 1001");
    assert.deepEqual(replies().slice(0, 5), [
      "You are not permitted to use this bridge.",
      "!admin is for admins only.",
      'Invalid values: Argument: state, Given: "maybe", Choices: "on", "off". Usage: !mwi on|off [<system> [<mailbox>]]',
      "Unknown command !frob. Say !help for the list.",
      '"Mars/Olympus" is not a time zone. Use an IANA name such as Europe/Berlin or America/New_York.',
    ]);
    assert.equal(replies()[6], '"not-a-user" is not a Matrix user ID such as @alice:example.org.');
    assert.deepEqual(w.metrics, [
      { command: "help", outcome: "denied" },
      { command: "admin", outcome: "denied" },
      { command: "mwi", outcome: "bad_syntax" },
      { command: "unknown", outcome: "bad_syntax" },
      { command: "set", outcome: "refused" },
      { command: "list", outcome: "ok" },
      { command: "admin", outcome: "refused" },
    ]);
  });

  it("commands are taken only in the sender's own DM; others are logged, not answered", async () => {
    w = await world();
    await w.send(ALICE, w.rooms.bobCarrier, "!list");
    await w.send(ALICE, w.rooms.elsewhere, "!list");
    assert.deepEqual(replies(), []);
    assert.equal(w.log.lines.filter((l) => l.includes("not taken")).length, 2);
  });

  it("one command at a time per user; a broken command never blocks the next", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const started: string[] = [];
    const slow = defineCommand({
      name: "slow",
      summary: "waits",
      level: "user",
      async run(_ctx: CommandContext) {
        started.push("slow");
        await gate;
        throw new Error("broken on purpose");
      },
    });
    const fast = defineCommand({
      name: "fast",
      summary: "answers",
      level: "user",
      async run(_ctx: CommandContext) {
        started.push("fast");
        return text("fast done");
      },
    });
    w = await world({ commands: [...COMMANDS, slow, fast] });
    const first = w.send(ALICE, w.rooms.aliceCarrier, "!slow");
    const second = w.send(ALICE, w.rooms.aliceMain, "!fast");
    const other = w.send(BOB, w.rooms.bobCarrier, "!fast");
    await other;
    // Bob is not held up by Alice; Alice's second command waits for her first.
    assert.deepEqual(started, ["slow", "fast"]);
    release();
    await Promise.all([first, second]);
    assert.deepEqual(started, ["slow", "fast", "fast"]);
    assert.deepEqual(replies(w.rooms.aliceCarrier), ["Something went wrong with !slow; the bridge's log has the details."]);
    assert.deepEqual(replies(w.rooms.aliceMain), ["fast done"]);
    assert.ok(w.log.lines.some((l) => l === "ERROR !slow from @alice:localhost failed: broken on purpose"));
  });

  it("a refusal thrown by a command is its reply", async () => {
    const refuses = defineCommand({
      name: "refuses",
      summary: "refuses",
      level: "user",
      async run(_ctx: CommandContext): Promise<never> {
        throw new CommandError("No, because 42.", "No.");
      },
    });
    w = await world({ commands: [refuses] });
    await w.send(ALICE, w.rooms.aliceCarrier, "!refuses");
    await w.send(ALICE, w.rooms.aliceCarrier, "!refuses --password 42secret");
    assert.deepEqual(replies(), ["No, because 42.", "I could not read that !refuses, and I do not repeat it because it carried a password. Usage: !refuses"]);
  });
});

describe("command router: replies ping nobody (issue 8: m.mentions)", () => {
  it('every reply, refusal and warning sets "m.mentions": {}', async () => {
    w = await world();
    w.bots.cannotRedact.add(w.bots.carrier.userId);
    await w.send(ALICE, w.rooms.aliceCarrier, "!help");
    await w.send(ALICE, w.rooms.aliceCarrier, "!target add @room");
    await w.send(ALICE, w.rooms.aliceCarrier, "!link 1001 --password wrong-one");
    await w.send(ALICE, w.rooms.elsewhere, "!link 1001 --password wrong-two");
    assert.ok(w.bots.sent.length >= 5, `replies: ${w.bots.sent.map((s) => s.body).join(" | ")}`);
    for (const s of w.bots.sent) assert.deepEqual(s.mentions, {}, s.body);
  });
});
