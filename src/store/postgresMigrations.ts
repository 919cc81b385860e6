/**
 * The PostgreSQL store's schema, one step per version. A step is never changed once released:
 * a new shape is a new step at the end. `voicemail_schema` records which steps a database has;
 * the store runs the missing ones at start, in one transaction under an advisory lock, and
 * refuses a database with steps it does not know (a newer bridge wrote it).
 *
 * Time stamps are bigint milliseconds since the epoch, as in the other engines. Values the store
 * never looks into (a message's fields, a change, a batch's ledger) are `json`, not `jsonb`:
 * `json` keeps the text exactly, where `jsonb` refuses `\u0000` and unpaired surrogates.
 * Counts are bigint: RFC 3842 counts are unsigned 32-bit.
 */

/** The advisory lock that serialises migrations of one database (any fixed 64-bit number). */
export const MIGRATION_LOCK = 0x766d5f736368; // "vm_sch"

export const SCHEMA_TABLE = `CREATE TABLE IF NOT EXISTS voicemail_schema (
  version integer PRIMARY KEY,
  applied_at bigint NOT NULL
)`;

export const MIGRATIONS: readonly (readonly string[])[] = [
  // 1: the shape of NeDB schema version 2.
  [
    `CREATE TABLE profiles (
      user_id text PRIMARY KEY,
      timezone text,
      delivery text,
      notify text,
      created_at bigint NOT NULL
    )`,
    // One link per user, system and mailbox; listLinks reads by user (the key's prefix).
    `CREATE TABLE mailbox_links (
      user_id text NOT NULL,
      system_id text NOT NULL,
      mailbox text NOT NULL,
      mwi_enabled boolean NOT NULL,
      linked_by text NOT NULL,
      sealed_credentials text,
      created_at bigint NOT NULL,
      PRIMARY KEY (user_id, system_id, mailbox)
    )`,
    // linksForMailbox and linksForSystem (its prefix).
    `CREATE INDEX mailbox_links_by_mailbox ON mailbox_links (system_id, mailbox)`,
    // One DM per user and bot; a room belongs to one such pair.
    `CREATE TABLE dm_rooms (
      user_id text NOT NULL,
      bot_user_id text NOT NULL,
      room_id text NOT NULL UNIQUE,
      user_joined boolean NOT NULL,
      created_at bigint NOT NULL,
      last_name text,
      last_summary text,
      last_topic text,
      PRIMARY KEY (user_id, bot_user_id)
    )`,
    `CREATE TABLE mailbox_states (
      system_id text NOT NULL,
      mailbox text NOT NULL,
      waiting boolean NOT NULL,
      new_count bigint NOT NULL CHECK (new_count >= 0),
      old_count bigint NOT NULL CHECK (old_count >= 0),
      urgent_new bigint NOT NULL CHECK (urgent_new >= 0),
      urgent_old bigint NOT NULL CHECK (urgent_old >= 0),
      updated bigint NOT NULL,
      last_message json,
      PRIMARY KEY (system_id, mailbox)
    )`,
    `CREATE TABLE outbox_entries (
      id text PRIMARY KEY,
      seq bigint NOT NULL,
      owner_id text NOT NULL,
      target_key text NOT NULL,
      with_message boolean NOT NULL,
      change json,
      notice json,
      created_at bigint NOT NULL
    )`,
    // All entries oldest first and the highest seq; one target's in order; one owner's targets.
    `CREATE INDEX outbox_entries_by_seq ON outbox_entries (seq)`,
    `CREATE INDEX outbox_entries_by_target ON outbox_entries (target_key, seq)`,
    `CREATE INDEX outbox_entries_by_owner ON outbox_entries (owner_id, target_key)`,
    // At most one batch per target.
    `CREATE TABLE outbox_batches (
      target_key text PRIMARY KEY,
      id text NOT NULL,
      entry_ids json NOT NULL,
      txn_id text NOT NULL,
      room_id text NOT NULL,
      created_at bigint NOT NULL,
      open boolean NOT NULL,
      done json NOT NULL
    )`,
    `CREATE INDEX outbox_batches_by_id ON outbox_batches (id)`,
    // One target per owner and address.
    `CREATE TABLE extra_targets (
      id text PRIMARY KEY,
      owner_id text NOT NULL,
      kind text NOT NULL,
      address text NOT NULL,
      room_id text,
      status text NOT NULL,
      created_at bigint NOT NULL,
      refused_at bigint,
      removed_at bigint,
      last_name text,
      last_summary text,
      last_topic text,
      UNIQUE (owner_id, address)
    )`,
    `CREATE INDEX extra_targets_by_owner ON extra_targets (owner_id, created_at)`,
    `CREATE INDEX extra_targets_by_room ON extra_targets (room_id)`,
    `CREATE TABLE handled_events (
      event_id text PRIMARY KEY,
      handled_at bigint NOT NULL
    )`,
    `CREATE INDEX handled_events_by_time ON handled_events (handled_at)`,
  ],
];

/** Every table the store keeps data in (migrate-store empties them with --force). */
export const DATA_TABLES = [
  "profiles",
  "mailbox_links",
  "dm_rooms",
  "mailbox_states",
  "outbox_entries",
  "outbox_batches",
  "extra_targets",
  "handled_events",
] as const;
