/**
 * The HTTP side of the kinds that have one: one router per listener (the appservice's, or one
 * a system asked for), dispatching by exact path to the gateways' `http` capability.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { Logger } from "matrix-appservice-bridge";
import type { HttpCapability } from "./gateway.js";
import { rateLimitedLog } from "../util/rateLimitedLog.js";

/**
 * What one listener allows a client, so that nobody can hold its descriptors: Node's defaults
 * are no connection cap, 60 s for the headers, 300 s for a request, checked every 30 s.
 */
export interface ListenerLimits {
  /** The whole header block must arrive within this, counted from the connection or the request's start. */
  headersTimeoutMs: number;
  /** The whole request, body included, must arrive within this. */
  requestTimeoutMs: number;
  /** How often those two are checked: a slow client is cut off at most this much late. */
  checkIntervalMs: number;
  /** A socket that moves no byte either way (e.g. a client that does not read our answer) is closed. */
  idleTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** Requests on one keep-alive connection; then the server closes it. */
  maxRequestsPerSocket: number;
  /** Open connections in all; further ones are closed at once. */
  maxConnections: number;
  /** Open connections from one address, so that one client cannot take them all. */
  maxConnectionsPerSource: number;
}

export const LISTENER_LIMITS: ListenerLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  checkIntervalMs: 1_000,
  idleTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxRequestsPerSocket: 100,
  maxConnections: 512,
  maxConnectionsPerSource: 64,
};

const ACCEPT_ERROR_LOG_INTERVAL_MS = 60_000;

/**
 * Applies the limits to an HTTP server; call it before `listen` (the timeout checker starts
 * there). Besides the webhook's own listeners, the appservice listener should get it too. With
 * a log, an error of the listening server (accept failing with EMFILE when descriptors run out)
 * is logged, at most once a minute, instead of crashing the process for want of a listener.
 */
export function hardenServer(server: Server, limits: Partial<ListenerLimits> = {}, log?: Pick<Logger, "warn">): Server {
  const l = { ...LISTENER_LIMITS, ...limits };
  // Node swaps the two when the headers' is the longer, which would stretch the request's.
  l.headersTimeoutMs = Math.min(l.headersTimeoutMs, l.requestTimeoutMs);
  if (log) {
    const warn = rateLimitedLog((line) => log.warn(line), { intervalMs: ACCEPT_ERROR_LOG_INTERVAL_MS });
    server.on("error", (err: NodeJS.ErrnoException) => {
      // A failing listen() is its caller's to report (HttpRouter.listen rejects).
      if (!server.listening && server.listenerCount("error") > 1) return;
      warn("accept", `HTTP listener: ${err.code ?? err.message} (logged at most once a minute)`);
    });
  }
  server.headersTimeout = l.headersTimeoutMs;
  server.requestTimeout = l.requestTimeoutMs;
  // Read by Node when the server starts listening.
  (server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = l.checkIntervalMs;
  server.keepAliveTimeout = l.keepAliveTimeoutMs;
  server.maxRequestsPerSocket = l.maxRequestsPerSocket;
  server.maxConnections = l.maxConnections;
  // Without a "timeout" listener Node destroys a socket that was idle this long.
  server.timeout = l.idleTimeoutMs;
  // At the limit Node only says "Connection: close" and answers 503 to whatever follows on the
  // connection; this makes it close the connection after that answer. Before the handler, which
  // may answer at once.
  const served = new WeakMap<Socket, number>();
  server.prependListener("request", (req: IncomingMessage, res: ServerResponse) => {
    const n = (served.get(req.socket) ?? 0) + 1;
    served.set(req.socket, n);
    if (l.maxRequestsPerSocket > 0 && n >= l.maxRequestsPerSocket) res.shouldKeepAlive = false;
  });
  const perSource = new Map<string, number>();
  // Before Node's own listener, so that a refused socket never gets a parser.
  server.prependListener("connection", (socket: Socket) => {
    const source = socket.remoteAddress ?? "";
    const open = perSource.get(source) ?? 0;
    if (open >= l.maxConnectionsPerSource) {
      socket.destroy();
      return;
    }
    perSource.set(source, open + 1);
    socket.once("close", () => {
      const left = (perSource.get(source) ?? 1) - 1;
      if (left > 0) perSource.set(source, left);
      else perSource.delete(source);
    });
  });
  return server;
}

/** The request's path without query and trailing slash, decoded; undefined when it cannot be. */
function pathOf(url: string | undefined): string | undefined {
  const path = (url ?? "").replace(/[?#].*$/s, "").replace(/(.)\/+$/, "$1");
  try {
    return decodeURIComponent(path);
  } catch {
    return undefined; // a bad %-escape: no route has such a path
  }
}

function sendError(res: ServerResponse, status: number, error: string): void {
  const body = JSON.stringify({ error });
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

export class HttpRouter {
  private readonly routes = new Map<string, HttpCapability>();

  constructor(private readonly log: Pick<Logger, "warn"> = new Logger("HttpListener")) {}

  add(route: HttpCapability): void {
    if (this.routes.has(route.path)) throw new Error(`two systems serve ${route.path} on one listener`);
    this.routes.set(route.path, route);
  }

  private route(req: IncomingMessage): HttpCapability | undefined {
    const path = pathOf(req.url);
    return path === undefined ? undefined : this.routes.get(path);
  }

  matches(req: IncomingMessage): boolean {
    return this.route(req) !== undefined;
  }

  /** Answers the request: by its route, or with 404. Never rejects. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const route = this.route(req);
      if (route) await route.handle(req, res);
      else sendError(res, 404, "not found");
    } catch (err) {
      // A route broke its promise never to reject: still an answer, and no unhandled rejection.
      this.log.warn(`HTTP ${req.method ?? "?"} answered 500: ${(err as Error).message}`);
      if (res.headersSent) res.destroy();
      else sendError(res, 500, "internal error");
    }
  }

  /** A listener of its own, for systems that asked for one, with the limits applied. */
  listen(port: number, host: string, limits: Partial<ListenerLimits> = {}): Promise<Server> {
    return listenHardened((req, res) => void this.handle(req, res), port, host, limits, this.log);
  }
}

/** A listener of the bridge's own with the limits every listener has; resolves once it listens. */
export function listenHardened(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  port: number,
  host: string,
  limits: Partial<ListenerLimits>,
  log: Pick<Logger, "warn">,
): Promise<Server> {
  const server = hardenServer(createServer(handler), limits, log);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}
