/**
 * Turns a `!command` message into a command and its arguments. A fresh yargs parser per
 * message: a shared one keeps state between messages and ran handlers with missing arguments.
 */
import yargs, { type Argv } from "yargs";

export interface CommandDefinition {
  name: string;
  /** yargs command string, e.g. "link <first> [second]". */
  syntax: string;
  /** What `!help` shows, e.g. "!link <system> <mailbox> [--password SECRET]". */
  usage: string;
  configure?: (argv: Argv) => Argv;
}

export type Parsed =
  | { ok: true; name: string; args: Record<string, unknown> }
  | { ok: false; name?: string; error: string }
  | { ok: false; notACommand: true };

const PREFIX = "!";

/** yargs messages name its own positional labels; users know the usage line instead. */
function cleanError(message: string): string {
  return message.replace(/\s*\n\s*/g, " ").trim();
}

export function parseCommand(text: string, commands: CommandDefinition[]): Parsed {
  const trimmed = text.trim();
  if (!trimmed.startsWith(PREFIX) || trimmed.length === 1 || /^!\s/.test(trimmed)) return { ok: false, notACommand: true };
  const line = trimmed.slice(PREFIX.length);
  const name = line.split(/\s+/, 1)[0]!.toLowerCase();
  const command = commands.find((c) => c.name === name);
  if (!command) return { ok: false, error: `Unknown command !${name}. Say !help for the list.` };
  // yargs splits on spaces only; a tab or line break between words is a space to the user.
  const rest = line.slice(line.split(/\s+/, 1)[0]!.length).replace(/\s/g, " ");

  let matched: Record<string, unknown> | undefined;
  const parser = yargs()
    .exitProcess(false)
    .help(false)
    .version(false)
    .strict()
    .parserConfiguration({ "parse-numbers": false, "parse-positional-numbers": false })
    .fail((message, error) => {
      throw new Error(message ?? error?.message ?? "could not parse the command");
    })
    .command(command.syntax, "", (argv) => (command.configure ? command.configure(argv) : argv), (argv) => {
      matched = argv as Record<string, unknown>;
    });
  try {
    parser.parseSync(`${command.name}${rest}`);
  } catch (err) {
    return { ok: false, name, error: `${cleanError((err as Error).message)}. Usage: ${command.usage}` };
  }
  if (!matched) return { ok: false, name, error: `Usage: ${command.usage}` };
  const { _, $0, ...args } = matched;
  return { ok: true, name, args };
}

/** True when a message passes a secret on the command line: it must be redacted at once. */
export function carriesSecret(text: string): boolean {
  // Any spelling yargs reads as the option counts: `--password x`, `--password=x`, `--password.x=y`.
  return /(^|\s)--password(?![A-Za-z0-9_-])/.test(text);
}
