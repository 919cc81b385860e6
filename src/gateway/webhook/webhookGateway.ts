/**
 * Voice mail systems that POST their MWI to us (F1). The request is acknowledged (202) only
 * after the update is stored; nothing from a rejected request is kept. The system pushes every
 * mailbox it has: there is nothing to watch, and mailboxes are linked by an admin.
 */
import type { GatewayHost, HttpCapability, KindSystem, VoicemailGateway } from "../gateway.js";
import { parseWebhookPayload } from "./payload.js";
import type { WebhookSettings } from "./settings.js";
import { verifySignature } from "./signature.js";
import { serveWebhook, type WebhookEndpoint, type WebhookResponse } from "./webhookHttp.js";

export class WebhookGateway implements VoicemailGateway, WebhookEndpoint {
  readonly http: HttpCapability;

  constructor(
    readonly system: KindSystem<"webhook", WebhookSettings>,
    private readonly host: GatewayHost,
  ) {
    const { port, bindAddress } = system.webhook;
    this.http = {
      path: `/webhook/${system.id}`,
      ...(port ? { listen: { port, ...(bindAddress ? { bindAddress } : {}) } } : {}),
      handle: (req, res) => serveWebhook(this, req, res, host.log, host.metrics?.webhookRequests),
    };
  }

  get systemId(): string {
    return this.system.id;
  }

  get maxBodyBytes(): number {
    return this.system.webhook.maxBodyBytes;
  }

  async start(): Promise<void> {}
  async stop(): Promise<void> {}

  /** Handles one request whose raw body has already been read within the size limit. */
  async handle(rawBody: Buffer, signature: string | undefined): Promise<WebhookResponse> {
    if (!verifySignature(this.system.webhook.secret, rawBody, signature)) {
      return { status: 401, body: { error: "missing or bad X-Signature-256" } };
    }
    let json: unknown;
    try {
      json = JSON.parse(rawBody.toString("utf8"));
    } catch {
      return { status: 400, body: { error: "body is not valid JSON" } };
    }
    const parsed = parseWebhookPayload(this.system.id, json, Date.now());
    if (!parsed.ok) return { status: 400, body: { error: parsed.reason } };
    await this.host.acceptUpdate(parsed.update);
    return { status: 202, body: { status: "accepted" } };
  }
}
