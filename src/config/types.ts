/** The bridge's configuration, as read from config.yaml after schema validation. */

import type { PermissionLevel } from "../core/permissions.js";

export type { PermissionLevel };

export interface HomeserverConfig {
  /** Client-server API base URL the bridge talks to. */
  url: string;
  /** The server name: the part after the colon in user IDs. */
  domain: string;
}

export interface AppserviceConfig {
  bindAddress: string;
  port: number;
  /** How the homeserver reaches this bridge; written into the registration. */
  url: string;
  /** The main bot: takes commands for every system. */
  botLocalpart: string;
  botDisplayName?: string;
  botAvatarUrl?: string;
}

export interface DatabaseConfig {
  /** `nedb:<directory>` (embedded, default). */
  uri: string;
}

export interface WebhookSystemSettings {
  /** HMAC-SHA256 key the voice mail system signs its requests with. */
  secret: string;
  /** Listen on this port instead of the appservice listener. */
  port?: number;
  bindAddress?: string;
  /** Requests with a larger body are refused with 413. */
  maxBodyBytes?: number;
}

interface SystemBase {
  id: string;
  name: string;
  botLocalpart: string;
  avatarUrl?: string;
  footer?: string;
}

export interface WebhookSystemConfig extends SystemBase {
  kind: "webhook";
  webhook: WebhookSystemSettings;
}

export interface SipSystemSettings {
  /** The voice mail server (notifier) the bridge subscribes to. */
  server: {
    host: string;
    port: number;
    transport: "udp" | "tcp" | "tls";
    /** For tls: trust this CA instead of the system's, and the name to check. */
    caFile?: string;
    rejectUnauthorized?: boolean;
  };
  /** Host part of mailbox URIs (sip:1001@domain); the server's host when unset. */
  domain?: string;
  /** The bridge's own SIP address, where NOTIFYs arrive. */
  local: { bindAddress: string; port: number; publicAddress?: string };
  /** Subscription expiry to ask for, in seconds; the server may grant less. */
  expires: number;
  /** Sources (IP addresses or CIDR ranges) whose out-of-dialog MWI NOTIFYs are accepted. */
  unsolicitedSources: string[];
  /** Asterisk's voicemail spool, read for the caller and called number of the newest message. */
  asteriskSpool?: { dir: string; context: string };
}

export interface SipSystemConfig extends SystemBase {
  kind: "sip";
  sip: SipSystemSettings;
}

export type SystemConfig = WebhookSystemConfig | SipSystemConfig;
export type SystemKind = SystemConfig["kind"];

export interface LoggingConfig {
  level: "debug" | "info" | "warn" | "error";
  /** Also log to this file (rotated daily by the bridge library). */
  file?: string;
}

export interface MetricsConfig {
  enabled: boolean;
}

export interface EncryptionConfig {
  /** Base64 of 32 random bytes; wins over keyFile. */
  key?: string;
  /** Created with a fresh key (mode 0600) when missing. */
  keyFile: string;
}

export interface BridgeConfig {
  homeserver: HomeserverConfig;
  appservice: AppserviceConfig;
  database: DatabaseConfig;
  permissions: Record<string, PermissionLevel>;
  systems: SystemConfig[];
  /** Time zone for users who set none (IANA name). */
  defaultTimezone: string;
  /** Appended to every notification of every system, after the system's own footer. */
  footer?: string;
  logging: LoggingConfig;
  metrics: MetricsConfig;
  /** How mailbox credentials are sealed in the store. */
  encryption: EncryptionConfig;
}
