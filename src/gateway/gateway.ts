/**
 * One folder per kind of voice mail system sits behind this interface (F15): it reports MWI
 * changes to the core and offers what it can do as optional capabilities, which the core looks
 * for (`gateway.linking`, `gateway.watching`, ...) instead of asking what class it is. A kind
 * exports one KindDescriptor; registry.ts lists them.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Static, TSchema } from "@sinclair/typebox";
import type { Logger } from "matrix-appservice-bridge";
import type { MwiUpdate } from "../core/mwi.js";
import type { VoicemailMetrics } from "../util/metrics.js";

export interface LinkRequest {
  userId: string;
  mailbox: string;
  /** Only for kinds that prove ownership with the mailbox's own credentials. */
  password?: string;
  authUser?: string;
}

/** What a kind needs to watch a mailbox on the user's behalf; stored encrypted. */
export interface MailboxCredentials {
  username: string;
  password: string;
}

export type LinkProof =
  | { ok: true; current?: MwiUpdate; credentials?: MailboxCredentials }
  /** `transient`: no verdict on the credentials (the server was not reached): not counted as a failed try. */
  | { ok: false; reason: string; transient?: boolean };

/** What a gateway calls back into. */
export interface GatewayHost {
  /** Resolves once the update is stored: only then may the gateway acknowledge it upstream. */
  acceptUpdate(update: MwiUpdate): Promise<void>;
  log: Logger;
  metrics?: VoicemailMetrics;
}

/** Users link their own mailboxes: the kind can check that a mailbox is theirs. */
export interface LinkingCapability {
  prove(request: LinkRequest): Promise<LinkProof>;
}

/** MWI comes only for mailboxes the bridge asks for (a subscription, for SIP). */
export interface WatchingCapability {
  /** With the credentials a link stored, if any; resolves once the first report is in (or given up). */
  watch(mailbox: string, credentials?: MailboxCredentials): Promise<void>;
  unwatch(mailbox: string): Promise<void>;
  /** The system has credentials of its own: a mailbox linked without a password (by an admin) is watched too. */
  readonly systemCredentials?: boolean;
}

/** How a verification call went: `transient` when the system was not reached (not counted as a try). */
export type VerificationCallResult = { ok: true } | { ok: false; reason: string; transient?: boolean };

/**
 * Ring-to-verify: users link a mailbox by proving they can answer its phone. The system rings the
 * mailbox's extension showing a one-time code as caller name and saying it when answered; codes,
 * their expiry and the limits on tries are the core's (the kind only makes the call).
 */
export interface CallVerificationCapability {
  /** Starts the call; resolves once the system took it (not once it is answered). */
  ring(mailbox: string, code: string): Promise<VerificationCallResult>;
  /** Whether the system can ring this mailbox at all (its name fits the system). */
  accepts(mailbox: string): boolean;
}

/** `!mwi off` reaches the voice mail system, not only the bridge's delivery. */
export interface UpstreamMwiCapability {
  /** Resolves once the system has reported the mailbox again (or gave up). */
  switchOn(mailbox: string, credentials?: MailboxCredentials): Promise<void>;
  switchOff(mailbox: string): Promise<void>;
}

/** Where an HTTP listener of a kind's own is: systems naming the same address and port share one. */
interface HttpListen {
  port: number;
  /** The appservice's bindAddress when unset. */
  bindAddress?: string;
}

/** The system talks to the bridge over HTTP. */
export interface HttpCapability {
  /** A listener of its own; on the appservice listener when absent. */
  readonly listen?: HttpListen;
  /** The one path it answers, e.g. `/webhook/carrier` (a trailing slash and a query allowed). */
  readonly path: string;
  /** Answers the request, always; never rejects. */
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

export interface VoicemailGateway {
  readonly systemId: string;
  start(): Promise<void>;
  stop(): Promise<void>;

  /**
   * Its connections, subscriptions or sessions by state (e.g. `{ connected: 1 }`, `{ active: 40,
   * pending: 2 }`): read on each metrics scrape, so it only counts what it holds in memory.
   */
  status?(): Record<string, number>;

  readonly linking?: LinkingCapability;
  readonly callVerification?: CallVerificationCapability;
  readonly watching?: WatchingCapability;
  readonly upstreamMwi?: UpstreamMwiCapability;
  readonly http?: HttpCapability;
  /** Planned for the kinds that come next (AMI, e-mail); no kind offers it yet: the audio of a message. */
  readonly fetchRecording?: { fetch(mailbox: string, messageId: string): Promise<{ contentType: string; data: Uint8Array }> };
  /** The messages of a mailbox: listed, marked heard and removed at the system itself. */
  readonly messages?: MessagesCapability;
}

/** One message waiting in a mailbox, as `!voicemails` shows it. */
export interface VoicemailMessage {
  /** The kind's own handle (AMI msg_id, IMAP UID), opaque to the core; never shown to users. */
  readonly id: string;
  /** Not yet heard (AMI INBOX or Urgent, a mail without `\Seen`). */
  readonly fresh: boolean;
  readonly urgent: boolean;
  readonly callerNumber?: string;
  readonly callerName?: string;
  /** When it was left, ms since the epoch. */
  readonly time?: number;
  /** Seconds. */
  readonly duration?: number;
}

/**
 * The system's own messages: `!voicemails`, `!heard`, `!delete`. Each call acts on exactly the
 * messages named and changes nothing else; the new counts come back as ordinary MWI updates.
 * Rejects with an Error whose message may be shown to the mailbox's user (no secret in it).
 */
export interface MessagesCapability {
  /** Every message of the mailbox, newest first. */
  list(mailbox: string, credentials?: MailboxCredentials): Promise<VoicemailMessage[]>;
  /** Marks these messages heard (AMI: moves them to Old; IMAP: `\Seen`). */
  markHeard(mailbox: string, ids: readonly string[], credentials?: MailboxCredentials): Promise<void>;
  /** Removes this one message for good. */
  remove(mailbox: string, id: string, credentials?: MailboxCredentials): Promise<void>;
}

/** What the factory of kind K is given: the system's id and its settings block under the key K. */
export type KindSystem<K extends string, S> = { id: string; kind: K } & { [P in K]: S };

/** A port the kind's systems open, for the config's check that no two listeners collide. */
export interface KindListener {
  /** The key below the system that sets it, for the error message: `sip.local`, `webhook.port`. */
  key: string;
  protocols: readonly ("tcp" | "udp")[];
  /** The appservice's bindAddress when unset. */
  bindAddress?: string;
  /** 0: a free port chosen at start, which collides with nothing. */
  port: number;
  /** Systems of this kind with the same address and port share one listener. */
  shared?: boolean;
}

/** What validation finds in a system's settings beyond the schema; keys relative to the system. */
export interface KindCheck {
  /** What start would refuse. */
  problems: string[];
  /** What works but is dangerous: printed by validate-config, logged at start. */
  warnings: string[];
}

/** Everything the core knows of one kind of voice mail system. */
export interface KindDescriptor<K extends string = string, S extends TSchema = TSchema> {
  /** The `kind:` of a system in config.yaml, and the key of its settings block. */
  readonly kind: K;
  /** The settings block's schema (TypeBox); validation fills its defaults in. */
  readonly settings: S;
  /** Checks start would make, run by validation with the same code (e.g. address parsers). */
  check?(settings: Static<S>): KindCheck;
  /** The ports a system of this kind opens, if any. */
  listeners?(settings: Static<S>): KindListener[];
  /** The gateway of one configured system. */
  create(system: KindSystem<K, Static<S>>, host: GatewayHost): VoicemailGateway;
}

/** Declares a kind, keeping its name and settings type precise. */
export function defineKind<const K extends string, S extends TSchema>(descriptor: KindDescriptor<K, S>): KindDescriptor<K, S> {
  return descriptor;
}
