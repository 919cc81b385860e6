/** The bridge's own Prometheus figures, served with the library's on /metrics. */
import { PrometheusMetrics } from "matrix-appservice-bridge";
import type { Counter, Histogram } from "prom-client";

export interface VoicemailMetrics {
  webhookRequests: Counter<string>;
  mwiUpdates: Counter<string>;
  matrixEvents: Counter<string>;
  commands: Counter<string>;
  deliverySeconds: Histogram<string>;
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
    matrixEvents: prometheus.addCounter({
      name: "voicemail_matrix_events_sent_total",
      help: "Events sent into Matrix rooms, by kind",
      labels: ["kind"],
    }),
    commands: prometheus.addCounter({
      name: "voicemail_commands_total",
      help: "!commands handled, by command and outcome",
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
