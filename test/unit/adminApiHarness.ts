/**
 * The admin API over the real MailboxService and a memory store, on a real loopback listener,
 * with fakes for what talks to the outside: a watching gateway that records its calls, a pushing
 * one, a delivery that only counts, targets in memory.
 */
import { randomBytes } from "node:crypto";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "matrix-appservice-bridge";
import { AdminApi, type AdminApiSettings } from "../../src/app/adminApi/adminApi.js";
import { ADMIN_API_PREFIX } from "../../src/app/adminApi/routes.js";
import { MailboxService } from "../../src/app/mailboxService.js";
import { ProfileService } from "../../src/app/profileService.js";
import { TargetError, type TargetService } from "../../src/app/targetService.js";
import type { SystemConfig } from "../../src/config/types.js";
import type { DeliveryService } from "../../src/delivery/deliveryService.js";
import type { MailboxCredentials, VoicemailGateway } from "../../src/gateway/gateway.js";
import { MemoryStore } from "../../src/store/memoryStore.js";
import { SecretBox } from "../../src/store/secretBox.js";
import type { ExtraTarget } from "../../src/store/store.js";
import { FakeLog } from "./fakeMatrix.js";

/** A kind that watches (like AMI: it has credentials of its own); `hold` keeps watches pending. */
export class WatchingGateway implements VoicemailGateway {
  readonly calls: string[] = [];
  readonly credentials: (MailboxCredentials | undefined)[] = [];
  hold?: Promise<void>;
  constructor(readonly systemId: string) {}
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  readonly watching = {
    systemCredentials: true,
    watch: async (mailbox: string, credentials?: MailboxCredentials) => {
      this.calls.push(`watch ${mailbox}`);
      this.credentials.push(credentials);
      await this.hold;
    },
    unwatch: async (mailbox: string) => void this.calls.push(`unwatch ${mailbox}`),
  };
}

/** A kind that only pushes (webhook). */
export class PushGateway implements VoicemailGateway {
  constructor(readonly systemId: string) {}
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
}

/** `!target add` in memory: accounts only, at most two. */
export class FakeTargets implements Pick<TargetService, "add" | "remove" | "list"> {
  readonly all: ExtraTarget[] = [];
  async add(ownerId: string, address: string): Promise<string> {
    if (!address.startsWith("@")) throw new TargetError(`"${address}" is neither a Matrix user ID nor a room.`);
    if ((await this.list(ownerId)).length >= 2) throw new TargetError("You have 2 targets, the most allowed: remove one first.");
    this.all.push({ id: `t${this.all.length}`, ownerId, kind: "account", address, status: "invited", createdAt: 1, lastName: "secret-ish" });
    return `Invited ${address}.`;
  }
  async remove(ownerId: string, address: string): Promise<boolean> {
    const i = this.all.findIndex((t) => t.ownerId === ownerId && t.address === address);
    if (i < 0) return false;
    this.all.splice(i, 1);
    return true;
  }
  async list(ownerId: string): Promise<ExtraTarget[]> {
    return this.all.filter((t) => t.ownerId === ownerId);
  }
}

export const SYSTEMS = [
  { id: "carrier", name: "Carrier", kind: "ami", botLocalpart: "vm_carrier" },
  { id: "hook", name: "Hook", kind: "webhook", botLocalpart: "vm_hook" },
] as unknown as SystemConfig[];

export interface ApiWorld {
  store: MemoryStore;
  mailboxes: MailboxService;
  secrets: SecretBox;
  carrier: WatchingGateway;
  targets: FakeTargets;
  log: FakeLog;
  /** Notices the delivery was asked to send. */
  notices: string[];
  token: string;
  api: AdminApi;
  base: string;
  /** A request with the right token unless `token` says otherwise (null: none). */
  call(method: string, path: string, options?: { body?: unknown; raw?: string; token?: string | null; headers?: Record<string, string> }): Promise<{ status: number; headers: Headers; json: any; text: string }>;
  close(): Promise<void>;
}

export async function apiWorld(settings: Partial<AdminApiSettings> = {}, now?: () => number): Promise<ApiWorld> {
  const store = new MemoryStore();
  const log = new FakeLog();
  const notices: string[] = [];
  const delivery = {
    enqueueChange: async () => [],
    enqueueNotice: async (_u: string, _s: string, notice: { body: string }) => (notices.push(notice.body), "main"),
    kick: () => undefined,
    dropQueued: async () => 0,
  } as unknown as DeliveryService;
  const carrier = new WatchingGateway("carrier");
  const gateways = new Map<string, VoicemailGateway>([
    ["carrier", carrier],
    ["hook", new PushGateway("hook")],
  ]);
  const secrets = SecretBox.fromKey(randomBytes(32));
  const mailboxes = new MailboxService(store, gateways, delivery, secrets, log as unknown as Logger);
  const targets = new FakeTargets();
  const token = randomBytes(24).toString("hex");
  const api = new AdminApi(
    { token, rateLimit: { requests: 10_000, windowSeconds: 60 }, maxBodyBytes: 65_536, ...settings },
    { systems: SYSTEMS, store, mailboxes, profiles: new ProfileService(store), targets, log },
    log,
    now,
  );
  const server: Server = await api.listen(0, "127.0.0.1");
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}${ADMIN_API_PREFIX}`;
  return {
    store,
    mailboxes,
    secrets,
    carrier,
    targets,
    log,
    notices,
    token,
    api,
    base,
    async call(method, path, options = {}) {
      const headers: Record<string, string> = { ...options.headers };
      const given = options.token === undefined ? token : options.token;
      if (given !== null) headers.authorization = `Bearer ${given}`;
      let body: string | undefined = options.raw;
      if (options.body !== undefined) {
        body = JSON.stringify(options.body);
        headers["content-type"] ??= "application/json";
      }
      const res = await fetch(`${base}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: res.status, headers: res.headers, json, text };
    },
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
