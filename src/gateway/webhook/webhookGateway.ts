/**
 * Voice mail systems that POST their MWI to us (F1). The request is acknowledged (202) only
 * after the update is stored; nothing from a rejected request is kept. The system pushes every
 * mailbox it has: there is nothing to watch, and mailboxes are linked by an admin.
 */
import type { GatewayHost, HttpCapability, KindSystem, VoicemailGateway } from "../gateway.js";
import { parseWebhookPayload } from "./payload.js";
import { SeenSignatures } from "./replay.js";
import type { WebhookSettings } from "./settings.js";
import { checkSignature, type SignatureHeaders } from "./signature.js";
import { serveWebhook, type WebhookEndpoint, type WebhookResponse } from "./webhookHttp.js";

export class WebhookGateway implements VoicemailGateway, WebhookEndpoint {
  readonly http: HttpCapability;
  private readonly seen = new SeenSignatures();

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

  /**
   * Handles one request whose raw body has already been read within the size limit. Rejects
   * only when the update could not be stored (the caller answers 503).
   */
  async handle(rawBody: Buffer, headers: SignatureHeaders): Promise<WebhookResponse> {
    const { secret, legacySignature } = this.system.webhook;
    const now = Date.now();
    const verdict = checkSignature(secret, rawBody, headers, { nowMs: now, legacy: legacySignature === true });
    if (!verdict.ok) return { status: 401, body: { error: verdict.reason } };
    const replay = verdict.replay;
    if (replay) {
      const claim = this.seen.claim(replay.key, replay.refuseUntilMs, now);
      if (claim === "seen") return { status: 401, body: { error: "this signature was already used: sign each request anew" } };
      if (claim === "full") return { status: 429, body: { error: "too many requests in the last five minutes; retry later" } };
    }
    let json: unknown;
    try {
      json = JSON.parse(rawBody.toString("utf8"));
    } catch {
      return { status: 400, body: { error: "body is not valid JSON" } };
    }
    const parsed = parseWebhookPayload(this.system.id, json, now);
    if (!parsed.ok) return { status: 400, body: { error: parsed.reason } };
    try {
      await this.host.acceptUpdate(parsed.update);
    } catch (err) {
      // Nothing was stored, so the sender may retry the very same request.
      if (replay) this.seen.release(replay.key);
      throw err;
    }
    return { status: 202, body: { status: "accepted" } };
  }
}
