/** What the bridge keeps: one interface, so that other engines can sit behind it. */
import type { MailboxState } from "../core/mwi.js";

/** Bumped whenever stored documents change shape; a newer store is never opened by older code. */
export const SCHEMA_VERSION = 1;

export interface Profile {
  userId: string;
  /** IANA time zone for time stamps; the config's default when unset. */
  timezone?: string;
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
}

export interface VoicemailStore {
  close(): Promise<void>;

  getProfile(userId: string): Promise<Profile | undefined>;
  updateProfile(userId: string, patch: Partial<Omit<Profile, "userId" | "createdAt">>): Promise<Profile>;

  listLinks(userId: string): Promise<MailboxLink[]>;
  linksForMailbox(systemId: string, mailbox: string): Promise<MailboxLink[]>;
  /** Every link of a system, for gateways that watch their mailboxes on start. */
  linksForSystem(systemId: string): Promise<MailboxLink[]>;
  /** Stores a new link; false when the user already has it. */
  addLink(link: MailboxLink): Promise<boolean>;
  /** False when there was no such link. */
  removeLink(userId: string, systemId: string, mailbox: string): Promise<boolean>;
  setLinkMwi(userId: string, systemId: string, mailbox: string, enabled: boolean): Promise<number>;

  getDmRoom(userId: string, botUserId: string): Promise<DmRoom | undefined>;
  getDmRoomById(roomId: string): Promise<DmRoom | undefined>;
  /** Inserts or replaces the DM of this user and bot. */
  saveDmRoom(room: DmRoom): Promise<void>;
  forgetDmRoom(roomId: string): Promise<void>;

  getMailboxState(systemId: string, mailbox: string): Promise<MailboxState | undefined>;
  saveMailboxState(state: MailboxState): Promise<void>;

  /** Records a handled Matrix event; false when it was already handled. */
  markEventHandled(eventId: string, at: number): Promise<boolean>;
  forgetHandledEventsBefore(at: number): Promise<number>;
}
