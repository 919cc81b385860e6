/**
 * Where a user's MWI goes. Each target is one room with one bot, and has its own outbox queue.
 * Keys are JSON arrays (store/targetKeys.ts), so that a `|` in a user ID cannot confuse them:
 *   ["sys", <user>, <system>]  the user's DM with the system's bot
 *   ["main", <user>]           the user's DM with the main bot: the aggregate of all systems
 *   ["extra", <target id>]     another account's DM or a room the user added with !target add
 */
import { encodeTargetKey, targetKeyParts } from "../store/targetKeys.js";

export type TargetKey = string;

export type ParsedTarget =
  | { kind: "sys"; userId: string; systemId: string }
  | { kind: "main"; userId: string }
  | { kind: "extra"; targetId: string };

export const systemTarget = (userId: string, systemId: string): TargetKey => encodeTargetKey(["sys", userId, systemId]);
export const mainTarget = (userId: string): TargetKey => encodeTargetKey(["main", userId]);
export const extraTarget = (targetId: string): TargetKey => encodeTargetKey(["extra", targetId]);

/** Reads keys of both forms: the ones stored before schema version 2 used `|` between parts. */
export function parseTarget(key: TargetKey): ParsedTarget | undefined {
  const [kind, a, b, ...more] = targetKeyParts(key) ?? [];
  if (more.length) return undefined;
  if (kind === "sys" && a && b) return { kind, userId: a, systemId: b };
  if (kind === "main" && a && b === undefined) return { kind, userId: a };
  if (kind === "extra" && a && b === undefined) return { kind, targetId: a };
  return undefined;
}
