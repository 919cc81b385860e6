/** The bridge's configuration as read from config.yaml after validation: derived from schema.ts. */
import type { Static } from "@sinclair/typebox";
import type { PermissionLevel } from "../core/permissions.js";
import type { configSchema } from "./schema.js";

export type { PermissionLevel };

export type BridgeConfig = Static<typeof configSchema>;
export type SystemConfig = BridgeConfig["systems"][number];
export type WebhookSystemConfig = Extract<SystemConfig, { kind: "webhook" }>;
export type SipSystemConfig = Extract<SystemConfig, { kind: "sip" }>;
