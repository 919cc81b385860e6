/**
 * Puts an MWI change into the user's DM with the system's bot: a message, the mailbox's state
 * event, the summary state event and the room name. Only what changed is sent: every event
 * costs the homeserver work.
 */
import type { Logger } from "matrix-appservice-bridge";
import type { BridgeConfig, SystemConfig } from "../config/types.js";
import { MWI_EVENT_TYPE, MWI_SUMMARY_EVENT_TYPE, mailboxStateKey } from "../core/events.js";
import { dmRoomName, renderNotification, type MailboxView, type RenderedText } from "../core/format.js";
import type { MailboxChange } from "../core/mwi.js";
import { buildSummary, mailboxStateContent } from "../core/summary.js";
import type { DmRoom, VoicemailStore } from "../store/store.js";
import type { VoicemailMetrics } from "../util/metrics.js";
import type { BotDirectory } from "./bots.js";
import type { DmRooms } from "./dmRooms.js";

/** Content of an m.notice: the reply form of every command. */
export function noticeContent(text: RenderedText): Record<string, unknown> {
  return { msgtype: "m.notice", body: text.body, format: "org.matrix.custom.html", formatted_body: text.html };
}

export class MwiPublisher {
  private readonly systems: Map<string, SystemConfig>;

  constructor(
    private readonly config: BridgeConfig,
    private readonly store: VoicemailStore,
    private readonly bots: BotDirectory,
    private readonly dms: DmRooms,
    private readonly log: Logger,
    private readonly metrics?: VoicemailMetrics,
  ) {
    this.systems = new Map(config.systems.map((s) => [s.id, s]));
  }

  systemName(systemId: string): string {
    return this.systems.get(systemId)?.name ?? systemId;
  }

  async timeZone(userId: string): Promise<string> {
    return (await this.store.getProfile(userId))?.timezone ?? this.config.defaultTimezone;
  }

  /** Every mailbox the user has linked, with its current state. */
  async mailboxViews(userId: string): Promise<MailboxView[]> {
    const links = await this.store.listLinks(userId);
    return Promise.all(
      links
        .filter((l) => this.systems.has(l.systemId))
        .map(async (l) => {
          const state = await this.store.getMailboxState(l.systemId, l.mailbox);
          return { systemId: l.systemId, systemName: this.systemName(l.systemId), mailbox: l.mailbox, ...(state ? { state } : {}) };
        }),
    );
  }

  /** A notice from a system's bot in its DM with the user (opened if needed). */
  async notice(userId: string, systemId: string, text: RenderedText): Promise<void> {
    const bot = this.bots.forSystem(systemId);
    const room = await this.dms.ensure(userId, bot);
    await this.bots.intent(bot).sendMessage(room.roomId, noticeContent(text));
    this.metrics?.matrixEvents.inc({ kind: "message" });
  }

  async publish(userId: string, change: MailboxChange): Promise<void> {
    const { current } = change;
    const system = this.systems.get(current.systemId);
    if (!system) return;
    const bot = this.bots.forSystem(system.id);
    const intent = this.bots.intent(bot);
    const room = await this.dms.ensure(userId, bot);
    const views = await this.mailboxViews(userId);
    const notification = renderNotification({
      change,
      systemName: system.name,
      timeZone: await this.timeZone(userId),
      others: views.filter((v) => !(v.systemId === current.systemId && v.mailbox === current.mailbox)),
      ...(system.footer ? { footer: system.footer } : {}),
    });

    await intent.sendMessage(room.roomId, {
      msgtype: notification.msgtype,
      body: notification.body,
      format: "org.matrix.custom.html",
      formatted_body: notification.html,
    });
    this.metrics?.matrixEvents.inc({ kind: "message" });
    await intent.sendStateEvent(
      room.roomId,
      MWI_EVENT_TYPE,
      mailboxStateKey(current.systemId, current.mailbox),
      mailboxStateContent(userId, system.name, current),
    );
    this.metrics?.matrixEvents.inc({ kind: "mailbox_state" });
    await this.refreshRoom(room, views, system);
    // Every DM's summary covers all the user's systems: bring the other DMs' summaries along.
    const otherSystems = new Set(views.map((v) => v.systemId).filter((id) => id !== system.id));
    for (const otherId of otherSystems) {
      const other = this.systems.get(otherId)!;
      const otherRoom = await this.dms.get(userId, this.bots.forSystem(otherId));
      if (otherRoom) await this.refreshRoom(otherRoom, views, other);
    }
  }

  /** Sends the summary and the room name where they differ from what the room shows. */
  async refreshRoom(room: DmRoom, views: MailboxView[], system: SystemConfig): Promise<void> {
    const intent = this.bots.intent(this.bots.forSystem(system.id));
    const summary = buildSummary(room.userId, views);
    const summaryJson = JSON.stringify(summary);
    const newCount = views.filter((v) => v.systemId === system.id).reduce((sum, v) => sum + (v.state?.new ?? 0), 0);
    const name = dmRoomName(system.name, newCount);
    let updated = room;
    if (summaryJson !== room.lastSummary) {
      await intent.sendStateEvent(room.roomId, MWI_SUMMARY_EVENT_TYPE, "", summary as unknown as Record<string, unknown>);
      this.metrics?.matrixEvents.inc({ kind: "summary" });
      updated = { ...updated, lastSummary: summaryJson };
    }
    if (name !== room.lastName) {
      await intent.setRoomName(room.roomId, name);
      this.metrics?.matrixEvents.inc({ kind: "room_name" });
      updated = { ...updated, lastName: name };
    }
    if (updated !== room) {
      // The room may have been forgotten meanwhile (the user left): do not bring it back.
      const stillCurrent = await this.store.getDmRoom(room.userId, room.botUserId);
      if (stillCurrent?.roomId === room.roomId) await this.store.saveDmRoom({ ...stillCurrent, lastSummary: updated.lastSummary, lastName: updated.lastName });
    }
    this.log.debug(`room ${room.roomId} of ${room.userId} up to date`);
  }
}
