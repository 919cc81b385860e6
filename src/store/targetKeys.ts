/**
 * How an outbox target key is written: a JSON array of its parts (`["sys","@a|b:x","carrier"]`),
 * unambiguous whatever the parts contain. Keys written before schema version 2 were the parts
 * joined with `|`, which user IDs may contain; they are still read (and migrated on open).
 */

export const encodeTargetKey = (parts: string[]): string => JSON.stringify(parts);

/** The parts of a key in either form; undefined when it is neither. */
export function targetKeyParts(key: string): string[] | undefined {
  if (key.startsWith("[")) {
    try {
      const parts: unknown = JSON.parse(key);
      return Array.isArray(parts) && parts.every((p) => typeof p === "string") ? parts : undefined;
    } catch {
      return undefined;
    }
  }
  return legacyTargetKeyParts(key);
}

/**
 * A version 1 key: `sys|<user>|<system>`, `main|<user>`, `extra|<target id>`. System IDs and
 * target IDs never contain `|` (the config schema and UUIDs), so a `|` in between belongs to
 * the user ID.
 */
function legacyTargetKeyParts(key: string): string[] | undefined {
  const first = key.indexOf("|");
  if (first < 0) return undefined;
  const kind = key.slice(0, first);
  const rest = key.slice(first + 1);
  if (kind === "sys") {
    const last = rest.lastIndexOf("|");
    return last > 0 && last < rest.length - 1 ? [kind, rest.slice(0, last), rest.slice(last + 1)] : undefined;
  }
  if ((kind === "main" || kind === "extra") && rest) return [kind, rest];
  return undefined;
}

/** The version 2 form of a key read from an older store (unchanged if already new or unknown). */
export function upgradeTargetKey(key: string): string {
  if (key.startsWith("[")) return key;
  const parts = legacyTargetKeyParts(key);
  return parts ? encodeTargetKey(parts) : key;
}
