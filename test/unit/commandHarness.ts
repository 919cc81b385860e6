/**
 * The command router over the real services and a NeDB store in a temp dir, with fakes for
 * what talks to the outside: a gateway that "subscribes" in memory, bots whose intents record
 * what they send and redact, a delivery that only counts.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "matrix-appservice-bridge";

import type { BridgeConfig, SystemConfig } from "../../src/config/types.js";
import type { PermissionLevel } from "../../src/core/permissions.js";
import type { DeliveryService } from "../../src/delivery/deliveryService.js";
import { UserViews } from "../../src/delivery/userViews.js";
import type { LinkProof, LinkRequest, MailboxCredentials, VoicemailGateway } from "../../src/gateway/gateway.js";
import type { Bot } from "../../src/matrix/bots.js";
import { MailboxService } from "../../src/app/mailboxService.js";
import type { TargetService } from "../../src/app/targetService.js";
import { CommandRouter, type RoomEvent, type RouterBots, type RouterIntent } from "../../src/app/events/commandRouter.js";
import type { Command } from "../../src/app/commands/commands.js";
import { NedbStore } from "../../src/store/nedbStore.js";
import { SecretBox } from "../../src/store/secretBox.js";
import type { VoicemailStore } from "../../src/store/store.js";
import { KeyedQueue } from "../../src/util/keyedQueue.js";

export const ALICE = "@alice:localhost";
export const BOB = "@bob:localhost";
export const ADMIN = "@admin:localhost";
export const RIGHT_PASSWORD = "right-password";

/** A SIP-like system: a proof subscribes, and the proving subscription becomes the watch if there is none. */
export class FakeGateway implements VoicemailGateway {
  /** Mailboxes with a live subscription, and the credentials it uses. */
  readonly watched = new Map<string, MailboxCredentials | undefined>();
  readonly proofs: LinkRequest[] = [];
  accepts: (request: LinkRequest) => boolean = (r) => r.password === RIGHT_PASSWORD;
  /** What a proof that is not accepted answers. */
  refusal: Extract<LinkProof, { ok: false }> = { ok: false, reason: "the server refused the credentials" };

  constructor(readonly systemId: string) {}

  async start(): Promise<void> {}
  async stop(): Promise<void> {}

  readonly linking = { prove: (request: LinkRequest) => this.prove(request) };
  readonly watching = { watch: (m: string, c?: MailboxCredentials) => this.watch(m, c), unwatch: (m: string) => this.unwatch(m) };
  readonly upstreamMwi = { switchOn: (m: string, c?: MailboxCredentials) => this.watch(m, c), switchOff: (m: string) => this.unwatch(m) };

  private async prove(request: LinkRequest): Promise<LinkProof> {
    this.proofs.push(request);
    if (!this.accepts(request)) return this.refusal;
    const credentials = { username: request.authUser ?? request.mailbox, password: request.password ?? "" };
    if (!this.watched.has(request.mailbox)) this.watched.set(request.mailbox, credentials);
    return { ok: true, credentials, current: { systemId: this.systemId, mailbox: request.mailbox, counts: { waiting: true, new: 2, old: 1, urgentNew: 0, urgentOld: 0 }, receivedAt: Date.now() } };
  }

  async watch(mailbox: string, credentials?: MailboxCredentials): Promise<void> {
    if (!this.watched.has(mailbox) && credentials) this.watched.set(mailbox, credentials);
  }

  async unwatch(mailbox: string): Promise<void> {
    this.watched.delete(mailbox);
  }
}

export interface Sent {
  bot: string;
  roomId: string;
  body: string;
  html: string;
  mentions: unknown;
}

export class FakeBots implements RouterBots {
  readonly main: Bot = { userId: "@voicemail:localhost", localpart: "voicemail", displayName: "Voicemail" };
  readonly carrier: Bot;
  readonly sent: Sent[] = [];
  readonly redactions: { bot: string; roomId: string; eventId: string }[] = [];
  /** Bots that may not redact (no power in that room). */
  readonly cannotRedact = new Set<string>();

  constructor(system: SystemConfig) {
    this.carrier = { userId: "@vm_carrier:localhost", localpart: "vm_carrier", displayName: system.name, system };
  }

  all(): Bot[] {
    return [this.main, this.carrier];
  }

  byUser(userId: string): Bot | undefined {
    return this.all().find((b) => b.userId === userId);
  }

  isBot(userId: string): boolean {
    return this.byUser(userId) !== undefined;
  }

  /** The next sends fail with these errors, one each. */
  readonly failSends: unknown[] = [];

  intent(bot: Bot): RouterIntent {
    return {
      sendMessage: async (roomId, content) => {
        const failure = this.failSends.shift();
        if (failure) throw failure;
        this.sent.push({ bot: bot.userId, roomId, body: String(content.body), html: String(content.formatted_body), mentions: content["m.mentions"] });
        return { event_id: `$sent${this.sent.length}` };
      },
      matrixClient: {
        redactEvent: async (roomId, eventId) => {
          if (this.cannotRedact.has(bot.userId)) throw new Error("M_FORBIDDEN: You don't have permission to redact events");
          this.redactions.push({ bot: bot.userId, roomId, eventId });
          return `$redaction-of-${eventId}`;
        },
      },
    };
  }
}

export class MemoryLog {
  readonly lines: string[] = [];
  private add = (level: string) => (message: string) => void this.lines.push(`${level} ${message}`);
  debug = this.add("DEBUG");
  info = this.add("INFO");
  warn = this.add("WARN");
  error = this.add("ERROR");
}

export interface World {
  store: VoicemailStore;
  gateway: FakeGateway;
  bots: FakeBots;
  mailboxes: MailboxService;
  secrets: SecretBox;
  router: CommandRouter;
  log: MemoryLog;
  metrics: { command: string; outcome: string }[];
  /** Alice's DMs with the main bot and the carrier bot, Bob's and the admin's with the carrier bot. */
  rooms: { aliceMain: string; aliceCarrier: string; bobCarrier: string; adminCarrier: string; elsewhere: string };
  send(sender: string, roomId: string, body: string, extra?: Record<string, unknown>): Promise<RoomEvent>;
  close(): Promise<void>;
}

let counter = 0;
/** The number in the ID of the last event sent: `$e<n>`. */
export const eventCount = () => counter;

export async function world(options: { commands?: readonly Command[]; store?: (s: VoicemailStore) => VoicemailStore; permissions?: Record<string, PermissionLevel> } = {}): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), "vm-commands-"));
  const nedb = await NedbStore.open(dir);
  const store = options.store ? options.store(nedb) : nedb;
  const system = { id: "carrier", name: "Carrier", kind: "sip", botLocalpart: "vm_carrier" } as unknown as SystemConfig;
  const config = { systems: [system], defaultTimezone: "UTC" } as unknown as BridgeConfig;
  const gateway = new FakeGateway("carrier");
  const bots = new FakeBots(system);
  const log = new MemoryLog();
  const delivery = { enqueueChange: async () => [], enqueueNotice: async () => "main", kick: () => undefined, dropQueued: async () => 0 } as unknown as DeliveryService;
  const secrets = SecretBox.fromKey(randomBytes(32));
  const mailboxes = new MailboxService(store, new Map([["carrier", gateway]]), delivery, secrets, log as unknown as Logger);
  const views = new UserViews(config, store);
  const metrics: { command: string; outcome: string }[] = [];
  const router = new CommandRouter({
    config: { permissions: options.permissions ?? { localhost: "user", [ADMIN]: "admin" } },
    store,
    bots,
    mailboxes,
    views,
    targets: {} as TargetService,
    userQueue: new KeyedQueue(),
    log,
    metrics: { commands: { inc: (labels: Record<string, string>) => void metrics.push({ command: labels.command!, outcome: labels.outcome! }) } } as never,
    ...(options.commands ? { commands: options.commands } : {}),
  });
  let closed = false;
  const rooms = { aliceMain: "!alice-main:localhost", aliceCarrier: "!alice-carrier:localhost", bobCarrier: "!bob-carrier:localhost", adminCarrier: "!admin-carrier:localhost", elsewhere: "!public:localhost" };
  const dm = (userId: string, bot: Bot, roomId: string) => store.saveDmRoom({ userId, botUserId: bot.userId, roomId, userJoined: true, createdAt: 1 });
  await dm(ALICE, bots.main, rooms.aliceMain);
  await dm(ALICE, bots.carrier, rooms.aliceCarrier);
  await dm(BOB, bots.carrier, rooms.bobCarrier);
  await dm(ADMIN, bots.carrier, rooms.adminCarrier);
  return {
    store,
    gateway,
    bots,
    mailboxes,
    secrets,
    router,
    log,
    metrics,
    rooms,
    async send(sender, roomId, body, extra = {}) {
      const event: RoomEvent = {
        event_id: `$e${++counter}`,
        room_id: roomId,
        sender,
        type: "m.room.message",
        content: { msgtype: "m.text", body, ...extra },
      };
      await router.onMessage(event);
      return event;
    },
    async close() {
      if (closed) return;
      closed = true;
      await nedb.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
