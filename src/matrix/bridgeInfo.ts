/**
 * The bridge info state event (MSC2346) that tells clients what a room is bridged to: sent as
 * `m.bridge` (the name the MSC settles on) and `uk.half-shot.bridge` (the one clients read
 * today), like mautrix bridges do. Its content is that of matrix-appservice-bridge's
 * BridgeInfoStateSyncer: `bridgebot`, `creator`, `protocol`, `network` (the voice mail system),
 * `channel` (the user whose voicemail the room shows). No mailbox numbers: a user may have several,
 * and they change; the room is the user's, per system.
 */
import { isDeepStrictEqual } from "node:util";
import type { Intent, Logger } from "matrix-appservice-bridge";
import type { Bot } from "./bots.js";
import type { StateEventInit } from "./membership.js";

export const BRIDGE_INFO_EVENT_TYPES = ["m.bridge", "uk.half-shot.bridge"] as const;
/** The bridge's name in state keys, in the reverse-domain form MSC2346 suggests. */
export const BRIDGE_NAME = "org.voicemail";
export const PROTOCOL = { id: "voicemail", displayname: "Voicemail" } as const;

export interface BridgeInfoContent extends Record<string, unknown> {
  bridgebot: string;
  creator: string;
  protocol: { id: string; displayname: string };
  network?: { id: string; displayname: string };
  channel: { id: string; displayname: string };
}

/** `/` inside an ID is escaped, so that the key's parts stay apart (as matrix-appservice-bridge does). */
const part = (id: string) => id.replace(/%/g, "%25").replace(/\//g, "%2F");

/** `org.voicemail://<system>/<user>` for a system's DM, `org.voicemail://<user>` for the main bot's. */
export function bridgeInfoStateKey(bot: Bot, userId: string): string {
  return `${BRIDGE_NAME}://${bot.system ? `${part(bot.system.id)}/` : ""}${part(userId)}`;
}

export function bridgeInfoContent(mainBotUserId: string, bot: Bot, userId: string): BridgeInfoContent {
  return {
    bridgebot: mainBotUserId,
    creator: bot.userId,
    protocol: { ...PROTOCOL },
    ...(bot.system ? { network: { id: bot.system.id, displayname: bot.system.name } } : {}),
    channel: { id: userId, displayname: bot.displayName },
  };
}

/** Both events, for a DM's `initial_state` or to set them later. */
export function bridgeInfoEvents(mainBotUserId: string, bot: Bot, userId: string): StateEventInit[] {
  const state_key = bridgeInfoStateKey(bot, userId);
  const content = bridgeInfoContent(mainBotUserId, bot, userId);
  return BRIDGE_INFO_EVENT_TYPES.map((type) => ({ type, state_key, content }));
}

/**
 * Makes sure rooms made before the bridge sent these events get them, once: a room is looked at
 * once per process (one state read per event), and a state event is sent only where it is
 * missing or different, so a restart adds none and a delivery never adds one.
 */
export class BridgeInfoKeeper {
  private readonly checked = new Set<string>();
  private readonly running = new Map<string, Promise<void>>();

  constructor(private readonly log: Logger) {}

  /** The room was created with the events (initial_state): nothing to look at. */
  noteSet(roomId: string): void {
    this.checked.add(roomId);
  }

  /** Never rejects: a failure is one log line, and the next call tries again. */
  ensure(intent: Intent, roomId: string, events: StateEventInit[]): Promise<void> {
    if (this.checked.has(roomId)) return Promise.resolve();
    const running = this.running.get(roomId);
    if (running) return running;
    const done = this.bring(intent, roomId, events)
      .then(() => void this.checked.add(roomId))
      .catch((err: Error & { statusCode?: number }) => {
        if (err.statusCode === 403) {
          // The bot may not set state there (a room the user made with other power levels): asking again would only repeat the refusal.
          this.checked.add(roomId);
          this.log.info(`the bot may not set the bridge info in ${roomId} (${err.message}); left without it`);
        } else {
          this.log.warn(`could not set the bridge info in ${roomId}: ${err.message}; trying again with the next delivery`);
        }
      })
      .finally(() => this.running.delete(roomId));
    this.running.set(roomId, done);
    return done;
  }

  private async bring(intent: Intent, roomId: string, events: StateEventInit[]): Promise<void> {
    let sent = 0;
    for (const event of events) {
      const current = await intent.matrixClient.getRoomStateEventContent(roomId, event.type, event.state_key).catch((err: { statusCode?: number; errcode?: string }) => {
        if (err.statusCode === 404 || err.errcode === "M_NOT_FOUND") return undefined;
        throw err;
      });
      if (isDeepStrictEqual(current, event.content)) continue;
      await intent.matrixClient.sendStateEvent(roomId, event.type, event.state_key, event.content);
      sent++;
    }
    if (sent) this.log.info(`set the bridge info (${sent} state event(s)) in ${roomId}`);
  }
}
