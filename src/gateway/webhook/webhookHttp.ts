/**
 * HTTP plumbing of the webhook: the raw body (the HMAC covers the exact bytes) read within the
 * size limit, one answer for every request, one log line for each refused one.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "matrix-appservice-bridge";
import type { Counter } from "prom-client";
import { SIGNATURE_HEADER } from "./signature.js";

export interface WebhookResponse {
  status: number;
  body: Record<string, unknown>;
}

/** What serveWebhook needs of the gateway. */
export interface WebhookEndpoint {
  readonly systemId: string;
  readonly maxBodyBytes: number;
  /** Judges a body that was read within the size limit. */
  handle(rawBody: Buffer, signature: string | undefined): Promise<WebhookResponse>;
}

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

function sendJson(res: ServerResponse, response: WebhookResponse): void {
  const body = JSON.stringify(response.body);
  res.writeHead(response.status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
  // An over-long body is left unread: close rather than drain it.
  if (response.status === 413) res.once("finish", () => res.socket?.destroy());
}

async function respond(endpoint: WebhookEndpoint, req: IncomingMessage): Promise<WebhookResponse> {
  if (req.method !== "POST") return { status: 405, body: { error: "use POST" } };
  let raw: Buffer;
  try {
    raw = await readBody(req, endpoint.maxBodyBytes);
  } catch (err) {
    if (err instanceof BodyTooLarge) return { status: 413, body: { error: `body larger than ${endpoint.maxBodyBytes} bytes` } };
    return { status: 400, body: { error: "could not read the body" } };
  }
  const signature = req.headers[SIGNATURE_HEADER];
  return endpoint.handle(raw, Array.isArray(signature) ? signature[0] : signature);
}

/** Answers one request to `POST /webhook/<system id>`; never rejects. */
export async function serveWebhook(
  endpoint: WebhookEndpoint,
  req: IncomingMessage,
  res: ServerResponse,
  log: Logger,
  requests?: Counter<string>,
): Promise<void> {
  const id = endpoint.systemId;
  const response = await respond(endpoint, req).catch((err: unknown) => {
    log.error(`webhook ${id}: could not store the update: ${(err as Error).message}`);
    return { status: 503, body: { error: "the bridge could not store the update; retry later" } };
  });
  requests?.inc({ system: id, status: String(response.status) });
  if (response.status !== 202) log.warn(`webhook ${id} from ${req.socket.remoteAddress}: ${response.status} ${String(response.body.error)}`);
  sendJson(res, response);
}
