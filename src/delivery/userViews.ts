/** A user's mailboxes as the rooms and `!list` show them. */
import type { BridgeConfig, SystemConfig } from "../config/types.js";
import type { MailboxView } from "../core/format.js";
import type { MailboxState } from "../core/mwi.js";
import type { VoicemailStore } from "../store/store.js";

export class UserViews {
  readonly systems: Map<string, SystemConfig>;

  constructor(
    private readonly config: BridgeConfig,
    private readonly store: VoicemailStore,
  ) {
    this.systems = new Map(config.systems.map((s) => [s.id, s]));
  }

  systemName(systemId: string): string {
    return this.systems.get(systemId)?.name ?? systemId;
  }

  /** Where national caller numbers are read (config `defaultRegion`), as the notifications read them. */
  get defaultRegion(): BridgeConfig["defaultRegion"] {
    return this.config.defaultRegion;
  }

  async timeZone(userId: string): Promise<string> {
    return (await this.store.getProfile(userId))?.timezone ?? this.config.defaultTimezone;
  }

  /** Every mailbox the user has linked, with its current state; `newer` states win over stored ones. */
  async mailboxViews(userId: string, newer: MailboxState[] = []): Promise<MailboxView[]> {
    const links = await this.store.listLinks(userId);
    return Promise.all(
      links
        .filter((l) => this.systems.has(l.systemId))
        .map(async (l) => {
          const state =
            newer.find((s) => s.systemId === l.systemId && s.mailbox === l.mailbox) ??
            (await this.store.getMailboxState(l.systemId, l.mailbox));
          return { systemId: l.systemId, systemName: this.systemName(l.systemId), mailbox: l.mailbox, ...(state ? { state } : {}) };
        }),
    );
  }
}
