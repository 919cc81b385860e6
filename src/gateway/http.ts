/**
 * The HTTP side of the kinds that have one: one router per listener (the appservice's, or one
 * a system asked for), dispatching by exact path to the gateways' `http` capability.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { HttpCapability } from "./gateway.js";

/** The request's path without query and trailing slash, decoded; undefined when it cannot be. */
function pathOf(url: string | undefined): string | undefined {
  const path = (url ?? "").replace(/[?#].*$/s, "").replace(/(.)\/+$/, "$1");
  try {
    return decodeURIComponent(path);
  } catch {
    return undefined; // a bad %-escape: no route has such a path
  }
}

export class HttpRouter {
  private readonly routes = new Map<string, HttpCapability>();

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

  /** Answers the request: by its route, or with 404. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const route = this.route(req);
    if (route) return route.handle(req, res);
    const body = JSON.stringify({ error: "not found" });
    res.writeHead(404, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  }

  /** A listener of its own, for systems that asked for one. */
  listen(port: number, host: string): Promise<Server> {
    const server = createServer((req, res) => void this.handle(req, res));
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve(server);
      });
    });
  }
}
