/**
 * One module per kind of voice mail system sits behind this interface (F15): it reports MWI
 * changes to the core and takes the few commands the core has for it. Adding a kind means
 * adding one module and one entry in the factory, nothing else.
 */
import type { Logger } from "matrix-appservice-bridge";
import type { MwiUpdate } from "../core/mwi.js";

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
  | { ok: false; reason: string };

/** What a gateway calls back into. */
export interface GatewayHost {
  /** Resolves once the update is stored: only then may the gateway acknowledge it upstream. */
  acceptUpdate(update: MwiUpdate): Promise<void>;
  log: Logger;
}

export interface VoicemailGateway {
  readonly systemId: string;
  /** Users may link mailboxes themselves: the kind can check they own them. */
  readonly selfServiceLinking: boolean;
  /** `!mwi off` reaches the voice mail system, not only the bridge's delivery. */
  readonly switchesMwiUpstream: boolean;

  start(): Promise<void>;
  stop(): Promise<void>;

  /** Checks a self-service link request; only called when selfServiceLinking is true. */
  proveLink(request: LinkRequest): Promise<LinkProof>;
  /**
   * Start or stop receiving MWI for a mailbox (a subscription, for kinds that need one), with
   * the credentials a link stored, if any.
   */
  watch(mailbox: string, credentials?: MailboxCredentials): Promise<void>;
  unwatch(mailbox: string): Promise<void>;
}
