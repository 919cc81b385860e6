/**
 * `!commands` from Matrix messages: redaction of messages with secrets (first, wherever the bot
 * can), deduplication by event ID, permissions, metrics, one command at a time per user, and one
 * clear reply for every refusal. A broken command never blocks the next one.
 *
 * Rule for secrets: no reply ever contains any argument of a message that carried one.
 */
import type { Logger, WeakEvent } from "matrix-appservice-bridge";
import { escapeHtml, type RenderedText } from "../../core/format.js";
import { atLeast, permissionLevel, type PermissionLevel } from "../../core/permissions.js";
import type { UserViews } from "../../delivery/userViews.js";
import type { Bot } from "../../matrix/bots.js";
import { retryTransient } from "../retryTransient.js";
import { noticeContent } from "../../matrix/content.js";
import type { VoicemailStore } from "../../store/store.js";
import type { KeyedQueue } from "../../util/keyedQueue.js";
import type { VoicemailMetrics } from "../../util/metrics.js";
import { COMMANDS, CommandError, SECRET_OPTION_NAMES, text, type Command, type CommandContext } from "../commands/commands.js";
import { carriesSecret, parseCommand, secretWords } from "../commands/parser.js";
import type { MailboxService } from "../mailboxService.js";
import { ProfileService } from "../profileService.js";
import type { TargetService } from "../targetService.js";
import { VoicemailService } from "../voicemailService.js";

/** What the router does as a bot: reply, and remove a message. */
export interface RouterIntent {
  sendMessage(roomId: string, content: Record<string, unknown>): Promise<unknown>;
  matrixClient: { redactEvent(roomId: string, eventId: string, reason?: string | null): Promise<unknown> };
}

export interface RouterBots {
  readonly main: Bot;
  byUser(userId: string): Bot | undefined;
  isBot(userId: string): boolean;
  all(): Bot[];
  intent(bot: Bot): RouterIntent;
}

export interface CommandRouterDeps {
  config: { permissions: Record<string, PermissionLevel> };
  store: Pick<VoicemailStore, "getDmRoomById" | "getDmRoom" | "markEventHandled" | "updateProfile">;
  bots: RouterBots;
  mailboxes: MailboxService;
  views: UserViews;
  targets: TargetService;
  profiles?: ProfileService;
  /** The messages upstream (`!voicemails`, `!heard`, `!delete`); one over `mailboxes` when absent. */
  voicemails?: VoicemailService;
  /** One command at a time per user. */
  userQueue: KeyedQueue;
  log: Pick<Logger, "debug" | "info" | "warn" | "error">;
  metrics?: Pick<VoicemailMetrics, "commands"> | undefined;
  /** The command table; the bridge's own when not given. */
  commands?: readonly Command[];
}

export type RoomEvent = Pick<WeakEvent, "event_id" | "room_id" | "sender" | "type" | "content">;

interface MessageContent {
  msgtype?: unknown;
  body?: unknown;
  "m.new_content"?: { body?: unknown };
  "m.relates_to"?: { rel_type?: unknown };
}

/** A reply's words, compared without regard to case, also as the HTML shows them. */
function repeatsAny(reply: RenderedText, words: readonly string[]): boolean {
  const body = reply.body.toLowerCase();
  const html = reply.html.toLowerCase();
  return words.some((w) => {
    // Shorter words turn up in any sentence: a secret that short is no secret the reply could give away.
    if (w.length < 3) return false;
    const word = w.toLowerCase();
    return body.includes(word) || html.includes(word) || html.includes(escapeHtml(word));
  });
}

export class CommandRouter {
  private readonly profiles: ProfileService;
  private readonly voicemails: VoicemailService;
  private readonly commands: readonly Command[];

  constructor(private readonly deps: CommandRouterDeps) {
    this.profiles = deps.profiles ?? new ProfileService(deps.store);
    this.voicemails = deps.voicemails ?? new VoicemailService(deps.mailboxes);
    this.commands = deps.commands ?? COMMANDS;
  }

  /** Never throws: whatever goes wrong is logged in one line. */
  async onMessage(event: RoomEvent): Promise<void> {
    try {
      await this.route(event);
    } catch (err) {
      this.deps.log.warn(`message ${event.event_id} in ${event.room_id} not handled: ${(err as Error).message}`);
    }
  }

  private async route(event: RoomEvent): Promise<void> {
    const { bots, store, log } = this.deps;
    if (event.type !== "m.room.message" || bots.isBot(event.sender)) return;
    const content = event.content as MessageContent;
    const edit = content["m.new_content"] !== undefined || content["m.relates_to"]?.rel_type === "m.replace";
    // An edit carries the new text twice: in m.new_content and, after "* ", as its fallback body.
    const texts = [content.body, edit ? content["m.new_content"]?.body : undefined].filter((t): t is string => typeof t === "string");
    if (!texts.length) return;
    const secret = texts.some((t) => carriesSecret(t, SECRET_OPTION_NAMES));

    const dm = await store.getDmRoomById(event.room_id);
    const dmBot = dm && bots.byUser(dm.botUserId);
    if (dm && !dmBot) {
      log.info(`message ${event.event_id} in ${event.room_id} not taken: the DM of ${dm.botUserId}, a bot no longer configured`);
      return;
    }
    const ownDm = dm !== undefined && dm.userId === event.sender;
    const roomBot = dmBot ?? bots.main;
    const commandLike = texts.some((t) => /^\s*(\*\s*)?!/.test(t));
    if (!secret && (edit || !commandLike)) {
      if (edit && commandLike) log.debug(`edit ${event.event_id} of ${event.sender} ignored: edits are not run as commands`);
      return;
    }
    if (!ownDm && !commandLike) return; // others' chat in a room the bot is in is theirs
    if (!ownDm && !secret) {
      log.info(`command ${event.event_id} from ${event.sender} in ${event.room_id} not taken: ${dm ? `the DM of ${dm.userId}, not theirs` : "the room is no DM of the bridge"}`);
      return;
    }

    // A password must not stay in the room a moment longer than needed, not even if the command
    // turns out to be wrong: redact before waiting for the user's queue.
    const redacted = secret ? await this.redact(roomBot, event) : true;

    await this.deps.userQueue.run(event.sender, async () => {
      if (!(await store.markEventHandled(event.event_id, Date.now()))) return;
      if (!ownDm) return this.tellElsewhere(event, redacted);
      const bot = roomBot;
      // A reply lost to a homeserver hiccup is tried again for a while (about half a minute).
      const reply = (t: RenderedText) =>
        retryTransient(`the reply to ${event.event_id}`, () => bots.intent(bot).sendMessage(event.room_id, noticeContent(t)), log, { attempts: 5 });
      if (!redacted) {
        await reply(text(`I could not remove your ${edit ? "edited " : ""}message with the password: please delete it yourself.`));
      }
      // An edit is not run again; its password is gone, and that is all there is to say.
      if (edit || content.msgtype !== "m.text" || typeof content.body !== "string") return;
      await this.run(event, bot, content.body, secret, reply);
    });
  }

  private async redact(bot: Bot, event: RoomEvent): Promise<boolean> {
    try {
      await this.deps.bots.intent(bot).matrixClient.redactEvent(event.room_id, event.event_id, "contained a password");
      this.deps.log.info(`redacted ${event.event_id} of ${event.sender} in ${event.room_id}: it contained a password`);
      return true;
    } catch (err) {
      this.deps.log.warn(`could not redact ${event.event_id}, a message with a password in ${event.room_id}: ${(err as Error).message}`);
      return false;
    }
  }

  /** A secret sent outside the sender's DM: told once, in their DM with a bot if they have one. */
  private async tellElsewhere(event: RoomEvent, redacted: boolean): Promise<void> {
    const { bots, store, log } = this.deps;
    const candidates = [bots.main, ...bots.all().filter((b) => b !== bots.main)];
    for (const bot of candidates) {
      const dm = await store.getDmRoom(event.sender, bot.userId);
      if (!dm) continue;
      const what = redacted
        ? `Your message in ${event.room_id} carried a password: I removed it.`
        : `Your message in ${event.room_id} carried a password and I could not remove it: please delete it yourself, and think about changing that password.`;
      await bots.intent(bot).sendMessage(dm.roomId, noticeContent(text(`${what} I take commands only in direct chats like this one.`)));
      return;
    }
    log.info(`could not tell ${event.sender} about the password in ${event.room_id}: they have no DM with a bot`);
  }

  private async run(event: RoomEvent, bot: Bot, body: string, secret: boolean, reply: (t: RenderedText) => Promise<unknown>): Promise<void> {
    const { config, log, metrics } = this.deps;
    const count = (command: string, outcome: string) => metrics?.commands.inc({ command, outcome });
    const parsed = parseCommand(body, this.commands);
    if ("notACommand" in parsed) {
      if (secret) await reply(text("I removed your message: it carried a password. Commands start with !, e.g. !help."));
      return;
    }
    const name = parsed.name ?? "unknown";
    const level = permissionLevel(config.permissions, event.sender);
    if (!atLeast(level, "user")) {
      count(name, "denied");
      await reply(text("You are not permitted to use this bridge."));
      return;
    }
    if (!parsed.ok) {
      count(name, "bad_syntax");
      await reply(text(parsed.error));
      return;
    }
    const command = this.commands.find((c) => c.name === parsed.name)!;
    if (!atLeast(level, command.level)) {
      count(name, "denied");
      await reply(text(`!${command.name} is for ${command.level}s only.`));
      return;
    }
    // The last guard of the rule: a reply that would repeat a word of the secret says less.
    const words = secret ? secretWords(body, SECRET_OPTION_NAMES) : [];
    const ctx: CommandContext = {
      sender: event.sender,
      level,
      bot,
      mailboxes: this.deps.mailboxes,
      views: this.deps.views,
      targets: this.deps.targets,
      profiles: this.profiles,
      voicemails: this.voicemails,
      systems: this.deps.views.systems,
      usage: command.usage,
      carriedSecret: secret,
      // A value typed as a word of the secret (or holding one); a password that merely contains the mailbox number is not that.
      mayBeSecret: (value) => {
        const v = value.toLowerCase();
        return words.some((w) => v.includes(w.toLowerCase()));
      },
    };
    const safe = (t: RenderedText) =>
      repeatsAny(t, words)
        ? text(`I did what I could with your !${command.name}, but my answer would repeat part of your message, which carried a password. Say !list to see your mailboxes.`)
        : t;
    let answer: RenderedText;
    try {
      answer = await command.run(ctx, parsed.args);
      count(name, "ok");
      log.info(`${event.sender} ran !${command.name}`);
    } catch (err) {
      if (err instanceof CommandError) {
        count(name, "refused");
        answer = secret
          ? text(err.withoutArguments ?? `!${command.name} was refused; I do not say why, because your message carried a password. Usage: ${command.usage}`)
          : text(err.message);
      } else {
        count(name, "error");
        const message = (err as Error).message;
        log.error(`!${command.name} from ${event.sender} failed: ${repeatsAny(text(message), words) ? "(the error repeats the password; not logged)" : message}`);
        answer = text(`Something went wrong with !${command.name}; the bridge's log has the details.`);
      }
    }
    await reply(safe(answer));
  }
}
