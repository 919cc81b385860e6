/**
 * A command declares its arguments once; the yargs setup (parser.ts), the usage line, the
 * `!help` lines and the type of the arguments its handler gets all come from that declaration.
 */
import type { RenderedText } from "../../core/format.js";
import type { PermissionLevel } from "../../core/permissions.js";

/** A choice with its own `!help` line: what follows it, and what it does. */
interface ChoiceHelp {
  readonly then: string;
  readonly summary: string;
}

export interface PositionalSpec {
  readonly name: string;
  /** Shown in the usage line as `<label>`; the name when not given. */
  readonly label?: string;
  /** The only values taken: a list, or a table whose entries each get their own `!help` line. */
  readonly choices?: readonly string[] | Readonly<Record<string, ChoiceHelp>>;
  /** May be left out (at the end). */
  readonly optional?: boolean;
  /** May be left out where the bot implies it (a system bot's DM and `<system>`): when one value is missing, this one is. */
  readonly omittable?: boolean;
}

export interface OptionSpec {
  readonly name: string;
  /** What the usage line shows after the option: `--password SECRET`. */
  readonly label: string;
  /** Never shown again: a message with it is redacted, and no reply repeats any of its arguments. */
  readonly secret?: boolean;
}

type ChoiceOf<P> = P extends { readonly choices: readonly (infer C extends string)[] }
  ? C
  : P extends { readonly choices: infer R }
    ? Extract<keyof R, string>
    : string;

type PositionalValue<P> = P extends { readonly optional: true } | { readonly omittable: true } ? ChoiceOf<P> | undefined : ChoiceOf<P>;

/** The handler's arguments, typed from the declaration: choices become unions, options optional strings. */
export type ArgsOf<P extends readonly PositionalSpec[], O extends readonly OptionSpec[]> = {
  readonly [S in P[number] as S["name"]]: PositionalValue<S>;
} & {
  readonly [S in O[number] as S["name"]]?: string;
};

/** What the parser hands over: every declared positional and option, checked against the declaration. */
export type ParsedArgs = Readonly<Record<string, string | undefined>>;

export interface CommandSpec<Ctx, P extends readonly PositionalSpec[], O extends readonly OptionSpec[]> {
  readonly name: string;
  /** A few words for `!help`. */
  readonly summary: string;
  readonly level: PermissionLevel;
  readonly positionals?: P;
  readonly options?: O;
  /** Listed in `!help` only where it applies (a command for one kind of system); always when absent. */
  readonly listed?: (ctx: Ctx) => boolean;
  run(ctx: Ctx, args: ArgsOf<P, O>): Promise<RenderedText>;
}

interface HelpLine {
  usage: string;
  summary: string;
}

/** A declared command, with everything derived from its declaration. */
export interface Command<Ctx> {
  readonly name: string;
  readonly summary: string;
  readonly level: PermissionLevel;
  readonly positionals: readonly PositionalSpec[];
  readonly options: readonly OptionSpec[];
  /** e.g. "!link <system> <mailbox> [--password SECRET] [--auth-user NAME]". */
  readonly usage: string;
  /** Its lines in `!help`: one, or one per choice of a positional that describes its choices. */
  readonly help: readonly HelpLine[];
  readonly listed?: (ctx: Ctx) => boolean;
  run(ctx: Ctx, args: ParsedArgs): Promise<RenderedText>;
}

export function choiceList(p: PositionalSpec): readonly string[] | undefined {
  if (!p.choices) return undefined;
  return Array.isArray(p.choices) ? (p.choices as readonly string[]) : Object.keys(p.choices);
}

function positionalText(p: PositionalSpec): string {
  const choices = choiceList(p);
  return choices ? choices.join("|") : `<${p.label ?? p.name}>`;
}

/** Optional positionals nest: `on|off [<system> [<mailbox>]]`. */
function usageOf(name: string, positionals: readonly PositionalSpec[], options: readonly OptionSpec[]): string {
  let tail = "";
  for (const p of [...positionals].reverse()) {
    const text = positionalText(p);
    tail = p.optional ? `[${text}${tail ? ` ${tail}` : ""}]` : `${text}${tail ? ` ${tail}` : ""}`;
  }
  const opts = options.map((o) => `[--${o.name} ${o.label}]`);
  return [`!${name}`, tail, ...opts].filter(Boolean).join(" ");
}

function helpOf(name: string, summary: string, usage: string, positionals: readonly PositionalSpec[]): HelpLine[] {
  const index = positionals.findIndex((p) => p.choices && !Array.isArray(p.choices));
  if (index < 0) return [{ usage, summary }];
  const before = positionals.slice(0, index).map(positionalText);
  const table = positionals[index]!.choices as Readonly<Record<string, ChoiceHelp>>;
  return Object.entries(table).map(([choice, help]) => ({
    usage: [`!${name}`, ...before, choice, help.then].filter(Boolean).join(" "),
    summary: help.summary,
  }));
}

export function defineCommand<Ctx, const P extends readonly PositionalSpec[] = [], const O extends readonly OptionSpec[] = []>(
  spec: CommandSpec<Ctx, P, O>,
): Command<Ctx> {
  const positionals: readonly PositionalSpec[] = spec.positionals ?? [];
  const options: readonly OptionSpec[] = spec.options ?? [];
  const usage = usageOf(spec.name, positionals, options);
  return {
    name: spec.name,
    summary: spec.summary,
    level: spec.level,
    positionals,
    options,
    usage,
    help: helpOf(spec.name, spec.summary, usage, positionals),
    ...(spec.listed ? { listed: spec.listed } : {}),
    // The parser checked every value against this declaration (strings, choices, arity): the
    // one place where its record becomes the typed arguments.
    run: (ctx, args) => spec.run(ctx, args as ArgsOf<P, O>),
  };
}
