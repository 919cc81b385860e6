/** Rooms and memberships as the homeserver sees them. */
import type { Intent } from "matrix-appservice-bridge";

interface ErrorLike {
  errcode?: string;
  error?: string;
  body?: { errcode?: string; error?: string };
  code?: string;
  statusCode?: number;
  message?: string;
}

/** The Matrix error code of a failed request, wherever the library put it. */
export function errcodeOf(err: unknown): string | undefined {
  const e = (err ?? {}) as ErrorLike;
  return e.errcode ?? e.body?.errcode;
}

/** A failed homeserver request in one line ("M_FORBIDDEN: not in room", "ECONNRESET socket hang up"). */
export function describeError(err: unknown): string {
  const e = (err ?? {}) as ErrorLike;
  const errcode = errcodeOf(err);
  if (errcode) return `${errcode}: ${e.body?.error ?? e.error ?? e.message ?? ""}`.trim();
  const parts = [e.code ?? (e.statusCode !== undefined ? `HTTP ${e.statusCode}` : undefined), e.message].filter(Boolean);
  return parts.length ? parts.join(" ") : String(err);
}

/**
 * A user's membership of a room as the homeserver sees it now. Not found or forbidden means the
 * room is gone for the asking bot ("leave"); any other error is "unknown": the homeserver is
 * unwell, and what follows will fail or succeed on its own.
 */
export function membershipOf(intent: Intent, roomId: string, userId: string): Promise<string> {
  return intent.matrixClient
    .getRoomStateEventContent(roomId, "m.room.member", userId)
    .then((content: { membership?: string }) => content.membership ?? "unknown")
    .catch((err: unknown) => (errcodeOf(err) === "M_NOT_FOUND" || errcodeOf(err) === "M_FORBIDDEN" ? "leave" : "unknown"));
}

/** Who is in a room (joined or invited) and who made it, as one of the room's members sees it. */
export interface RoomMembers {
  creator?: string;
  /** User ID -> "join" or "invite". */
  members: Map<string, string>;
}

/** The room as `intent` sees it; undefined when the bot is not in it (or it is gone). */
export async function roomMembers(intent: Intent, roomId: string): Promise<RoomMembers | undefined> {
  let state: { type: string; state_key?: string; sender: string; content?: { membership?: string } }[];
  try {
    state = await intent.matrixClient.getRoomState(roomId);
  } catch (err) {
    if (errcodeOf(err) === "M_FORBIDDEN" || errcodeOf(err) === "M_NOT_FOUND") return undefined;
    throw err;
  }
  const members = new Map<string, string>();
  let creator: string | undefined;
  for (const event of state) {
    if (event.type === "m.room.create") creator = event.sender;
    const membership = event.content?.membership;
    if (event.type === "m.room.member" && event.state_key && (membership === "join" || membership === "invite")) members.set(event.state_key, membership);
  }
  return { ...(creator ? { creator } : {}), members };
}

/**
 * The user's membership if the room is a 1:1 room of this bot with them: the bot joined, the
 * user joined or invited, nobody else.
 */
export function oneToOneMembership(room: RoomMembers, botUserId: string, userId: string): "join" | "invite" | undefined {
  if (room.members.size !== 2 || room.members.get(botUserId) !== "join") return undefined;
  const membership = room.members.get(userId);
  return membership === "join" || membership === "invite" ? membership : undefined;
}

/** A state event for a room's `initial_state`. */
export interface StateEventInit {
  type: string;
  state_key: string;
  content: Record<string, unknown>;
}

/** Opens a direct chat from a bot to one user (invited, not yet joined), with these state events; returns the room ID. */
export async function openDirectRoom(intent: Intent, userId: string, name: string, topic: string, initialState: StateEventInit[] = []): Promise<string> {
  const { room_id: roomId } = await intent.createRoom({
    createAsClient: true,
    options: { is_direct: true, preset: "trusted_private_chat", visibility: "private", invite: [userId], name, topic, initial_state: initialState },
  });
  return roomId;
}
