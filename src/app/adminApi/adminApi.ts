/**
 * The admin HTTP API (F6): its own listener (loopback by default), a bearer token, a request
 * budget per client address, JSON in and out. Order of checks: rate limit, then the token (the
 * OpenAPI document alone is open), then route and method, then the body.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { Logger } from "matrix-appservice-bridge";
import { listenHardened } from "../../gateway/http.js";
import { rateLimitedLog } from "../../util/rateLimitedLog.js";
import { BearerToken, ClientRateLimit, type RateLimit } from "./access.js";
import { ApiError, readJsonObject, sendError, sendJson } from "./apiHttp.js";
import { openApiDocument } from "./openapi.js";
import { ADMIN_API_PREFIX, adminRoutes, type AdminServices, type Method, type Route } from "./routes.js";

export interface AdminApiSettings {
  token: string;
  rateLimit: RateLimit;
  maxBodyBytes: number;
}

const OPENAPI_PATH = "/openapi.json";
const WITH_BODY: readonly string[] = ["POST", "PATCH"];

/** The path's segments after the prefix, each percent-decoded; undefined when outside the API or undecodable. */
function segmentsOf(url: string | undefined): string[] | undefined {
  const path = (url ?? "").replace(/[?#].*$/s, "").replace(/(.)\/+$/, "$1");
  if (path !== ADMIN_API_PREFIX && !path.startsWith(`${ADMIN_API_PREFIX}/`)) return undefined;
  try {
    // Each segment on its own: a `%2F` in a mailbox or a room address stays inside its segment.
    return path.slice(ADMIN_API_PREFIX.length).split("/").slice(1).map(decodeURIComponent);
  } catch {
    return undefined;
  }
}

function match(route: Route, segments: string[]): Record<string, string> | undefined {
  const pattern = route.path.split("/").slice(1);
  if (pattern.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (const [i, part] of pattern.entries()) {
    const value = segments[i]!;
    if (part.startsWith("{")) {
      if (value === "") return undefined;
      params[part.slice(1, -1)] = value;
    } else if (part !== value) return undefined;
  }
  return params;
}

export class AdminApi {
  readonly routes: readonly Route[];
  private readonly token: BearerToken;
  private readonly limiter: ClientRateLimit;
  private readonly refusals: ReturnType<typeof rateLimitedLog>;

  constructor(
    private readonly settings: AdminApiSettings,
    services: AdminServices,
    private readonly log: Pick<Logger, "info" | "warn"> = new Logger("AdminApi"),
    now: () => number = Date.now,
  ) {
    this.routes = adminRoutes(services);
    this.token = new BearerToken(settings.token);
    this.limiter = new ClientRateLimit(settings.rateLimit, now);
    // Refusals are what strangers can cause at will: one line per kind and minute.
    this.refusals = rateLimitedLog((line) => log.warn(line));
  }

  /** Answers the request; never rejects. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const caller = req.socket.remoteAddress ?? "?";
    try {
      await this.dispatch(req, res, caller);
    } catch (err) {
      if (!(err instanceof ApiError)) {
        this.log.warn(`admin API: ${req.method ?? "?"} ${(req.url ?? "").replace(/\?.*$/s, "").slice(0, 200)} from ${caller} failed: ${(err as Error).message}`);
      }
      const error = err instanceof ApiError ? err : new ApiError(500, "M_UNKNOWN", "internal error (see the bridge's log)");
      if (res.headersSent) res.destroy();
      else sendError(res, error);
    }
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse, caller: string): Promise<void> {
    const retryAfter = this.limiter.take(caller);
    if (retryAfter !== undefined) {
      this.refusals(`rate:${caller}`, `admin API: ${caller} is over the rate limit`);
      throw new ApiError(429, "M_LIMIT_EXCEEDED", `too many requests: try again in ${retryAfter} s`, { "retry-after": String(retryAfter) });
    }
    const segments = segmentsOf(req.url);
    if (segments === undefined) throw new ApiError(404, "M_UNRECOGNIZED", "not found: the admin API is under " + ADMIN_API_PREFIX);
    const path = `/${segments.join("/")}`;
    if (path === OPENAPI_PATH) {
      if (req.method !== "GET") throw methodNotAllowed(["GET"]);
      sendJson(res, 200, openApiDocument);
      return;
    }
    const auth = this.token.check(req);
    if (auth !== "ok") {
      this.refusals(`auth:${auth}:${caller}`, `admin API: refused ${caller}: ${auth === "missing" ? "no bearer token" : "wrong token"}`);
      throw new ApiError(401, auth === "missing" ? "M_MISSING_TOKEN" : "M_UNKNOWN_TOKEN", auth === "missing" ? "an Authorization: Bearer <token> header is required" : "the token is wrong", {
        "www-authenticate": 'Bearer realm="voicemail admin"',
      });
    }
    const candidates = this.routes.map((route) => ({ route, params: match(route, segments) })).filter((c) => c.params !== undefined);
    if (candidates.length === 0) throw new ApiError(404, "M_UNRECOGNIZED", `no such route: ${path.slice(0, 200)}`);
    const chosen = candidates.find((c) => c.route.method === (req.method as Method));
    if (!chosen) throw methodNotAllowed(candidates.map((c) => c.route.method));
    const body = WITH_BODY.includes(chosen.route.method) ? await readJsonObject(req, res, this.settings.maxBodyBytes) : undefined;
    const reply = await chosen.route.handle({ params: chosen.params!, query: new URL(req.url ?? "/", "http://x").searchParams, body, caller });
    sendJson(res, reply.status, reply.body);
  }

  /** Its own listener, with the limits every listener of the bridge has. */
  listen(port: number, host: string): Promise<Server> {
    return listenHardened((req, res) => void this.handle(req, res), port, host, {}, this.log);
  }
}

function methodNotAllowed(allowed: string[]): ApiError {
  const allow = [...new Set(allowed)].join(", ");
  return new ApiError(405, "M_UNRECOGNIZED", `method not allowed here; allowed: ${allow}`, { allow });
}
