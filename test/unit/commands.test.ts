import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";

import { defineCommand, type ArgsOf } from "../../src/app/commands/declare.js";
import { COMMANDS, type CommandContext } from "../../src/app/commands/commands.js";
import type { MailboxCredentials } from "../../src/gateway/gateway.js";
import type { VoicemailStore } from "../../src/store/store.js";
import { ADMIN, ALICE, BOB, RIGHT_PASSWORD, world, type World } from "./commandHarness.js";

let w: World;
afterEach(async () => w?.close());

const usage = (name: string) => COMMANDS.find((c) => c.name === name)!.usage;
const lastReply = () => w.bots.sent.at(-1)?.body ?? "";

describe("declarations", () => {
  it("the usage lines come from the declarations and match the README", () => {
    assert.deepEqual(
      Object.fromEntries(COMMANDS.map((c) => [c.name, c.usage])),
      {
        help: "!help",
        list: "!list",
        link: "!link <system> <mailbox> [--password SECRET] [--auth-user NAME]",
        verify: "!verify <code>",
        unlink: "!unlink <system> <mailbox>",
        mwi: "!mwi on|off [<system> [<mailbox>]]",
        set: "!set timezone|delivery|notify <value>",
        target: "!target add|remove|list [<@user:server | !room:server | #alias:server>]",
        voicemails: "!voicemails [<system> [<mailbox>]]",
        heard: "!heard [<all|system> [<system> [<mailbox>]]]",
        delete: "!delete [<confirm|system> [<mailbox>]]",
        admin: "!admin link|unlink <@user:server> <system> <mailbox>",
      },
    );
  });

  it("handlers get typed arguments: choices as unions, omittable and optional ones possibly undefined", () => {
    const positionals = [{ name: "state", choices: ["on", "off"] }, { name: "system", omittable: true }, { name: "mailbox" }, { name: "extra", optional: true }] as const;
    const options = [{ name: "password", label: "SECRET", secret: true }] as const;
    type Args = ArgsOf<typeof positionals, typeof options>;
    type Expected = { readonly state: "on" | "off"; readonly system: string | undefined; readonly mailbox: string; readonly extra: string | undefined } & { readonly password?: string };
    // Compiles only when the two types are the same.
    const same: [Args] extends [Expected] ? ([Expected] extends [Args] ? true : false) : false = true;
    assert.equal(same, true);
    // @ts-expect-error: "maybe" is not one of the choices
    const wrong: Args["state"] = "maybe";
    assert.equal(wrong, "maybe");
  });

  it("a declared command runs with the parsed values", async () => {
    w = await world();
    const seen: unknown[] = [];
    const echo = defineCommand({
      name: "echo",
      summary: "says it back",
      level: "user",
      positionals: [{ name: "mode", choices: ["loud", "soft"] }, { name: "word", optional: true }],
      options: [{ name: "times", label: "N" }],
      async run(_ctx: CommandContext, args) {
        seen.push({ mode: args.mode, word: args.word, times: args.times });
        return { body: "ok", html: "ok" };
      },
    });
    assert.equal(echo.usage, "!echo loud|soft [<word>] [--times N]");
    await echo.run({} as CommandContext, { mode: "loud", word: "hi", times: "2" });
    assert.deepEqual(seen, [{ mode: "loud", word: "hi", times: "2" }]);
  });
});

describe("!help", () => {
  it("one line per command with a short summary; each !set setting on its own line", async () => {
    w = await world();
    await w.send(ALICE, w.rooms.aliceMain, "!help");
    const lines = lastReply().split("\n");
    assert.equal(lines[0], "Commands:");
    assert.deepEqual(lines.slice(1, -1), [
      "!help: show the commands you can use",
      "!list: your linked mailboxes with their current counts",
      `${usage("link")}: link one of your mailboxes (the message with the password is removed at once)`,
      "!unlink <system> <mailbox>: stop following one of your mailboxes",
      "!mwi on|off [<system> [<mailbox>]]: switch message waiting notifications on or off",
      "!set timezone <IANA zone>: the time zone of your time stamps, e.g. Europe/Berlin",
      "!set delivery always|when-online: always: at once; when-online: held while you are not online, then one catch-up",
      "!set notify per-system|summary|both: per-system: in each system's chat; summary: in one chat with the main bot; both",
      `${usage("target")}: more Matrix accounts or rooms that are told about your voicemail (list: the ones you have)`,
    ]);
    assert.equal(lines.at(-1), "Systems: carrier (Carrier).");
    assert.match(w.bots.sent.at(-1)!.html, /<li><code>!set notify per-system\|summary\|both<\/code>: /);
  });

  it("!verify is listed only where some system rings phones to link them", async () => {
    w = await world();
    await w.send(ALICE, w.rooms.aliceMain, "!help");
    assert.ok(!lastReply().includes("!verify"), lastReply());
    Object.assign(w.gateway, { callVerification: { ring: async () => ({ ok: true }), accepts: () => true } });
    await w.send(ALICE, w.rooms.aliceMain, "!help");
    assert.ok(lastReply().includes("!verify <code>: link the mailbox whose phone !link rang, with the code it showed"), lastReply());
  });

  it("admins also see !admin", async () => {
    w = await world({ permissions: { [ALICE]: "admin" } });
    await w.send(ALICE, w.rooms.aliceCarrier, "!help");
    assert.ok(lastReply().includes(`${usage("admin")}: link or unlink a mailbox for any user`));
    assert.match(lastReply(), /You are talking to the bot of Carrier: <system> may be left out\.$/);
  });
});

describe("!set goes through the profile service", () => {
  it("stores each setting", async () => {
    w = await world();
    await w.send(ALICE, w.rooms.aliceMain, "!set timezone europe/berlin");
    assert.equal(lastReply(), "Time stamps are now shown in Europe/Berlin.");
    await w.send(ALICE, w.rooms.aliceMain, "!set delivery when-online");
    await w.send(ALICE, w.rooms.aliceMain, "!set notify summary");
    const profile = await w.store.getProfile(ALICE);
    assert.deepEqual([profile?.timezone, profile?.delivery, profile?.notify], ["Europe/Berlin", "when-online", "summary"]);
    await w.send(ALICE, w.rooms.aliceMain, "!set delivery sometimes");
    assert.equal(lastReply(), "Say !set delivery always or !set delivery when-online.");
  });
});

describe("!link (issue 7)", () => {
  const stored = async (): Promise<MailboxCredentials | undefined> => {
    const link = (await w.store.listLinks(ALICE)).find((l) => l.mailbox === "1001");
    return link?.sealedCredentials ? (JSON.parse(w.secrets.open(link.sealedCredentials)) as MailboxCredentials) : undefined;
  };

  it("links with a proof; the proving subscription is the watch", async () => {
    w = await world();
    await w.send(ALICE, w.rooms.aliceCarrier, `!link 1001 --password ${RIGHT_PASSWORD}`);
    assert.equal(lastReply(), "Linked Carrier mailbox 1001: 2 new, 1 old.");
    assert.ok(w.gateway.watched.has("1001"));
    assert.equal((await stored())?.password, RIGHT_PASSWORD);
  });

  it("!link again while MWI is off keeps it off upstream, and stores the new password", async () => {
    w = await world();
    await w.send(ALICE, w.rooms.aliceCarrier, `!link 1001 --password ${RIGHT_PASSWORD}`);
    await w.send(ALICE, w.rooms.aliceCarrier, "!mwi off 1001");
    assert.equal(lastReply(), "MWI is now off for Carrier 1001.");
    assert.ok(!w.gateway.watched.has("1001"));

    w.gateway.accepts = (r) => r.password === "new-password";
    await w.send(ALICE, w.rooms.aliceCarrier, "!link 1001 --password new-password");
    assert.equal(lastReply(), "Carrier mailbox 1001 was already linked; its password is updated.");
    assert.ok(!w.gateway.watched.has("1001"), "the proof's subscription was released: MWI stays off");
    assert.equal((await stored())?.password, "new-password");
    const [link] = await w.store.listLinks(ALICE);
    assert.equal(link?.mwiEnabled, false);

    await w.send(ALICE, w.rooms.aliceCarrier, "!mwi on 1001");
    assert.equal(w.gateway.watched.get("1001")?.password, "new-password", "!mwi on watches with the new password");
  });

  it("a re-link while another user keeps the mailbox watched does not unwatch it", async () => {
    w = await world();
    await w.mailboxes.link("@carol:localhost", "carrier", "1001", "@admin:localhost");
    await w.gateway.watch("1001", { username: "1001", password: "carol" });
    await w.send(ALICE, w.rooms.aliceCarrier, `!link 1001 --password ${RIGHT_PASSWORD}`);
    await w.send(ALICE, w.rooms.aliceCarrier, "!mwi off 1001");
    await w.send(ALICE, w.rooms.aliceCarrier, `!link 1001 --password ${RIGHT_PASSWORD}`);
    assert.ok(w.gateway.watched.has("1001"), "Carol still gets MWI");
  });

  it("a link that cannot be stored releases the proof's watch", async () => {
    const failing = (s: VoicemailStore): VoicemailStore =>
      new Proxy(s, {
        get(target, prop, receiver) {
          if (prop === "addLink") return async () => Promise.reject(new Error("disk full"));
          const value = Reflect.get(target, prop, receiver) as unknown;
          return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        },
      });
    w = await world({ store: failing });
    await w.send(ALICE, w.rooms.aliceCarrier, `!link 1001 --password ${RIGHT_PASSWORD}`);
    assert.equal(lastReply(), "Something went wrong with !link; the bridge's log has the details.");
    assert.ok(!w.gateway.watched.has("1001"), "no subscription left behind");
    assert.ok(w.log.lines.includes("ERROR !link from @alice:localhost failed: disk full"));
  });

  it("a wrong password stores nothing", async () => {
    w = await world();
    await w.send(ALICE, w.rooms.aliceCarrier, "!link 1001 --password not-it");
    assert.equal(lastReply(), "Could not link Carrier mailbox 1001: the server refused the credentials. Nothing was stored.");
    assert.deepEqual(await w.store.listLinks(ALICE), []);
  });
});

describe("!link tries are limited (issue 8: !link as a password oracle)", () => {
  const carrierReplies = (room: string) => w.bots.sent.filter((s) => s.roomId === room).map((s) => s.body);
  /** "09:42" for a try that may start again at `untilFrom`..`untilTo` (rounded up to the minute), in UTC. */
  const afterTimes = (from: number, to: number) =>
    [from, to].map((t) => new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", hour: "2-digit", minute: "2-digit" }).format(new Date(Math.ceil(t / 60_000) * 60_000)));

  it("5 failures of a user in 15 minutes: the 6th try is refused with the time to try again, the server is not asked, and each refusal is logged", async () => {
    w = await world();
    const before = Date.now();
    for (let i = 1; i <= 5; i++) {
      await w.send(ALICE, w.rooms.aliceCarrier, `!link ${1000 + i} --password wrong-${i}`);
      assert.equal(lastReply(), `Could not link Carrier mailbox ${1000 + i}: the server refused the credentials. Nothing was stored.`);
    }
    const after = Date.now();
    assert.equal(w.gateway.proofs.length, 5);
    await w.send(ALICE, w.rooms.aliceCarrier, `!link 1009 --password ${RIGHT_PASSWORD}`);
    const allowed = afterTimes(before + 15 * 60_000, after + 15 * 60_000).map((t) => `Too many tries: try again after ${t}.`);
    assert.ok(allowed.includes(lastReply()), `${lastReply()} is one of ${allowed.join(" | ")}`);
    assert.equal(w.gateway.proofs.length, 5, "the server is not asked again: its fail2ban sees no more failures");
    assert.deepEqual(await w.store.listLinks(ALICE), []);
    const refusals = w.log.lines.filter((l) => /refused: too many failed tries/.test(l));
    assert.deepEqual(refusals.map((l) => l.replace(/until \S+$/, "until T")), ["INFO carrier: link of 1009 for @alice:localhost refused: too many failed tries (the user's limit) until T"]);
    assert.ok(w.log.lines.every((l) => !/wrong-|right-password/.test(l)), "no password in the log");
    assert.deepEqual(w.metrics.at(-1), { command: "link", outcome: "refused" });
  });

  it("5 failures on one mailbox by anyone: the next try on it is refused, other mailboxes may still be tried", async () => {
    w = await world();
    for (let i = 0; i < 4; i++) await w.send(ALICE, w.rooms.aliceCarrier, `!link 1001 --password alice-guess-${i}`);
    await w.send(BOB, w.rooms.bobCarrier, "!link 1001 --password bob-guess");
    await w.send(BOB, w.rooms.bobCarrier, `!link 1001 --password ${RIGHT_PASSWORD}`);
    assert.match(carrierReplies(w.rooms.bobCarrier).at(-1)!, /^Too many tries: try again after \d\d:\d\d\.$/);
    assert.ok(w.log.lines.some((l) => l.startsWith("INFO carrier: link of 1001 for @bob:localhost refused: too many failed tries (the mailbox's limit) until ")));
    await w.send(BOB, w.rooms.bobCarrier, `!link 2002 --password ${RIGHT_PASSWORD}`);
    assert.equal(carrierReplies(w.rooms.bobCarrier).at(-1), "Linked Carrier mailbox 2002: 2 new, 1 old.");
    assert.deepEqual(w.gateway.proofs.map((p) => p.mailbox), ["1001", "1001", "1001", "1001", "1001", "2002"]);
  });

  it("a missing mailbox and a wrong password get the same answer, and both count", async () => {
    w = await world();
    w.gateway.accepts = (r) => r.mailbox === "1001" && r.password === RIGHT_PASSWORD;
    await w.send(ALICE, w.rooms.aliceCarrier, "!link 1001 --password wrong");
    const wrongPassword = lastReply();
    await w.send(ALICE, w.rooms.aliceCarrier, "!link 4242 --password wrong");
    assert.equal(lastReply().replace("4242", "1001"), wrongPassword);
  });

  it("proven links and tries that never reached the server do not count", async () => {
    w = await world();
    for (let i = 0; i < 6; i++) await w.send(ALICE, w.rooms.aliceCarrier, `!link 1001 --password ${RIGHT_PASSWORD}`);
    assert.match(lastReply(), /^Carrier mailbox 1001 was already linked/);
    w.gateway.refusal = { ok: false, reason: "the voice mail server could not be reached; try again later", transient: true };
    for (let i = 0; i < 6; i++) await w.send(ALICE, w.rooms.aliceCarrier, "!link 2002 --password whatever");
    assert.equal(lastReply(), "Could not link Carrier mailbox 2002: the voice mail server could not be reached; try again later. Nothing was stored.");
    assert.equal(w.gateway.proofs.length, 12);
  });
});

describe("!admin link says what the user will get (issue 8: admin links on SIP systems)", () => {
  const adminLink = async (user: string) => {
    await w.send(ADMIN, w.rooms.adminCarrier, `!admin link ${user} carrier 1001`);
    return w.bots.sent.filter((s) => s.roomId === w.rooms.adminCarrier).at(-1)?.body;
  };
  const noCredentials = "This system has no credentials for admin links: the user gets MWI only while someone who linked it with a password follows it";

  it("a system without credentials, nobody following with a password: told so, with what to do", async () => {
    w = await world();
    assert.equal(
      await adminLink(BOB),
      `Linked Carrier mailbox 1001 to ${BOB}. ${noCredentials}; nobody does now (give the system credentials in its config, or have the user link it with !link and its password).`,
    );
  });

  it("a system without credentials, someone following with a password: told that MWI lasts while they do", async () => {
    w = await world();
    await w.send(ALICE, w.rooms.aliceCarrier, `!link 1001 --password ${RIGHT_PASSWORD}`);
    assert.equal(await adminLink(BOB), `Linked Carrier mailbox 1001 to ${BOB}. ${noCredentials}; someone does now.`);
    assert.equal(await adminLink(BOB), `${BOB} already has Carrier mailbox 1001. ${noCredentials}; someone does now.`);
  });

  it("a system with credentials of its own: watched with them", async () => {
    w = await world();
    Object.assign(w.gateway.watching, { systemCredentials: true });
    assert.equal(await adminLink(BOB), `Linked Carrier mailbox 1001 to ${BOB}: watched with the system's credentials.`);
  });
});
