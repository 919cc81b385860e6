/**
 * A homeserver in memory, and the services of the bridge wired to it over a memory store, for
 * unit tests of delivery, mailboxes and targets that run in milliseconds without root.
 *
 * It keeps rooms, members, timelines and state, answers the requests the bridge makes, and can
 * inject the faults that matter: a request refused before it reaches the homeserver, or one
 * that is stored but whose answer is lost. Like Synapse, it deduplicates transaction IDs in
 * memory only: `restart()` forgets them.
 */
import type { Bridge, Intent, Logger } from "matrix-appservice-bridge";
import type { BridgeConfig } from "../../src/config/types.js";
import { DeliveryService, type DeliveryTiming } from "../../src/delivery/deliveryService.js";
import { PresenceTracker } from "../../src/delivery/presence.js";
import { UserViews } from "../../src/delivery/userViews.js";
import { MailboxService } from "../../src/app/mailboxService.js";
import { TargetService } from "../../src/app/targetService.js";
import { BotDirectory } from "../../src/matrix/bots.js";
import { DmRooms } from "../../src/matrix/dmRooms.js";
import type { VoicemailGateway } from "../../src/gateway/gateway.js";
import { MemoryStore } from "../../src/store/memoryStore.js";
import { SecretBox } from "../../src/store/secretBox.js";
import type { VoicemailMetrics } from "../../src/util/metrics.js";

export interface FakeEvent {
  event_id: string;
  room_id: string;
  sender: string;
  type: string;
  state_key?: string;
  content: Record<string, unknown>;
  txnId?: string;
}

interface FakeRoom {
  id: string;
  members: Map<string, string>;
  timeline: FakeEvent[];
  state: Map<string, Record<string, unknown>>;
}

/** What a request is, for fault rules and for assertions. */
export interface FakeRequest {
  op: "send" | "state" | "messages" | "createRoom" | "member" | "presence" | "leave" | "other";
  as: string;
  roomId?: string;
  type?: string;
  txnId?: string;
}

/** refused: never reached the homeserver; lost: stored, then the connection was reset; 502: not stored, answered 502; none: only `before` runs. */
export type Fault = "refused" | "lost" | "502" | "none";

const refused = () => Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:8008"), { code: "ECONNREFUSED" });
const reset = () => Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
const matrixError = (statusCode: number, errcode: string, error: string) =>
  Object.assign(new Error(error), { statusCode, errcode, body: { errcode, error } });

export class FakeHomeserver {
  readonly rooms = new Map<string, FakeRoom>();
  readonly requests: FakeRequest[] = [];
  readonly presence = new Map<string, string>();
  /** Account data per user and type (m.direct, the bridge's own notes). */
  readonly accountData = new Map<string, Record<string, unknown>>();
  private txns = new Map<string, string>();
  private faults: { match: (r: FakeRequest) => boolean; fault: Fault; before?: () => Promise<void> }[] = [];
  private counter = 0;

  /** The next request that matches fails this way (once per call). `before` runs first (a change arriving meanwhile). */
  failNext(match: (r: FakeRequest) => boolean, fault: Fault, before?: () => Promise<void>): void {
    this.faults.push({ match, fault, ...(before ? { before } : {}) });
  }

  /** Synapse restarted: it forgot every transaction ID. */
  restart(): void {
    this.txns = new Map();
  }

  private async handle<T>(request: FakeRequest, run: () => T): Promise<T> {
    this.requests.push(request);
    const i = this.faults.findIndex((f) => f.match(request));
    const rule = i >= 0 ? this.faults.splice(i, 1)[0] : undefined;
    await rule?.before?.();
    if (rule?.fault === "refused") throw refused();
    if (rule?.fault === "502") throw Object.assign(new Error("Bad Gateway"), { statusCode: 502 });
    const result = run();
    if (rule?.fault === "lost") throw reset();
    return result;
  }

  private room(roomId: string): FakeRoom {
    const room = this.rooms.get(roomId);
    if (!room) throw matrixError(404, "M_NOT_FOUND", "Unknown room");
    return room;
  }

  private append(room: FakeRoom, event: Omit<FakeEvent, "event_id" | "room_id">): FakeEvent {
    const full = { ...event, event_id: `$e${++this.counter}`, room_id: room.id };
    room.timeline.push(full);
    if (event.state_key !== undefined) room.state.set(`${event.type}\n${event.state_key}`, event.content);
    if (event.type === "m.room.member") room.members.set(event.state_key!, String(event.content.membership));
    return full;
  }

  private mustBeJoined(room: FakeRoom, userId: string): void {
    if (room.members.get(userId) !== "join") throw matrixError(403, "M_FORBIDDEN", `${userId} is not in the room`);
  }

  createRoom(creator: string, invite: string[], name?: string): string {
    const room: FakeRoom = { id: `!r${++this.counter}:localhost`, members: new Map(), timeline: [], state: new Map() };
    this.rooms.set(room.id, room);
    this.append(room, { sender: creator, type: "m.room.member", state_key: creator, content: { membership: "join" } });
    if (name) this.append(room, { sender: creator, type: "m.room.name", state_key: "", content: { name } });
    for (const user of invite) this.append(room, { sender: creator, type: "m.room.member", state_key: user, content: { membership: "invite" } });
    return room.id;
  }

  /** A user acts (accepts an invite, leaves): the bridge is not told unless the test tells it. */
  setMembership(userId: string, roomId: string, membership: "join" | "leave"): void {
    this.append(this.room(roomId), { sender: userId, type: "m.room.member", state_key: userId, content: { membership } });
  }

  /** A state event from a member (power levels, say): the bridge is not told unless the test tells it. */
  setState(roomId: string, sender: string, type: string, stateKey: string, content: Record<string, unknown>): void {
    this.append(this.room(roomId), { sender, type, state_key: stateKey, content });
  }

  /** The bots' messages in a room, oldest first. */
  messages(roomId: string, sender?: string): FakeEvent[] {
    return this.room(roomId).timeline.filter((e) => e.type === "m.room.message" && (!sender || e.sender === sender));
  }

  stateEvents(roomId: string, type: string): FakeEvent[] {
    return this.room(roomId).timeline.filter((e) => e.type === type && e.state_key !== undefined);
  }

  /** The room where `userId` has this membership with `botUserId`. */
  roomOf(botUserId: string, userId: string): string | undefined {
    return [...this.rooms.values()].find((r) => r.members.has(botUserId) && r.members.has(userId) && r.members.size === 2)?.id;
  }

  count(op: FakeRequest["op"], filter: Partial<FakeRequest> = {}): number {
    return this.requests.filter((r) => r.op === op && Object.entries(filter).every(([k, v]) => r[k as keyof FakeRequest] === v)).length;
  }

  intent(userId: string): Intent {
    const hs = this;
    const matrixClient = {
      async doRequest(method: string, path: string, qs: Record<string, unknown> | null, body: Record<string, unknown> | null) {
        const send = /^\/_matrix\/client\/v3\/rooms\/([^/]+)\/send\/([^/]+)\/([^/]+)$/.exec(path);
        if (method === "PUT" && send) {
          const [roomId, type, txnId] = send.slice(1).map(decodeURIComponent) as [string, string, string];
          return hs.handle({ op: "send", as: userId, roomId, type, txnId }, () => {
            const cached = hs.txns.get(`${userId}\n${roomId}\n${txnId}`);
            if (cached) return { event_id: cached };
            const room = hs.room(roomId);
            hs.mustBeJoined(room, userId);
            const event = hs.append(room, { sender: userId, type, content: body ?? {}, txnId });
            hs.txns.set(`${userId}\n${roomId}\n${txnId}`, event.event_id);
            return { event_id: event.event_id };
          });
        }
        const messages = /^\/_matrix\/client\/v3\/rooms\/([^/]+)\/messages$/.exec(path);
        if (method === "GET" && messages) {
          const roomId = decodeURIComponent(messages[1]!);
          return hs.handle({ op: "messages", as: userId, roomId }, () => {
            const room = hs.room(roomId);
            hs.mustBeJoined(room, userId);
            const filter = JSON.parse(String(qs?.filter ?? "{}")) as { senders?: string[]; types?: string[] };
            const chunk = room.timeline
              .filter((e) => (!filter.senders || filter.senders.includes(e.sender)) && (!filter.types || filter.types.includes(e.type)))
              .reverse()
              .slice(0, Number(qs?.limit ?? 10));
            return { chunk };
          });
        }
        return hs.handle({ op: "other", as: userId }, () => {
          throw matrixError(404, "M_UNRECOGNIZED", `${method} ${path}`);
        });
      },
      async sendStateEvent(roomId: string, type: string, stateKey: string, content: Record<string, unknown>) {
        return hs.handle({ op: "state", as: userId, roomId, type }, () => {
          const room = hs.room(roomId);
          hs.mustBeJoined(room, userId);
          return hs.append(room, { sender: userId, type, state_key: stateKey, content }).event_id;
        });
      },
      async getRoomStateEventContent(roomId: string, type: string, stateKey: string) {
        return hs.handle({ op: type === "m.room.member" ? "member" : "other", as: userId, roomId, type }, () => {
          const room = hs.room(roomId);
          if (!room.members.has(userId)) throw matrixError(403, "M_FORBIDDEN", "not in room");
          const content = room.state.get(`${type}\n${stateKey}`);
          if (!content) throw matrixError(404, "M_NOT_FOUND", "no such state");
          return content;
        });
      },
      async getAccountData(type: string) {
        return hs.handle({ op: "other", as: userId, type }, () => {
          const content = hs.accountData.get(`${userId}\n${type}`);
          if (!content) throw matrixError(404, "M_NOT_FOUND", "no account data");
          return content;
        });
      },
      async setAccountData(type: string, content: Record<string, unknown>) {
        return hs.handle({ op: "other", as: userId, type }, () => {
          hs.accountData.set(`${userId}\n${type}`, content);
          return {};
        });
      },
      async getJoinedRooms() {
        return hs.handle({ op: "other", as: userId }, () => [...hs.rooms.values()].filter((r) => r.members.get(userId) === "join").map((r) => r.id));
      },
      async getRoomState(roomId: string) {
        return hs.handle({ op: "other", as: userId, roomId }, () => {
          const room = hs.room(roomId);
          if (!room.members.has(userId)) throw matrixError(403, "M_FORBIDDEN", "not in room");
          return room.timeline.filter((e) => e.state_key !== undefined);
        });
      },
      async getPresenceStatusFor(target: string) {
        return hs.handle({ op: "presence", as: userId }, () => {
          const shares = [...hs.rooms.values()].some((r) => r.members.get(userId) === "join" && r.members.get(target) === "join");
          if (!shares) throw matrixError(403, "M_FORBIDDEN", "You are not allowed to see their presence.");
          return { state: hs.presence.get(target) ?? "offline" };
        });
      },
    };
    return {
      userId,
      matrixClient,
      async createRoom(opts: { options: { invite?: string[]; name?: string; initial_state?: { type: string; state_key?: string; content: Record<string, unknown> }[] } }) {
        return hs.handle({ op: "createRoom", as: userId }, () => {
          const roomId = hs.createRoom(userId, opts.options.invite ?? [], opts.options.name);
          // As Synapse does: the initial state is part of the room's creation, no request of its own.
          for (const e of opts.options.initial_state ?? []) hs.append(hs.room(roomId), { sender: userId, type: e.type, state_key: e.state_key ?? "", content: e.content });
          return { room_id: roomId };
        });
      },
      async kick(target: string, roomId: string) {
        return hs.handle({ op: "other", as: userId, roomId }, () => hs.setMembership(target, roomId, "leave"));
      },
      async leave(roomId: string) {
        return hs.handle({ op: "leave", as: userId, roomId }, () => hs.setMembership(userId, roomId, "leave"));
      },
      async sendMessage(roomId: string, content: Record<string, unknown>) {
        return hs.handle({ op: "send", as: userId, roomId, type: "m.room.message" }, () => {
          const room = hs.room(roomId);
          hs.mustBeJoined(room, userId);
          return { event_id: hs.append(room, { sender: userId, type: "m.room.message", content }).event_id };
        });
      },
      async resolveRoom(address: string) {
        return address;
      },
    } as unknown as Intent;
  }
}

export class FakeLog {
  readonly lines: { level: string; message: string }[] = [];
  private add = (level: string) => (message: string) => void this.lines.push({ level, message });
  readonly debug = this.add("debug");
  readonly info = this.add("info");
  readonly warn = this.add("warn");
  readonly error = this.add("error");
  has(level: string, pattern: RegExp): boolean {
    return this.lines.some((l) => l.level === level && pattern.test(l.message));
  }
}

export const CARRIER_BOT = "@vm_carrier:localhost";
export const MAIN_BOT = "@voicemail:localhost";

export const testConfig = (): BridgeConfig =>
  ({
    homeserver: { url: "http://127.0.0.1:1", domain: "localhost" },
    appservice: { bindAddress: "127.0.0.1", port: 1, url: "http://127.0.0.1:1", botLocalpart: "voicemail" },
    defaultTimezone: "UTC",
    systems: [
      { id: "carrier", name: "Carrier", botLocalpart: "vm_carrier", kind: "webhook", webhook: { secret: "x".repeat(32) } },
      { id: "office", name: "Office", botLocalpart: "vm_office", kind: "webhook", webhook: { secret: "x".repeat(32) } },
    ],
  }) as unknown as BridgeConfig;

/** Quick timing: no pause between messages, retries and rechecks in milliseconds. */
export const QUICK: Partial<DeliveryTiming> = {
  minMessageIntervalMs: 0,
  presenceRecheckMs: 20,
  inviteRecheck: { baseMs: 20, maxMs: 40 },
  retry: { baseMs: 5, maxMs: 20 },
};

/** The bridge's services over one store and homeserver; `restart()` builds new ones over the same (a crash). */
export class FakeBridge {
  readonly hs = new FakeHomeserver();
  readonly store = new MemoryStore();
  readonly config = testConfig();
  log = new FakeLog();
  bots!: BotDirectory;
  dms!: DmRooms;
  views!: UserViews;
  presence!: PresenceTracker;
  delivery!: DeliveryService;
  mailboxes!: MailboxService;
  targets!: TargetService;
  private seq = 0;

  constructor(
    private readonly timing: Partial<DeliveryTiming> = QUICK,
    limits: Partial<BridgeConfig["limits"]> = {},
    private readonly metrics?: VoicemailMetrics,
  ) {
    (this.config as { limits: Partial<BridgeConfig["limits"]> }).limits = limits;
    this.build();
  }

  private build(): void {
    const log = this.log as unknown as Logger;
    const bridge = { getIntent: (userId: string) => this.hs.intent(userId) } as unknown as Bridge;
    this.bots = new BotDirectory(this.config, bridge);
    this.dms = new DmRooms(this.store, this.bots, log);
    this.views = new UserViews(this.config, this.store);
    this.presence = new PresenceTracker(() => this.bots.intent(this.bots.main));
    this.delivery = new DeliveryService(this.config, this.store, this.bots, this.dms, this.views, this.presence, log, this.metrics, this.timing);
    const secrets = SecretBox.fromKey(Buffer.alloc(32, 7));
    this.mailboxes = new MailboxService(this.store, new Map<string, VoicemailGateway>(), this.delivery, secrets, log, this.metrics);
    this.targets = new TargetService(this.store, this.bots, this.delivery, log, this.config.limits);
  }

  async start(): Promise<void> {
    await this.delivery.start();
  }

  /** The bridge process ends (its workers stop where they are) and a new one starts over the same store. */
  /** `beforeStart`: what reaches the new services before their start (an update the open listener took). */
  async restart(beforeStart?: () => Promise<void>): Promise<void> {
    this.targets.stop();
    await this.delivery.stop();
    this.log = new FakeLog();
    this.build();
    await beforeStart?.();
    await this.start();
  }

  async stop(): Promise<void> {
    this.targets.stop();
    await this.delivery.stop();
  }

  /** An admin links the mailbox (no welcome notice). */
  async link(userId: string, mailbox = "1001", systemId = "carrier"): Promise<void> {
    await this.mailboxes.link(userId, systemId, mailbox, "@admin:localhost");
  }

  /** The voice mail system reports counts; increasing `receivedAt` each time. */
  async mwi(mailbox: string, newCount: number, old = 0, systemId = "carrier"): Promise<void> {
    await this.mailboxes.acceptUpdate({
      systemId,
      mailbox,
      counts: { waiting: newCount > 0, new: newCount, old, urgentNew: 0, urgentOld: 0 },
      receivedAt: 1_800_000_000_000 + ++this.seq * 1000,
    });
  }

  /** Waits until delivery has nothing in hand and `done` holds (rechecks run on timers). */
  async until(done: () => boolean | Promise<boolean>, what: string, limitMs = 5000): Promise<void> {
    const deadline = Date.now() + limitMs;
    for (;;) {
      await this.delivery.idle();
      if (await done()) return;
      if (Date.now() > deadline) throw new Error(`gave up waiting for: ${what}\n${this.log.lines.map((l) => `${l.level} ${l.message}`).join("\n")}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** The user accepts the bot's invite, and the bridge hears of it (as from the event handler). */
  async accept(userId: string, botUserId = CARRIER_BOT): Promise<string> {
    await this.until(() => this.hs.roomOf(botUserId, userId) !== undefined, `an invite from ${botUserId}`);
    const roomId = this.hs.roomOf(botUserId, userId)!;
    this.hs.setMembership(userId, roomId, "join");
    const dm = await this.store.getDmRoomById(roomId);
    if (dm) await this.dms.markJoined(dm);
    await this.delivery.kickPerson(userId);
    return roomId;
  }
}
