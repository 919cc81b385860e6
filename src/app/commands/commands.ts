/**
 * The `!command` table. `!help` is generated from it, showing only what the sender may use.
 * Handlers return the reply; the caller sends it as an m.notice.
 */
import type { PermissionLevel } from "../../core/permissions.js";
import type { MailboxService } from "../mailboxService.js";
import { canonicalTimeZone, countsText, escapeHtml, renderMailboxList, type RenderedText } from "../../core/format.js";
import { MAILBOX_PATTERN } from "../../core/mwi.js";
import { atLeast } from "../../core/permissions.js";
import type { Bot } from "../../matrix/bots.js";
import { TargetError, USER_ID, type TargetService } from "../targetService.js";
import type { UserViews } from "../../delivery/userViews.js";
import type { VoicemailStore } from "../../store/store.js";
import type { CommandDefinition } from "./parser.js";

export interface CommandContext {
  sender: string;
  level: PermissionLevel;
  /** The bot the sender is talking to: a system bot implies its system. */
  bot: Bot;
  mailboxes: MailboxService;
  views: UserViews;
  targets: TargetService;
  store: VoicemailStore;
  systems: Map<string, { id: string; name: string }>;
}

export interface Command extends CommandDefinition {
  summary: string;
  level: PermissionLevel;
  run(ctx: CommandContext, args: Record<string, unknown>): Promise<RenderedText>;
}

export class CommandError extends Error {}

export function text(plain: string): RenderedText {
  return { body: plain, html: escapeHtml(plain).replace(/\n/g, "<br>") };
}


function knownSystem(ctx: CommandContext, systemId: string): string {
  if (!ctx.systems.has(systemId)) {
    throw new CommandError(`There is no voice mail system "${systemId}". Systems: ${[...ctx.systems.keys()].join(", ")}.`);
  }
  return systemId;
}

function validMailbox(mailbox: string): string {
  if (!MAILBOX_PATTERN.test(mailbox)) throw new CommandError(`"${mailbox}" is not a mailbox number.`);
  return mailbox;
}

/**
 * `<system> <mailbox>`, where a system bot's DM may leave the system out.
 * `first` and `second` are the raw positionals.
 */
function systemAndMailbox(ctx: CommandContext, first: unknown, second: unknown, usage: string): [string, string] {
  if (typeof second === "string") return [knownSystem(ctx, String(first)), validMailbox(second)];
  if (ctx.bot.system && typeof first === "string") return [ctx.bot.system.id, validMailbox(first)];
  throw new CommandError(`Say which system: ${usage}. Systems: ${[...ctx.systems.keys()].join(", ")}.`);
}

const str = { type: "string" } as const;

const help: Command = {
  name: "help",
  syntax: "help",
  usage: "!help",
  summary: "show the commands you can use",
  level: "user",
  async run(ctx) {
    const usable = COMMANDS.filter((c) => atLeast(ctx.level, c.level));
    const where = ctx.bot.system
      ? `You are talking to the bot of ${ctx.bot.system.name}: <system> may be left out.`
      : `Systems: ${[...ctx.systems.values()].map((s) => `${s.id} (${s.name})`).join(", ")}.`;
    return {
      body: ["Commands:", ...usable.map((c) => `${c.usage}: ${c.summary}`), where].join("\n"),
      html:
        `<p>Commands:</p><ul>${usable.map((c) => `<li><code>${escapeHtml(c.usage)}</code>: ${escapeHtml(c.summary)}</li>`).join("")}</ul>` +
        `<p>${escapeHtml(where)}</p>`,
    };
  },
};

const list: Command = {
  name: "list",
  syntax: "list",
  usage: "!list",
  summary: "your linked mailboxes with their current counts",
  level: "user",
  async run(ctx) {
    const views = await ctx.views.mailboxViews(ctx.sender);
    const links = await ctx.store.listLinks(ctx.sender);
    const off = new Set(links.filter((l) => !l.mwiEnabled).map((l) => `${l.systemId}/${l.mailbox}`));
    const labelled = views.map((v) => (off.has(`${v.systemId}/${v.mailbox}`) ? { ...v, mailbox: `${v.mailbox} (MWI off)` } : v));
    return renderMailboxList(labelled, await ctx.views.timeZone(ctx.sender));
  },
};

const link: Command = {
  name: "link",
  syntax: "link <first> [second]",
  usage: "!link <system> <mailbox> [--password SECRET] [--auth-user NAME]",
  summary: "link one of your mailboxes (the message with the password is removed at once)",
  level: "user",
  configure: (y) => y.positional("first", str).positional("second", str).option("password", str).option("auth-user", str),
  async run(ctx, args) {
    const [systemId, mailbox] = systemAndMailbox(ctx, args.first, args.second, this.usage);
    const gateway = ctx.mailboxes.gateway(systemId);
    if (!gateway?.linking) {
      return text(`Mailboxes of ${ctx.views.systemName(systemId)} are linked by an admin: ask one to run !admin link ${ctx.sender} ${systemId} ${mailbox}.`);
    }
    const password = typeof args.password === "string" ? args.password : undefined;
    if (!password) throw new CommandError(`${ctx.views.systemName(systemId)} needs the mailbox's password: ${this.usage}`);
    const proof = await gateway.linking.prove({
      userId: ctx.sender,
      mailbox,
      password,
      ...(typeof args["auth-user"] === "string" ? { authUser: args["auth-user"] } : {}),
    });
    if (!proof.ok) return text(`Could not link ${ctx.views.systemName(systemId)} mailbox ${mailbox}: ${proof.reason}. Nothing was stored.`);
    const outcome = await ctx.mailboxes.link(ctx.sender, systemId, mailbox, ctx.sender, proof.credentials ? { credentials: proof.credentials } : {});
    if (outcome === "already-linked") return text(`${ctx.views.systemName(systemId)} mailbox ${mailbox} was already linked.`);
    const counts = proof.current ? `: ${countsText(proof.current.counts)}` : "";
    return text(`Linked ${ctx.views.systemName(systemId)} mailbox ${mailbox}${counts}.`);
  },
};

const unlink: Command = {
  name: "unlink",
  syntax: "unlink <first> [second]",
  usage: "!unlink <system> <mailbox>",
  summary: "stop following one of your mailboxes",
  level: "user",
  configure: (y) => y.positional("first", str).positional("second", str),
  async run(ctx, args) {
    const [systemId, mailbox] = systemAndMailbox(ctx, args.first, args.second, this.usage);
    const removed = await ctx.mailboxes.unlink(ctx.sender, systemId, mailbox, ctx.sender);
    return text(removed ? `Unlinked ${ctx.views.systemName(systemId)} mailbox ${mailbox}.` : `You have no linked mailbox ${mailbox} on ${ctx.views.systemName(systemId)}.`);
  },
};

const mwi: Command = {
  name: "mwi",
  syntax: "mwi <state> [first] [second]",
  usage: "!mwi on|off [<system> [<mailbox>]]",
  summary: "switch message waiting notifications on or off",
  level: "user",
  configure: (y) => y.positional("state", { choices: ["on", "off"] }).positional("first", str).positional("second", str),
  async run(ctx, args) {
    const enabled = args.state === "on";
    let systemId: string | undefined = ctx.bot.system?.id;
    let mailbox: string | undefined;
    if (typeof args.second === "string") {
      systemId = knownSystem(ctx, String(args.first));
      mailbox = validMailbox(args.second);
    } else if (typeof args.first === "string") {
      if (ctx.systems.has(args.first)) systemId = args.first;
      else if (ctx.bot.system) mailbox = validMailbox(args.first);
      else knownSystem(ctx, args.first);
    }
    const links = await ctx.mailboxes.selectLinks(ctx.sender, systemId, mailbox);
    if (links.length === 0) return text("None of your linked mailboxes matches. Say !list to see them.");
    const changed = await ctx.mailboxes.setMwi(ctx.sender, links, enabled);
    const names = links.map((l) => `${ctx.views.systemName(l.systemId)} ${l.mailbox}`).join(", ");
    if (changed.length === 0) return text(`MWI was already ${enabled ? "on" : "off"} for ${names}.`);
    return text(`MWI is now ${enabled ? "on" : "off"} for ${names}.`);
  },
};

const SETTINGS = {
  timezone: "<IANA zone>: the time zone of time stamps, e.g. Europe/Berlin",
  delivery: "always|when-online: when-online holds notifications while you are not online",
  notify: "per-system|summary|both: messages in each system's chat, in one summary chat with the main bot, or both",
} as const;

const set: Command = {
  name: "set",
  syntax: "set <setting> <value>",
  usage: "!set timezone|delivery|notify <value>",
  summary: `your settings: ${Object.entries(SETTINGS).map(([k, v]) => `${k} ${v}`).join("; ")}`,
  level: "user",
  configure: (y) => y.positional("setting", { choices: Object.keys(SETTINGS) }).positional("value", str),
  async run(ctx, args) {
    const value = String(args.value);
    switch (args.setting) {
      case "delivery": {
        if (value !== "always" && value !== "when-online") throw new CommandError(`Say !set delivery always or !set delivery when-online.`);
        await ctx.store.updateProfile(ctx.sender, { delivery: value });
        return text(value === "always" ? "Notifications are delivered at once." : "Notifications wait until you are online.");
      }
      case "notify": {
        if (value !== "per-system" && value !== "summary" && value !== "both") {
          throw new CommandError(`Say !set notify per-system, !set notify summary or !set notify both.`);
        }
        await ctx.store.updateProfile(ctx.sender, { notify: value });
        return text(`Messages now go to ${value === "per-system" ? "each system's chat" : value === "summary" ? "the summary chat with the main bot" : "each system's chat and the summary chat"}.`);
      }
      default: {
        const canonical = canonicalTimeZone(value);
        if (!canonical) throw new CommandError(`"${value}" is not a time zone. Use an IANA name such as Europe/Berlin or America/New_York.`);
        await ctx.store.updateProfile(ctx.sender, { timezone: canonical });
        return text(`Time stamps are now shown in ${canonical}.`);
      }
    }
  },
};

const target: Command = {
  name: "target",
  syntax: "target <action> [address]",
  usage: "!target add|remove <@user:server | !room:server | #alias:server>, !target list",
  summary: "more Matrix accounts or rooms that are told about your voicemail",
  level: "user",
  configure: (y) => y.positional("action", { choices: ["add", "remove", "list"] }).positional("address", str),
  async run(ctx, args) {
    if (args.action === "list") {
      const targets = await ctx.targets.list(ctx.sender);
      if (!targets.length) return text("You have no extra targets. Add one with !target add @user:server or !target add #room:server.");
      const state = { invited: "invite not accepted yet", active: "active", refused: "declined" } as const;
      return text(["Your extra targets:", ...targets.map((t) => `- ${t.address} (${t.kind}, ${state[t.status]})`)].join("\n"));
    }
    const address = typeof args.address === "string" ? args.address : "";
    if (!address) throw new CommandError(`Say which account or room: ${this.usage}`);
    try {
      if (args.action === "add") return text(await ctx.targets.add(ctx.sender, address));
    } catch (err) {
      if (err instanceof TargetError) throw new CommandError(err.message);
      throw err;
    }
    return text((await ctx.targets.remove(ctx.sender, address)) ? `Removed ${address}.` : `${address} is not one of your targets.`);
  },
};

const admin: Command = {
  name: "admin",
  syntax: "admin <action> <user> <first> [second]",
  usage: "!admin link|unlink <@user:server> <system> <mailbox>",
  summary: "link or unlink a mailbox for any user",
  level: "admin",
  configure: (y) => y.positional("action", { choices: ["link", "unlink"] }).positional("user", str).positional("first", str).positional("second", str),
  async run(ctx, args) {
    const user = String(args.user);
    if (!USER_ID.test(user)) throw new CommandError(`"${user}" is not a Matrix user ID such as @alice:example.org.`);
    const [systemId, mailbox] = systemAndMailbox(ctx, args.first, args.second, this.usage);
    const name = ctx.views.systemName(systemId);
    if (args.action === "unlink") {
      const removed = await ctx.mailboxes.unlink(user, systemId, mailbox, ctx.sender);
      return text(removed ? `Unlinked ${name} mailbox ${mailbox} from ${user}.` : `${user} has no linked mailbox ${mailbox} on ${name}.`);
    }
    const welcome = text(`Mailbox ${mailbox} of ${name} is now linked to your account. Its message waiting indication will show here. Say !help for commands.`);
    const outcome = await ctx.mailboxes.link(user, systemId, mailbox, ctx.sender, { welcome });
    if (outcome === "already-linked") return text(`${user} already has ${name} mailbox ${mailbox}.`);
    return text(`Linked ${name} mailbox ${mailbox} to ${user}.`);
  },
};

export const COMMANDS: Command[] = [help, list, link, unlink, mwi, set, target, admin];
