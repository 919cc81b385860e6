/**
 * Where a user's MWI goes. Each target is one room with one bot, and has its own outbox queue.
 * Keys are JSON arrays (store/targetKeys.ts), so that a `|` in a user ID cannot confuse them:
 *   ["sys", <user>, <system>]  the user's DM with the system's bot
 *   ["main", <user>]           the user's DM with the main bot: the aggregate of all systems
 *   ["extra", <target id>]     another account's DM or a room the user added with !target add
 */
import type { Intent } from "matrix-appservice-bridge";
import { errcodeOf, membershipOf } from "../matrix/membership.js";
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

interface PowerLevels {
  users?: Record<string, number>;
  users_default?: number;
  events?: Record<string, number>;
  events_default?: number;
  state_default?: number;
}

/**
 * The power a room target's owner needs, and has: to send messages there (`events` of
 * m.room.message, else `events_default`) and to change the room (`state_default`), whichever is
 * higher. A room without a power-levels event lets everyone do both (Matrix spec). A failed
 * look-up throws: the caller retries (delivery) or says so (add).
 */
export async function ownerPower(intent: Intent, roomId: string, ownerId: string): Promise<{ level: number; required: number }> {
  let levels: PowerLevels;
  try {
    levels = (await intent.matrixClient.getRoomStateEventContent(roomId, "m.room.power_levels", "")) as PowerLevels;
  } catch (err) {
    if (errcodeOf(err) !== "M_NOT_FOUND") throw err;
    return { level: 0, required: 0 };
  }
  const num = (v: unknown, fallback: number) => (typeof v === "number" && Number.isFinite(v) ? v : fallback);
  // Own property only: a user ID from outside is never looked up through the prototype.
  const users = levels.users ?? {};
  const level = num(Object.hasOwn(users, ownerId) ? users[ownerId] : undefined, num(levels.users_default, 0));
  const events = levels.events ?? {};
  const send = num(Object.hasOwn(events, "m.room.message") ? events["m.room.message"] : undefined, num(levels.events_default, 0));
  return { level, required: Math.max(send, num(levels.state_default, 50)) };
}

/** Why the owner of a room target may no longer have the bridge post there; undefined: they may. */
export async function ownerCannotPost(intent: Intent, roomId: string, ownerId: string): Promise<string | undefined> {
  const membership = await membershipOf(intent, roomId, ownerId);
  if (membership === "unknown") throw new Error(`the membership of ${ownerId} in ${roomId} could not be read`);
  if (membership !== "join") return "you are no longer in the room";
  const { level, required } = await ownerPower(intent, roomId, ownerId);
  return level < required ? `your power level there (${level}) is below the ${required} needed to send messages and change the room` : undefined;
}
