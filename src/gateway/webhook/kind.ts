/** The webhook kind: voice mail systems that POST their MWI to the bridge. */
import { defineKind } from "../gateway.js";
import { webhookSettings } from "./settings.js";
import { WebhookGateway } from "./webhookGateway.js";

export const webhookKind = defineKind({
  kind: "webhook",
  settings: webhookSettings,
  // Without a port of its own the webhook is served on the appservice listener.
  listeners: ({ port, bindAddress }) =>
    port ? [{ key: "webhook.port", protocols: ["tcp"], port, shared: true, ...(bindAddress ? { bindAddress } : {}) }] : [],
  create: (system, host) => new WebhookGateway(system, host),
});
