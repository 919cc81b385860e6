import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";

import { carriesSecret, parseCommand, secretWords, tokenize, type Parsed } from "../../src/app/commands/parser.js";
import { COMMANDS, SECRET_OPTION_NAMES } from "../../src/app/commands/commands.js";

/** Seeded property tests print their seed, so that a failure can be replayed (FC_SEED=...). */
const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
console.log(`commandParser properties: FC_SEED=${seed}`);

const parse = (text: string): Parsed => parseCommand(text, COMMANDS);

function ok(text: string): { name: string; args: Readonly<Record<string, string | undefined>> } {
  const r = parse(text);
  if (!r.ok) assert.fail(`expected ${JSON.stringify(text)} to parse, got ${JSON.stringify(r)}`);
  return { name: r.name, args: r.args };
}

function error(text: string): { name?: string; error: string } {
  const r = parse(text);
  if (r.ok || "notACommand" in r) assert.fail(`expected an error for ${JSON.stringify(text)}, got ${JSON.stringify(r)}`);
  return r;
}

const usageOf = (name: string) => COMMANDS.find((c) => c.name === name)!.usage;

describe("the command table", () => {
  it("has the documented commands, each with a !usage line", () => {
    assert.deepEqual(
      COMMANDS.map((c) => c.name),
      ["help", "list", "link", "verify", "unlink", "mwi", "set", "target", "voicemails", "heard", "delete", "admin"],
    );
    for (const c of COMMANDS) assert.ok(c.usage.startsWith(`!${c.name}`), c.usage);
    assert.equal(COMMANDS.find((c) => c.name === "admin")!.level, "admin");
    assert.ok(COMMANDS.filter((c) => c.name !== "admin").every((c) => c.level === "user"));
  });
});

describe("parseCommand", () => {
  it("!help and !list take no arguments", () => {
    assert.deepEqual(ok("!help"), { name: "help", args: {} });
    assert.deepEqual(ok("!list"), { name: "list", args: {} });
  });

  it("a command without arguments refuses extra ones", () => {
    assert.deepEqual(error("!help extra"), { ok: false, name: "help", error: "Unknown argument: extra. Usage: !help" });
    assert.deepEqual(error("!list --all"), { ok: false, name: "list", error: "Unknown argument: all. Usage: !list" });
  });

  it("!link with system, mailbox and a quoted password keeps the space", () => {
    assert.deepEqual(ok('!link carrier 1001 --password "a b"'), {
      name: "link",
      args: { system: "carrier", mailbox: "1001", password: "a b" },
    });
  });

  it("!link with --password=value and --auth-user", () => {
    const { args } = ok("!link carrier 1001 --password=s3cr3t --auth-user bob");
    assert.equal(args.password, "s3cr3t");
    assert.equal(args["auth-user"], "bob");
    assert.equal(args.system, "carrier");
    assert.equal(args.mailbox, "1001");
  });

  it("!link with the mailbox only (system implied by the bot)", () => {
    assert.deepEqual(ok("!link 1001"), { name: "link", args: { mailbox: "1001" } });
  });

  it("!link without arguments: an error with the usage line", () => {
    const r = error("!link");
    assert.equal(r.name, "link");
    assert.ok(r.error.includes(`Usage: ${usageOf("link")}`), r.error);
    assert.ok(r.error.includes("!link <system> <mailbox> [--password SECRET] [--auth-user NAME]"), r.error);
    // !link takes a secret: a mistake is named without repeating anything typed.
    assert.equal(r.error, "Not enough non-option arguments. Usage: !link <system> <mailbox> [--password SECRET] [--auth-user NAME]");
    assert.ok(!r.error.includes("\n"));
  });

  it("!link with one argument too many does not repeat it: it may be the password", () => {
    const r = error("!link a b hunter2");
    assert.equal(r.name, "link");
    assert.equal(r.error, `Unknown argument. Usage: ${usageOf("link")}`);
  });

  it("!link with an unknown option does not repeat it", () => {
    assert.equal(error("!link a b --colour blue").error, `Unknown argument. Usage: ${usageOf("link")}`);
  });

  it("other commands name what was wrong", () => {
    assert.equal(error("!unlink a b c").error, `Unknown argument: c. Usage: ${usageOf("unlink")}`);
    assert.equal(error("!list --all").error, "Unknown argument: all. Usage: !list");
  });

  it("!mwi with a value outside the choices lists them", () => {
    const r = error("!mwi maybe");
    assert.equal(r.name, "mwi");
    assert.equal(r.error, `Invalid values: Argument: state, Given: "maybe", Choices: "on", "off". Usage: ${usageOf("mwi")}`);
  });

  it("!mwi on|off with or without system and mailbox", () => {
    assert.deepEqual(ok("!mwi off carrier 1001"), { name: "mwi", args: { state: "off", system: "carrier", mailbox: "1001" } });
    assert.deepEqual(ok("!mwi on carrier"), { name: "mwi", args: { state: "on", system: "carrier" } });
    assert.deepEqual(ok("!mwi on"), { name: "mwi", args: { state: "on" } });
    assert.match(error("!mwi").error, /^Not enough non-option arguments: got 0, need at least 1\. Usage: !mwi on\|off/);
  });

  it("!set timezone", () => {
    assert.deepEqual(ok("!set timezone Europe/Berlin"), { name: "set", args: { setting: "timezone", value: "Europe/Berlin" } });
    assert.equal(error("!set timezone").error, `Not enough non-option arguments: got 1, need at least 2. Usage: ${usageOf("set")}`);
    assert.match(error("!set colour blue").error, /^Invalid values: Argument: setting, Given: "colour", Choices: "timezone", "delivery", "notify"\. Usage: /);
  });

  it("!admin link with a user ID", () => {
    assert.deepEqual(ok("!admin link @u:x carrier 1001"), {
      name: "admin",
      args: { action: "link", user: "@u:x", system: "carrier", mailbox: "1001" },
    });
    assert.deepEqual(ok("!admin unlink @u:x 1001").args, { action: "unlink", user: "@u:x", mailbox: "1001" });
    assert.match(error("!admin frob @u:x a b").error, /^Invalid values: Argument: action, Given: "frob", Choices: "link", "unlink"\./);
  });

  it("!unlink", () => {
    assert.deepEqual(ok("!unlink carrier 1001"), { name: "unlink", args: { system: "carrier", mailbox: "1001" } });
    assert.deepEqual(ok("!unlink 1001"), { name: "unlink", args: { mailbox: "1001" } });
  });

  it("an unknown command points to !help", () => {
    assert.deepEqual(parse("!foo"), { ok: false, error: "Unknown command !foo. Say !help for the list." });
    assert.deepEqual(parse("!foo bar baz"), { ok: false, error: "Unknown command !foo. Say !help for the list." });
  });

  it("text that is not a command", () => {
    for (const text of ["hello", "", "   ", "!", "  !  ", "! help", "hello !help", "?help"]) {
      assert.deepEqual(parse(text), { ok: false, notACommand: true }, JSON.stringify(text));
    }
  });

  it("numbers stay strings, leading zeros kept", () => {
    assert.deepEqual(ok("!link carrier 0123").args, { system: "carrier", mailbox: "0123" });
    assert.deepEqual(ok("!link 0042").args, { mailbox: "0042" });
    assert.equal(ok("!link carrier 1001 --password 000123").args.password, "000123");
    assert.equal(ok("!link carrier 1001 --password -5").args.password, "-5");
    assert.equal(ok("!set timezone 1e3").args.value, "1e3");
  });

  it("the command name is case-insensitive; the arguments keep their case", () => {
    assert.deepEqual(ok("!HELP"), { name: "help", args: {} });
    assert.deepEqual(ok("!Link Carrier ABC"), { name: "link", args: { system: "Carrier", mailbox: "ABC" } });
    assert.deepEqual(parse("!FOO"), { ok: false, error: "Unknown command !foo. Say !help for the list." });
  });

  it("surrounding white space is ignored", () => {
    assert.deepEqual(ok("   !list  "), { name: "list", args: {} });
    assert.deepEqual(ok("!link carrier   1001\n"), { name: "link", args: { system: "carrier", mailbox: "1001" } });
  });

  it(
    "a tab or a newline after the command name separates it like a space",
    () => {
      assert.deepEqual(ok("!link\tcarrier 1001"), { name: "link", args: { system: "carrier", mailbox: "1001" } });
      assert.deepEqual(ok("!link\ncarrier 1001"), { name: "link", args: { system: "carrier", mailbox: "1001" } });
    },
  );

  it("no state leaks from one message to the next", () => {
    assert.equal(ok("!link a --password x").args.password, "x");
    const second = ok("!link b");
    assert.deepEqual(second.args, { mailbox: "b" });
    assert.ok(!("password" in second.args));

    assert.equal(error("!link").name, "link");
    assert.deepEqual(ok("!link c d").args, { system: "c", mailbox: "d" });

    assert.equal(error("!mwi maybe").name, "mwi");
    assert.deepEqual(ok("!mwi on"), { name: "mwi", args: { state: "on" } });

    assert.deepEqual(ok("!admin unlink @a:b s m").args, { action: "unlink", user: "@a:b", system: "s", mailbox: "m" });
    assert.deepEqual(ok("!unlink s m").args, { system: "s", mailbox: "m" });
    assert.deepEqual(ok("!help"), { name: "help", args: {} });
  });

  it("property: each parse matches a fresh parse of the same message, whatever came before", () => {
    const messages = [
      "!help",
      "!list",
      "!link a --password x",
      "!link b",
      "!link",
      "!link a b c",
      "!mwi maybe",
      "!mwi off s 1",
      "!set timezone UTC",
      "!admin link @u:x s 1",
      "!foo",
      "hi",
      "!link a b --auth-user u",
    ];
    const fresh = new Map(messages.map((m) => [m, JSON.stringify(parse(m))]));
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...messages), { minLength: 1, maxLength: 15 }), (sequence) => {
        for (const m of sequence) assert.equal(JSON.stringify(parse(m)), fresh.get(m), m);
      }),
      { numRuns: 60, seed },
    );
  });

  it("property: never throws, and only yields the three shapes", () => {
    const word = fc.oneof(
      fc.constantFrom("!link", "!mwi", "!admin", "!set", "!help", "--password", "--password=", "--auth-user", "on", "off", '"', "'", "--", "-", "\\"),
      fc.string({ maxLength: 8 }),
    );
    fc.assert(
      fc.property(fc.array(word, { maxLength: 8 }), (words) => {
        const r = parse(words.join(" "));
        if (r.ok) {
          assert.ok(COMMANDS.some((c) => c.name === r.name));
          assert.ok(!("_" in r.args) && !("$0" in r.args));
        } else if ("notACommand" in r) {
          assert.equal(r.notACommand, true);
        } else {
          assert.equal(typeof r.error, "string");
          assert.ok(r.error.length > 0);
        }
      }),
      { numRuns: 300, seed },
    );
  });
});

describe("carriesSecret", () => {
  it("the commands declare one secret option, password", () => {
    assert.deepEqual(SECRET_OPTION_NAMES, ["password"]);
  });

  it("true for any spelling of --password yargs or a hurried user would use", () => {
    for (const text of [
      "!link carrier 1001 --password x",
      "!link carrier 1001 --password=x",
      '!link carrier 1001 --password "a b"',
      "!link carrier 1001 --password",
      "!link carrier 1001 --password\tx",
      "--password x",
      "!link carrier 1001 --auth-user bob --password=x",
      // the cases: a quoted option yargs takes for a positional, and echoed
      '!link carrier 1001 "--password" hunter2',
      "!link carrier 1001 '--password=hunter2'",
      "!link carrier 1001 \u201c--password\u201d hunter2",
      // a phone's autocorrected dashes, case, one dash or three
      "!link carrier 1001 \u2014password hunter2",
      "!link carrier 1001 \u2013password hunter2",
      "!link carrier 1001 \u2212\u2212password hunter2",
      "!link carrier 1001 --Password hunter2",
      "!link carrier 1001 --PASSWORD=hunter2",
      "!link carrier 1001 -password hunter2",
      "!link carrier 1001 ---password hunter2",
      "!link carrier 1001 --password.x=hunter2",
      // yargs expands no prefixes (strict mode refuses them), but the user meant the password
      "!link carrier 1001 --pass hunter2",
      "!link carrier 1001 --passw hunter2",
      "!link carrier 1001 --pw hunter2",
      "!link carrier 1001 --pwd hunter2",
      "!link carrier 1001 --passwd hunter2",
      "!link carrier 1001 --pass-word hunter2",
      "!link carrier 1001 --passwords hunter2",
      "!link carrier 1001 --pin 1234",
      "!link carrier 1001 --pass\u200bword hunter2",
      // the dashes forgotten
      "!link carrier 1001 password hunter2",
      "!link carrier 1001 Password=hunter2",
      // inside a quoted word
      '!link " --password hunter2',
      '!link "a --password hunter2"',
    ]) {
      assert.equal(carriesSecret(text), true, text);
    }
  });

  it("false without a secret option", () => {
    for (const text of [
      "!link carrier 1001",
      "!link carrier 1001 --auth-user bob",
      "!link carrier 1001 --pastry x",
      "!link carrier 1001 -p x",
      "!link carrier 1001 x--password y",
      "!target add @password:example.org",
      "!help",
    ]) {
      assert.equal(carriesSecret(text), false, text);
    }
  });

  it("true whenever the parser saw a password", () => {
    const word = fc.oneof(
      fc.constantFrom("!link", "a", "1001", "--password", "--password=", "--auth-user", "x", '"a b"', "--", "-p", "\u2014password", "-password", "--Password"),
      fc.string({ maxLength: 6 }),
    );
    fc.assert(
      fc.property(fc.array(word, { maxLength: 6 }), (words) => {
        const text = ["!link", ...words].join(" ");
        const r = parse(text);
        if (r.ok && r.args.password !== undefined) assert.equal(carriesSecret(text), true, text);
      }),
      { numRuns: 300, seed },
    );
  });

  it("the dotted form is no object for the handler: refused, and still a secret", () => {
    const text = "!link carrier 1001 --password.x=hunter2";
    assert.equal(carriesSecret(text), true);
    assert.ok(!parse(text).ok);
  });

  it("secretWords: what follows a secret option up to the next option", () => {
    assert.deepEqual(secretWords("!link carrier 1001 --password my secret phrase --auth-user bob"), ["my", "secret", "phrase"]);
    assert.deepEqual(secretWords('!link "--password" hunter2'), ["hunter2"]);
    assert.deepEqual(secretWords('!link a --password="x y"'), ["x", "y"]);
    assert.deepEqual(secretWords('!link " --password x'), ["x"]);
    assert.deepEqual(secretWords("!link a b"), []);
  });
});

describe("secrets in parse errors", () => {
  const secretFree = (text: string, secret: string[]) => {
    const r = parse(text);
    const reply = r.ok ? "" : "error" in r ? r.error : "";
    for (const s of secret) assert.ok(!reply.includes(s), `${JSON.stringify(text)} answered ${JSON.stringify(reply)}`);
    return reply;
  };

  it("--password my secret phrase: the reply repeats neither secret nor phrase", () => {
    const reply = secretFree("!link carrier 1001 --password my secret phrase", ["secret", "phrase"]);
    assert.equal(reply, `I could not read that !link, and I do not repeat it because it carried a password. Usage: ${usageOf("link")}`);
  });

  it('"--password" hunter2: the reply does not echo it', () => {
    secretFree('!link carrier 1001 "--password" hunter2', ["hunter2"]);
    secretFree("!link carrier 1001 '--password=hunter2'", ["hunter2"]);
  });

  it("a password given to a command that takes none is not repeated", () => {
    secretFree("!mwi on --password hunter2", ["hunter2"]);
    secretFree("!set timezone hunter2 --password=hunter2", ["hunter2"]);
    secretFree("!frobnicate --password hunter2", ["hunter2", "frobnicate"]);
  });

  it("\u2014password from a phone keyboard works as --password", () => {
    assert.deepEqual(ok("!link carrier 1001 \u2014password hunter2").args, { system: "carrier", mailbox: "1001", password: "hunter2" });
    assert.deepEqual(ok("!link carrier 1001 --Password hunter2 \u2014auth-user bob").args, {
      system: "carrier",
      mailbox: "1001",
      password: "hunter2",
      "auth-user": "bob",
    });
    assert.equal(ok("!link carrier 1001 -password hunter2").args.password, "hunter2");
  });

  it("a value that starts with a dash or a quote stays a value", () => {
    assert.equal(ok('!link carrier 1001 --password "--abc"').args.password, "--abc");
    assert.equal(ok("!link carrier 1001 --password -5").args.password, "-5");
  });

  it("the same option twice is refused, not handed over as a list", () => {
    const r = error("!link carrier 1001 --password x --password y");
    assert.ok(!r.error.includes("x --") && !/\by\b/.test(r.error.replace(/Usage:.*/, "")), r.error);
  });

  it("words after -- are not dropped in silence", () => {
    assert.match(error("!unlink a b -- c").error, /^Unknown argument: c\./);
  });
});

describe("tokenize", () => {
  it("splits like yargs: white space outside quotes, quotes kept", () => {
    assert.deepEqual(tokenize('a  "b c"\td\'e f\''), ["a", '"b c"', "d'e f'"]);
    assert.deepEqual(tokenize(""), []);
  });
});

describe("!verify", () => {
  it("takes one code", () => {
    assert.deepEqual(ok("!verify 042917"), { name: "verify", args: { code: "042917" } });
    assert.match(error("!verify").error, /!verify <code>/);
  });
});
