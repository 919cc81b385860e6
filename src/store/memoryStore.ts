/**
 * A store that lives in memory only: for fast tests and the sandbox. Everything is lost when the
 * process ends; open the same instance again (a new service over it) to model a restart.
 * Every operation finishes in one synchronous step, so each is atomic; values are copied in
 * and out, so callers never share objects with the store.
 */
import type { MailboxState } from "../core/mwi.js";
import { countsOf } from "./contents.js";
import type { DmRoom, ExtraTarget, MailboxLink, OutboxBatch, OutboxEntry, OutboxStats, Profile, ProfileQuery, StoreContents, StoreCounts, TransferableStore } from "./store.js";

const copy = <T>(value: T): T => structuredClone(value);
const key = (...parts: string[]) => JSON.stringify(parts);

export class MemoryStore implements TransferableStore {
  private readonly profiles = new Map<string, Profile>();
  /** One link per user, system and mailbox. */
  private readonly links = new Map<string, MailboxLink>();
  /** One DM per user and bot. */
  private readonly rooms = new Map<string, DmRoom>();
  private readonly mailboxes = new Map<string, MailboxState>();
  private readonly outbox = new Map<string, OutboxEntry>();
  private readonly batches = new Map<string, OutboxBatch>();
  private readonly targets = new Map<string, ExtraTarget>();
  private readonly events = new Map<string, number>();

  async close(): Promise<void> {}

  async getProfile(userId: string): Promise<Profile | undefined> {
    const profile = this.profiles.get(userId);
    return profile && copy(profile);
  }

  async listProfiles(query: ProfileQuery): Promise<Profile[]> {
    const needle = query.contains?.toLowerCase();
    return [...this.profiles.values()]
      .filter((p) => (query.after === undefined || p.userId > query.after) && (!needle || p.userId.toLowerCase().includes(needle)))
      .sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0))
      .slice(0, query.limit)
      .map(copy);
  }

  async updateProfile(userId: string, patch: Partial<Omit<Profile, "userId" | "createdAt">>): Promise<Profile> {
    const profile: Profile = { ...(this.profiles.get(userId) ?? { userId, createdAt: Date.now() }), ...copy(patch) };
    this.profiles.set(userId, profile);
    return copy(profile);
  }

  private sortedLinks(filter: (l: MailboxLink) => boolean): MailboxLink[] {
    return [...this.links.values()]
      .filter(filter)
      .sort((a, b) => (a.systemId === b.systemId ? (a.mailbox < b.mailbox ? -1 : a.mailbox > b.mailbox ? 1 : 0) : a.systemId < b.systemId ? -1 : 1))
      .map(copy);
  }

  async listLinks(userId: string): Promise<MailboxLink[]> {
    return this.sortedLinks((l) => l.userId === userId);
  }

  async linksForMailbox(systemId: string, mailbox: string): Promise<MailboxLink[]> {
    return this.sortedLinks((l) => l.systemId === systemId && l.mailbox === mailbox);
  }

  async linksForSystem(systemId: string): Promise<MailboxLink[]> {
    return this.sortedLinks((l) => l.systemId === systemId);
  }

  async addLink(link: MailboxLink): Promise<boolean> {
    const k = key(link.userId, link.systemId, link.mailbox);
    if (this.links.has(k)) return false;
    this.links.set(k, copy(link));
    return true;
  }

  async removeLink(userId: string, systemId: string, mailbox: string): Promise<boolean> {
    return this.links.delete(key(userId, systemId, mailbox));
  }

  async setLinkMwi(userId: string, systemId: string, mailbox: string, enabled: boolean): Promise<number> {
    const link = this.links.get(key(userId, systemId, mailbox));
    if (!link) return 0;
    link.mwiEnabled = enabled;
    return 1;
  }

  async setLinkCredentials(userId: string, systemId: string, mailbox: string, sealedCredentials: string): Promise<boolean> {
    const link = this.links.get(key(userId, systemId, mailbox));
    if (!link) return false;
    link.sealedCredentials = sealedCredentials;
    return true;
  }

  async getDmRoom(userId: string, botUserId: string): Promise<DmRoom | undefined> {
    const room = this.rooms.get(key(userId, botUserId));
    return room && copy(room);
  }

  async getDmRoomById(roomId: string): Promise<DmRoom | undefined> {
    const room = [...this.rooms.values()].find((r) => r.roomId === roomId);
    return room && copy(room);
  }

  async saveDmRoom(room: DmRoom): Promise<void> {
    const k = key(room.userId, room.botUserId);
    // A room ID belongs to one user and bot only.
    for (const [other, r] of this.rooms) if (r.roomId === room.roomId && other !== k) this.rooms.delete(other);
    this.rooms.set(k, copy(room));
  }

  async forgetDmRoom(roomId: string): Promise<void> {
    for (const [k, r] of this.rooms) if (r.roomId === roomId) this.rooms.delete(k);
  }

  async getMailboxState(systemId: string, mailbox: string): Promise<MailboxState | undefined> {
    const state = this.mailboxes.get(key(systemId, mailbox));
    return state && copy(state);
  }

  async saveMailboxState(state: MailboxState): Promise<void> {
    this.mailboxes.set(key(state.systemId, state.mailbox), copy(state));
  }

  async acceptChange(state: MailboxState, entries: OutboxEntry[]): Promise<void> {
    for (const e of entries) if (this.outbox.has(e.id)) throw new Error(`outbox entry ${e.id} exists already`);
    for (const e of entries) this.outbox.set(e.id, copy(e));
    this.mailboxes.set(key(state.systemId, state.mailbox), copy(state));
  }

  async addOutboxEntries(entries: OutboxEntry[]): Promise<void> {
    for (const e of entries) if (this.outbox.has(e.id)) throw new Error(`outbox entry ${e.id} exists already`);
    for (const e of entries) this.outbox.set(e.id, copy(e));
  }

  async outboxEntries(targetKey?: string): Promise<OutboxEntry[]> {
    return [...this.outbox.values()]
      .filter((e) => targetKey === undefined || e.targetKey === targetKey)
      .sort((a, b) => a.seq - b.seq)
      .map(copy);
  }

  async removeOutboxEntries(ids: string[]): Promise<void> {
    for (const id of ids) this.outbox.delete(id);
  }

  async outboxTargetKeys(ownerId: string): Promise<string[]> {
    const keys = new Set<string>();
    for (const e of this.outbox.values()) if (e.ownerId === ownerId) keys.add(e.targetKey);
    return [...keys];
  }

  async outboxStats(): Promise<OutboxStats> {
    let oldest: number | undefined;
    for (const e of this.outbox.values()) oldest = oldest === undefined ? e.createdAt : Math.min(oldest, e.createdAt);
    return { depth: this.outbox.size, ...(oldest !== undefined ? { oldestCreatedAt: oldest } : {}) };
  }

  async maxOutboxSeq(): Promise<number> {
    let max = 0;
    for (const e of this.outbox.values()) max = Math.max(max, e.seq);
    return max;
  }

  async getBatch(targetKey: string): Promise<OutboxBatch | undefined> {
    const batch = this.batches.get(targetKey);
    return batch && copy(batch);
  }

  async outboxBatches(): Promise<OutboxBatch[]> {
    return [...this.batches.values()].map(copy);
  }

  async saveBatch(batch: OutboxBatch): Promise<void> {
    this.batches.set(batch.targetKey, copy(batch));
  }

  async completeBatch(batch: OutboxBatch): Promise<void> {
    for (const id of batch.entryIds) this.outbox.delete(id);
    if (this.batches.get(batch.targetKey)?.id === batch.id) this.batches.delete(batch.targetKey);
  }

  async addTarget(target: ExtraTarget): Promise<boolean> {
    for (const t of this.targets.values()) if (t.ownerId === target.ownerId && t.address === target.address) return false;
    if (this.targets.has(target.id)) return false;
    this.targets.set(target.id, copy(target));
    return true;
  }

  async listTargets(ownerId: string): Promise<ExtraTarget[]> {
    return [...this.targets.values()]
      .filter((t) => t.ownerId === ownerId)
      .sort((a, b) => a.createdAt - b.createdAt)
      .map(copy);
  }

  async getTarget(id: string): Promise<ExtraTarget | undefined> {
    const target = this.targets.get(id);
    return target && copy(target);
  }

  async targetsByRoom(roomId: string): Promise<ExtraTarget[]> {
    return [...this.targets.values()].filter((t) => t.roomId === roomId).map(copy);
  }

  async updateTarget(target: ExtraTarget): Promise<void> {
    if (this.targets.has(target.id)) this.targets.set(target.id, copy(target));
  }

  async removeTarget(id: string): Promise<boolean> {
    return this.targets.delete(id);
  }

  async markEventHandled(eventId: string, at: number): Promise<boolean> {
    if (this.events.has(eventId)) return false;
    this.events.set(eventId, at);
    return true;
  }

  async forgetHandledEventsBefore(at: number): Promise<number> {
    let removed = 0;
    for (const [id, t] of this.events) {
      if (t < at) {
        this.events.delete(id);
        removed++;
      }
    }
    return removed;
  }

  async readAll(): Promise<StoreContents> {
    return copy({
      profiles: [...this.profiles.values()],
      links: [...this.links.values()],
      dmRooms: [...this.rooms.values()],
      mailboxStates: [...this.mailboxes.values()],
      outboxEntries: [...this.outbox.values()].sort((a, b) => a.seq - b.seq),
      outboxBatches: [...this.batches.values()],
      targets: [...this.targets.values()],
      handledEvents: [...this.events].map(([eventId, at]) => ({ eventId, at })),
    });
  }

  async counts(): Promise<StoreCounts> {
    return countsOf(await this.readAll());
  }

  async writeAll(contents: StoreContents, options: { replace: boolean }): Promise<void> {
    const all = [this.profiles, this.links, this.rooms, this.mailboxes, this.outbox, this.batches, this.targets, this.events];
    if (!options.replace && all.some((m) => m.size)) throw new Error("the memory store is not empty");
    for (const m of all) m.clear();
    const c = copy(contents);
    for (const p of c.profiles) this.profiles.set(p.userId, p);
    for (const l of c.links) this.links.set(key(l.userId, l.systemId, l.mailbox), l);
    for (const r of c.dmRooms) this.rooms.set(key(r.userId, r.botUserId), r);
    for (const s of c.mailboxStates) this.mailboxes.set(key(s.systemId, s.mailbox), s);
    for (const e of c.outboxEntries) this.outbox.set(e.id, e);
    for (const b of c.outboxBatches) this.batches.set(b.targetKey, b);
    for (const t of c.targets) this.targets.set(t.id, t);
    for (const e of c.handledEvents) this.events.set(e.eventId, e.at);
  }
}
