/**
 * The `!command` table. Each command declares its arguments once (declare.ts): the parser, the
 * usage line, `!help` and the handler's argument types come from it. `!help` shows only what the
 * sender may use. Handlers return the reply; the router sends it as an m.notice.
 */
import type { PermissionLevel } from "../../core/permissions.js";
import type { MailboxService } from "../mailboxService.js";
import type { ProfileService } from "../profileService.js";
import { canonicalTimeZone, countsText, escapeHtml, formatSince, renderMailboxList, type RenderedText } from "../../core/format.js";
import { MAILBOX_PATTERN } from "../../core/mwi.js";
import { atLeast } from "../../core/permissions.js";
import type { Bot } from "../../matrix/bots.js";
import { TargetError, USER_ID, type TargetService } from "../targetService.js";
import type { UserViews } from "../../delivery/userViews.js";
import { defineCommand, type Command as DeclaredCommand } from "./declare.js";
import { secretOptionsOf } from "./parser.js";

export interface CommandContext {
  sender: string;
  level: PermissionLevel;
  /** The bot the sender is talking to: a system bot implies its system. */
  bot: Bot;
  mailboxes: MailboxService;
  views: UserViews;
  targets: TargetService;
  profiles: ProfileService;
  systems: ReadonlyMap<string, { id: string; name: string }>;
  /** The usage line of the command being run. */
  usage: string;
  /** The message carried a secret: refusals repeat none of its arguments. */
  carriedSecret: boolean;
  /** The value may be (part of) the secret the message carried: no reply may show it. */
  mayBeSecret(value: string): boolean;
}

export type Command = DeclaredCommand<CommandContext>;

/** A refusal, told to the user as it is; `withoutArguments` says the same without anything they typed. */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly withoutArguments?: string,
  ) {
    super(message);
  }
}

export function text(plain: string): RenderedText {
  return { body: plain, html: escapeHtml(plain).replace(/\n/g, "<br>") };
}

const systemList = (ctx: CommandContext) => `Systems: ${[...ctx.systems.keys()].join(", ")}.`;

function knownSystem(ctx: CommandContext, systemId: string): string {
  if (!ctx.systems.has(systemId)) {
    throw new CommandError(`There is no voice mail system "${systemId}". ${systemList(ctx)}`, `There is no such voice mail system. ${systemList(ctx)}`);
  }
  return systemId;
}

function validMailbox(mailbox: string): string {
  if (!MAILBOX_PATTERN.test(mailbox)) throw new CommandError(`"${mailbox}" is not a mailbox number.`, "That is not a mailbox number.");
  return mailbox;
}

/** `<system> <mailbox>`, where a system bot's DM may leave the system out. */
function systemAndMailbox(ctx: CommandContext, system: string | undefined, mailbox: string): [string, string] {
  if (system !== undefined) return [knownSystem(ctx, system), validMailbox(mailbox)];
  if (ctx.bot.system) return [ctx.bot.system.id, validMailbox(mailbox)];
  throw new CommandError(`Say which system: ${ctx.usage}. ${systemList(ctx)}`);
}

const system = { name: "system", omittable: true } as const;
const mailbox = { name: "mailbox" } as const;

const help = defineCommand<CommandContext>({
  name: "help",
  summary: "show the commands you can use",
  level: "user",
  async run(ctx) {
    const lines = COMMANDS.filter((c) => atLeast(ctx.level, c.level) && (c.listed?.(ctx) ?? true)).flatMap((c) => c.help);
    const where = ctx.bot.system
      ? `You are talking to the bot of ${ctx.bot.system.name}: <system> may be left out.`
      : `Systems: ${[...ctx.systems.values()].map((s) => `${s.id} (${s.name})`).join(", ")}.`;
    return {
      body: ["Commands:", ...lines.map((l) => `${l.usage}: ${l.summary}`), where].join("\n"),
      html:
        `<p>Commands:</p><ul>${lines.map((l) => `<li><code>${escapeHtml(l.usage)}</code>: ${escapeHtml(l.summary)}</li>`).join("")}</ul>` +
        `<p>${escapeHtml(where)}</p>`,
    };
  },
});

const list = defineCommand<CommandContext>({
  name: "list",
  summary: "your linked mailboxes with their current counts",
  level: "user",
  async run(ctx) {
    const views = await ctx.views.mailboxViews(ctx.sender);
    const links = await ctx.mailboxes.selectLinks(ctx.sender);
    const off = new Set(links.filter((l) => !l.mwiEnabled).map((l) => `${l.systemId}/${l.mailbox}`));
    const labelled = views.map((v) => (off.has(`${v.systemId}/${v.mailbox}`) ? { ...v, mailbox: `${v.mailbox} (MWI off)` } : v));
    return renderMailboxList(labelled, await ctx.views.timeZone(ctx.sender));
  },
});

const link = defineCommand({
  name: "link",
  summary: "link one of your mailboxes (the message with the password is removed at once)",
  level: "user",
  positionals: [system, mailbox],
  options: [
    { name: "password", label: "SECRET", secret: true },
    { name: "auth-user", label: "NAME" },
  ],
  async run(ctx: CommandContext, args) {
    const [systemId, mailbox] = systemAndMailbox(ctx, args.system, args.mailbox);
    const name = ctx.views.systemName(systemId);
    // A mailbox typed after the password may be part of it (`--password my pin 1001`): linking
    // (and naming, and logging) a fragment of a password is never right, so ask again.
    if (ctx.mayBeSecret(mailbox)) {
      const ask = `Give the mailbox before --password, and put a password with spaces in quotes: ${ctx.usage}`;
      throw new CommandError(ask, ask);
    }
    const which = `${name} mailbox ${mailbox}`;
    const gateway = ctx.mailboxes.gateway(systemId);
    if (!gateway?.linking && gateway?.callVerification) {
      if (args.password !== undefined) throw new CommandError(`${name} takes no password: !link rings the mailbox's phone instead.`, `${name} takes no password: !link rings the mailbox's phone instead.`);
      return ringToVerify(ctx, systemId, mailbox, which);
    }
    if (!gateway?.linking) {
      return text(`Mailboxes of ${name} are linked by an admin: ask one to run !admin link ${ctx.sender} ${systemId} ${mailbox}.`);
    }
    if (!args.password) throw new CommandError(`${name} needs the mailbox's password: ${ctx.usage}`);
    // Known before the proof: a proof may leave a watch behind that only this link can justify.
    const watchedBefore = await ctx.mailboxes.isWatchWanted(systemId, mailbox);
    const proof = await ctx.mailboxes.proveLink(systemId, {
      userId: ctx.sender,
      mailbox,
      password: args.password,
      ...(args["auth-user"] !== undefined ? { authUser: args["auth-user"] } : {}),
    });
    if ("tooManyTriesUntil" in proof) throw await tooManyTries(ctx, proof.tooManyTriesUntil);
    if (!proof.ok) return text(`Could not link ${which}: ${proof.reason}. Nothing was stored.`);
    const outcome = await ctx.mailboxes.link(ctx.sender, systemId, mailbox, ctx.sender, {
      ...(proof.credentials ? { credentials: proof.credentials } : {}),
      proofWatch: !watchedBefore,
    });
    if (outcome === "already-linked") {
      return text(`${which} was already linked${proof.credentials ? "; its password is updated" : ""}.`);
    }
    const counts = proof.current ? `: ${countsText(proof.current.counts)}` : "";
    return text(`Linked ${which}${counts}.`);
  },
});

/** "Too many tries: try again after 09:42." (rounded up: it must not be refused again at 09:42:10). */
async function tooManyTries(ctx: CommandContext, until: number): Promise<CommandError> {
  const after = Math.ceil(until / 60_000) * 60_000;
  const tooMany = `Too many tries: try again after ${formatSince(after, Date.now(), await ctx.views.timeZone(ctx.sender))}.`;
  return new CommandError(tooMany, tooMany);
}

/** `!link` on a system that proves a mailbox by ringing its phone with a one-time code. */
async function ringToVerify(ctx: CommandContext, systemId: string, mailbox: string, which: string): Promise<RenderedText> {
  if ((await ctx.mailboxes.selectLinks(ctx.sender, systemId, mailbox)).length) return text(`${which} is already linked.`);
  const call = await ctx.mailboxes.ringToVerify(systemId, ctx.sender, mailbox);
  if ("tooManyTriesUntil" in call) throw await tooManyTries(ctx, call.tooManyTriesUntil);
  if (!call.ok) return text(`Could not ring ${which}: ${call.reason}. Nothing was stored.`);
  const until = formatSince(Math.floor(call.expiresAt / 60_000) * 60_000, Date.now(), await ctx.views.timeZone(ctx.sender));
  return text(
    `Ringing the phone of ${which}: its display shows a code as the caller's name, and the call says it when answered. Answer here with !verify <code> before ${until}.`,
  );
}

const verify = defineCommand({
  name: "verify",
  summary: "link the mailbox whose phone !link rang, with the code it showed",
  level: "user",
  positionals: [{ name: "code" }],
  // Only where some system rings phones to link them: elsewhere it would only puzzle.
  listed: (ctx: CommandContext) => [...ctx.systems.keys()].some((id) => ctx.mailboxes.gateway(id)?.callVerification !== undefined),
  async run(ctx: CommandContext, args) {
    const code = args.code.trim();
    if (!/^\d{4,12}$/.test(code)) throw new CommandError("A code is the digits the phone showed or said.", "A code is the digits the phone showed or said.");
    const result = await ctx.mailboxes.verifyCode(ctx.sender, code);
    if ("tooManyTriesUntil" in result) throw await tooManyTries(ctx, result.tooManyTriesUntil);
    if (!result.ok) {
      const why = {
        none: "There is no code waiting for you: say !link <system> <mailbox> first.",
        expired: "That code has expired: say !link again for a new call.",
        wrong: "That is not the code. Nothing was linked.",
      } as const;
      return text(why[result.reason]);
    }
    const which = `${ctx.views.systemName(result.systemId)} mailbox ${result.mailbox}`;
    return text(result.outcome === "already-linked" ? `${which} was already linked.` : `Linked ${which}.`);
  },
});

const unlink = defineCommand({
  name: "unlink",
  summary: "stop following one of your mailboxes",
  level: "user",
  positionals: [system, mailbox],
  async run(ctx: CommandContext, args) {
    const [systemId, mailbox] = systemAndMailbox(ctx, args.system, args.mailbox);
    const removed = await ctx.mailboxes.unlink(ctx.sender, systemId, mailbox, ctx.sender);
    return text(removed ? `Unlinked ${ctx.views.systemName(systemId)} mailbox ${mailbox}.` : `You have no linked mailbox ${mailbox} on ${ctx.views.systemName(systemId)}.`);
  },
});

const mwi = defineCommand({
  name: "mwi",
  summary: "switch message waiting notifications on or off",
  level: "user",
  positionals: [
    { name: "state", choices: ["on", "off"] },
    { name: "system", optional: true },
    { name: "mailbox", optional: true },
  ],
  async run(ctx: CommandContext, args) {
    const enabled = args.state === "on";
    let systemId: string | undefined = ctx.bot.system?.id;
    let mailbox: string | undefined;
    if (args.mailbox !== undefined) {
      systemId = knownSystem(ctx, args.system ?? "");
      mailbox = validMailbox(args.mailbox);
    } else if (args.system !== undefined) {
      // One word: a system, or in a system bot's DM a mailbox of its system.
      if (ctx.systems.has(args.system)) systemId = args.system;
      else if (ctx.bot.system) mailbox = validMailbox(args.system);
      else knownSystem(ctx, args.system);
    }
    const links = await ctx.mailboxes.selectLinks(ctx.sender, systemId, mailbox);
    if (links.length === 0) return text("None of your linked mailboxes matches. Say !list to see them.");
    const changed = await ctx.mailboxes.setMwi(ctx.sender, links, enabled);
    const names = links.map((l) => `${ctx.views.systemName(l.systemId)} ${l.mailbox}`).join(", ");
    if (changed.length === 0) return text(`MWI was already ${enabled ? "on" : "off"} for ${names}.`);
    return text(`MWI is now ${enabled ? "on" : "off"} for ${names}.`);
  },
});

const set = defineCommand({
  name: "set",
  summary: "your settings",
  level: "user",
  positionals: [
    {
      name: "setting",
      choices: {
        timezone: { then: "<IANA zone>", summary: "the time zone of your time stamps, e.g. Europe/Berlin" },
        delivery: { then: "always|when-online", summary: "always: at once; when-online: held while you are not online, then one catch-up" },
        notify: { then: "per-system|summary|both", summary: "per-system: in each system's chat; summary: in one chat with the main bot; both" },
      },
    },
    { name: "value" },
  ],
  async run(ctx: CommandContext, args) {
    const value = args.value;
    switch (args.setting) {
      case "delivery": {
        if (value !== "always" && value !== "when-online") throw new CommandError(`Say !set delivery always or !set delivery when-online.`);
        await ctx.profiles.setDelivery(ctx.sender, value);
        return text(value === "always" ? "Notifications are delivered at once." : "Notifications wait until you are online.");
      }
      case "notify": {
        if (value !== "per-system" && value !== "summary" && value !== "both") {
          throw new CommandError(`Say !set notify per-system, !set notify summary or !set notify both.`);
        }
        await ctx.profiles.setNotify(ctx.sender, value);
        return text(`Messages now go to ${value === "per-system" ? "each system's chat" : value === "summary" ? "the summary chat with the main bot" : "each system's chat and the summary chat"}.`);
      }
      case "timezone": {
        const canonical = canonicalTimeZone(value);
        if (!canonical) {
          throw new CommandError(`"${value}" is not a time zone. Use an IANA name such as Europe/Berlin or America/New_York.`, "That is not a time zone. Use an IANA name such as Europe/Berlin or America/New_York.");
        }
        await ctx.profiles.setTimeZone(ctx.sender, canonical);
        return text(`Time stamps are now shown in ${canonical}.`);
      }
    }
  },
});

const target = defineCommand({
  name: "target",
  summary: "more Matrix accounts or rooms that are told about your voicemail (list: the ones you have)",
  level: "user",
  positionals: [
    { name: "action", choices: ["add", "remove", "list"] },
    { name: "address", label: "@user:server | !room:server | #alias:server", optional: true },
  ],
  async run(ctx: CommandContext, args) {
    if (args.action === "list") {
      const targets = await ctx.targets.list(ctx.sender);
      if (!targets.length) return text("You have no extra targets. Add one with !target add @user:server or !target add #room:server.");
      const state = { invited: "invite not accepted yet", active: "active", refused: "declined" } as const;
      return text(["Your extra targets:", ...targets.map((t) => `- ${t.address} (${t.kind}, ${state[t.status]})`)].join("\n"));
    }
    const address = args.address ?? "";
    if (!address) throw new CommandError(`Say which account or room: ${ctx.usage}`);
    try {
      if (args.action === "add") return text(await ctx.targets.add(ctx.sender, address));
    } catch (err) {
      if (err instanceof TargetError) throw new CommandError(err.message);
      throw err;
    }
    return text((await ctx.targets.remove(ctx.sender, address)) ? `Removed ${address}.` : `${address} is not one of your targets.`);
  },
});

/**
 * What a user linked by an admin (without a password) gets from a system that MWI comes from
 * only when asked for (SIP): the admin must know, the user would otherwise silently get nothing.
 */
async function adminLinkGets(ctx: CommandContext, systemId: string, mailbox: string): Promise<string> {
  const watching = ctx.mailboxes.gateway(systemId)?.watching;
  if (!watching) return ".";
  if (watching.systemCredentials) return ": watched with the system's credentials.";
  const now = (await ctx.mailboxes.followedWithPassword(systemId, mailbox))
    ? "someone does now"
    : "nobody does now (give the system credentials in its config, or have the user link it with !link and its password)";
  return `. This system has no credentials for admin links: the user gets MWI only while someone who linked it with a password follows it; ${now}.`;
}

const admin = defineCommand({
  name: "admin",
  summary: "link or unlink a mailbox for any user",
  level: "admin",
  positionals: [{ name: "action", choices: ["link", "unlink"] }, { name: "user", label: "@user:server" }, system, mailbox],
  async run(ctx: CommandContext, args) {
    const user = args.user;
    if (!USER_ID.test(user)) throw new CommandError(`"${user}" is not a Matrix user ID such as @alice:example.org.`, "That is not a Matrix user ID such as @alice:example.org.");
    const [systemId, mailbox] = systemAndMailbox(ctx, args.system, args.mailbox);
    const name = ctx.views.systemName(systemId);
    if (args.action === "unlink") {
      const removed = await ctx.mailboxes.unlink(user, systemId, mailbox, ctx.sender);
      return text(removed ? `Unlinked ${name} mailbox ${mailbox} from ${user}.` : `${user} has no linked mailbox ${mailbox} on ${name}.`);
    }
    const welcome = text(`Mailbox ${mailbox} of ${name} is now linked to your account. Its message waiting indication will show here. Say !help for commands.`);
    const outcome = await ctx.mailboxes.link(user, systemId, mailbox, ctx.sender, { welcome });
    const done = outcome === "already-linked" ? `${user} already has ${name} mailbox ${mailbox}` : `Linked ${name} mailbox ${mailbox} to ${user}`;
    return text(`${done}${await adminLinkGets(ctx, systemId, mailbox)}`);
  },
});

export const COMMANDS: readonly Command[] = [help, list, link, verify, unlink, mwi, set, target, admin];

/** The secret options any command declares (`password`): the router redacts messages that pass one. */
export const SECRET_OPTION_NAMES: readonly string[] = secretOptionsOf(COMMANDS);
