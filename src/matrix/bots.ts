/**
 * The bridge's bots: the main bot (commands for every system) and one bot per voice mail
 * system, each with its own name and avatar, so the room list reads like a list of systems.
 */
import { MembershipCache, type Bridge, type Intent, type Logger } from "matrix-appservice-bridge";
import type { BridgeConfig, SystemConfig } from "../config/types.js";
import { errcodeOf } from "./membership.js";

export interface Bot {
  userId: string;
  localpart: string;
  displayName: string;
  avatarUrl?: string;
  /** The system this bot speaks for; undefined for the main bot. */
  system?: SystemConfig;
}

/**
 * The library's cache of memberships, which also decides whether an Intent registers its user
 * before it first acts. It only learns "registered" from membership events; told here for the
 * bots, an Intent never tries to register a bot that exists (the library logs that at ERROR).
 * Give it to the Bridge as `membershipCache`.
 */
export class RegisteredBots extends MembershipCache {
  private readonly known = new Set<string>();

  markRegistered(userId: string): void {
    this.known.add(userId);
  }

  override isUserRegistered(userId: string): boolean {
    return this.known.has(userId) || super.isUserRegistered(userId);
  }
}

export class BotDirectory {
  readonly main: Bot;
  private readonly bySystem = new Map<string, Bot>();
  private readonly byUserId = new Map<string, Bot>();

  constructor(
    config: BridgeConfig,
    private readonly bridge: Pick<Bridge, "getIntent" | "getBot">,
    private readonly registered = new RegisteredBots(),
  ) {
    const userId = (localpart: string) => `@${localpart}:${config.homeserver.domain}`;
    this.main = {
      userId: userId(config.appservice.botLocalpart),
      localpart: config.appservice.botLocalpart,
      displayName: config.appservice.botDisplayName ?? "Voicemail",
      ...(config.appservice.botAvatarUrl ? { avatarUrl: config.appservice.botAvatarUrl } : {}),
    };
    this.byUserId.set(this.main.userId, this.main);
    for (const system of config.systems) {
      const bot: Bot = {
        userId: userId(system.botLocalpart),
        localpart: system.botLocalpart,
        displayName: system.name,
        ...(system.avatarUrl ? { avatarUrl: system.avatarUrl } : {}),
        system,
      };
      this.bySystem.set(system.id, bot);
      this.byUserId.set(bot.userId, bot);
    }
  }

  forSystem(systemId: string): Bot {
    const bot = this.bySystem.get(systemId);
    if (!bot) throw new Error(`no bot for system ${systemId}`);
    return bot;
  }

  byUser(userId: string): Bot | undefined {
    return this.byUserId.get(userId);
  }

  isBot(userId: string): boolean {
    return this.byUserId.has(userId);
  }

  all(): Bot[] {
    return [...this.byUserId.values()];
  }

  intent(bot: Bot): Intent {
    return this.bridge.getIntent(bot.userId);
  }

  /**
   * Registers the bots that do not exist yet. An existing bot is no error: the homeserver says
   * M_USER_IN_USE, and that is the answer on every restart. The main bot (the appservice's
   * sender) too: the library assumes it exists, but Synapse only creates it on register. Run it
   * before any Intent of a bot acts.
   */
  async registerAll(log: Logger): Promise<void> {
    for (const bot of this.all()) {
      if (this.registered.isUserRegistered(bot.userId)) continue;
      try {
        await this.bridge.getBot().getClient().doRequest("POST", "/_matrix/client/v3/register", null, {
          type: "m.login.application_service",
          username: bot.localpart,
          inhibit_login: true,
        });
        log.info(`registered bot ${bot.userId}`);
      } catch (err) {
        if (errcodeOf(err) !== "M_USER_IN_USE") throw err;
      }
      this.registered.markRegistered(bot.userId);
      // The bot-sdk underneath keeps its own list, checked by join and leave: tell it too.
      const storage = (this.intent(bot).botSdkIntent as unknown as { storage?: { addRegisteredUser?(userId: string): unknown } } | undefined)?.storage;
      await storage?.addRegisteredUser?.(bot.userId);
    }
  }

  /** Registers every bot and brings its display name and avatar in line with the config. */
  async syncProfiles(log: Logger): Promise<void> {
    await this.registerAll(log);
    for (const bot of this.all()) {
      const intent = this.intent(bot);
      // The appservice's own sender user may have no profile row yet: Synapse then answers
      // the profile lookup with an error, which means "nothing set".
      const profile = await intent.getProfileInfo(bot.userId, undefined, false).catch(() => ({}) as Record<string, string | undefined>);
      if (profile.displayname !== bot.displayName) await intent.setDisplayName(bot.displayName);
      if (bot.avatarUrl && profile.avatar_url !== bot.avatarUrl) await intent.setAvatarUrl(bot.avatarUrl);
      log.info(`bot ${bot.userId} ready as "${bot.displayName}"`);
    }
  }
}
