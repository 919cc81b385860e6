/**
 * Turns a `!command` message into a command and its arguments. A fresh yargs parser per
 * message: a shared one keeps state between messages and ran handlers with missing arguments.
 * The parser is built from the command's declaration (declare.ts).
 */
import yargs from "yargs";
import { choiceList, type OptionSpec, type ParsedArgs, type PositionalSpec } from "./declare.js";

/** What the parser needs of a command. */
export interface ParsableCommand {
  readonly name: string;
  readonly usage: string;
  readonly positionals: readonly PositionalSpec[];
  readonly options: readonly OptionSpec[];
}

export type Parsed =
  | { ok: true; name: string; args: ParsedArgs }
  | { ok: false; name?: string; error: string }
  | { ok: false; notACommand: true };

const PREFIX = "!";

/** Dashes a phone keyboard or a word processor puts where `--` was typed: en/em dashes, minus signs. */
const DASH = "\\-\\u2010-\\u2015\\u2212\\u2E3A\\u2E3B\\uFE58\\uFE63\\uFF0D";
const DASH_RUN = new RegExp(`^[${DASH}]+`);
/** Quotes and the like that may stand before an option someone meant (smart quotes too). */
const LEADING_QUOTES = /^["'`\u2018-\u201F\u00AB\u00BB\u2039\u203A([{<]+/;
const TRAILING_QUOTES = /["'`\u2018-\u201F\u00AB\u00BB\u2039\u203A)\]}>]+$/;
/** Invisible characters that a name may hide: zero-width spaces and joiners, soft hyphens. */
const INVISIBLE = /[\p{Cf}]/gu;

/**
 * Splits like yargs splits a string (white space outside quotes; quotes stay in the token), but
 * on any white space: a tab or line break between words is a space to the user.
 */
export function tokenize(line: string): string[] {
  const tokens: string[] = [];
  let current: string | undefined;
  let quote: string | undefined;
  for (const c of line) {
    if (!quote && /\s/.test(c)) {
      if (current !== undefined) tokens.push(current);
      current = undefined;
      continue;
    }
    if (c === quote) quote = undefined;
    else if (!quote && (c === '"' || c === "'")) quote = c;
    current = (current ?? "") + c;
  }
  if (current !== undefined) tokens.push(current);
  return tokens;
}

/**
 * `—password` (a phone's autocorrected `--`), `--Password`, `-password`: the option the user
 * meant, as yargs reads it. Values stay as they are (`-5`, a lone dash); so do quoted tokens.
 */
function normalizeToken(token: string, longOptions: ReadonlySet<string>): string {
  const run = DASH_RUN.exec(token)?.[0];
  if (!run) return token;
  const rest = token.slice(run.length);
  if (!/^\p{L}/u.test(rest)) return token;
  const eq = rest.indexOf("=");
  const name = (eq < 0 ? rest : rest.slice(0, eq)).toLowerCase();
  if (run === "-" && !longOptions.has(name)) return token; // `-x` stays a short option
  return `--${name}${eq < 0 ? "" : rest.slice(eq)}`;
}

/** yargs strips the quotes around values of a string it splits itself, not of an array. */
function unquote(value: string): string {
  return value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0]) ? value.slice(1, -1) : value;
}

/** yargs messages name its own labels and repeat what was typed; for a secret they say only what kind of mistake. */
function cleanError(message: string): string {
  return message.replace(/\s*\n\s*/g, " ").trim();
}

function withoutValues(message: string): string {
  return cleanError(message).split(":", 1)[0]!.trim();
}

export function parseCommand(text: string, commands: readonly ParsableCommand[]): Parsed {
  const trimmed = text.trim();
  if (!trimmed.startsWith(PREFIX) || trimmed.length === 1 || /^!\s/.test(trimmed)) return { ok: false, notACommand: true };
  const [first = "", ...rest] = tokenize(trimmed.slice(PREFIX.length));
  const name = first.toLowerCase();
  const command = commands.find((c) => c.name === name);
  const secret = carriesSecret(text, secretOptionsOf(commands));
  if (!command) {
    // The name itself may be part of a password typed in the wrong place.
    if (secret) return { ok: false, error: "Unknown command. Say !help for the list." };
    return { ok: false, error: `Unknown command !${name}. Say !help for the list.` };
  }

  // A command that takes a secret answers a mistake without repeating any of it: a stray word may be the password.
  const quiet = secret || command.options.some((o) => o.secret);
  const fail = (message: string): Parsed => ({
    ok: false,
    name,
    error: secret
      ? `I could not read that !${name}, and I do not repeat it because it carried a password. Usage: ${command.usage}`
      : `${quiet ? withoutValues(message) : cleanError(message)}. Usage: ${command.usage}`,
  });

  const longOptions = new Set(command.options.map((o) => o.name));
  const tokens = rest.map((t) => normalizeToken(t, longOptions));

  // When a value is missing, the omittable positionals are the ones left out: yargs needs that many fewer.
  const omittable = command.positionals.filter((p) => p.omittable).length;
  let required = command.positionals.filter((p) => !p.optional).length - omittable;
  const syntax = [
    command.name,
    ...command.positionals.map((p) => (required-- > 0 ? `<${p.name}>` : `[${p.name}]`)),
  ].join(" ");

  let matched: Record<string, unknown> | undefined;
  const parser = yargs()
    .exitProcess(false)
    .help(false)
    .version(false)
    .strict()
    .parserConfiguration({
      "parse-numbers": false,
      "parse-positional-numbers": false,
      // `--password.x=y` and `--no-password` would hand the handler an object or a boolean.
      "dot-notation": false,
      "boolean-negation": false,
    })
    .fail((message, error) => {
      throw new Error(message ?? error?.message ?? "could not parse the command");
    })
    .command(
      syntax,
      "",
      (argv) => {
        for (const p of command.positionals) {
          const choices = choiceList(p);
          argv.positional(p.name, { type: "string", ...(choices ? { choices: [...choices] } : {}) });
        }
        for (const o of command.options) argv.option(o.name, { type: "string" });
        return argv;
      },
      (argv) => {
        matched = argv as Record<string, unknown>;
      },
    );
  try {
    parser.parseSync([command.name, ...tokens]);
  } catch (err) {
    return fail((err as Error).message);
  }
  if (!matched) return fail("Not understood");
  // Words after `--` are positionals yargs does not complain about.
  const extra = (matched._ as unknown[]).slice(1);
  if (extra.length) return fail(`Unknown argument${extra.length > 1 ? "s" : ""}: ${extra.join(", ")}`);

  const args: Record<string, string | undefined> = {};
  for (const o of command.options) {
    const value = matched[o.name];
    if (value === undefined) continue;
    if (Array.isArray(value)) return fail(`--${o.name} given more than once`);
    if (typeof value !== "string") return fail(`--${o.name} needs a value`);
    args[o.name] = unquote(value);
  }
  const given = command.positionals.map((p) => matched![p.name]).filter((v): v is string => typeof v === "string");
  let leaveOut = command.positionals.filter((p) => !p.optional).length - given.length;
  for (const p of command.positionals) {
    if (p.omittable && leaveOut > 0) {
      leaveOut--;
      continue;
    }
    const value = given.shift();
    if (value !== undefined) args[p.name] = unquote(value);
  }
  return { ok: true, name, args };
}

/** An option name someone may have meant for a password: `--pass`, `--pw`, `--pwd`, `--passwd`, `--pin`, `--secret`. */
function secretName(name: string, declared: readonly string[]): boolean {
  const n = name.replace(INVISIBLE, "").replace(/["'`\u2018-\u201F]/g, "").toLowerCase().replace(/[-_]/g, "");
  if (!n) return false;
  if (declared.some((d) => n.startsWith(d) || (n.length >= 2 && d.startsWith(n)))) return true;
  return n.startsWith("pass") || n.startsWith("pw") || n === "pin" || n.startsWith("secret");
}

/** The secret options the commands declare (`password`); each also counts under its other spellings. */
export function secretOptionsOf(commands: readonly ParsableCommand[]): string[] {
  return [...new Set(commands.flatMap((c) => c.options.filter((o) => o.secret).map((o) => o.name)))];
}

const SECRET_OPTIONS = ["password"];

/**
 * Where in a message a secret was given: the index of each word that is a secret option (any
 * spelling yargs or a hurried user would use), and what was typed after it in the same word.
 * Words are split at white space only, quotes or not: `" --password x` hides nothing.
 */
function secretMarkers(words: readonly string[], declared: readonly string[]): { index: number; inline: string | undefined }[] {
  const markers: { index: number; inline: string | undefined }[] = [];
  words.forEach((raw, index) => {
    const word = raw.replace(LEADING_QUOTES, "").replace(INVISIBLE, "");
    const run = DASH_RUN.exec(word)?.[0] ?? "";
    const rest = word.slice(run.length);
    const sep = rest.search(/[=.:]/);
    const name = sep < 0 ? rest : rest.slice(0, sep);
    const inline = sep < 0 ? undefined : rest.slice(sep + 1);
    // With dashes, any password-like name; without, the word itself (`password hunter2`: the dashes forgotten).
    const bare = name.replace(/["'`\u2018-\u201F]/g, "").toLowerCase();
    if (run ? secretName(name, declared) : declared.includes(bare) || bare === "passwd" || bare === "pw") markers.push({ index, inline });
  });
  return markers;
}

const words = (text: string) => text.split(/\s+/).filter(Boolean);

/** True when a message passes a secret (or what its sender likely meant as one): it must be redacted at once. */
export function carriesSecret(text: string, declared: readonly string[] = SECRET_OPTIONS): boolean {
  return secretMarkers(words(text), declared).length > 0;
}

/**
 * The words that may be a secret the message carried: everything after each secret option up to
 * the next option, quotes taken off. No reply may contain one.
 */
export function secretWords(text: string, declared: readonly string[] = SECRET_OPTIONS): string[] {
  const all = words(text);
  const found = new Set<string>();
  const add = (value: string) => {
    const v = value.replace(LEADING_QUOTES, "").replace(TRAILING_QUOTES, "");
    if (v) found.add(v);
  };
  for (const { index, inline } of secretMarkers(all, declared)) {
    if (inline) add(inline);
    for (const word of all.slice(index + 1)) {
      if (DASH_RUN.test(word) && /^\p{L}/u.test(word.replace(DASH_RUN, ""))) break;
      add(word);
    }
  }
  return [...found];
}
