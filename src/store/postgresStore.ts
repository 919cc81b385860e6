/**
 * The store on PostgreSQL (`database.uri: postgres://...`), through the `postgres` client.
 *
 * Opening runs the schema migrations (postgresMigrations.ts) in one transaction under an advisory
 * lock, so that two bridges starting at once do not both migrate. Where one step must be atomic
 * (an MWI change with its outbox entries, a completed batch, a DM that takes over a room ID) it is
 * one transaction; uniqueness (one link per user, system and mailbox; one DM per user and bot;
 * one target per owner and address; a handled event once) is the database's constraints.
 *
 * PostgreSQL text holds neither NUL nor unpaired UTF-16 surrogates (the client would turn the
 * latter into U+FFFD, so that two different IDs could meet in one row): such a value is refused
 * with a clear error before it reaches the database, on reads as on writes.
 *
 * The URI's password is never part of a message: errors name the URI without it.
 */
import postgres from "postgres";
import type { MailboxState } from "../core/mwi.js";
import { KeyedQueue } from "../util/keyedQueue.js";
import { DATA_TABLES, MIGRATION_LOCK, MIGRATIONS, SCHEMA_TABLE } from "./postgresMigrations.js";
import type {
  DmRoom,
  ExtraTarget,
  HandledEvent,
  MailboxLink,
  OutboxBatch,
  OutboxEntry,
  OutboxStats,
  Profile,
  ProfileQuery,
  StoreContents,
  StoreCounts,
  StoreLog,
  TransferableStore,
} from "./store.js";

type Sql = postgres.Sql | postgres.TransactionSql;
type Row = Record<string, unknown>;

/** Rows per INSERT when copying many (PostgreSQL takes at most 65,535 parameters a statement). */
const INSERT_CHUNK = 500;

/** The URI as it may be shown: without its password (and without a query, which may hold one). */
export function redactUri(uri: string): string {
  try {
    const url = new URL(uri);
    if (url.password) url.password = "***";
    url.search = "";
    return url.toString();
  } catch {
    return `${uri.split(":")[0]}://(unparsable URI)`;
  }
}

const consoleLog: StoreLog = { warn: (message) => console.warn(`[Store] ${message}`) };

const UNPAIRED_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Text PostgreSQL keeps exactly: no NUL, no unpaired surrogate. */
function plain(field: string, value: string | undefined): void {
  if (value === undefined) return;
  if (typeof value !== "string") throw new TypeError(`${field} must be text`);
  if (value.includes("\u0000") || UNPAIRED_SURROGATE.test(value)) {
    throw new Error(`${field} holds a NUL character or an unpaired UTF-16 surrogate, which PostgreSQL text cannot keep`);
  }
}

const num = (value: unknown) => Number(value);
/** NULL is an absent optional field: it is left out, as the other engines leave it out. */
function optional<T extends object>(target: T, key: string, value: unknown, convert: (v: unknown) => unknown = (v) => v): void {
  if (value !== null && value !== undefined) (target as Row)[key] = convert(value);
}

function profileOf(row: Row): Profile {
  const profile = { userId: row.user_id as string } as Profile;
  optional(profile, "timezone", row.timezone);
  optional(profile, "delivery", row.delivery);
  optional(profile, "notify", row.notify);
  profile.createdAt = num(row.created_at);
  return profile;
}

function linkOf(row: Row): MailboxLink {
  const link: MailboxLink = {
    userId: row.user_id as string,
    systemId: row.system_id as string,
    mailbox: row.mailbox as string,
    mwiEnabled: row.mwi_enabled as boolean,
    linkedBy: row.linked_by as string,
    createdAt: num(row.created_at),
  };
  optional(link, "sealedCredentials", row.sealed_credentials);
  return link;
}

function roomOf(row: Row): DmRoom {
  const room: DmRoom = {
    userId: row.user_id as string,
    botUserId: row.bot_user_id as string,
    roomId: row.room_id as string,
    userJoined: row.user_joined as boolean,
    createdAt: num(row.created_at),
  };
  optional(room, "lastName", row.last_name);
  optional(room, "lastSummary", row.last_summary);
  optional(room, "lastTopic", row.last_topic);
  return room;
}

function stateOf(row: Row): MailboxState {
  const state: MailboxState = {
    systemId: row.system_id as string,
    mailbox: row.mailbox as string,
    waiting: row.waiting as boolean,
    new: num(row.new_count),
    old: num(row.old_count),
    urgentNew: num(row.urgent_new),
    urgentOld: num(row.urgent_old),
    updated: num(row.updated),
  };
  optional(state, "lastMessage", row.last_message);
  return state;
}

function entryOf(row: Row): OutboxEntry {
  const entry: OutboxEntry = {
    id: row.id as string,
    seq: num(row.seq),
    ownerId: row.owner_id as string,
    targetKey: row.target_key as string,
    withMessage: row.with_message as boolean,
    createdAt: num(row.created_at),
  };
  optional(entry, "change", row.change);
  optional(entry, "notice", row.notice);
  return entry;
}

function batchOf(row: Row): OutboxBatch {
  return {
    id: row.id as string,
    targetKey: row.target_key as string,
    entryIds: row.entry_ids as string[],
    txnId: row.txn_id as string,
    roomId: row.room_id as string,
    createdAt: num(row.created_at),
    open: row.open as boolean,
    done: row.done as OutboxBatch["done"],
  };
}

function targetOf(row: Row): ExtraTarget {
  const target: ExtraTarget = {
    id: row.id as string,
    ownerId: row.owner_id as string,
    kind: row.kind as ExtraTarget["kind"],
    address: row.address as string,
    status: row.status as ExtraTarget["status"],
    createdAt: num(row.created_at),
  };
  optional(target, "roomId", row.room_id);
  optional(target, "refusedAt", row.refused_at, num);
  optional(target, "removedAt", row.removed_at, num);
  optional(target, "lastName", row.last_name);
  optional(target, "lastSummary", row.last_summary);
  optional(target, "lastTopic", row.last_topic);
  return target;
}

// What goes into each table: the rows for an INSERT, text fields checked.

function profileRow(p: Profile): Row {
  for (const f of ["userId", "timezone", "delivery", "notify"] as const) plain(`profile.${f}`, p[f]);
  return { user_id: p.userId, timezone: p.timezone ?? null, delivery: p.delivery ?? null, notify: p.notify ?? null, created_at: p.createdAt };
}

function linkRow(l: MailboxLink): Row {
  for (const f of ["userId", "systemId", "mailbox", "linkedBy", "sealedCredentials"] as const) plain(`link.${f}`, l[f]);
  return {
    user_id: l.userId,
    system_id: l.systemId,
    mailbox: l.mailbox,
    mwi_enabled: l.mwiEnabled,
    linked_by: l.linkedBy,
    sealed_credentials: l.sealedCredentials ?? null,
    created_at: l.createdAt,
  };
}

function roomRow(r: DmRoom): Row {
  for (const f of ["userId", "botUserId", "roomId", "lastName", "lastSummary", "lastTopic"] as const) plain(`room.${f}`, r[f]);
  return {
    user_id: r.userId,
    bot_user_id: r.botUserId,
    room_id: r.roomId,
    user_joined: r.userJoined,
    created_at: r.createdAt,
    last_name: r.lastName ?? null,
    last_summary: r.lastSummary ?? null,
    last_topic: r.lastTopic ?? null,
  };
}

function stateRow(s: MailboxState): Row {
  plain("state.systemId", s.systemId);
  plain("state.mailbox", s.mailbox);
  return {
    system_id: s.systemId,
    mailbox: s.mailbox,
    waiting: s.waiting,
    new_count: s.new,
    old_count: s.old,
    urgent_new: s.urgentNew,
    urgent_old: s.urgentOld,
    updated: s.updated,
    last_message: s.lastMessage ?? null,
  };
}

function entryRow(e: OutboxEntry): Row {
  for (const f of ["id", "ownerId", "targetKey"] as const) plain(`outbox entry.${f}`, e[f]);
  return {
    id: e.id,
    seq: e.seq,
    owner_id: e.ownerId,
    target_key: e.targetKey,
    with_message: e.withMessage,
    change: e.change ?? null,
    notice: e.notice ?? null,
    created_at: e.createdAt,
  };
}

function batchRow(b: OutboxBatch): Row {
  for (const f of ["id", "targetKey", "txnId", "roomId"] as const) plain(`batch.${f}`, b[f]);
  return {
    target_key: b.targetKey,
    id: b.id,
    entry_ids: b.entryIds,
    txn_id: b.txnId,
    room_id: b.roomId,
    created_at: b.createdAt,
    open: b.open,
    done: b.done,
  };
}

function targetRow(t: ExtraTarget): Row {
  for (const f of ["id", "ownerId", "kind", "address", "roomId", "status", "lastName", "lastSummary", "lastTopic"] as const) plain(`target.${f}`, t[f]);
  return {
    id: t.id,
    owner_id: t.ownerId,
    kind: t.kind,
    address: t.address,
    room_id: t.roomId ?? null,
    status: t.status,
    created_at: t.createdAt,
    refused_at: t.refusedAt ?? null,
    removed_at: t.removedAt ?? null,
    last_name: t.lastName ?? null,
    last_summary: t.lastSummary ?? null,
    last_topic: t.lastTopic ?? null,
  };
}

function eventRow(e: HandledEvent): Row {
  plain("event ID", e.eventId);
  return { event_id: e.eventId, handled_at: e.at };
}

/**
 * A value for a json column, typed json (114): the client's `sql.json` types it jsonb, and a cast
 * from jsonb would refuse `\u0000` and unpaired surrogates.
 */
const asJson = (sql: Sql, value: unknown) => sql.typed(value as never, 114);

/** The json columns. */
const JSON_COLUMNS = new Set(["last_message", "change", "notice", "entry_ids", "done"]);

export interface PostgresStoreOptions {
  /** Connections in the pool (default 10). */
  max?: number;
  /** Seconds to wait for a connection (default 10). */
  connectTimeout?: number;
  /** The schema's steps (default MIGRATIONS): tests give more, to try an upgrade. */
  migrations?: readonly (readonly string[])[];
}

/** Methods used inside the public ones: their errors are named once, by the caller. */
const INTERNAL = new Set(["insert", "upsertState", "countsIn"]);

export class PostgresStore implements TransferableStore {
  /**
   * Writes of one mailbox's state, one at a time in call order: transactions on different pool
   * connections could otherwise commit in another order, and an older state win.
   */
  private readonly mailboxWrites = new KeyedQueue();

  private constructor(
    private readonly sql: postgres.Sql,
    private readonly where: string,
  ) {
    // Every operation's connection failure names the database (without the password).
    for (const name of Object.getOwnPropertyNames(PostgresStore.prototype)) {
      const method = (this as unknown as Record<string, unknown>)[name];
      if (name === "constructor" || INTERNAL.has(name) || typeof method !== "function") continue;
      (this as unknown as Record<string, unknown>)[name] = (...args: unknown[]) =>
        (method as (...a: unknown[]) => Promise<unknown>).apply(this, args).catch((err: unknown) => {
          throw namedConnectionError(err, where);
        });
    }
  }

  /** Connects, migrates, and refuses a schema newer than this code; errors carry no password. */
  static async open(uri: string, log: StoreLog = consoleLog, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const where = redactUri(uri);
    const sql = postgres(uri, {
      max: options.max ?? 10,
      connect_timeout: options.connectTimeout ?? 10,
      // CREATE ... IF NOT EXISTS says so as a notice: not worth a line.
      onnotice: (notice) => {
        if (notice.severity !== "NOTICE") log.warn(`PostgreSQL ${where}: ${notice.message}`);
      },
      transform: { undefined: null },
      connection: { application_name: "matrix-appservice-voicemail" },
    });
    try {
      await PostgresStore.migrate(sql, where, log, options.migrations ?? MIGRATIONS);
    } catch (err) {
      await sql.end({ timeout: 1 }).catch(() => undefined);
      throw new Error(`cannot open the PostgreSQL store ${where}: ${describeError(err)}`);
    }
    return new PostgresStore(sql, where);
  }

  private static async migrate(sql: postgres.Sql, where: string, log: StoreLog, migrations: readonly (readonly string[])[]): Promise<void> {
    const latest = migrations.length;
    await sql.begin(async (tx) => {
      await tx.unsafe(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
      await tx.unsafe(SCHEMA_TABLE);
      const [row] = await tx`SELECT coalesce(max(version), 0) AS version FROM voicemail_schema`;
      const version = Number(row!.version);
      if (version > latest) {
        throw new Error(`the database has schema version ${version}, newer than this bridge (${latest}): upgrade the bridge`);
      }
      for (let v = version + 1; v <= latest; v++) {
        for (const statement of migrations[v - 1]!) await tx.unsafe(statement);
        await tx`INSERT INTO voicemail_schema (version, applied_at) VALUES (${v}, ${Date.now()})`;
      }
      if (version && version < latest) log.warn(`PostgreSQL ${where}: schema migrated from version ${version} to ${latest}`);
    });
  }

  async close(): Promise<void> {
    await this.sql.end({ timeout: 5 });
  }

  /** The schema version the database is at (tests). */
  async schemaVersion(): Promise<number> {
    const [row] = await this.sql`SELECT coalesce(max(version), 0) AS version FROM voicemail_schema`;
    return Number(row!.version);
  }

  private insert(sql: Sql, table: string, rows: Row[]) {
    const columns = Object.keys(rows[0]!);
    const values = rows.map((row) =>
      Object.fromEntries(columns.map((c) => [c, JSON_COLUMNS.has(c) && row[c] !== null ? asJson(sql, row[c]) : row[c]])),
    );
    return sql`INSERT INTO ${sql(table)} ${sql(values as never, columns)}`;
  }

  async getProfile(userId: string): Promise<Profile | undefined> {
    plain("user ID", userId);
    const [row] = await this.sql`SELECT * FROM profiles WHERE user_id = ${userId}`;
    return row && profileOf(row);
  }

  async listProfiles(query: ProfileQuery): Promise<Profile[]> {
    const { sql } = this;
    if (query.after !== undefined) plain("user ID", query.after);
    if (query.contains !== undefined) plain("search", query.contains);
    const rows = await sql`
      SELECT * FROM profiles
      WHERE (${query.after ?? null}::text IS NULL OR user_id COLLATE "C" > ${query.after ?? null})
        AND (${query.contains ?? null}::text IS NULL OR strpos(lower(user_id), lower(${query.contains ?? ""})) > 0)
      ORDER BY user_id COLLATE "C" LIMIT ${query.limit}`;
    return rows.map(profileOf);
  }

  async updateProfile(userId: string, patch: Partial<Omit<Profile, "userId" | "createdAt">>): Promise<Profile> {
    // A field the patch names is set (cleared when undefined); the others stay.
    const fields = (["timezone", "delivery", "notify"] as const).filter((f) => f in patch);
    const row = profileRow({ userId, createdAt: Date.now(), ...patch });
    const set = (f: string) => fields.includes(f as (typeof fields)[number]);
    const [stored] = await this.sql`
      INSERT INTO profiles ${this.sql(row)}
      ON CONFLICT (user_id) DO UPDATE SET
        timezone = CASE WHEN ${set("timezone")} THEN EXCLUDED.timezone ELSE profiles.timezone END,
        delivery = CASE WHEN ${set("delivery")} THEN EXCLUDED.delivery ELSE profiles.delivery END,
        notify = CASE WHEN ${set("notify")} THEN EXCLUDED.notify ELSE profiles.notify END
      RETURNING *`;
    return profileOf(stored!);
  }

  async listLinks(userId: string): Promise<MailboxLink[]> {
    plain("user ID", userId);
    const rows = await this.sql`SELECT * FROM mailbox_links WHERE user_id = ${userId} ORDER BY system_id COLLATE "C", mailbox COLLATE "C"`;
    return rows.map(linkOf);
  }

  async linksForMailbox(systemId: string, mailbox: string): Promise<MailboxLink[]> {
    plain("system ID", systemId);
    plain("mailbox", mailbox);
    const rows = await this.sql`SELECT * FROM mailbox_links WHERE system_id = ${systemId} AND mailbox = ${mailbox} ORDER BY user_id COLLATE "C"`;
    return rows.map(linkOf);
  }

  async linksForSystem(systemId: string): Promise<MailboxLink[]> {
    plain("system ID", systemId);
    const rows = await this.sql`SELECT * FROM mailbox_links WHERE system_id = ${systemId}`;
    return rows.map(linkOf);
  }

  async addLink(link: MailboxLink): Promise<boolean> {
    const result = await this.sql`INSERT INTO mailbox_links ${this.sql(linkRow(link))} ON CONFLICT DO NOTHING`;
    return result.count > 0;
  }

  async removeLink(userId: string, systemId: string, mailbox: string): Promise<boolean> {
    for (const [f, v] of [["user ID", userId], ["system ID", systemId], ["mailbox", mailbox]]) plain(f!, v);
    const result = await this.sql`DELETE FROM mailbox_links WHERE user_id = ${userId} AND system_id = ${systemId} AND mailbox = ${mailbox}`;
    return result.count > 0;
  }

  async setLinkMwi(userId: string, systemId: string, mailbox: string, enabled: boolean): Promise<number> {
    for (const [f, v] of [["user ID", userId], ["system ID", systemId], ["mailbox", mailbox]]) plain(f!, v);
    const result = await this.sql`
      UPDATE mailbox_links SET mwi_enabled = ${enabled}
      WHERE user_id = ${userId} AND system_id = ${systemId} AND mailbox = ${mailbox}`;
    return result.count;
  }

  async setLinkCredentials(userId: string, systemId: string, mailbox: string, sealedCredentials: string): Promise<boolean> {
    for (const [f, v] of [["user ID", userId], ["system ID", systemId], ["mailbox", mailbox], ["sealed credentials", sealedCredentials]]) plain(f!, v);
    const result = await this.sql`
      UPDATE mailbox_links SET sealed_credentials = ${sealedCredentials}
      WHERE user_id = ${userId} AND system_id = ${systemId} AND mailbox = ${mailbox}`;
    return result.count > 0;
  }

  async getDmRoom(userId: string, botUserId: string): Promise<DmRoom | undefined> {
    plain("user ID", userId);
    plain("bot user ID", botUserId);
    const [row] = await this.sql`SELECT * FROM dm_rooms WHERE user_id = ${userId} AND bot_user_id = ${botUserId}`;
    return row && roomOf(row);
  }

  async getDmRoomById(roomId: string): Promise<DmRoom | undefined> {
    plain("room ID", roomId);
    const [row] = await this.sql`SELECT * FROM dm_rooms WHERE room_id = ${roomId}`;
    return row && roomOf(row);
  }

  async saveDmRoom(room: DmRoom): Promise<void> {
    const row = roomRow(room);
    await this.sql.begin(async (tx) => {
      // A room ID belongs to one user and bot only: a stale record of it goes first.
      await tx`DELETE FROM dm_rooms WHERE room_id = ${room.roomId} AND (user_id, bot_user_id) <> (${room.userId}, ${room.botUserId})`;
      await tx`
        INSERT INTO dm_rooms ${tx(row)}
        ON CONFLICT (user_id, bot_user_id) DO UPDATE SET ${tx(row, "room_id", "user_joined", "created_at", "last_name", "last_summary", "last_topic")}`;
    });
  }

  async forgetDmRoom(roomId: string): Promise<void> {
    plain("room ID", roomId);
    await this.sql`DELETE FROM dm_rooms WHERE room_id = ${roomId}`;
  }

  async getMailboxState(systemId: string, mailbox: string): Promise<MailboxState | undefined> {
    plain("system ID", systemId);
    plain("mailbox", mailbox);
    const [row] = await this.sql`SELECT * FROM mailbox_states WHERE system_id = ${systemId} AND mailbox = ${mailbox}`;
    return row && stateOf(row);
  }

  async saveMailboxState(state: MailboxState): Promise<void> {
    stateRow(state);
    await this.mailboxWrites.run(JSON.stringify([state.systemId, state.mailbox]), () => this.upsertState(this.sql, state));
  }

  private async upsertState(sql: Sql, state: MailboxState): Promise<void> {
    const row = stateRow(state);
    const lastMessage = row.last_message === null ? null : asJson(sql, row.last_message);
    await sql`
      INSERT INTO mailbox_states (system_id, mailbox, waiting, new_count, old_count, urgent_new, urgent_old, updated, last_message)
      VALUES (${state.systemId}, ${state.mailbox}, ${state.waiting}, ${state.new}, ${state.old}, ${state.urgentNew}, ${state.urgentOld}, ${state.updated}, ${lastMessage})
      ON CONFLICT (system_id, mailbox) DO UPDATE SET
        waiting = EXCLUDED.waiting, new_count = EXCLUDED.new_count, old_count = EXCLUDED.old_count,
        urgent_new = EXCLUDED.urgent_new, urgent_old = EXCLUDED.urgent_old, updated = EXCLUDED.updated,
        last_message = EXCLUDED.last_message`;
  }

  async acceptChange(state: MailboxState, entries: OutboxEntry[]): Promise<void> {
    const rows = entries.map(entryRow);
    stateRow(state);
    await this.mailboxWrites.run(JSON.stringify([state.systemId, state.mailbox]), () =>
      this.sql.begin(async (tx) => {
        if (rows.length) await this.insert(tx, "outbox_entries", rows);
        await this.upsertState(tx, state);
      }),
    );
  }

  async addOutboxEntries(entries: OutboxEntry[]): Promise<void> {
    const rows = entries.map(entryRow);
    if (rows.length) await this.insert(this.sql, "outbox_entries", rows);
  }

  async outboxEntries(targetKey?: string): Promise<OutboxEntry[]> {
    plain("target key", targetKey);
    const rows =
      targetKey === undefined
        ? await this.sql`SELECT * FROM outbox_entries ORDER BY seq, id`
        : await this.sql`SELECT * FROM outbox_entries WHERE target_key = ${targetKey} ORDER BY seq, id`;
    return rows.map(entryOf);
  }

  async removeOutboxEntries(ids: string[]): Promise<void> {
    for (const id of ids) plain("outbox entry ID", id);
    if (ids.length) await this.sql`DELETE FROM outbox_entries WHERE id = ANY(${this.sql.array(ids)})`;
  }

  async outboxTargetKeys(ownerId: string): Promise<string[]> {
    plain("owner ID", ownerId);
    const rows = await this.sql`SELECT DISTINCT target_key FROM outbox_entries WHERE owner_id = ${ownerId}`;
    return rows.map((r) => r.target_key as string);
  }

  async outboxStats(): Promise<OutboxStats> {
    const [row] = await this.sql`SELECT count(*) AS depth, min(created_at) AS oldest FROM outbox_entries`;
    return { depth: Number(row!.depth), ...(row!.oldest !== null ? { oldestCreatedAt: Number(row!.oldest) } : {}) };
  }

  async maxOutboxSeq(): Promise<number> {
    const [row] = await this.sql`SELECT coalesce(max(seq), 0) AS seq FROM outbox_entries`;
    return Number(row!.seq);
  }

  async getBatch(targetKey: string): Promise<OutboxBatch | undefined> {
    plain("target key", targetKey);
    const [row] = await this.sql`SELECT * FROM outbox_batches WHERE target_key = ${targetKey}`;
    return row && batchOf(row);
  }

  async outboxBatches(): Promise<OutboxBatch[]> {
    return (await this.sql`SELECT * FROM outbox_batches ORDER BY created_at, target_key`).map(batchOf);
  }

  async saveBatch(batch: OutboxBatch): Promise<void> {
    const row = batchRow(batch);
    const json = (v: unknown) => asJson(this.sql, v);
    await this.sql`
      INSERT INTO outbox_batches (target_key, id, entry_ids, txn_id, room_id, created_at, open, done)
      VALUES (${batch.targetKey}, ${batch.id}, ${json(row.entry_ids)}, ${batch.txnId}, ${batch.roomId}, ${batch.createdAt}, ${batch.open}, ${json(row.done)})
      ON CONFLICT (target_key) DO UPDATE SET
        id = EXCLUDED.id, entry_ids = EXCLUDED.entry_ids, txn_id = EXCLUDED.txn_id, room_id = EXCLUDED.room_id,
        created_at = EXCLUDED.created_at, open = EXCLUDED.open, done = EXCLUDED.done`;
  }

  async completeBatch(batch: OutboxBatch): Promise<void> {
    plain("batch ID", batch.id);
    for (const id of batch.entryIds) plain("outbox entry ID", id);
    await this.sql.begin(async (tx) => {
      if (batch.entryIds.length) await tx`DELETE FROM outbox_entries WHERE id = ANY(${tx.array(batch.entryIds)})`;
      await tx`DELETE FROM outbox_batches WHERE id = ${batch.id}`;
    });
  }

  async addTarget(target: ExtraTarget): Promise<boolean> {
    // Either constraint (the ID, or owner and address) makes it a no.
    const result = await this.sql`INSERT INTO extra_targets ${this.sql(targetRow(target))} ON CONFLICT DO NOTHING`;
    return result.count > 0;
  }

  async listTargets(ownerId: string): Promise<ExtraTarget[]> {
    plain("owner ID", ownerId);
    return (await this.sql`SELECT * FROM extra_targets WHERE owner_id = ${ownerId} ORDER BY created_at, id`).map(targetOf);
  }

  async getTarget(id: string): Promise<ExtraTarget | undefined> {
    plain("target ID", id);
    const [row] = await this.sql`SELECT * FROM extra_targets WHERE id = ${id}`;
    return row && targetOf(row);
  }

  async targetsByRoom(roomId: string): Promise<ExtraTarget[]> {
    plain("room ID", roomId);
    return (await this.sql`SELECT * FROM extra_targets WHERE room_id = ${roomId}`).map(targetOf);
  }

  async updateTarget(target: ExtraTarget): Promise<void> {
    const row = targetRow(target);
    const { id, ...rest } = row;
    await this.sql`UPDATE extra_targets SET ${this.sql(rest)} WHERE id = ${id as string}`;
  }

  async removeTarget(id: string): Promise<boolean> {
    plain("target ID", id);
    return (await this.sql`DELETE FROM extra_targets WHERE id = ${id}`).count > 0;
  }

  async markEventHandled(eventId: string, at: number): Promise<boolean> {
    const row = eventRow({ eventId, at });
    return (await this.sql`INSERT INTO handled_events ${this.sql(row)} ON CONFLICT DO NOTHING`).count > 0;
  }

  async forgetHandledEventsBefore(at: number): Promise<number> {
    return (await this.sql`DELETE FROM handled_events WHERE handled_at < ${at}`).count;
  }

  async readAll(): Promise<StoreContents> {
    // One snapshot: a repeatable-read, read-only transaction sees one moment of every table.
    return this.sql.begin("ISOLATION LEVEL REPEATABLE READ READ ONLY", async (tx) => ({
      profiles: (await tx`SELECT * FROM profiles ORDER BY user_id`).map(profileOf),
      links: (await tx`SELECT * FROM mailbox_links ORDER BY user_id, system_id, mailbox`).map(linkOf),
      dmRooms: (await tx`SELECT * FROM dm_rooms ORDER BY user_id, bot_user_id`).map(roomOf),
      mailboxStates: (await tx`SELECT * FROM mailbox_states ORDER BY system_id, mailbox`).map(stateOf),
      outboxEntries: (await tx`SELECT * FROM outbox_entries ORDER BY seq, id`).map(entryOf),
      outboxBatches: (await tx`SELECT * FROM outbox_batches ORDER BY target_key`).map(batchOf),
      targets: (await tx`SELECT * FROM extra_targets ORDER BY id`).map(targetOf),
      handledEvents: (await tx`SELECT * FROM handled_events ORDER BY event_id`).map((r) => ({ eventId: r.event_id as string, at: num(r.handled_at) })),
    }));
  }

  async counts(): Promise<StoreCounts> {
    const [row] = await this.sql`SELECT
      (SELECT count(*) FROM profiles) AS profiles,
      (SELECT count(*) FROM mailbox_links) AS links,
      (SELECT count(*) FROM dm_rooms) AS dm_rooms,
      (SELECT count(*) FROM mailbox_states) AS mailbox_states,
      (SELECT count(*) FROM outbox_entries) AS outbox_entries,
      (SELECT count(*) FROM outbox_batches) AS outbox_batches,
      (SELECT count(*) FROM extra_targets) AS targets,
      (SELECT count(*) FROM handled_events) AS handled_events`;
    return {
      profiles: num(row!.profiles),
      links: num(row!.links),
      dmRooms: num(row!.dm_rooms),
      mailboxStates: num(row!.mailbox_states),
      outboxEntries: num(row!.outbox_entries),
      outboxBatches: num(row!.outbox_batches),
      targets: num(row!.targets),
      handledEvents: num(row!.handled_events),
    };
  }

  async writeAll(contents: StoreContents, options: { replace: boolean }): Promise<void> {
    const tables: [string, Row[]][] = [
      ["profiles", contents.profiles.map(profileRow)],
      ["mailbox_links", contents.links.map(linkRow)],
      ["dm_rooms", contents.dmRooms.map(roomRow)],
      ["mailbox_states", contents.mailboxStates.map(stateRow)],
      ["outbox_entries", contents.outboxEntries.map(entryRow)],
      ["outbox_batches", contents.outboxBatches.map(batchRow)],
      ["extra_targets", contents.targets.map(targetRow)],
      ["handled_events", contents.handledEvents.map(eventRow)],
    ];
    await this.sql.begin(async (tx) => {
      // Nobody else writes meanwhile: a bridge on this database waits, or this copy does.
      await tx.unsafe(`LOCK TABLE ${DATA_TABLES.join(", ")} IN EXCLUSIVE MODE`);
      if (options.replace) {
        for (const table of DATA_TABLES) await tx.unsafe(`DELETE FROM ${table}`);
      } else {
        const counts = await this.countsIn(tx);
        if (counts) throw new Error(`the PostgreSQL store ${this.where} is not empty (${counts})`);
      }
      for (const [table, rows] of tables) {
        for (let i = 0; i < rows.length; i += INSERT_CHUNK) await this.insert(tx, table, rows.slice(i, i + INSERT_CHUNK));
      }
    });
  }

  /** Which tables hold rows, as "profiles: 3, ..."; empty when none. */
  private async countsIn(sql: Sql): Promise<string> {
    const parts: string[] = [];
    for (const table of DATA_TABLES) {
      const [row] = await sql.unsafe(`SELECT count(*) AS n FROM ${table}`);
      const n = Number(row!.n);
      if (n) parts.push(`${table}: ${n}`);
    }
    return parts.join(", ");
  }
}

/** Socket and server codes that say the database is out of reach, not that a statement failed. */
const CONNECTION_CODES = /^(E[A-Z]+|CONNECT_TIMEOUT|CONNECTION_(CLOSED|ENDED|DESTROYED)|08...|57P0[1-3])$/;

function namedConnectionError(err: unknown, where: string): unknown {
  const e = err as { code?: unknown; message?: unknown };
  if (err instanceof Error && typeof e.code === "string" && CONNECTION_CODES.test(e.code) && !err.message.startsWith("PostgreSQL ")) {
    err.message = `PostgreSQL ${where} is out of reach: ${err.message}`;
  }
  return err;
}

/** A client error as one line: PostgreSQL's message and code, or the socket's. */
function describeError(err: unknown): string {
  const e = err as { message?: string; code?: string };
  const message = e.message ?? String(err);
  return e.code && !message.includes(e.code) ? `${message} (${e.code})` : message;
}
