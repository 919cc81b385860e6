/**
 * The bridge's bots: the main bot (commands for every system) and one bot per voice mail
 * system, each with its own name and avatar, so the room list reads like a list of systems.
 */
import type { Bridge, Intent, Logger } from "matrix-appservice-bridge";
import type { BridgeConfig, SystemConfig } from "../config/types.js";

export interface Bot {
  userId: string;
  localpart: string;
  displayName: string;
  avatarUrl?: string;
  /** The system this bot speaks for; undefined for the main bot. */
  system?: SystemConfig;
}

export class BotDirectory {
  readonly main: Bot;
  private readonly bySystem = new Map<string, Bot>();
  private readonly byUserId = new Map<string, Bot>();

  constructor(
    config: BridgeConfig,
    private readonly bridge: Bridge,
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

  /** Registers every bot and brings its display name and avatar in line with the config. */
  async syncProfiles(log: Logger): Promise<void> {
    for (const bot of this.all()) {
      const intent = this.intent(bot);
      // Forced: the library assumes the sender user exists, but Synapse only creates it on register.
      await intent.ensureRegistered(true);
      // The appservice's own sender user may have no profile row yet: Synapse then answers
      // the profile lookup with an error, which means "nothing set".
      const profile = await intent.getProfileInfo(bot.userId, undefined, false).catch(() => ({}) as Record<string, string | undefined>);
      if (profile.displayname !== bot.displayName) await intent.setDisplayName(bot.displayName);
      if (bot.avatarUrl && profile.avatar_url !== bot.avatarUrl) await intent.setAvatarUrl(bot.avatarUrl);
      log.info(`bot ${bot.userId} ready as "${bot.displayName}"`);
    }
  }
}
