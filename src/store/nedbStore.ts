/** The embedded store: a directory of NeDB files, private to the service user. */
import { mkdirSync, chmodSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import Datastore from "nedb-promises";
import type { MailboxState } from "../core/mwi.js";
import {
  SCHEMA_VERSION,
  type DmRoom,
  type ExtraTarget,
  type MailboxLink,
  type OutboxEntry,
  type Profile,
  type VoicemailStore,
} from "./store.js";

type Collection = ReturnType<typeof Datastore.create>;

/** @seald-io/nedb's compaction; nedb-promises passes it through but does not type it. */
const compact = (db: Collection) => (db as unknown as { compactDatafileAsync(): Promise<void> }).compactDatafileAsync();

/** NeDB appends every write; compacting hourly keeps the files (and the next start) small. */
const COMPACTION_INTERVAL_MS = 3_600_000;

/** NeDB adds `_id`; callers never see it. */
function strip<T>(doc: (T & { _id?: string }) | null | undefined): T | undefined {
  if (!doc) return undefined;
  const { _id, ...rest } = doc;
  return rest as T;
}

const isUniqueViolation = (err: unknown) => (err as { errorType?: string }).errorType === "uniqueViolated";

export class NedbStore implements VoicemailStore {
  private compactionTimer?: NodeJS.Timeout;

  private constructor(
    private readonly dir: string,
    private readonly meta: Collection,
    private readonly profiles: Collection,
    private readonly links: Collection,
    private readonly rooms: Collection,
    private readonly mailboxes: Collection,
    private readonly events: Collection,
    private readonly outbox: Collection,
    private readonly targets: Collection,
  ) {}

  static async open(directory: string): Promise<NedbStore> {
    const dir = resolve(directory);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    const open = async (name: string) => {
      const db = Datastore.create({ filename: join(dir, `${name}.db`) });
      await db.load();
      return db;
    };
    const store = new NedbStore(
      dir,
      await open("meta"),
      await open("profiles"),
      await open("links"),
      await open("dm_rooms"),
      await open("mailbox_state"),
      await open("handled_events"),
      await open("outbox"),
      await open("targets"),
    );
    await store.migrate();
    await store.indexes();
    store.makeFilesPrivate();
    store.compactionTimer = setInterval(() => void store.compactAll().catch(() => undefined), COMPACTION_INTERVAL_MS).unref();
    return store;
  }

  private async migrate(): Promise<void> {
    const current = strip<{ key: string; version: number }>(await this.meta.findOne({ key: "schema" }));
    if (!current) {
      await this.meta.insert({ key: "schema", version: SCHEMA_VERSION });
      return;
    }
    if (current.version > SCHEMA_VERSION) {
      throw new Error(
        `the store in ${this.dir} has schema version ${current.version}, newer than this bridge (${SCHEMA_VERSION}): upgrade the bridge`,
      );
    }
    // Version 1 is the first: later versions add their steps here, in order.
  }

  private async indexes(): Promise<void> {
    await this.meta.ensureIndex({ fieldName: "key", unique: true });
    await this.profiles.ensureIndex({ fieldName: "userId", unique: true });
    await this.links.ensureIndex({ fieldName: "key", unique: true });
    await this.links.ensureIndex({ fieldName: "mailboxKey" });
    await this.links.ensureIndex({ fieldName: "userId" });
    await this.rooms.ensureIndex({ fieldName: "key", unique: true });
    await this.rooms.ensureIndex({ fieldName: "roomId", unique: true });
    await this.mailboxes.ensureIndex({ fieldName: "key", unique: true });
    await this.events.ensureIndex({ fieldName: "eventId", unique: true });
    await this.outbox.ensureIndex({ fieldName: "id", unique: true });
    await this.outbox.ensureIndex({ fieldName: "targetKey" });
    await this.targets.ensureIndex({ fieldName: "id", unique: true });
    await this.targets.ensureIndex({ fieldName: "ownerId" });
    await this.targets.ensureIndex({ fieldName: "roomId" });
  }

  private collections(): Collection[] {
    return [this.meta, this.profiles, this.links, this.rooms, this.mailboxes, this.events, this.outbox, this.targets];
  }

  /** NeDB (re)creates its files with the process umask; the data is nobody else's business. */
  private makeFilesPrivate(): void {
    for (const file of readdirSync(this.dir)) chmodSync(join(this.dir, file), 0o600);
  }

  private async compactAll(): Promise<void> {
    for (const db of this.collections()) await compact(db);
    this.makeFilesPrivate();
  }

  async close(): Promise<void> {
    clearInterval(this.compactionTimer);
    // Every write reached its file when its promise resolved; compacting leaves a quick start.
    await this.compactAll();
  }

  async getProfile(userId: string): Promise<Profile | undefined> {
    return strip<Profile>(await this.profiles.findOne({ userId }));
  }

  async updateProfile(userId: string, patch: Partial<Omit<Profile, "userId" | "createdAt">>): Promise<Profile> {
    const existing = await this.getProfile(userId);
    const profile: Profile = { ...(existing ?? { userId, createdAt: Date.now() }), ...patch };
    await this.profiles.update({ userId }, profile, { upsert: true });
    return profile;
  }

  private static linkKey(userId: string, systemId: string, mailbox: string) {
    return JSON.stringify([userId, systemId, mailbox]);
  }

  private static mailboxKey(systemId: string, mailbox: string) {
    return JSON.stringify([systemId, mailbox]);
  }

  async listLinks(userId: string): Promise<MailboxLink[]> {
    const docs = await this.links.find<MailboxLink>({ userId }).sort({ systemId: 1, mailbox: 1 });
    return docs.map((d) => this.linkOf(d));
  }

  async linksForMailbox(systemId: string, mailbox: string): Promise<MailboxLink[]> {
    const docs = await this.links.find<MailboxLink>({ mailboxKey: NedbStore.mailboxKey(systemId, mailbox) });
    return docs.map((d) => this.linkOf(d));
  }

  async linksForSystem(systemId: string): Promise<MailboxLink[]> {
    const docs = await this.links.find<MailboxLink>({ systemId });
    return docs.map((d) => this.linkOf(d));
  }

  private linkOf(doc: MailboxLink & { key?: string; mailboxKey?: string }): MailboxLink {
    const { key, mailboxKey, ...link } = strip<MailboxLink & { key?: string; mailboxKey?: string }>(doc)!;
    return link;
  }

  async addLink(link: MailboxLink): Promise<boolean> {
    try {
      await this.links.insert({
        ...link,
        key: NedbStore.linkKey(link.userId, link.systemId, link.mailbox),
        mailboxKey: NedbStore.mailboxKey(link.systemId, link.mailbox),
      });
      return true;
    } catch (err) {
      if (isUniqueViolation(err)) return false;
      throw err;
    }
  }

  async removeLink(userId: string, systemId: string, mailbox: string): Promise<boolean> {
    const removed = (await this.links.remove({ key: NedbStore.linkKey(userId, systemId, mailbox) }, {})) > 0;
    // NeDB only appends a deletion mark: the link's lines, sealed credentials included, would
    // stay in the file until the next compaction. Forgotten credentials leave the disk now.
    if (removed) {
      await compact(this.links);
      this.makeFilesPrivate();
    }
    return removed;
  }

  async setLinkMwi(userId: string, systemId: string, mailbox: string, enabled: boolean): Promise<number> {
    return this.links.update(
      { key: NedbStore.linkKey(userId, systemId, mailbox) },
      { $set: { mwiEnabled: enabled } },
      {},
    );
  }

  private static roomKey(userId: string, botUserId: string) {
    return JSON.stringify([userId, botUserId]);
  }

  async getDmRoom(userId: string, botUserId: string): Promise<DmRoom | undefined> {
    const doc = strip<DmRoom & { key: string }>(await this.rooms.findOne({ key: NedbStore.roomKey(userId, botUserId) }));
    if (!doc) return undefined;
    const { key, ...room } = doc;
    return room;
  }

  async getDmRoomById(roomId: string): Promise<DmRoom | undefined> {
    const doc = strip<DmRoom & { key: string }>(await this.rooms.findOne({ roomId }));
    if (!doc) return undefined;
    const { key, ...room } = doc;
    return room;
  }

  async saveDmRoom(room: DmRoom): Promise<void> {
    const key = NedbStore.roomKey(room.userId, room.botUserId);
    // A room ID belongs to one user and bot only; drop any stale record of it first.
    await this.rooms.remove({ roomId: room.roomId, key: { $ne: key } }, { multi: true });
    await this.rooms.update({ key }, { ...room, key }, { upsert: true });
  }

  async forgetDmRoom(roomId: string): Promise<void> {
    await this.rooms.remove({ roomId }, { multi: true });
  }

  async getMailboxState(systemId: string, mailbox: string): Promise<MailboxState | undefined> {
    const doc = strip<MailboxState & { key: string }>(
      await this.mailboxes.findOne({ key: NedbStore.mailboxKey(systemId, mailbox) }),
    );
    if (!doc) return undefined;
    const { key, ...state } = doc;
    return state;
  }

  async saveMailboxState(state: MailboxState): Promise<void> {
    const key = NedbStore.mailboxKey(state.systemId, state.mailbox);
    await this.mailboxes.update({ key }, { ...state, key }, { upsert: true });
  }

  async addOutboxEntries(entries: OutboxEntry[]): Promise<void> {
    if (entries.length) await this.outbox.insert(entries);
  }

  async outboxEntries(targetKey?: string): Promise<OutboxEntry[]> {
    const docs = await this.outbox.find<OutboxEntry>(targetKey ? { targetKey } : {}).sort({ seq: 1 });
    return docs.map((d) => strip<OutboxEntry>(d)!);
  }

  async removeOutboxEntries(ids: string[]): Promise<void> {
    if (ids.length) await this.outbox.remove({ id: { $in: ids } }, { multi: true });
  }

  async maxOutboxSeq(): Promise<number> {
    const [last] = await this.outbox.find<OutboxEntry>({}).sort({ seq: -1 }).limit(1);
    return last?.seq ?? 0;
  }

  async addTarget(target: ExtraTarget): Promise<boolean> {
    const existing = await this.targets.findOne({ ownerId: target.ownerId, address: target.address });
    if (existing) return false;
    await this.targets.insert(target);
    return true;
  }

  async listTargets(ownerId: string): Promise<ExtraTarget[]> {
    const docs = await this.targets.find<ExtraTarget>({ ownerId }).sort({ createdAt: 1 });
    return docs.map((d) => strip<ExtraTarget>(d)!);
  }

  async getTarget(id: string): Promise<ExtraTarget | undefined> {
    return strip<ExtraTarget>(await this.targets.findOne({ id }));
  }

  async targetsByRoom(roomId: string): Promise<ExtraTarget[]> {
    const docs = await this.targets.find<ExtraTarget>({ roomId });
    return docs.map((d) => strip<ExtraTarget>(d)!);
  }

  async updateTarget(target: ExtraTarget): Promise<void> {
    await this.targets.update({ id: target.id }, target, {});
  }

  async removeTarget(id: string): Promise<boolean> {
    return (await this.targets.remove({ id }, {})) > 0;
  }

  async markEventHandled(eventId: string, at: number): Promise<boolean> {
    try {
      await this.events.insert({ eventId, at });
      return true;
    } catch (err) {
      if (isUniqueViolation(err)) return false;
      throw err;
    }
  }

  async forgetHandledEventsBefore(at: number): Promise<number> {
    return this.events.remove({ at: { $lt: at } }, { multi: true });
  }
}

/** Opens the store a `database.uri` names. */
export async function openStore(uri: string): Promise<VoicemailStore> {
  if (uri.startsWith("nedb:")) return NedbStore.open(uri.slice("nedb:".length));
  throw new Error(`database.uri: unsupported store "${uri.split(":")[0]}"`);
}
