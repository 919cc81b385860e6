/**
 * The bridge's own Prometheus figures, served with the library's on /metrics. Labels name
 * systems, kinds, commands and outcomes only: never a user ID, a room or a mailbox number, so
 * that the figures may be shown to whoever watches the bridge.
 */
import { PrometheusMetrics } from "matrix-appservice-bridge";
import type { Counter, Gauge, Histogram } from "prom-client";

export interface VoicemailMetrics {
  webhookRequests: Counter<string>;
  mwiUpdates: Counter<string>;
  /** Every update a gateway hands in, before it is compared with the stored state. */
  updatesReceived: Counter<string>;
  matrixEvents: Counter<string>;
  /** Outbox entries by how they ended: delivered or dropped. */
  notifications: Counter<string>;
  /** Delivery attempts that failed and will be retried, by the failure's kind. */
  deliveryFailures: Counter<string>;
  commands: Counter<string>;
  deliverySeconds: Histogram<string>;
}

/** What the gauges read on each scrape: cheap, from the store and the gateways. */
export interface ScrapeSources {
  outbox(): Promise<{ depth: number; oldestCreatedAt?: number }>;
  /** Per system: its kind and what its `status()` says (connections, subscriptions, sessions by state). */
  systems(): { systemId: string; kind: string; status?: Record<string, number> }[];
  now?: () => number;
}

export function createMetrics(prometheus: PrometheusMetrics): VoicemailMetrics {
  return {
    webhookRequests: prometheus.addCounter({
      name: "voicemail_webhook_requests_total",
      help: "Webhook requests by system and HTTP status",
      labels: ["system", "status"],
    }),
    mwiUpdates: prometheus.addCounter({
      name: "voicemail_mwi_updates_total",
      help: "MWI updates accepted from voice mail systems, by whether they changed anything",
      labels: ["system", "changed"],
    }),
    updatesReceived: prometheus.addCounter({
      name: "voicemail_updates_received_total",
      help: "MWI updates received from voice mail systems, by system and its kind",
      labels: ["system", "kind"],
    }),
    matrixEvents: prometheus.addCounter({
      name: "voicemail_matrix_events_sent_total",
      help: "Events sent into Matrix rooms, by kind",
      labels: ["kind"],
    }),
    notifications: prometheus.addCounter({
      name: "voicemail_notifications_total",
      help: "Outbox entries by outcome: delivered (the homeserver accepted them) or dropped (refused, or no room to deliver to)",
      labels: ["outcome"],
    }),
    deliveryFailures: prometheus.addCounter({
      name: "voicemail_delivery_failures_total",
      help: "Delivery attempts that failed, by what happens next (retry, gone: a fresh room is opened, fatal: dropped)",
      labels: ["kind"],
    }),
    commands: prometheus.addCounter({
      name: "voicemail_commands_total",
      help: "!commands handled, by command and outcome (ok, refused, denied, bad_syntax, error)",
      labels: ["command", "outcome"],
    }),
    deliverySeconds: prometheus.addTimer({
      name: "voicemail_delivery_seconds",
      help: "Time from accepting an MWI update to the homeserver accepting its events",
      labels: ["system"],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
    }),
  };
}

/** The gauges filled on scrape: outbox depth and age, and each system's connections by state. */
export function addScrapeGauges(prometheus: PrometheusMetrics, sources: ScrapeSources): { depth: Gauge<string>; age: Gauge<string>; connections: Gauge<string> } {
  const now = sources.now ?? Date.now;
  const depth = prometheus.addGauge({ name: "voicemail_outbox_entries", help: "Notifications waiting in the outbox" });
  const age = prometheus.addGauge({ name: "voicemail_outbox_oldest_age_seconds", help: "Age of the oldest waiting notification (0 when none waits)" });
  const connections = prometheus.addGauge({
    name: "voicemail_system_connections",
    help: "Per system: its connections, subscriptions or sessions by state (AMI connection, SIP subscriptions, IMAP sessions)",
    labels: ["system", "kind", "state"],
  });
  prometheus.addCollector(async () => {
    const outbox = await sources.outbox();
    depth.set(outbox.depth);
    age.set(outbox.oldestCreatedAt === undefined ? 0 : Math.max(0, (now() - outbox.oldestCreatedAt) / 1000));
    // A state that emptied reads 0 rather than keeping its last value.
    connections.reset();
    for (const system of sources.systems()) {
      for (const [state, count] of Object.entries(system.status ?? {})) connections.set({ system: system.systemId, kind: system.kind, state }, count);
    }
  });
  return { depth, age, connections };
}
