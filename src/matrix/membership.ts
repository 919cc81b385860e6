/** Rooms and memberships as the homeserver sees them. */
import type { Intent } from "matrix-appservice-bridge";

/**
 * A user's membership of a room as the homeserver sees it now. Not found or forbidden means the
 * room is gone for the asking bot ("leave"); any other error is "unknown": the homeserver is
 * unwell, and what follows will fail or succeed on its own.
 */
export function membershipOf(intent: Intent, roomId: string, userId: string): Promise<string> {
  return intent.matrixClient
    .getRoomStateEventContent(roomId, "m.room.member", userId)
    .then((content: { membership?: string }) => content.membership ?? "unknown")
    .catch((err: { errcode?: string }) => (err.errcode === "M_NOT_FOUND" || err.errcode === "M_FORBIDDEN" ? "leave" : "unknown"));
}

/** Opens a direct chat from a bot to one user (invited, not yet joined); returns the room ID. */
export async function openDirectRoom(intent: Intent, userId: string, name: string, topic: string): Promise<string> {
  const { room_id: roomId } = await intent.createRoom({
    createAsClient: true,
    options: { is_direct: true, preset: "trusted_private_chat", visibility: "private", invite: [userId], name, topic },
  });
  return roomId;
}
