/** What the bridge keeps: one interface, so that other engines can sit behind it. */
import type { RenderedText } from "../core/format.js";
import type { ChangeKind, MailboxState } from "../core/mwi.js";

/**
 * Bumped whenever stored documents change shape; a newer store is never opened by older code.
 * 2: target keys are JSON arrays (user IDs may contain `|`); targets are unique per owner and
 * address; outbox batches.
 */
export const SCHEMA_VERSION = 2;

/** The engines a `database.uri` can name. */
export const SUPPORTED_STORES = ["nedb:<directory>", "postgres://user:password@host:port/database", "memory:"] as const;

/** Where a store reports what went wrong without failing (compaction, permission fix-ups). */
export interface StoreLog {
  warn(message: string): void;
  /** Something an admin must act on (the store stopped after a write it could not undo). */
  error?(message: string): void;
}

/** `always`: deliver whenever the user has joined the room; `when-online`: also wait for presence. */
export type DeliveryMode = "always" | "when-online";
/** Where messages go: each system's DM, the main bot's DM (one aggregate), or both. */
export type NotifyMode = "per-system" | "summary" | "both";

export interface Profile {
  userId: string;
  /** IANA time zone for time stamps; the config's default when unset. */
  timezone?: string;
  delivery?: DeliveryMode;
  notify?: NotifyMode;
  createdAt: number;
}

export interface ProfileQuery {
  contains?: string;
  after?: string;
  limit: number;
}

/** Another Matrix account or room that is told about a user's voicemail too (F4). */
export interface ExtraTarget {
  id: string;
  ownerId: string;
  kind: "account" | "room";
  /** The account's user ID, or the room's ID. */
  address: string;
  /** The room the bot posts into: the room itself, or the DM it opened with the account. */
  roomId?: string;
  /** invited: waiting for the account to accept; refused: it declined, nothing is sent. */
  status: "invited" | "active" | "refused";
  createdAt: number;
  /** When it declined: it stays refused (also after a remove) until the account itself asks. */
  refusedAt?: number;
  /** Removed by the owner but kept, so that a re-add neither invites a refusal again nor at once. */
  removedAt?: number;
  lastName?: string;
  lastSummary?: string;
  lastTopic?: string;
}

/**
 * One MWI change (or notice) waiting for one delivery target. Written before anything is sent;
 * removed only once the homeserver accepted the events. Entries of one target are delivered in
 * `seq` order; those waiting together are coalesced into one message.
 */
export interface OutboxEntry {
  id: string;
  seq: number;
  /** Whose voicemail it is. */
  ownerId: string;
  /** Which room: see delivery/targets.ts. */
  targetKey: string;
  /** False: keep the room's state events up to date, but post no message. */
  withMessage: boolean;
  change?: { kind: ChangeKind; previous?: MailboxState; current: MailboxState };
  notice?: RenderedText & { systemId?: string };
  createdAt: number;
}

export interface MailboxLink {
  userId: string;
  systemId: string;
  mailbox: string;
  /** False after `!mwi off`: nothing is delivered (and, where the kind can, nothing is watched). */
  mwiEnabled: boolean;
  /** Who created the link: the user themself or an admin. */
  linkedBy: string;
  /** The mailbox credentials (MailboxCredentials as JSON), sealed with the SecretBox. */
  sealedCredentials?: string;
  createdAt: number;
}

/**
 * The outbox entries of one target that went (or go) out together: recorded before the first
 * request, so that a retry, also after a crash or a homeserver restart, sends the same events with
 * the same transaction IDs and never one the homeserver has already accepted.
 */
export interface OutboxBatch {
  /** Stable: carried in the message content as the outbox ID (`org.voicemail.outbox_id`). */
  id: string;
  targetKey: string;
  entryIds: string[];
  /** The message's transaction ID: the same on every retry. */
  txnId: string;
  /** The room the steps in `done` went to; another room starts the batch afresh. */
  roomId: string;
  createdAt: number;
  /**
   * True while no request of the batch can have reached the homeserver (every attempt so far
   * failed before a byte was sent, or was answered "not stored"): later entries may still join.
   */
  open: boolean;
  /**
   * Steps the homeserver accepted ("message", "notice:<entry>", "state:<type>:<key>"), with the
   * event ID where known. A list, not an object: event types contain dots, which NeDB refuses in keys.
   */
  done: { step: string; eventId?: string }[];
}

export interface OutboxStats {
  depth: number;
  /** `createdAt` of the oldest waiting entry; absent when none waits. */
  oldestCreatedAt?: number;
}

/** The one DM room between a user and one of the bridge's bots. */
export interface DmRoom {
  userId: string;
  botUserId: string;
  roomId: string;
  /** The user has joined (not just been invited). */
  userJoined: boolean;
  createdAt: number;
  /** What the room shows now, so that only changes are sent. */
  lastName?: string;
  lastSummary?: string;
  lastTopic?: string;
}

export interface VoicemailStore {
  close(): Promise<void>;
  /** Why the store takes no more updates (it stopped after a write it could not undo), if it does not: /ready reads it. */
  problem?(): string | undefined;

  getProfile(userId: string): Promise<Profile | undefined>;
  updateProfile(userId: string, patch: Partial<Omit<Profile, "userId" | "createdAt">>): Promise<Profile>;
  /**
   * Profiles (every user the bridge knows has one) by user ID, ascending: those after `after`,
   * whose ID contains `contains` (ignoring case), at most `limit`. For the admin API's paging.
   */
  listProfiles(query: ProfileQuery): Promise<Profile[]>;

  listLinks(userId: string): Promise<MailboxLink[]>;
  linksForMailbox(systemId: string, mailbox: string): Promise<MailboxLink[]>;
  /** Every link of a system, for gateways that watch their mailboxes on start. */
  linksForSystem(systemId: string): Promise<MailboxLink[]>;
  /** Stores a new link; false when the user already has it. */
  addLink(link: MailboxLink): Promise<boolean>;
  /** False when there was no such link. */
  removeLink(userId: string, systemId: string, mailbox: string): Promise<boolean>;
  setLinkMwi(userId: string, systemId: string, mailbox: string, enabled: boolean): Promise<number>;
  /** Replaces a link's sealed credentials in one step; the old ones leave the disk too. False: no such link. */
  setLinkCredentials(userId: string, systemId: string, mailbox: string, sealedCredentials: string): Promise<boolean>;

  getDmRoom(userId: string, botUserId: string): Promise<DmRoom | undefined>;
  getDmRoomById(roomId: string): Promise<DmRoom | undefined>;
  /** Inserts or replaces the DM of this user and bot. */
  saveDmRoom(room: DmRoom): Promise<void>;
  forgetDmRoom(roomId: string): Promise<void>;

  getMailboxState(systemId: string, mailbox: string): Promise<MailboxState | undefined>;
  saveMailboxState(state: MailboxState): Promise<void>;

  /**
   * A mailbox's new state and the outbox entries that tell it, in one atomic step: after a crash
   * either both are there or neither (a repeated update is then a change again, never a second
   * notification and never a lost one).
   */
  acceptChange(state: MailboxState, entries: OutboxEntry[]): Promise<void>;

  addOutboxEntries(entries: OutboxEntry[]): Promise<void>;
  /** Waiting entries, oldest first; of one target when given. */
  outboxEntries(targetKey?: string): Promise<OutboxEntry[]>;
  removeOutboxEntries(ids: string[]): Promise<void>;
  /** The distinct target keys of the entries waiting for one owner (indexed: a presence change reads no more). */
  outboxTargetKeys(ownerId: string): Promise<string[]>;
  /** The highest seq waiting, so that numbering continues after a restart. */
  maxOutboxSeq(): Promise<number>;
  /** How many entries wait and when the oldest was written: read on every metrics scrape, so cheap. */
  outboxStats(): Promise<OutboxStats>;

  /** The batch of a target being delivered (at most one per target). */
  getBatch(targetKey: string): Promise<OutboxBatch | undefined>;
  outboxBatches(): Promise<OutboxBatch[]>;
  /** Inserts or replaces the batch of its target. */
  saveBatch(batch: OutboxBatch): Promise<void>;
  /** The batch is delivered (or dropped): its entries leave the outbox, then the batch. */
  completeBatch(batch: OutboxBatch): Promise<void>;

  /** False when the owner has a target with that address already (one per owner and address). */
  addTarget(target: ExtraTarget): Promise<boolean>;
  listTargets(ownerId: string): Promise<ExtraTarget[]>;
  getTarget(id: string): Promise<ExtraTarget | undefined>;
  targetsByRoom(roomId: string): Promise<ExtraTarget[]>;
  updateTarget(target: ExtraTarget): Promise<void>;
  removeTarget(id: string): Promise<boolean>;

  /** Records a handled Matrix event; false when it was already handled. */
  markEventHandled(eventId: string, at: number): Promise<boolean>;
  forgetHandledEventsBefore(at: number): Promise<number>;
}

/** A Matrix event the bridge has handled, and when. */
export interface HandledEvent {
  eventId: string;
  at: number;
}

/** Everything a store holds, each kind as the interface hands it out: what migrate-store copies. */
export interface StoreContents {
  profiles: Profile[];
  links: MailboxLink[];
  dmRooms: DmRoom[];
  mailboxStates: MailboxState[];
  outboxEntries: OutboxEntry[];
  outboxBatches: OutboxBatch[];
  targets: ExtraTarget[];
  handledEvents: HandledEvent[];
}

export type StoreCounts = { [K in keyof StoreContents]: number };

/** The kinds of record, in the order migrate-store reports them. */
export const CONTENT_KINDS = ["profiles", "links", "dmRooms", "mailboxStates", "outboxEntries", "outboxBatches", "targets", "handledEvents"] as const satisfies readonly (keyof StoreContents)[];

/** An engine that can hand over and take in everything it holds (migrate-store). */
export interface TransferableStore extends VoicemailStore {
  readAll(): Promise<StoreContents>;
  counts(): Promise<StoreCounts>;
  /**
   * Writes everything into this store, which must be empty unless `replace` (then what it held
   * goes first). All or nothing where the engine has transactions (PostgreSQL).
   */
  writeAll(contents: StoreContents, options: { replace: boolean }): Promise<void>;
}
