// matrix-js-sdk helpers for tests acting as the human user (no encryption).
import {
  createClient,
  ClientEvent,
  RoomEvent,
  RoomMemberEvent,
  RoomStateEvent,
  SyncState,
  type MatrixClient,
  type MatrixEvent,
} from "matrix-js-sdk";
import { logger as sdkGlobalLogger, type Logger } from "matrix-js-sdk/lib/logger.js";

type Level = "trace" | "debug" | "info" | "warn" | "error" | "silent";
const RANK: Record<Level, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, silent: 5 };
const envLevel = (process.env.MATRIX_SDK_LOG_LEVEL ?? "error").toLowerCase();
const LEVEL: Level = envLevel in RANK ? (envLevel as Level) : "error";

function makeLogger(prefix: string): Logger {
  const at =
    (level: Level, sink: (...m: unknown[]) => void) =>
    (...msg: unknown[]): void => {
      if (RANK[level] >= RANK[LEVEL]) sink(`[matrix-js-sdk${prefix}]`, ...msg);
    };
  return {
    trace: at("trace", console.debug),
    debug: at("debug", console.debug),
    info: at("info", console.info),
    warn: at("warn", console.warn),
    error: at("error", console.error),
    getChild: (ns: string) => makeLogger(prefix + ns),
  };
}

// The deprecated global logger (loglevel based) is still used by parts of the SDK; its child
// loggers copy the parent's methodFactory, so filtering there quiets the children created later.
{
  type LogLevelLike = {
    methodFactory: (method: string, level: number, name: string | symbol) => (...m: unknown[]) => void;
    setLevel(level: Level, persist?: boolean): void;
    rebuild?: () => void;
  };
  const ll = sdkGlobalLogger as unknown as LogLevelLike;
  const original = ll.methodFactory;
  ll.methodFactory = (method, level, name) => {
    const real = original(method, level, name);
    const rank = RANK[(method === "log" ? "debug" : method) as Level] ?? RANK.debug;
    return rank >= RANK[LEVEL] ? real : () => {};
  };
  ll.setLevel(LEVEL, false);
  ll.rebuild?.();
}

// matrix-js-sdk's http-api timeoutSignal() arms a plain setTimeout for every request (110 s for
// /sync) and never clears it, so a finished test process lingers ~2 minutes after stopClient().
// Unref those timers: they only abort a request, and a live request holds the loop by its socket.
{
  const PATCHED = Symbol.for("matrix-appservice-voicemail.testbed.sdkTimerUnref");
  const g = globalThis as unknown as Record<symbol, unknown>;
  if (!g[PATCHED]) {
    g[PATCHED] = true;
    const original = globalThis.setTimeout;
    const patched = function (this: unknown, ...args: unknown[]) {
      const timer = (original as (...a: unknown[]) => NodeJS.Timeout).apply(this, args);
      if (typeof args[1] === "number" && args[1] >= 10_000 && new Error().stack?.includes("matrix-js-sdk/lib/http-api/")) {
        timer.unref();
      }
      return timer;
    };
    for (const key of Reflect.ownKeys(original)) {
      if (key !== "length" && key !== "name" && key !== "prototype") {
        Object.defineProperty(patched, key, Object.getOwnPropertyDescriptor(original, key)!);
      }
    }
    globalThis.setTimeout = patched as unknown as typeof setTimeout;
  }
}

/** Creates a client for an existing user/device and waits for its first sync. */
export async function loginClient(
  url: string,
  userId: string,
  accessToken: string,
  deviceId: string,
  timeoutMs = 30_000,
): Promise<MatrixClient> {
  const client = createClient({ baseUrl: url, userId, accessToken, deviceId, logger: makeLogger(`:${userId}`) });
  const prepared = waitFor<true>(
    timeoutMs,
    `first sync of ${userId}`,
    (resolve) => {
      const onSync = (state: SyncState): void => {
        // On errors the SDK keeps retrying; we just wait (up to timeoutMs).
        if (state === SyncState.Prepared || state === SyncState.Syncing) resolve(true);
      };
      client.on(ClientEvent.Sync, onSync);
      return () => client.off(ClientEvent.Sync, onSync);
    },
    () => client.isInitialSyncComplete(),
  );
  await client.startClient({ initialSyncLimit: 50 });
  try {
    await prepared;
  } catch (e) {
    client.stopClient();
    throw e;
  }
  return client;
}

/**
 * Generic wait: `check` is tried first (already satisfied?), then `subscribe` installs listeners
 * that call resolve; the returned function removes them.
 */
function waitFor<T>(
  timeoutMs: number,
  what: string,
  subscribe: (resolve: (v: T) => void, reject: (e: Error) => void) => () => void,
  check: () => T | undefined | false,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    let unsubscribe: () => void = () => {};
    const finish = (fn: () => void): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      unsubscribe();
      fn();
    };
    const timer = setTimeout(() => finish(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`))), timeoutMs);
    unsubscribe = subscribe(
      (v) => finish(() => resolve(v)),
      (e) => finish(() => reject(e)),
    );
    const already = check();
    if (already !== undefined && already !== false) finish(() => resolve(already as T));
  });
}

/** Resolves with the id of a room the client is invited to (by fromUserId, if given). */
export function waitForInvite(client: MatrixClient, fromUserId: string | undefined, timeoutMs = 30_000): Promise<string> {
  const me = client.getUserId();
  const inviteFrom = (roomId: string): boolean => {
    const room = client.getRoom(roomId);
    if (!room || room.getMyMembership() !== "invite") return false;
    if (!fromUserId) return true;
    const ev = room.currentState.getStateEvents("m.room.member", me ?? "");
    return ev?.getSender() === fromUserId || room.getDMInviter() === fromUserId;
  };
  return waitFor<string>(
    timeoutMs,
    `an invite${fromUserId ? ` from ${fromUserId}` : ""} for ${me}`,
    (resolve) => {
      const onMembership = (event: MatrixEvent, member: { userId: string; membership?: string; roomId: string }): void => {
        if (member.userId !== me || member.membership !== "invite") return;
        if (fromUserId && event.getSender() !== fromUserId) return;
        resolve(member.roomId);
      };
      client.on(RoomMemberEvent.Membership, onMembership);
      return () => client.off(RoomMemberEvent.Membership, onMembership);
    },
    () => client.getRooms().find((r) => inviteFrom(r.roomId))?.roomId,
  );
}

/** Resolves with a (sent, not local-echo) timeline event of the room matching predicate, including ones already there. */
export function waitForEvent(
  client: MatrixClient,
  roomId: string,
  predicate: (event: MatrixEvent) => boolean,
  timeoutMs = 30_000,
): Promise<MatrixEvent> {
  const ok = (ev: MatrixEvent): boolean => ev.getRoomId() === roomId && ev.status === null && predicate(ev);
  return waitFor<MatrixEvent>(
    timeoutMs,
    `a matching event in ${roomId}`,
    (resolve) => {
      const onTimeline = (ev: MatrixEvent, _room: unknown, toStart: boolean | undefined, removed: boolean): void => {
        if (!toStart && !removed && ok(ev)) resolve(ev);
      };
      const onEcho = (ev: MatrixEvent): void => {
        if (ok(ev)) resolve(ev);
      };
      client.on(RoomEvent.Timeline, onTimeline);
      client.on(RoomEvent.LocalEchoUpdated, onEcho);
      return () => {
        client.off(RoomEvent.Timeline, onTimeline);
        client.off(RoomEvent.LocalEchoUpdated, onEcho);
      };
    },
    () => client.getRoom(roomId)?.getLiveTimeline().getEvents().find(ok),
  );
}

/** Resolves with the current state event (type, stateKey) of the room once predicate accepts it. */
export function waitForState(
  client: MatrixClient,
  roomId: string,
  type: string,
  stateKey: string,
  predicate: (event: MatrixEvent) => boolean = () => true,
  timeoutMs = 30_000,
): Promise<MatrixEvent> {
  const ok = (ev: MatrixEvent | null | undefined): ev is MatrixEvent =>
    !!ev && ev.getRoomId() === roomId && ev.getType() === type && ev.getStateKey() === stateKey && predicate(ev);
  return waitFor<MatrixEvent>(
    timeoutMs,
    `state ${type}/${stateKey} in ${roomId}`,
    (resolve) => {
      const onState = (ev: MatrixEvent): void => {
        if (ok(ev)) resolve(ev);
      };
      client.on(RoomStateEvent.Events, onState);
      return () => client.off(RoomStateEvent.Events, onState);
    },
    () => {
      const ev = client.getRoom(roomId)?.currentState.getStateEvents(type, stateKey);
      return ok(ev) ? ev : undefined;
    },
  );
}

/** Sends an m.text message; resolves with its event id. */
export async function sendText(client: MatrixClient, roomId: string, body: string): Promise<string> {
  const res = await client.sendTextMessage(roomId, body);
  return res.event_id;
}
