/**
 * The `!command` table. Each command declares its arguments once (declare.ts): the parser, the
 * usage line, `!help` and the handler's argument types come from it. `!help` shows only what the
 * sender may use. Handlers return the reply; the router sends it as an m.notice.
 */
import type { PermissionLevel } from "../../core/permissions.js";
import type { MailboxService } from "../mailboxService.js";
import type { ProfileService } from "../profileService.js";
import type { MailboxOutcome, VoicemailService } from "../voicemailService.js";
import type { VoicemailMessage } from "../../gateway/gateway.js";
import type { MailboxLink } from "../../store/store.js";
import { formatPhoneNumber } from "../../core/phone.js";
import { canonicalTimeZone, countsText, escapeHtml, formatDuration, formatSince, formatTimestamp, renderMailboxList, type RenderedText } from "../../core/format.js";
import { cleanCallerField, MAILBOX_PATTERN } from "../../core/mwi.js";
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
  voicemails: VoicemailService;
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

/**
 * `[<system> [<mailbox>]]` as `!mwi` reads it: one word is a system, or in a system bot's DM a
 * mailbox of its system; nothing is every mailbox (of the bot's system, in its DM).
 */
function whichMailboxes(ctx: CommandContext, first: string | undefined, second: string | undefined): { systemId?: string; mailbox?: string } {
  let systemId: string | undefined = ctx.bot.system?.id;
  let mailbox: string | undefined;
  if (second !== undefined) {
    systemId = knownSystem(ctx, first ?? "");
    mailbox = validMailbox(second);
  } else if (first !== undefined) {
    if (ctx.systems.has(first)) systemId = first;
    else if (ctx.bot.system) mailbox = validMailbox(first);
    else knownSystem(ctx, first);
  }
  return { ...(systemId !== undefined ? { systemId } : {}), ...(mailbox !== undefined ? { mailbox } : {}) };
}

async function linksNamed(ctx: CommandContext, first: string | undefined, second: string | undefined): Promise<MailboxLink[]> {
  const { systemId, mailbox } = whichMailboxes(ctx, first, second);
  const links = await ctx.voicemails.links(ctx.sender, systemId, mailbox);
  if (!links.length) throw new CommandError("None of your linked mailboxes matches. Say !list to see them.");
  return links;
}

const mailboxName = (ctx: CommandContext, link: MailboxLink) => `${ctx.views.systemName(link.systemId)} mailbox ${link.mailbox}`;

/** "urgent, from Grace Caller (+1 555 123 4567), 1 Dec 2026, 09:10 UTC, 0:11": one message, as a user knows it. */
function describeMessage(ctx: CommandContext, message: VoicemailMessage, timeZone: string): string {
  // Caller fields come from outside (a caller ID, a mail header): cleaned as the notifications clean them.
  const number = message.callerNumber !== undefined ? cleanCallerField(message.callerNumber) : undefined;
  const name = message.callerName !== undefined ? cleanCallerField(message.callerName) : undefined;
  const caller = number ? formatPhoneNumber(number, ctx.views.defaultRegion) : undefined;
  const who = name && caller ? `${name} (${caller})` : (name ?? caller ?? "an unknown caller");
  return [
    `${message.urgent ? "URGENT, " : ""}from ${who}`,
    ...(message.time !== undefined ? [formatTimestamp(message.time, timeZone)] : []),
    ...(message.duration !== undefined ? [formatDuration(message.duration)] : []),
  ].join(", ");
}

/** The failures and the mailboxes whose system cannot do it, one line each, after what was done. */
function problemLines<T>(ctx: CommandContext, outcomes: readonly MailboxOutcome<T>[], cannot: string): string[] {
  const lines: string[] = [];
  const unsupported = outcomes.filter((o) => !o.ok && o.unsupported).map((o) => mailboxName(ctx, o.link));
  if (unsupported.length) lines.push(`${unsupported.join(", ")}: the voice mail system only reports counts to the bridge; it cannot ${cannot}.`);
  for (const o of outcomes) if (!o.ok && !o.unsupported) lines.push(`${mailboxName(ctx, o.link)}: ${o.reason}.`);
  return lines;
}

/** Listed only where some system offers its messages: elsewhere they could only say no. */
const someSystemHasMessages = (ctx: CommandContext) => [...ctx.systems.keys()].some((id) => ctx.mailboxes.gateway(id)?.messages !== undefined);

const voicemails = defineCommand({
  name: "voicemails",
  summary: "the messages in your mailboxes, newest first",
  level: "user",
  listed: someSystemHasMessages,
  positionals: [
    { name: "system", optional: true },
    { name: "mailbox", optional: true },
  ],
  async run(ctx: CommandContext, args) {
    const outcomes = await ctx.voicemails.list(await linksNamed(ctx, args.system, args.mailbox));
    const zone = await ctx.views.timeZone(ctx.sender);
    const plain: string[] = [];
    const html: string[] = [];
    for (const o of outcomes) {
      if (!o.ok) continue;
      const name = mailboxName(ctx, o.link);
      if (!o.value.length) {
        plain.push(`${name}: no messages.`);
        html.push(`<p>${escapeHtml(name)}: no messages.</p>`);
        continue;
      }
      const rows = o.value.map((m) => `${m.fresh ? "new" : "heard"}: ${describeMessage(ctx, m, zone)}`);
      plain.push(`${name}:`, ...rows.map((r) => `- ${r}`));
      html.push(`<p>${escapeHtml(name)}:</p><ul>${o.value.map((m, i) => `<li>${m.urgent ? "<strong>" : ""}${escapeHtml(rows[i]!)}${m.urgent ? "</strong>" : ""}</li>`).join("")}</ul>`);
    }
    const problems = problemLines(ctx, outcomes, "list its messages");
    return {
      body: [...plain, ...problems].join("\n"),
      html: [...html, ...problems.map((p) => `<p>${escapeHtml(p)}</p>`)].join(""),
    };
  },
});

const heard = defineCommand({
  name: "heard",
  summary: "mark your newest voicemail heard (all: every one of a mailbox), so the phone's lamp goes out",
  level: "user",
  listed: someSystemHasMessages,
  positionals: [
    { name: "all", label: "all|system", optional: true },
    { name: "system", optional: true },
    { name: "mailbox", optional: true },
  ],
  async run(ctx: CommandContext, args) {
    // `all` is a word, not a system: the words after it name the mailbox.
    const all = args.all === "all";
    const words = all ? [args.system, args.mailbox] : [args.all, args.system];
    if (!all && args.mailbox !== undefined) throw new CommandError(`Too many words: ${ctx.usage}`);
    const links = await linksNamed(ctx, words[0], words[1]);
    const outcomes = await ctx.voicemails.markHeard(links, all);
    const zone = await ctx.views.timeZone(ctx.sender);
    const lines: string[] = [];
    for (const o of outcomes) {
      if (!o.ok) continue;
      const name = mailboxName(ctx, o.link);
      if (o.value.length === 1) lines.push(`Marked heard in ${name}: the voicemail ${describeMessage(ctx, o.value[0]!, zone)}.`);
      else if (o.value.length) lines.push(`Marked heard in ${name}: ${o.value.length} voicemails.`);
      else if (all) lines.push(`${name} has no unheard voicemail.`);
    }
    const problems = problemLines(ctx, outcomes, "mark messages heard");
    if (!lines.length && !problems.length) lines.push("You have no unheard voicemail.");
    if (lines.some((l) => l.startsWith("Marked"))) lines.push("The new counts follow as soon as the voice mail system reports them.");
    return text([...lines, ...problems].join("\n"));
  },
});

const remove = defineCommand({
  name: "delete",
  summary: "delete the newest voicemail of a mailbox, after !delete confirm within a minute",
  level: "user",
  listed: someSystemHasMessages,
  positionals: [
    { name: "system", label: "confirm|system", optional: true },
    { name: "mailbox", optional: true },
  ],
  async run(ctx: CommandContext, args) {
    const zone = await ctx.views.timeZone(ctx.sender);
    if (args.system === "confirm" && args.mailbox === undefined) {
      const done = await ctx.voicemails.confirmDelete(ctx.sender);
      if (done.ok) return text(`Deleted from ${mailboxName(ctx, done.link)}: the voicemail ${describeMessage(ctx, done.message, zone)}.`);
      const why = {
        none: "There is no delete waiting for your confirmation: say !delete first.",
        expired: "That was more than a minute ago; nothing was deleted. Say !delete again.",
        changed: "The mailbox's newest voicemail is no longer the one I named; nothing was deleted. Say !delete again.",
        unlinked: "That mailbox is no longer linked; nothing was deleted.",
        failed: "",
      } as const;
      if (done.reason === "failed") return text(`Nothing was deleted from ${mailboxName(ctx, done.link)}: ${done.detail}.`);
      return text(why[done.reason]);
    }
    const links = await linksNamed(ctx, args.system, args.mailbox);
    if (links.length > 1) throw new CommandError(`You have ${links.length} mailboxes here; name one: ${ctx.usage}`);
    const outcome = await ctx.voicemails.askDelete(ctx.sender, links[0]!);
    const name = mailboxName(ctx, links[0]!);
    if (!outcome.ok) return text(problemLines(ctx, [outcome], "delete messages").join("\n"));
    if (!outcome.value) return text(`${name} has no voicemail to delete.`);
    return text(`This deletes the newest voicemail of ${name}, for good: ${describeMessage(ctx, outcome.value.message, zone)}. Say !delete confirm within a minute to do it.`);
  },
});

export const COMMANDS: readonly Command[] = [help, list, link, verify, unlink, mwi, set, target, voicemails, heard, remove, admin];

/** The secret options any command declares (`password`): the router redacts messages that pass one. */
export const SECRET_OPTION_NAMES: readonly string[] = secretOptionsOf(COMMANDS);
