/**
 * HTTP plumbing of the webhook: the raw body (the HMAC covers the exact bytes) read within the
 * size limit, one answer for every request, one log line for each refused one.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Logger } from "matrix-appservice-bridge";
import type { Counter } from "prom-client";
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, type SignatureHeaders } from "./signature.js";

export interface WebhookResponse {
  status: number;
  body: Record<string, unknown>;
  /** For the log line of a refused request, when it should say more than the client is told. */
  logDetail?: string;
}

/** What serveWebhook needs of the gateway. */
export interface WebhookEndpoint {
  readonly systemId: string;
  readonly maxBodyBytes: number;
  /** Judges a body that was read within the size limit; rejects only when the update could not be stored. */
  handle(rawBody: Buffer, headers: SignatureHeaders): Promise<WebhookResponse>;
}

class BodyTooLarge extends Error {}

/** After a 413, how long and how much more the bridge reads (and drops) before it closes. */
const LINGER_MS = 2_000;
const LINGER_BYTES = 1 << 20;

/** The body, within the limit; rejects when it is larger, or the client goes before it is all there. */
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
      // Past the limit the rest is dropped as it comes (the connection closes after the 413):
      // pausing would stop the socket's reading, and a close with bytes unread is a reset.
      if (size > limit) return reject(new BodyTooLarge());
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
    // A client that aborts or a connection cut by a timeout: without this the promise could hang.
    req.on("close", () => reject(new Error("the connection closed before the body was complete")));
  });
}

/**
 * Closes a connection whose client may still be sending. Closed at once with its bytes unread,
 * the kernel answers with a reset, which can destroy our 413 before the client has read it: so
 * half-close first, and drop what still comes for a bounded time and amount.
 */
function lingeringClose(socket: Socket): void {
  let dropped = 0;
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once("close", () => clearTimeout(timer));
  socket.on("data", (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > LINGER_BYTES) socket.destroy();
  });
  socket.end();
}

function sendJson(res: ServerResponse, response: WebhookResponse): void {
  if (res.headersSent || res.destroyed) return; // the client is gone
  const body = JSON.stringify(response.body);
  const headers: Record<string, string | number> = { "content-type": "application/json", "content-length": Buffer.byteLength(body) };
  if (response.status === 413) {
    // The connection ends after this answer rather than reading whatever the client keeps
    // sending. Node closes a "close" connection with destroySoon() once the answer is out; this
    // connection gets the lingering close instead.
    headers.connection = "close";
    const socket = res.socket as (Socket & { destroySoon?: () => void }) | null;
    if (socket) socket.destroySoon = () => lingeringClose(socket);
  }
  res.writeHead(response.status, headers);
  res.end(body);
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

async function respond(endpoint: WebhookEndpoint, req: IncomingMessage): Promise<WebhookResponse> {
  if (req.method !== "POST") return { status: 405, body: { error: "use POST" } };
  let raw: Buffer;
  try {
    raw = await readBody(req, endpoint.maxBodyBytes);
  } catch (err) {
    if (err instanceof BodyTooLarge) return { status: 413, body: { error: `body larger than ${endpoint.maxBodyBytes} bytes` } };
    return { status: 400, body: { error: "could not read the body" }, logDetail: (err as Error).message };
  }
  return endpoint.handle(raw, { signature: header(req.headers, SIGNATURE_HEADER), timestamp: header(req.headers, TIMESTAMP_HEADER) });
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
  const response = await respond(endpoint, req).catch(
    (err: unknown): WebhookResponse => ({
      status: 503,
      body: { error: "the bridge could not store the update; retry later" },
      logDetail: `could not store the update: ${(err as Error).message}`,
    }),
  );
  try {
    requests?.inc({ system: id, status: String(response.status) });
    const line = `webhook ${id} from ${req.socket.remoteAddress}: ${response.status} ${response.logDetail ?? String(response.body.error)}`;
    // A store that cannot write needs the admin; anything else is the client's problem.
    if (response.status === 503) log.error(line);
    else if (response.status !== 202) log.warn(line);
    sendJson(res, response);
  } catch (err) {
    log.warn(`webhook ${id}: could not answer: ${(err as Error).message}`);
    res.destroy();
  }
}
