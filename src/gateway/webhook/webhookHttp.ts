/**
 * HTTP plumbing of the webhook: `POST /webhook/<system id>`, read as raw bytes (the HMAC covers
 * the exact body) with a size limit. Serves on the appservice listener or on a port of its own.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Logger } from "matrix-appservice-bridge";
import type { Counter } from "prom-client";
import { SIGNATURE_HEADER } from "./signature.js";
import type { WebhookGateway, WebhookResponse } from "./webhookGateway.js";

const PATH = /^\/webhook\/([^/?#]*)\/?(?:\?.*)?$/;

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      reject(new BodyTooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new BodyTooLarge());
        req.pause();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function send(res: ServerResponse, response: WebhookResponse): void {
  const body = JSON.stringify(response.body);
  res.writeHead(response.status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
  // An over-long body is left unread: close rather than drain it.
  if (response.status === 413) res.once("finish", () => res.socket?.destroy());
}

export class WebhookRouter {
  private readonly gateways = new Map<string, WebhookGateway>();

  constructor(
    private readonly log: Logger,
    private readonly requests?: Counter<string>,
  ) {}

  add(gateway: WebhookGateway): void {
    this.gateways.set(gateway.systemId, gateway);
  }

  matches(req: IncomingMessage): boolean {
    return PATH.test(req.url ?? "");
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const id = decodeURIComponent(PATH.exec(req.url ?? "")?.[1] ?? "");
    const response = await this.respond(id, req).catch((err: unknown) => {
      this.log.error(`webhook ${id}: could not store the update: ${(err as Error).message}`);
      return { status: 503, body: { error: "the bridge could not store the update; retry later" } };
    });
    this.requests?.inc({ system: this.gateways.has(id) ? id : "unknown", status: String(response.status) });
    if (response.status !== 202) {
      this.log.warn(`webhook ${JSON.stringify(id)} from ${req.socket.remoteAddress}: ${response.status} ${String(response.body.error)}`);
    }
    send(res, response);
  }

  private async respond(id: string, req: IncomingMessage): Promise<WebhookResponse> {
    const gateway = this.gateways.get(id);
    if (!gateway) return { status: 404, body: { error: "no such voice mail system" } };
    if (req.method !== "POST") return { status: 405, body: { error: "use POST" } };
    let raw: Buffer;
    try {
      raw = await readBody(req, gateway.maxBodyBytes);
    } catch (err) {
      if (err instanceof BodyTooLarge) return { status: 413, body: { error: `body larger than ${gateway.maxBodyBytes} bytes` } };
      return { status: 400, body: { error: "could not read the body" } };
    }
    const signature = req.headers[SIGNATURE_HEADER];
    return gateway.handle(raw, Array.isArray(signature) ? signature[0] : signature);
  }

  /** A listener of its own, for systems whose webhook has a `port`. */
  listen(port: number, host: string): Promise<Server> {
    const server = createServer((req, res) => {
      if (this.matches(req)) void this.handle(req, res);
      else send(res, { status: 404, body: { error: "not found" } });
    });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve(server));
    });
  }
}
