/**
 * A small in-memory homeserver for unit tests of the Matrix side: rooms with memberships and a
 * creator, account data per user, sent messages, and intents that act on it the way the
 * library's Intent does (only the methods the bridge uses). It can lose the answer to a
 * createRoom: the room is made and the invite sent, the caller gets a connection reset.
 */
import type { Bridge, Intent, Logger } from "matrix-appservice-bridge";
import { BotDirectory, RegisteredBots } from "../../src/matrix/bots.js";
import type { BridgeConfig } from "../../src/config/types.js";

interface FakeRoom {
  creator: string;
  members: Map<string, string>;
}

export interface SentMessage {
  roomId: string;
  sender: string;
  content: Record<string, unknown>;
}

const matrixError = (errcode: string, error: string, statusCode: number) => Object.assign(new Error(error), { errcode, body: { errcode, error }, statusCode });

export class FakeHomeserver {
  readonly rooms = new Map<string, FakeRoom>();
  readonly accountData = new Map<string, Map<string, unknown>>();
  readonly sent: SentMessage[] = [];
  /** Every request, as "user METHOD what". */
  readonly requests: string[] = [];
  /** The next createRoom makes the room, but its answer is lost. */
  loseNextCreateAnswer = false;
  /** Users the bot-sdk's own list says are registered (its join and leave register them otherwise). */
  readonly sdkRegistered = new Set<string>();
  /** Users that exist (a register for them answers M_USER_IN_USE). */
  readonly users = new Set<string>();
  private counter = 0;

  room(roomId: string): FakeRoom {
    const room = this.rooms.get(roomId);
    if (!room) throw matrixError("M_NOT_FOUND", "no such room", 404);
    return room;
  }

  /** Rooms in which `userId` is joined or invited, with `otherId`. */
  roomsWith(userId: string, otherId: string): string[] {
    return [...this.rooms.entries()]
      .filter(([, r]) => ["join", "invite"].includes(r.members.get(userId) ?? "") && ["join", "invite"].includes(r.members.get(otherId) ?? ""))
      .map(([id]) => id);
  }

  /** A user of the test does something in a room. */
  setMembership(roomId: string, userId: string, membership: string): void {
    this.room(roomId).members.set(userId, membership);
  }

  createRoomAs(creator: string, invite: string[]): string {
    const roomId = `!room${++this.counter}:localhost`;
    this.rooms.set(roomId, { creator, members: new Map([[creator, "join"], ...invite.map((u) => [u, "invite"] as [string, string])]) });
    return roomId;
  }

  private mustBeJoined(roomId: string, userId: string): FakeRoom {
    const room = this.room(roomId);
    if (room.members.get(userId) !== "join") throw matrixError("M_FORBIDDEN", `${userId} not in room`, 403);
    return room;
  }

  intent(userId: string): Intent {
    const hs = this;
    // Every request waits a turn of the event loop, as a round trip would.
    const log = (what: string) => {
      hs.requests.push(`${userId} ${what}`);
      return new Promise<void>((resolve) => setImmediate(resolve));
    };
    const data = () => {
      let map = hs.accountData.get(userId);
      if (!map) hs.accountData.set(userId, (map = new Map()));
      return map;
    };
    const matrixClient = {
      getUserId: async () => userId,
      async getRoomStateEventContent(roomId: string, type: string, stateKey: string) {
        await log(`GET state ${type} ${stateKey} ${roomId}`);
        const room = hs.mustBeJoined(roomId, userId);
        if (type !== "m.room.member") throw matrixError("M_NOT_FOUND", "no such state", 404);
        const membership = room.members.get(stateKey);
        if (!membership) throw matrixError("M_NOT_FOUND", "no such state", 404);
        return { membership };
      },
      async getRoomState(roomId: string) {
        await log(`GET state ${roomId}`);
        const room = hs.mustBeJoined(roomId, userId);
        return [
          { type: "m.room.create", state_key: "", sender: room.creator, content: {} },
          ...[...room.members].map(([member, membership]) => ({ type: "m.room.member", state_key: member, sender: member, content: { membership } })),
        ];
      },
      async getRoomMembers(roomId: string, _batch?: string, memberships?: string[]) {
        await log(`GET members ${roomId}`);
        const room = hs.mustBeJoined(roomId, userId);
        return [...room.members]
          .filter(([, m]) => !memberships || memberships.includes(m))
          .map(([member, membership]) => ({ membershipFor: member, membership }));
      },
      async getJoinedRoomMembers(roomId: string) {
        await log(`GET joined_members ${roomId}`);
        const room = hs.mustBeJoined(roomId, userId);
        return [...room.members].filter(([, m]) => m === "join").map(([member]) => member);
      },
      async getJoinedRooms() {
        await log("GET joined_rooms");
        return [...hs.rooms.entries()].filter(([, r]) => r.members.get(userId) === "join").map(([id]) => id);
      },
      async getAccountData(type: string) {
        await log(`GET account_data ${type}`);
        if (!data().has(type)) throw matrixError("M_NOT_FOUND", "Account data not found", 404);
        return structuredClone(data().get(type));
      },
      async setAccountData(type: string, content: unknown) {
        await log(`PUT account_data ${type}`);
        data().set(type, structuredClone(content));
        return {};
      },
      async redactEvent() {
        return "$redaction";
      },
      async doRequest(method: string, path: string, _qs: unknown, body: { username?: string }) {
        await log(`${method} ${path}`);
        if (path === "/_matrix/client/v3/register") {
          const id = `@${body.username}:localhost`;
          if (hs.users.has(id)) throw matrixError("M_USER_IN_USE", "User ID already taken.", 400);
          hs.users.add(id);
          return { user_id: id };
        }
        throw matrixError("M_UNRECOGNIZED", "not in the fake", 404);
      },
    };
    const intent = {
      userId,
      matrixClient,
      botSdkIntent: { storage: { addRegisteredUser: (id: string) => void hs.sdkRegistered.add(id) } },
      async createRoom(opts: { options: { invite?: string[] } }) {
        await log("POST createRoom");
        const roomId = hs.createRoomAs(userId, opts.options.invite ?? []);
        if (hs.loseNextCreateAnswer) {
          hs.loseNextCreateAnswer = false;
          throw Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
        }
        return { room_id: roomId };
      },
      async join(roomId: string) {
        await log(`POST join ${roomId}`);
        const room = hs.room(roomId);
        if (!["invite", "join"].includes(room.members.get(userId) ?? "")) throw matrixError("M_FORBIDDEN", "not invited", 403);
        room.members.set(userId, "join");
        return roomId;
      },
      async leave(roomId: string) {
        await log(`POST leave ${roomId}`);
        hs.room(roomId).members.set(userId, "leave");
        return {};
      },
      async kick(roomId: string, target: string) {
        await log(`POST kick ${target} ${roomId}`);
        hs.mustBeJoined(roomId, userId).members.set(target, "leave");
        return {};
      },
      async sendMessage(roomId: string, content: Record<string, unknown>) {
        await log(`PUT send ${roomId}`);
        hs.mustBeJoined(roomId, userId);
        hs.sent.push({ roomId, sender: userId, content });
        return { event_id: `$${++hs.counter}` };
      },
      async ensureRegistered(force?: boolean) {
        await log(`ensureRegistered${force ? " (forced)" : ""}`);
        return "registered=true";
      },
      async getProfileInfo() {
        return {};
      },
      async setDisplayName() {
        return {};
      },
      async setAvatarUrl() {
        return {};
      },
    };
    return intent as unknown as Intent;
  }

  /** What BotDirectory needs of the Bridge. */
  bridge(): Pick<Bridge, "getIntent" | "getBot"> {
    const intents = new Map<string, Intent>();
    return {
      getIntent: (userId?: string) => {
        const id = userId ?? "@voicemail:localhost";
        let intent = intents.get(id);
        if (!intent) intents.set(id, (intent = this.intent(id)));
        return intent;
      },
      getBot: () => ({ getClient: () => this.intent("@voicemail:localhost").matrixClient }) as never,
    } as Pick<Bridge, "getIntent" | "getBot">;
  }
}

export const CARRIER_BOT = "@vm_carrier:localhost";
export const MAIN_BOT = "@voicemail:localhost";

export function testConfig(systems: { id: string; name: string; botLocalpart: string }[] = [{ id: "carrier", name: "Carrier Voicemail", botLocalpart: "vm_carrier" }]): BridgeConfig {
  return {
    homeserver: { url: "http://127.0.0.1:1", domain: "localhost" },
    appservice: { botLocalpart: "voicemail", botDisplayName: "Voicemail" },
    permissions: { localhost: "user", "@admin:localhost": "admin" },
    systems: systems.map((s) => ({ ...s, kind: "webhook", webhook: { secret: "x".repeat(32) } })),
  } as unknown as BridgeConfig;
}

export function botDirectory(hs: FakeHomeserver, config = testConfig(), registered = new RegisteredBots()): BotDirectory {
  return new BotDirectory(config, hs.bridge(), registered);
}

/** A Logger that keeps its lines ("LEVEL message"). */
export function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (msg: unknown) => void lines.push(`${level} ${String(msg)}`);
  return { lines, debug: at("DEBUG"), info: at("INFO"), warn: at("WARN"), error: at("ERROR") } as unknown as Logger & { lines: string[] };
}
