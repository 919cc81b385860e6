/**
 * Start-up and shut-down: the store, the Matrix side (matrix-appservice-bridge), the gateways
 * and the webhook listener, wired together.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { createServer } from "node:http";
import { AppService, Bridge, Logger, type WeakEvent } from "matrix-appservice-bridge";
import type { BridgeConfig } from "../config/types.js";
import { readRegistration, registrationMismatch } from "../config/registration.js";
import type { GatewayHost, VoicemailGateway } from "../gateway/gateway.js";
import { HttpRouter, hardenServer } from "../gateway/http.js";
import { createGateway } from "../gateway/registry.js";
import { BotDirectory, RegisteredBots } from "../matrix/bots.js";
import { DmRooms } from "../matrix/dmRooms.js";
import { quietLibraryLogs } from "../matrix/libraryLogs.js";
import { pingHomeserver, servePing } from "../matrix/ping.js";
import { retryTransient } from "./retryTransient.js";
import { EventHandler } from "./eventHandler.js";
import { DeliveryService } from "../delivery/deliveryService.js";
import { PresenceTracker } from "../delivery/presence.js";
import { openStore } from "../store/openStore.js";
import { SecretBox } from "../store/secretBox.js";
import type { VoicemailStore } from "../store/store.js";
import { KeyedQueue } from "../util/keyedQueue.js";
import { addScrapeGauges, createMetrics, type VoicemailMetrics } from "../util/metrics.js";
import { ReadinessState, serveHealth } from "./readiness.js";
import { MailboxService } from "./mailboxService.js";
import { TargetService } from "./targetService.js";
import { UserViews } from "../delivery/userViews.js";
import { AdminApi } from "./adminApi/adminApi.js";
import { ProfileService } from "./profileService.js";

const HANDLED_EVENT_RETENTION_MS = 7 * 24 * 3600 * 1000;

/**
 * The appservice listener, with the webhook in front of the library's JSON body parser: the
 * signature covers the raw bytes, which the parser would consume.
 */
class ListenerWithWebhook extends AppService {
  constructor(
    homeserverToken: string,
    private readonly webhook: HttpRouter,
  ) {
    super({ homeserverToken });
  }

  override listen(port: number, hostname: string, backlog: number): Promise<void> {
    // The same limits as a webhook's own listener: slow or idle connections cannot pile up here either.
    const server = hardenServer(
      createServer((req: IncomingMessage, res: ServerResponse) => {
        if (this.webhook.matches(req)) void this.webhook.handle(req, res);
        else this.expressApp(req, res);
      }),
      {},
      new Logger("Listener"),
    );
    (this as unknown as { server: Server }).server = server;
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, hostname, backlog, () => resolve());
    });
  }
}

export class VoicemailBridge {
  private store?: VoicemailStore;
  private delivery?: DeliveryService;
  private bridge?: Bridge;
  private gateways = new Map<string, VoicemailGateway>();
  private extraServers: Server[] = [];
  private adminServer?: Server;
  private pruneTimer?: NodeJS.Timeout;
  /** What /ready answers; set as start-up and shut-down go. */
  private readiness?: ReadinessState;
  private readonly log = new Logger("VoicemailBridge");

  constructor(
    private readonly config: BridgeConfig,
    private readonly registrationPath: string,
  ) {}

  async start(): Promise<void> {
    const { config } = this;
    quietLibraryLogs();
    const registration = readRegistration(this.registrationPath);
    const mismatch = registrationMismatch(config, registration);
    if (mismatch) {
      throw new Error(`${this.registrationPath} does not fit the config: ${mismatch}. Run generate-registration again and reload the homeserver.`);
    }
    const readiness = (this.readiness = new ReadinessState(config.systems.map((s) => s.id)));
    const store = (this.store = await openStore(config.database.uri, new Logger("Store")));
    readiness.storeOpen = true;
    readiness.storeProblem = () => store.problem?.();
    const pruned = await store.forgetHandledEventsBefore(Date.now() - HANDLED_EVENT_RETENTION_MS);
    if (pruned) this.log.debug(`forgot ${pruned} old handled event IDs`);

    let handler: EventHandler | undefined;
    const registeredBots = new RegisteredBots();
    const bridge = (this.bridge = new Bridge({
      homeserverUrl: config.homeserver.url,
      domain: config.homeserver.domain,
      registration: this.registrationPath,
      disableStores: true,
      disableContext: true,
      suppressEcho: true,
      membershipCache: registeredBots,
      controller: {
        onEvent: (request) => {
          const event = request.getData() as WeakEvent;
          void handler?.onEvent(event).finally(() => request.resolve(undefined));
        },
        onEphemeralEvent: (request) => {
          const event = request.getData() as { type?: string; sender?: string; content?: { presence?: string } };
          if (event.type === "m.presence" && event.sender && event.content?.presence) handler?.onPresence(event.sender, event.content.presence);
        },
      },
    }));

    let metrics: VoicemailMetrics | undefined;
    if (config.metrics.enabled) {
      const prometheus = bridge.getPrometheusMetrics(true);
      metrics = createMetrics(prometheus);
      addScrapeGauges(prometheus, {
        outbox: () => store.outboxStats(),
        systems: () => config.systems.map((s) => ({ systemId: s.id, kind: s.kind, status: this.gateways.get(s.id)?.status?.() ?? {} })),
      });
    }

    const userQueue = new KeyedQueue();
    const bots = new BotDirectory(config, bridge, registeredBots);
    const dms = new DmRooms(store, bots, new Logger("DmRooms"));
    const views = new UserViews(config, store);
    const presence = new PresenceTracker(() => bots.intent(bots.main));
    const delivery = (this.delivery = new DeliveryService(config, store, bots, dms, views, presence, new Logger("Delivery"), metrics));
    const secrets = SecretBox.fromConfig(config.encryption);
    const mailboxes = new MailboxService(store, this.gateways, delivery, secrets, new Logger("Mailboxes"), metrics, config.linkLimits);
    const targets = new TargetService(store, bots, delivery, new Logger("Targets"), config.limits);
    handler = new EventHandler({ config, store, bots, dms, mailboxes, views, targets, delivery, presence, userQueue, log: new Logger("Events"), ...(metrics ? { metrics } : {}) });

    // HTTP of the kinds that have it: on the appservice listener, or on a listener per address
    // and port that systems asked for (systems naming the same one share it).
    const routers = new Map<string, HttpRouter>();
    const routerFor = (key: string) => {
      let router = routers.get(key);
      if (!router) routers.set(key, (router = new HttpRouter()));
      return router;
    };
    const mainRouter = routerFor("appservice");
    for (const system of config.systems) {
      const host: GatewayHost = {
        acceptUpdate: (u) => {
          metrics?.updatesReceived.inc({ system: system.id, kind: system.kind });
          return mailboxes.acceptUpdate(u);
        },
        log: new Logger(`Gateway:${system.id}`),
        ...(metrics ? { metrics } : {}),
      };
      const gateway = createGateway(system, host);
      this.gateways.set(system.id, gateway);
      if (gateway.http) {
        const listen = gateway.http.listen;
        routerFor(listen ? `${listen.bindAddress ?? config.appservice.bindAddress}:${listen.port}` : "appservice").add(gateway.http);
      }
    }

    await bridge.initialise();
    // Before anything acts as a bot: an Intent that thinks its bot unregistered tries to register it.
    // A homeserver that is still starting, restarting or rate limiting is waited for, not a reason to exit.
    await retryTransient("registering the bots", () => bots.registerAll(this.log), this.log);
    readiness.homeserverAnswered = true;
    await bridge.listen(
      config.appservice.port,
      config.appservice.bindAddress,
      10,
      new ListenerWithWebhook(registration.hs_token, mainRouter),
    );
    for (const [key, router] of routers) {
      if (key === "appservice") continue;
      const separator = key.lastIndexOf(":");
      this.extraServers.push(await router.listen(Number(key.slice(separator + 1)), key.slice(0, separator)));
      this.log.info(`webhook listener on ${key}`);
    }
    servePing(bridge, new Logger("Ping"));
    serveHealth(bridge, readiness);
    this.log.info(`listening on ${config.appservice.bindAddress}:${config.appservice.port}`);
    const pinged = pingHomeserver(bridge.getBot().getClient(), registration.id, this.log);

    await retryTransient("setting the bots' profiles", () => bots.syncProfiles(this.log), this.log);
    await delivery.start();
    // Not worth holding the start for: a failure leaves those rooms joined until the next start.
    void targets.reviewJoinedRooms().catch((err: Error) => this.log.warn(`could not review the main bot's rooms: ${err.message}`));
    for (const gateway of this.gateways.values()) {
      await gateway.start();
      readiness.systems[gateway.systemId] = "started";
      const watched = await mailboxes.watchAll(gateway.systemId);
      if (watched) this.log.info(`${gateway.systemId}: watching ${watched} mailbox(es)`);
    }
    if (config.adminApi) {
      // Off unless configured; its own listener, so the homeserver's port never serves it. Opened
      // once the gateways run, so that a link made through it is watched at once.
      const { bindAddress, port, ...settings } = config.adminApi;
      const profiles = new ProfileService(store);
      const api = new AdminApi(settings, { systems: config.systems, store, mailboxes, profiles, targets, log: new Logger("AdminApi") });
      this.adminServer = await api.listen(port, bindAddress);
      this.log.info(`admin API on ${bindAddress}:${port}`);
    }
    await pinged;
    this.pruneTimer = setInterval(() => {
      void store.forgetHandledEventsBefore(Date.now() - HANDLED_EVENT_RETENTION_MS).catch(() => undefined);
    }, 3600_000).unref();
    this.log.info(`ready: ${config.systems.length} voice mail system(s), main bot ${bots.main.userId}`);
  }

  async stop(): Promise<void> {
    clearInterval(this.pruneTimer);
    // First: no admin change may reach services that are stopping.
    if (this.adminServer) await new Promise((r) => this.adminServer!.close(r));
    await this.delivery?.stop();
    for (const gateway of this.gateways.values()) {
      if (this.readiness) this.readiness.systems[gateway.systemId] = "stopped";
      await gateway.stop().catch(() => undefined);
    }
    for (const server of this.extraServers) await new Promise((r) => server.close(r));
    await this.bridge?.close().catch(() => undefined);
    if (this.readiness) this.readiness.storeOpen = false;
    await this.store?.close();
    this.log.info("stopped");
  }
}
