/**
 * The permissions map of the config: keys are a user ID, a server name or "*"; the most
 * specific entry wins (user over server over "*"), as in other matrix-org bridges.
 */
/** What a Matrix user may do with the bridge. */
export type PermissionLevel = "none" | "user" | "admin";

const rank: Record<PermissionLevel, number> = { none: 0, user: 1, admin: 2 };

export function permissionLevel(permissions: Record<string, PermissionLevel>, userId: string): PermissionLevel {
  // Own keys only: "@a:constructor" must not find Object.prototype.constructor.
  const entry = (key: string) => (Object.hasOwn(permissions, key) ? permissions[key] : undefined);
  const server = userId.slice(userId.indexOf(":") + 1);
  return entry(userId) ?? entry(server) ?? entry("*") ?? "none";
}

export function atLeast(level: PermissionLevel, required: PermissionLevel): boolean {
  return rank[level] >= rank[required];
}
