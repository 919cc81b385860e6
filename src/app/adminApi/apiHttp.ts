/**
 * The admin API's HTTP plumbing: JSON answers and errors, and request bodies read with a size
 * limit. Errors carry a Matrix-style errcode, which admins of a Matrix bridge already know.
 */
import type { IncomingMessage, ServerResponse } from "node:http";

export type Errcode =
  | "M_MISSING_TOKEN"
  | "M_UNKNOWN_TOKEN"
  | "M_NOT_FOUND"
  | "M_UNRECOGNIZED"
  | "M_NOT_JSON"
  | "M_BAD_JSON"
  | "M_INVALID_PARAM"
  | "M_TOO_LARGE"
  | "M_LIMIT_EXCEEDED"
  | "M_UNSUPPORTED"
  | "M_CONFLICT"
  | "M_UNKNOWN";

/** A refusal with its status: what the caller did wrong, said so they can fix it. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: Errcode,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    // Nothing here is for caches, and a browser must not guess another type.
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...headers,
  });
  res.end(text);
}

export function sendError(res: ServerResponse, error: ApiError): void {
  sendJson(res, error.status, { error: error.message, errcode: error.errcode }, error.headers);
}

/**
 * The body as a JSON object; `undefined` when there is none. Reading stops at `maxBytes`: the
 * connection is then closed after the 413, so the rest of a huge body is never taken in.
 */
export async function readJsonObject(req: IncomingMessage, res: ServerResponse, maxBytes: number): Promise<Record<string, unknown> | undefined> {
  const declared = Number(req.headers["content-length"] ?? NaN);
  const tooLarge = () => {
    res.shouldKeepAlive = false;
    return new ApiError(413, "M_TOO_LARGE", `the request body is larger than ${maxBytes} bytes`);
  };
  if (declared > maxBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw tooLarge();
    chunks.push(chunk);
  }
  if (size === 0) return undefined;
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json") throw new ApiError(415, "M_NOT_JSON", "the request body must be JSON (Content-Type: application/json)");
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new ApiError(400, "M_NOT_JSON", "the request body is not valid JSON");
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new ApiError(400, "M_BAD_JSON", "the request body must be a JSON object");
  return parsed as Record<string, unknown>;
}
