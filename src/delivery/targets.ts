/**
 * Where a user's MWI goes. Each target is one room with one bot, and has its own outbox queue:
 *   sys|<user>|<system>  the user's DM with the system's bot
 *   main|<user>          the user's DM with the main bot: the aggregate of all systems
 *   extra|<target id>    another account's DM or a room the user added with !target add
 */
export type TargetKey = string;

export type ParsedTarget =
  | { kind: "sys"; userId: string; systemId: string }
  | { kind: "main"; userId: string }
  | { kind: "extra"; targetId: string };

export const systemTarget = (userId: string, systemId: string): TargetKey => `sys|${userId}|${systemId}`;
export const mainTarget = (userId: string): TargetKey => `main|${userId}`;
export const extraTarget = (targetId: string): TargetKey => `extra|${targetId}`;

export function parseTarget(key: TargetKey): ParsedTarget | undefined {
  const [kind, a, b] = key.split("|");
  if (kind === "sys" && a && b) return { kind, userId: a, systemId: b };
  if (kind === "main" && a) return { kind, userId: a };
  if (kind === "extra" && a) return { kind, targetId: a };
  return undefined;
}
