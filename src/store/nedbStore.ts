/**
 * The embedded store: a directory of NeDB files, private to the service user.
 *
 * NeDB has no transactions, and each collection is its own file. An MWI change and its outbox
 * entries are made atomic like this: the entries carry the new state (`change.current`) and are
 * written first, then the state; no outbox entry can be removed while such a pair is being
 * written (one lock), so after a crash in between the entries are still there, and on open the
 * state is repaired from the newest of them. A repeated update is then no change: no second
 * notification, and none lost.
 *
 * Integrity: the store writes its appends itself (`storeFiles.ts`), not through NeDB. An append is
 * all or nothing; when one fails (disk full, EIO) the collection's memory is read back from its
 * file, so that nothing of the failed operation stays to be written later (NeDB changes its memory
 * before it writes, and a compaction would write it). `acceptChange` also cuts the outbox file
 * back when its second step fails, and resolves only when both files are fsynced (accepts at the
 * same time share one fsync). The operation rejects; the next ones work again once the disk has
 * room. When even that undo fails, or an fsync does, what is on the disk is no longer known: the
 * store logs one ERROR and refuses every write and every outbox read until the bridge is restarted.
 * On open, a torn last line (a crash mid-append) is cut off with a copy kept beside the file;
 * damage anywhere else refuses the open.
 */
import { mkdirSync, chmodSync, readdirSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { join, resolve } from "node:path";
import Datastore from "nedb-promises";
import { backoffDelay } from "../core/backoff.js";
import type { MailboxState } from "../core/mwi.js";
import {
  SCHEMA_VERSION,
  type DmRoom,
  type OutboxBatch,
  type StoreLog,
  type ExtraTarget,
  type MailboxLink,
  type OutboxEntry,
  type OutboxStats,
  type Profile,
  type ProfileQuery,
  type StoreContents,
  type StoreCounts,
  type TransferableStore,
} from "./store.js";
import { upgradeTargetKey } from "./targetKeys.js";
import { diskFiles, GroupSync, recoverTornTail, type StoreFiles } from "./storeFiles.js";

type Collection = ReturnType<typeof Datastore.create>;

/** The parts of @seald-io/nedb (behind nedb-promises) the store replaces or calls. */
interface RawDatastore {
  persistence: {
    persistNewStateAsync(docs: object[]): Promise<void>;
    treatRawStreamAsync(stream: NodeJS.ReadableStream): Promise<{ data: object[] }>;
    afterSerialization(line: string): string | Promise<string>;
    modes: { fileMode: number };
  };
  executor: { pushAsync<T>(task: () => Promise<T>): Promise<T> };
  _resetIndexes(docs: object[]): void;
}
const rawOf = (db: Collection) => (db as unknown as { __original: RawDatastore }).__original;

/** NeDB's model.serialize for what this store keeps (no keys with `$` or `.`, dates as `$$date`). */
function serialize(doc: object): string {
  return JSON.stringify(doc, function (this: Record<string, unknown>, key, value: unknown) {
    const raw = this[key];
    return raw instanceof Date ? { $$date: raw.getTime() } : value;
  });
}

export interface NedbStoreOptions {
  /** The file operations (tests make them fail). */
  files?: StoreFiles;
  /** fsync before acceptChange resolves: on unless a benchmark measures its cost. */
  syncAccepted?: boolean;
}

/** @seald-io/nedb's compaction; nedb-promises passes it through but does not type it. */
const compact = (db: Collection) => (db as unknown as { compactDatafileAsync(): Promise<void> }).compactDatafileAsync();

/** NeDB appends every write; compacting hourly keeps the files (and the next start) small. */
const COMPACTION_INTERVAL_MS = 3_600_000;

/** Undoing a failed write (a cut, a read back): tries, and the waits between them (about 1.5 s in all). */
const UNDO_ATTEMPTS = 5;
const UNDO_BACKOFF = { baseMs: 50, maxMs: 800 };

/** NeDB adds `_id`; callers never see it. */
function strip<T>(doc: (T & { _id?: string }) | null | undefined): T | undefined {
  if (!doc) return undefined;
  const { _id, ...rest } = doc;
  return rest as T;
}

const isUniqueViolation = (err: unknown) => (err as { errorType?: string }).errorType === "uniqueViolated";

/** A problem the store survives but an admin should see: one line on stderr unless told otherwise. */
const consoleLog: StoreLog = {
  warn: (message) => console.warn(`[Store] ${message}`),
  error: (message) => console.error(`[Store] ${message}`),
};

const targetKey = (ownerId: string, address: string) => JSON.stringify([ownerId, address]);

export class NedbStore implements TransferableStore {
  private compactionTimer?: NodeJS.Timeout;
  /** Serialises acceptChange with the removal of outbox entries (see the top of this file). */
  private outboxLock: Promise<unknown> = Promise.resolve();
  /** Why the store refuses to go on (see the top of this file). */
  private broken?: string;
  private readonly groupSync: GroupSync;

  private constructor(
    private readonly dir: string,
    private readonly log: StoreLog,
    private readonly files: StoreFiles,
    private readonly syncAccepted: boolean,
    private readonly meta: Collection,
    private readonly profiles: Collection,
    private readonly links: Collection,
    private readonly rooms: Collection,
    private readonly mailboxes: Collection,
    private readonly events: Collection,
    private readonly outbox: Collection,
    private readonly targets: Collection,
    private readonly batches: Collection,
  ) {
    this.groupSync = new GroupSync(files);
    for (const [name, db] of this.collections()) this.takeOverAppends(join(dir, `${name}.db`), db);
  }

  static async open(directory: string, log: StoreLog = consoleLog, options: NedbStoreOptions = {}): Promise<NedbStore> {
    const dir = resolve(directory);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    const open = async (name: string) => {
      const filename = join(dir, `${name}.db`);
      const torn = recoverTornTail(filename);
      if (torn) {
        log.warn(
          `${name}.db in ${dir} ended in a torn write (the bridge stopped while writing it): dropped its last ${torn.lines} line(s), ${torn.bytes} bytes, kept in ${torn.copy}`,
        );
      }
      // Damage the tail recovery did not explain is refused above; NeDB must not drop any either.
      const db = Datastore.create({ filename, corruptAlertThreshold: 0 });
      await db.load();
      return db;
    };
    const store = new NedbStore(
      dir,
      log,
      options.files ?? diskFiles,
      options.syncAccepted ?? true,
      await open("meta"),
      await open("profiles"),
      await open("links"),
      await open("dm_rooms"),
      await open("mailbox_state"),
      await open("handled_events"),
      await open("outbox"),
      await open("targets"),
      await open("outbox_batches"),
    );
    await store.migrate();
    await store.indexes();
    await store.repairMailboxStates();
    store.makeFilesPrivate();
    store.compactionTimer = setInterval(() => void store.compactAll(), COMPACTION_INTERVAL_MS).unref();
    return store;
  }

  /**
   * NeDB changes its memory, then appends: a failed append would leave the change in memory (read,
   * delivered, and written by the next compaction). Here the memory is read back from the file.
   */
  private takeOverAppends(filename: string, db: Collection): void {
    const raw = rawOf(db);
    const persistence = raw.persistence;
    persistence.persistNewStateAsync = async (docs) => {
      this.check();
      let data = "";
      for (const doc of docs) data += `${await persistence.afterSerialization(serialize(doc))}\n`;
      if (!data) return;
      try {
        await this.files.append(filename, data, persistence.modes.fileMode);
      } catch (err) {
        await this.reload(filename, raw, err as Error);
        throw err;
      }
    };
  }

  /** Memory as the file says; called inside the collection's executor. */
  private async reload(filename: string, raw: RawDatastore, cause: Error): Promise<void> {
    await this.retried(
      async () => {
        const stream = this.files.read(filename);
        // NeDB reads it through a line splitter that does not pass a read error on: catch it here.
        const failed = new Promise<never>((_, reject) => stream.once("error", reject));
        const { data } = await Promise.race([raw.persistence.treatRawStreamAsync(stream), failed]);
        raw._resetIndexes(data);
      },
      (err) => `a write to ${filename} failed (${cause.message}) and reading the file back failed too (${err.message})`,
    );
  }

  /** An undo that fails may be a passing EMFILE: a few tries before the store gives up. */
  private async retried(undo: () => Promise<void>, reason: (err: Error) => string): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        await undo();
        return true;
      } catch (err) {
        if (attempt + 1 >= UNDO_ATTEMPTS) {
          this.breakDown(reason(err as Error));
          return false;
        }
        await sleep(backoffDelay(attempt, UNDO_BACKOFF));
      }
    }
  }

  private breakDown(reason: string): void {
    if (this.broken) return;
    this.broken = reason;
    (this.log.error ?? this.log.warn)(`the store in ${this.dir} stops: ${reason}; it takes no more updates: fix the disk and restart the bridge`);
  }

  problem(): string | undefined {
    return this.broken && "stopped after a failed write (see the log); fix the disk and restart the bridge";
  }

  private check(): void {
    if (this.broken) throw new Error(`the store in ${this.dir} is stopped after a failed write: ${this.broken}`);
  }

  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    const result = this.outboxLock.then(task);
    this.outboxLock = result.catch(() => undefined);
    return result;
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
    // Each step is safe to run again: a crash before the version is written repeats it.
    if (current.version < 2) await this.migrateTo2();
    if (current.version < SCHEMA_VERSION) await this.meta.update({ key: "schema" }, { $set: { version: SCHEMA_VERSION } }, {});
  }

  /** Target keys become JSON arrays; each target gets its unique owner-and-address key (duplicates: the first stays). */
  private async migrateTo2(): Promise<void> {
    for (const entry of await this.outbox.find<OutboxEntry>({})) {
      const upgraded = upgradeTargetKey(entry.targetKey);
      if (upgraded !== entry.targetKey) await this.outbox.update({ id: entry.id }, { $set: { targetKey: upgraded } }, {});
    }
    const seen = new Set<string>();
    for (const target of await this.targets.find<ExtraTarget>({}).sort({ createdAt: 1 })) {
      const key = targetKey(target.ownerId, target.address);
      if (seen.has(key)) await this.targets.remove({ id: target.id }, {});
      else await this.targets.update({ id: target.id }, { $set: { key } }, {});
      seen.add(key);
    }
  }

  /** The crash between an accepted change's entries and its state (see the top): the entries win. */
  private async repairMailboxStates(): Promise<void> {
    const newest = new Map<string, MailboxState>();
    for (const entry of await this.outboxEntries()) {
      const current = entry.change?.current;
      if (!current) continue;
      const key = NedbStore.mailboxKey(current.systemId, current.mailbox);
      if ((newest.get(key)?.updated ?? -Infinity) < current.updated) newest.set(key, current);
    }
    for (const state of newest.values()) {
      const stored = await this.getMailboxState(state.systemId, state.mailbox);
      if (!stored || stored.updated < state.updated) {
        await this.saveMailboxState(state);
        this.log.warn(`repaired the state of ${state.systemId}/${state.mailbox} from its outbox entries (the bridge stopped while storing it)`);
      }
    }
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
    await this.outbox.ensureIndex({ fieldName: "ownerId" });
    await this.targets.ensureIndex({ fieldName: "id", unique: true });
    await this.targets.ensureIndex({ fieldName: "key", unique: true });
    await this.batches.ensureIndex({ fieldName: "targetKey", unique: true });
    await this.targets.ensureIndex({ fieldName: "ownerId" });
    await this.targets.ensureIndex({ fieldName: "roomId" });
  }

  private collections(): [string, Collection][] {
    return [
      ["meta", this.meta],
      ["profiles", this.profiles],
      ["links", this.links],
      ["dm_rooms", this.rooms],
      ["mailbox_state", this.mailboxes],
      ["handled_events", this.events],
      ["outbox", this.outbox],
      ["targets", this.targets],
      ["outbox_batches", this.batches],
    ];
  }

  /** NeDB (re)creates its files with the process umask; the data is nobody else's business. */
  private makeFilesPrivate(): void {
    let files: string[];
    try {
      files = readdirSync(this.dir);
    } catch (err) {
      this.log.warn(`cannot list ${this.dir} to make its files private: ${(err as Error).message}`);
      return;
    }
    const failed: string[] = [];
    let reason = "";
    for (const file of files) {
      try {
        chmodSync(join(this.dir, file), 0o600);
      } catch (err) {
        failed.push(file);
        reason = (err as Error).message;
      }
    }
    if (failed.length) this.log.warn(`cannot make ${failed.join(", ")} in ${this.dir} private (mode 0600): ${reason}`);
  }

  /** Never throws: a failed compaction leaves a larger file, and says so. */
  private compactAll(): Promise<void> {
    // Under the outbox lock: acceptChange may cut outbox.db back to a size it read before.
    return this.exclusive(() => this.compactEach());
  }

  private async compactEach(): Promise<void> {
    // Memory may hold what a refused write changed: it must not reach the files.
    if (this.broken) return;
    const failed: string[] = [];
    let reason = "";
    for (const [name, db] of this.collections()) {
      await compact(db).catch((err: Error) => {
        failed.push(`${name}.db`);
        reason = err.message;
      });
    }
    if (failed.length) this.log.warn(`compaction of ${failed.join(", ")} in ${this.dir} failed: ${reason}`);
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

  async listProfiles(query: ProfileQuery): Promise<Profile[]> {
    const needle = query.contains?.toLowerCase();
    const filter: Record<string, unknown> = query.after === undefined ? {} : { userId: { $gt: query.after } };
    // A substring, not a regular expression built from what the caller typed.
    if (needle) filter.$where = function (this: Profile) { return this.userId.toLowerCase().includes(needle); };
    const docs = await this.profiles.find<Profile>(filter).sort({ userId: 1 }).limit(query.limit);
    return docs.map((d) => strip<Profile>(d)!);
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
      await compact(this.links).catch((err: Error) =>
        this.log.warn(`compaction of links.db failed: removed credentials stay in the file until the next one (${err.message})`),
      );
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

  async setLinkCredentials(userId: string, systemId: string, mailbox: string, sealedCredentials: string): Promise<boolean> {
    const changed = await this.links.update({ key: NedbStore.linkKey(userId, systemId, mailbox) }, { $set: { sealedCredentials } }, {});
    // NeDB appends the new document; the old line (with the old credentials) stays until compaction.
    if (changed) await compact(this.links);
    return changed > 0;
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

  async acceptChange(state: MailboxState, entries: OutboxEntry[]): Promise<void> {
    const outboxFile = join(this.dir, "outbox.db");
    await this.exclusive(async () => {
      this.check();
      const before = await this.files.size(outboxFile);
      if (entries.length) await this.outbox.insert(entries);
      try {
        await this.saveMailboxState(state);
      } catch (err) {
        if (entries.length) await this.undoOutbox(outboxFile, before, err as Error);
        throw err;
      }
    });
    if (!this.syncAccepted) return;
    // Behind a 202: what was accepted is on the disk before anyone is told so.
    const written = [join(this.dir, "mailbox_state.db"), ...(entries.length ? [outboxFile] : [])];
    await this.groupSync.sync(written).catch((err: Error) => {
      this.breakDown(`an fsync of ${written.join(", ")} failed (${err.message})`);
      throw err;
    });
  }

  /** The state of a change could not be written: its entries leave the file and memory again. */
  private async undoOutbox(file: string, size: number, cause: Error): Promise<void> {
    const raw = rawOf(this.outbox);
    await raw.executor.pushAsync(async () => {
      const cut = await this.retried(
        () => this.files.truncate(file, size),
        (err) => `a change could not be stored (${cause.message}) and its outbox entries could not be taken back (${err.message})`,
      );
      if (cut) await this.reload(file, raw, cause);
    });
  }

  addOutboxEntries(entries: OutboxEntry[]): Promise<void> {
    return this.exclusive(async () => {
      if (entries.length) await this.outbox.insert(entries);
    });
  }

  async outboxEntries(targetKey?: string): Promise<OutboxEntry[]> {
    this.check();
    const docs = await this.outbox.find<OutboxEntry>(targetKey ? { targetKey } : {}).sort({ seq: 1 });
    return docs.map((d) => strip<OutboxEntry>(d)!);
  }

  removeOutboxEntries(ids: string[]): Promise<void> {
    return this.exclusive(async () => {
      if (ids.length) await this.outbox.remove({ id: { $in: ids } }, { multi: true });
    });
  }

  async outboxTargetKeys(ownerId: string): Promise<string[]> {
    const docs = await this.outbox.find<Pick<OutboxEntry, "targetKey">>({ ownerId }, { targetKey: 1, _id: 0 });
    return [...new Set(docs.map((d) => d.targetKey))];
  }

  async outboxStats(): Promise<OutboxStats> {
    this.check();
    const depth = await this.outbox.count({});
    const [oldest] = depth ? await this.outbox.find<OutboxEntry>({}, { createdAt: 1, _id: 0 }).sort({ createdAt: 1 }).limit(1) : [];
    return { depth, ...(oldest ? { oldestCreatedAt: oldest.createdAt } : {}) };
  }

  async maxOutboxSeq(): Promise<number> {
    this.check();
    const [last] = await this.outbox.find<OutboxEntry>({}).sort({ seq: -1 }).limit(1);
    return last?.seq ?? 0;
  }

  private static batchOf(doc: unknown): OutboxBatch | undefined {
    return strip<OutboxBatch>(doc as OutboxBatch | null);
  }

  async getBatch(targetKey: string): Promise<OutboxBatch | undefined> {
    this.check();
    return NedbStore.batchOf(await this.batches.findOne({ targetKey }));
  }

  async outboxBatches(): Promise<OutboxBatch[]> {
    this.check();
    return (await this.batches.find<OutboxBatch>({})).map((d) => NedbStore.batchOf(d)!);
  }

  async saveBatch(batch: OutboxBatch): Promise<void> {
    await this.batches.update({ targetKey: batch.targetKey }, batch, { upsert: true });
  }

  /** Entries first: a crash in between leaves a batch whose entries are gone, which delivery discards. */
  completeBatch(batch: OutboxBatch): Promise<void> {
    return this.exclusive(async () => {
      if (batch.entryIds.length) await this.outbox.remove({ id: { $in: batch.entryIds } }, { multi: true });
      await this.batches.remove({ id: batch.id }, {});
    });
  }

  private static targetOf(doc: unknown): ExtraTarget | undefined {
    const stripped = strip<ExtraTarget & { key?: string }>(doc as ExtraTarget | null);
    if (!stripped) return undefined;
    const { key, ...target } = stripped;
    return target;
  }

  async addTarget(target: ExtraTarget): Promise<boolean> {
    try {
      await this.targets.insert({ ...target, key: targetKey(target.ownerId, target.address) });
      return true;
    } catch (err) {
      if (isUniqueViolation(err)) return false;
      throw err;
    }
  }

  async listTargets(ownerId: string): Promise<ExtraTarget[]> {
    const docs = await this.targets.find<ExtraTarget>({ ownerId }).sort({ createdAt: 1 });
    return docs.map((d) => NedbStore.targetOf(d)!);
  }

  async getTarget(id: string): Promise<ExtraTarget | undefined> {
    return NedbStore.targetOf(await this.targets.findOne({ id }));
  }

  async targetsByRoom(roomId: string): Promise<ExtraTarget[]> {
    const docs = await this.targets.find<ExtraTarget>({ roomId });
    return docs.map((d) => NedbStore.targetOf(d)!);
  }

  async updateTarget(target: ExtraTarget): Promise<void> {
    await this.targets.update({ id: target.id }, { ...target, key: targetKey(target.ownerId, target.address) }, {});
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

  async readAll(): Promise<StoreContents> {
    this.check();
    const all = <T>(db: Collection) => db.find<T & { key?: string; mailboxKey?: string }>({});
    const without = <T>(docs: (T & { key?: string; mailboxKey?: string; _id?: string })[]): T[] =>
      docs.map(({ key, mailboxKey, _id, ...rest }) => rest as T);
    return {
      profiles: without<Profile>(await all<Profile>(this.profiles)),
      links: without<MailboxLink>(await all<MailboxLink>(this.links)),
      dmRooms: without<DmRoom>(await all<DmRoom>(this.rooms)),
      mailboxStates: without<MailboxState>(await all<MailboxState>(this.mailboxes)),
      outboxEntries: await this.outboxEntries(),
      outboxBatches: await this.outboxBatches(),
      targets: without<ExtraTarget>(await all<ExtraTarget>(this.targets)),
      handledEvents: without<{ eventId: string; at: number }>(await all<{ eventId: string; at: number }>(this.events)),
    };
  }

  async counts(): Promise<StoreCounts> {
    return {
      profiles: await this.profiles.count({}),
      links: await this.links.count({}),
      dmRooms: await this.rooms.count({}),
      mailboxStates: await this.mailboxes.count({}),
      outboxEntries: await this.outbox.count({}),
      outboxBatches: await this.batches.count({}),
      targets: await this.targets.count({}),
      handledEvents: await this.events.count({}),
    };
  }

  /** Not atomic (NeDB has no transactions): a failure part way leaves part; run it again with replace. */
  writeAll(contents: StoreContents, options: { replace: boolean }): Promise<void> {
    return this.exclusive(async () => {
      this.check();
      const data: Collection[] = [this.profiles, this.links, this.rooms, this.mailboxes, this.events, this.outbox, this.targets, this.batches];
      if (options.replace) for (const db of data) await db.remove({}, { multi: true });
      else for (const db of data) if (await db.count({})) throw new Error(`the store in ${this.dir} is not empty`);
      const insert = async (db: Collection, docs: object[]) => {
        if (docs.length) await db.insert(docs);
      };
      await insert(this.profiles, contents.profiles);
      await insert(
        this.links,
        contents.links.map((l) => ({ ...l, key: NedbStore.linkKey(l.userId, l.systemId, l.mailbox), mailboxKey: NedbStore.mailboxKey(l.systemId, l.mailbox) })),
      );
      await insert(this.rooms, contents.dmRooms.map((r) => ({ ...r, key: NedbStore.roomKey(r.userId, r.botUserId) })));
      await insert(this.mailboxes, contents.mailboxStates.map((m) => ({ ...m, key: NedbStore.mailboxKey(m.systemId, m.mailbox) })));
      await insert(this.outbox, contents.outboxEntries);
      await insert(this.batches, contents.outboxBatches);
      await insert(this.targets, contents.targets.map((t) => ({ ...t, key: targetKey(t.ownerId, t.address) })));
      await insert(this.events, contents.handledEvents);
      await this.compactEach();
    });
  }
}
