/**
 * A bot's account data: `m.direct` (which rooms are its direct chats, as clients read it) and
 * the bridge's own note of DMs whose creation is in doubt. Every change is a read-modify-write
 * of one JSON object, so changes run one at a time per bot and type. The bridge is the only
 * writer of its bots' account data: what it read or wrote once is kept, not asked for again.
 */
import type { Intent } from "matrix-appservice-bridge";
import { KeyedQueue } from "../util/keyedQueue.js";
import { errcodeOf } from "./membership.js";

/** Users (ID -> time in ms) a bot asked the homeserver to open a DM with, answer not yet seen. */
export const PENDING_DMS_EVENT_TYPE = "org.voicemail.pending_dms";

export type DirectRooms = Record<string, string[]>;

export class AccountData {
  private readonly queue = new KeyedQueue();
  private readonly known = new Map<string, object | undefined>();

  /** The content, or undefined when there is none; other errors are thrown. */
  async read<T extends object>(intent: Intent, type: string): Promise<T | undefined> {
    const key = `${intent.userId}\n${type}`;
    if (this.known.has(key)) return this.known.get(key) as T | undefined;
    let content: T | undefined;
    try {
      const answer = (await intent.matrixClient.getAccountData(type)) as T | null;
      content = answer && typeof answer === "object" ? answer : undefined;
    } catch (err) {
      if (errcodeOf(err) !== "M_NOT_FOUND") throw err;
    }
    this.known.set(key, content);
    return content;
  }

  /** Applies `change` to the current content; `change` returns undefined when nothing changes. */
  update<T extends object>(intent: Intent, type: string, change: (current: T) => T | undefined): Promise<void> {
    const key = `${intent.userId}\n${type}`;
    return this.queue.run(key, async () => {
      const current = (await this.read<T>(intent, type)) ?? ({} as T);
      const next = change(current);
      if (!next) return;
      // Not known after a failed write: the homeserver may or may not have taken it.
      this.known.delete(key);
      await intent.matrixClient.setAccountData(type, next);
      this.known.set(key, next);
    });
  }
}

/** `m.direct` with `roomId` as the one direct chat with `userId`. */
export function withDirectRoom(direct: DirectRooms, userId: string, roomId: string): DirectRooms | undefined {
  const rooms = direct[userId];
  if (Array.isArray(rooms) && rooms.length === 1 && rooms[0] === roomId) return undefined;
  return { ...direct, [userId]: [roomId] };
}

/** `m.direct` without `roomId`. */
export function withoutDirectRoom(direct: DirectRooms, userId: string, roomId: string): DirectRooms | undefined {
  const rooms = direct[userId];
  if (!Array.isArray(rooms) || !rooms.includes(roomId)) return undefined;
  const next = { ...direct };
  const rest = rooms.filter((r) => r !== roomId);
  if (rest.length) next[userId] = rest;
  else delete next[userId];
  return next;
}
