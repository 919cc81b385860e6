/**
 * A real world for end-to-end tests: a Synapse from the test bed, the bridge as a child process
 * registered with it, and users driven by matrix-js-sdk.
 */
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import type { MatrixClient, MatrixEvent } from "matrix-js-sdk";
import { BridgeProcess, prepareBridge } from "../testbed/bridgeProcess.js";
import { loginClient, sendText, waitForEvent, waitForInvite } from "../testbed/matrixClient.js";
import { ensureTestbed, startSynapse, type RunningSynapse } from "../testbed/synapse.js";

/**
 * The test bed needs root and apt. Without it the end-to-end tests skip loudly; under CI that
 * is a failure, never a silent pass.
 */
export async function requireTestbed(t: TestContext): Promise<boolean> {
  const status = await ensureTestbed();
  if (status.ok) return true;
  if (process.env.CI === "true") assert.fail(`the end-to-end test bed is unavailable under CI: ${status.reason}`);
  console.error(`\n${"!".repeat(72)}\n!!! SKIPPING end-to-end tests: the test bed is unavailable: ${status.reason}\n${"!".repeat(72)}\n`);
  t.skip(status.reason);
  return false;
}

export interface WorldOptions {
  synapsePort: number;
  bridgePort: number;
  systems: Record<string, unknown>[];
  permissions?: Record<string, string>;
  /** The bridge's log level; "debug" unless given (benchmarks use "info"). */
  logLevel?: "debug" | "info" | "warn" | "error";
  /** Where the bridge reaches the homeserver (a fault proxy); default Synapse itself. */
  homeserverUrl?: string;
  /** Where the homeserver reaches the bridge, written into the registration (a fault proxy); default the bridge itself. */
  appserviceUrl?: string;
  /** More top-level config keys (limits, say). */
  config?: Record<string, unknown>;
}

export interface User {
  userId: string;
  client: MatrixClient;
}

export class World {
  private readonly clients: MatrixClient[] = [];

  private constructor(
    readonly hs: RunningSynapse,
    readonly bridge: BridgeProcess,
    readonly bridgeUrl: string,
    readonly dir: string,
  ) {}

  static async create(options: WorldOptions): Promise<World> {
    const dir = mkdtempSync(join(tmpdir(), "voicemail-e2e-"));
    const bridgeUrl = `http://127.0.0.1:${options.bridgePort}`;
    const files = await prepareBridge(dir, {
      homeserver: { url: options.homeserverUrl ?? `http://127.0.0.1:${options.synapsePort}`, domain: "localhost" },
      appservice: { bindAddress: "127.0.0.1", port: options.bridgePort, url: options.appserviceUrl ?? bridgeUrl, botLocalpart: "voicemail" },
      database: { uri: `nedb:${join(dir, "data")}` },
      permissions: options.permissions ?? { localhost: "user", "@admin:localhost": "admin" },
      logging: { level: options.logLevel ?? "debug" },
      systems: options.systems,
      ...options.config,
    });
    const hs = await startSynapse({ port: options.synapsePort, registrationFiles: [files.registrationPath] });
    const bridge = new BridgeProcess(files, bridgeUrl);
    try {
      await bridge.start();
    } catch (err) {
      await hs.stop();
      throw err;
    }
    return new World(hs, bridge, bridgeUrl, dir);
  }

  async user(localpart: string): Promise<User> {
    const registered = await this.hs.registerUser(localpart, `${localpart}-password-123`);
    const client = await loginClient(this.hs.url, registered.userId, registered.accessToken, registered.deviceId);
    this.clients.push(client);
    return { userId: registered.userId, client };
  }

  /** The user opens a DM with a bot, as Element does, and waits for the bot's greeting. */
  async openDm(user: User, botUserId: string): Promise<string> {
    const { room_id: roomId } = await user.client.createRoom({
      is_direct: true,
      preset: "trusted_private_chat" as never,
      invite: [botUserId],
    });
    await waitForEvent(user.client, roomId, (e) => e.getSender() === botUserId && e.getType() === "m.room.message");
    return roomId;
  }

  /** Accepts the bot's DM invite and returns the room. */
  async acceptDmFrom(user: User, botUserId: string, timeoutMs = 30_000): Promise<string> {
    const roomId = await waitForInvite(user.client, botUserId, timeoutMs);
    await user.client.joinRoom(roomId);
    return roomId;
  }

  /** Sends a command and returns the bot's next reply in that room. */
  async command(user: User, roomId: string, botUserId: string, body: string): Promise<MatrixEvent> {
    const sentId = await sendText(user.client, roomId, body);
    const room = user.client.getRoom(roomId)!;
    return waitForEvent(user.client, roomId, (e) => {
      if (e.getSender() !== botUserId || e.getType() !== "m.room.message") return false;
      const events = room.getLiveTimeline().getEvents();
      return events.findIndex((x) => x.getId() === e.getId()) > events.findIndex((x) => x.getId() === sentId);
    });
  }

  async close(): Promise<void> {
    for (const client of this.clients) client.stopClient();
    await this.bridge.stop();
    await this.hs.stop();
  }
}

/** The bot's messages in a room, oldest first. */
export function botMessages(client: MatrixClient, roomId: string, botUserId: string): MatrixEvent[] {
  return (client.getRoom(roomId)?.getLiveTimeline().getEvents() ?? []).filter(
    (e) => e.getSender() === botUserId && e.getType() === "m.room.message",
  );
}

export function timelineOf(client: MatrixClient, roomId: string, type: string): MatrixEvent[] {
  return (client.getRoom(roomId)?.getLiveTimeline().getEvents() ?? []).filter((e) => e.getType() === type);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
