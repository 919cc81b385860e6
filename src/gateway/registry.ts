/**
 * Every kind of voice mail system the bridge knows. A kind is one folder that exports one
 * KindDescriptor; adding a kind is its folder, one line in KINDS, and the docs. The config
 * schema, the config types and the gateway factory all read this list.
 */
import type { Static } from "@sinclair/typebox";
import type { GatewayHost, KindCheck, KindDescriptor, KindListener, KindSystem, VoicemailGateway } from "./gateway.js";
import { amiKind } from "./ami/kind.js";
import { imapKind } from "./imap/kind.js";
import { sipKind } from "./sip/kind.js";
import { webhookKind } from "./webhook/kind.js";

export const KINDS = [webhookKind, sipKind, amiKind, imapKind] as const;

export type RegisteredKind = (typeof KINDS)[number];

/** A configured system as its kind's factory sees it, for every registered kind. */
export type GatewaySystem = RegisteredKind extends infer D
  ? D extends KindDescriptor<infer K, infer S>
    ? KindSystem<K, Static<S>>
    : never
  : never;

/**
 * The descriptor of a system's kind. The config schema ties each system's settings to its kind,
 * so the descriptor found takes this system: the one cast of the registry.
 */
function kindOf(system: GatewaySystem): KindDescriptor<string> {
  const kind = KINDS.find((k) => k.kind === system.kind);
  if (!kind) throw new Error(`no kind of voice mail system is called "${String(system.kind)}"`);
  return kind as unknown as KindDescriptor<string>;
}

export function createGateway(system: GatewaySystem, host: GatewayHost): VoicemailGateway {
  return kindOf(system).create(system as never, host);
}

/** Problems and warnings of a configured system's settings, keyed below `<kind>.`. */
export function checkSystem(system: GatewaySystem): KindCheck {
  const settings = (system as unknown as Record<string, unknown>)[system.kind];
  const found = kindOf(system).check?.(settings as never) ?? { problems: [], warnings: [] };
  const key = (line: string) => `${system.kind}.${line}`;
  return { problems: found.problems.map(key), warnings: found.warnings.map(key) };
}

/** The ports a configured system opens. */
export function listenersOf(system: GatewaySystem): KindListener[] {
  const settings = (system as unknown as Record<string, unknown>)[system.kind];
  return kindOf(system).listeners?.(settings as never) ?? [];
}
