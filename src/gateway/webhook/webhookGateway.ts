/**
 * Voice mail systems that POST their MWI to us (F1). The request is acknowledged (202) only
 * after the update is stored; nothing from a rejected request is kept.
 */
import type { WebhookSystemConfig } from "../../config/types.js";
import type { GatewayHost, LinkProof, VoicemailGateway } from "../gateway.js";
import { parseWebhookPayload } from "./payload.js";
import { verifySignature } from "./signature.js";

export interface WebhookResponse {
  status: number;
  body: Record<string, unknown>;
}

export const DEFAULT_MAX_BODY_BYTES = 16384;

export class WebhookGateway implements VoicemailGateway {
  readonly selfServiceLinking = false;
  readonly switchesMwiUpstream = false;

  constructor(
    readonly system: WebhookSystemConfig,
    private readonly host: GatewayHost,
  ) {}

  get systemId(): string {
    return this.system.id;
  }

  get maxBodyBytes(): number {
    return this.system.webhook.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  }

  async start(): Promise<void> {}
  async stop(): Promise<void> {}

  async proveLink(): Promise<LinkProof> {
    return { ok: false, reason: "mailboxes of this system are linked by an admin" };
  }

  // The system pushes every mailbox it has; there is nothing to subscribe to.
  async watch(): Promise<void> {}
  async unwatch(): Promise<void> {}

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
