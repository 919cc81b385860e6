/**
 * SIP transports (RFC 3261 §18) over node: modules only: one UDP socket, TCP and TLS client
 * connections reused per remote (a notifier may send its NOTIFYs back over them), and, only when
 * asked for (transport tcp), a TCP listener on the UDP port for notifiers that open their own
 * connection to our Contact. The bridge never accepts TLS connections: its TLS is client-side only.
 *
 * Whoever reaches the listener is a stranger: inbound connections are capped in total and per
 * source address, closed when idle, and closed when a message they began does not complete in
 * time (a peer that sends half a header and waits holds a descriptor for nothing).
 */
import { Buffer } from "node:buffer";
import dgram from "node:dgram";
import { lookup } from "node:dns/promises";
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { rateLimitedLog, type RateLimitedLog } from "../../util/rateLimitedLog.js";
import { StreamFramer } from "./framing.js";
import { MAX_MESSAGE_BYTES, parseMessage, type SipMessage } from "./message.js";

const UDP_RECEIVE_BUFFER = 4 * 1024 * 1024;

export type TransportKind = "udp" | "tcp" | "tls";

/** A peer as seen by the transport: where a message came from, or where one goes. */
export interface Endpoint {
  transport: TransportKind;
  address: string;
  port: number;
}

export interface SipTlsOptions {
  /** Verify the server's certificate (default true). */
  rejectUnauthorized?: boolean;
  /** PEM file with the CA(s) to trust instead of the system store. */
  caFile?: string;
}

export interface SipLogger {
  debug(m: string): void;
  info(m: string): void;
  warn(m: string): void;
  error(m: string): void;
}

export interface TransportOptions {
  bindAddress: string;
  /** 0 = any free port (UDP and TCP get the same one). */
  port: number;
  /** Address written into Via and Contact instead of the local one (NAT). */
  publicAddress?: string;
  tls?: SipTlsOptions;
  logger: SipLogger;
  maxMessageBytes?: number;
  connectTimeoutMs?: number;
  /** Accept inbound TCP on the UDP port (default true). */
  listenTcp?: boolean;
  /** Inbound TCP connections open at once, in all (default 64) and from one address (default 8). */
  maxConnections?: number;
  maxConnectionsPerSource?: number;
  /** An inbound connection silent this long is closed (default 120 s). */
  idleTimeoutMs?: number;
  /** A message begun on any connection must be complete within this (default 10 s). */
  messageTimeoutMs?: number;
}

export const CONNECTION_DEFAULTS = { maxConnections: 64, maxConnectionsPerSource: 8, idleTimeoutMs: 120_000, messageTimeoutMs: 10_000 };

export interface TransportHandler {
  /** `size`: the bytes it came in (a datagram's or a framed message's). */
  message(msg: SipMessage, source: Endpoint, size: number): void;
  /** A message we could not take; `partial` (when present) may still allow an error response. */
  invalid(reason: string, partial: SipMessage | undefined, source: Endpoint, tooLarge: boolean, size: number): void;
}

interface Connection {
  socket: net.Socket;
  ready: Promise<void>;
  transport: "tcp" | "tls";
  /** Opened by the peer (counted against the caps), not by us. */
  inbound?: boolean;
}

const WILDCARD = new Set(["0.0.0.0", "::", ""]);

export class SipTransport {
  private handler: TransportHandler | undefined;
  private readonly conns = new Map<string, Connection>();
  private readonly udpLocal = new Map<string, string>();
  private tcpServer: net.Server | undefined;
  private closed = false;
  private readonly maxBytes: number;
  private readonly secure: tls.ConnectionOptions;
  private readonly limits: typeof CONNECTION_DEFAULTS;
  /** Inbound connections open, in all and per source address. */
  private inbound = 0;
  private readonly inboundFrom = new Map<string, number>();
  /** Refused and closed connections: strangers can make these at will. */
  private readonly connLog: RateLimitedLog;

  private constructor(
    private readonly opts: TransportOptions,
    private readonly udp: dgram.Socket,
    readonly localPort: number,
  ) {
    this.maxBytes = opts.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    this.limits = {
      maxConnections: opts.maxConnections ?? CONNECTION_DEFAULTS.maxConnections,
      maxConnectionsPerSource: opts.maxConnectionsPerSource ?? CONNECTION_DEFAULTS.maxConnectionsPerSource,
      idleTimeoutMs: opts.idleTimeoutMs ?? CONNECTION_DEFAULTS.idleTimeoutMs,
      messageTimeoutMs: opts.messageTimeoutMs ?? CONNECTION_DEFAULTS.messageTimeoutMs,
    };
    this.connLog = rateLimitedLog((line) => opts.logger.warn(line));
    const t = opts.tls ?? {};
    this.secure = {
      rejectUnauthorized: t.rejectUnauthorized ?? true,
      ...(t.caFile ? { ca: readFileSync(t.caFile) } : {}),
    };
    udp.on("message", (buf, rinfo) => this.onDatagram(buf, { transport: "udp", address: rinfo.address, port: rinfo.port }));
    udp.on("error", (err) => opts.logger.warn(`sip: UDP socket error: ${err.message}`));
  }

  static async open(opts: TransportOptions): Promise<SipTransport> {
    // With port 0, UDP picks a port and TCP must get the same one; retry if TCP finds it taken.
    for (let attempt = 0; ; attempt++) {
      // A burst of answers (thousands of subscriptions refreshed or ended together) overflows the
      // default receive buffer; each lost datagram then costs a retransmission. The kernel caps
      // the size at net.core.rmem_max.
      const udp = dgram.createSocket({ type: net.isIPv6(opts.bindAddress) ? "udp6" : "udp4", recvBufferSize: UDP_RECEIVE_BUFFER });
      await new Promise<void>((resolve, reject) => {
        udp.once("error", reject);
        udp.bind({ port: opts.port, address: opts.bindAddress, exclusive: true }, () => {
          udp.off("error", reject);
          resolve();
        });
      });
      const transport = new SipTransport(opts, udp, udp.address().port);
      if (opts.listenTcp === false) return transport;
      try {
        transport.tcpServer = await transport.listenTcp(transport.localPort);
        return transport;
      } catch (err) {
        if (opts.port === 0 && attempt < 5) {
          await transport.close();
          continue;
        }
        opts.logger.warn(`sip: no TCP listener on port ${transport.localPort}: ${(err as Error).message}`);
        return transport;
      }
    }
  }

  private listenTcp(port: number): Promise<net.Server> {
    const server = net.createServer();
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen({ port, host: this.opts.bindAddress, exclusive: true }, () => {
        server.off("error", reject);
        server.on("error", (err) => this.opts.logger.warn(`sip: tcp listener error: ${err.message}`));
        resolve(server);
      });
      server.on("connection", (socket: net.Socket) => this.adopt(socket));
    });
  }

  setHandler(handler: TransportHandler): void {
    this.handler = handler;
  }

  /** Sends one serialized message; rejects when the peer cannot be reached. */
  async send(data: Buffer, dest: Endpoint): Promise<void> {
    if (this.closed) throw new Error("transport closed");
    if (data.length > this.maxBytes) throw new Error(`message too large to send (${data.length} bytes)`);
    const address = await this.resolve(dest.address);
    if (dest.transport === "udp") {
      await new Promise<void>((resolve, reject) => this.udp.send(data, dest.port, address, (err) => (err ? reject(err) : resolve())));
      return;
    }
    const conn = this.connection({ ...dest, address });
    await conn.ready;
    await new Promise<void>((resolve, reject) => conn.socket.write(data, (err) => (err ? reject(err) : resolve())));
  }

  /**
   * Host and port to advertise in Via and Contact for requests to `dest`. For TCP/TLS this opens
   * the connection (its local address is only known then).
   */
  async localEndpoint(dest: Endpoint): Promise<{ host: string; port: number }> {
    const address = await this.resolve(dest.address);
    const bind = this.opts.bindAddress;
    if (dest.transport === "udp") {
      const host = this.opts.publicAddress ?? (WILDCARD.has(bind) ? await this.udpSourceFor(address) : bind);
      return { host, port: this.localPort };
    }
    const conn = this.connection({ ...dest, address });
    await conn.ready;
    const host = this.opts.publicAddress ?? (WILDCARD.has(bind) ? conn.socket.localAddress ?? bind : bind);
    // Over TLS the Contact names the connection itself: we take no TLS connections of our own.
    const listening = dest.transport === "tcp" && this.tcpServer ? this.localPort : undefined;
    return { host, port: listening ?? conn.socket.localPort ?? this.localPort };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const conn of this.conns.values()) conn.socket.destroy();
    this.conns.clear();
    const closeServer = (s: net.Server | undefined): Promise<void> =>
      s ? new Promise((resolve) => s.close(() => resolve())) : Promise.resolve();
    await Promise.all([
      closeServer(this.tcpServer),
      new Promise<void>((resolve) => {
        try {
          this.udp.close(() => resolve());
        } catch {
          resolve(); // already closed
        }
      }),
    ]);
  }

  // ------------------------------------------------------------------ inbound

  private onDatagram(buf: Buffer, source: Endpoint): void {
    // RFC 5626 keepalives and stray padding are not messages.
    if (buf.length <= 4 && /^[\r\n]*$/.test(buf.toString("latin1"))) return;
    const parsed = parseMessage(buf, this.maxBytes);
    if (parsed.ok) this.handler?.message(parsed.message, source, buf.length);
    else this.handler?.invalid(parsed.reason, parsed.partial, source, buf.length > this.maxBytes, buf.length);
  }

  /** An inbound TCP connection: keyed by the peer's address, so responses go back over it. */
  private adopt(socket: net.Socket): void {
    const source: Endpoint = { transport: "tcp", address: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 };
    const fromSource = this.inboundFrom.get(source.address) ?? 0;
    const full =
      this.inbound >= this.limits.maxConnections
        ? `${this.limits.maxConnections} connections open`
        : fromSource >= this.limits.maxConnectionsPerSource
          ? `${this.limits.maxConnectionsPerSource} connections open from ${source.address}`
          : undefined;
    if (full) {
      this.connLog(`refused ${source.address}`, `sip: refused a TCP connection from ${source.address}: ${full}`);
      socket.destroy();
      return;
    }
    this.inbound++;
    this.inboundFrom.set(source.address, fromSource + 1);
    socket.once("close", () => {
      this.inbound--;
      const left = (this.inboundFrom.get(source.address) ?? 1) - 1;
      if (left > 0) this.inboundFrom.set(source.address, left);
      else this.inboundFrom.delete(source.address);
    });
    // Idle: no byte either way for this long (keepalive pings count).
    socket.setTimeout(this.limits.idleTimeoutMs, () => {
      this.opts.logger.debug(`sip: closing idle tcp connection from ${source.address}:${source.port}`);
      socket.destroy();
    });
    this.conns.get(connKey(source))?.socket.destroy();
    this.wire({ socket, transport: "tcp", ready: Promise.resolve(), inbound: true }, source);
  }

  /** The address the UDP socket is bound to. */
  get localAddress(): string {
    return this.udp.address().address;
  }

  /** Inbound TCP connections open now (for tests and figures). */
  get inboundConnections(): number {
    return this.inbound;
  }

  /** The open connection to `dest`, or a new one. */
  private connection(dest: Endpoint): Connection {
    const existing = this.conns.get(connKey(dest));
    if (existing && !existing.socket.destroyed) return existing;
    if (dest.transport === "udp") throw new Error("no connections for UDP");
    const bind = this.opts.bindAddress;
    const base = { host: dest.address, port: dest.port, ...(WILDCARD.has(bind) ? {} : { localAddress: bind }) };
    const socket =
      dest.transport === "tls"
        ? tls.connect({ ...base, ...this.secure, ...(net.isIP(dest.address) ? {} : { servername: dest.address }) })
        : net.connect(base);
    const timeoutMs = this.opts.connectTimeoutMs ?? 10_000;
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`connect to ${dest.address}:${dest.port} timed out`));
        socket.destroy();
      }, timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      socket.once(dest.transport === "tls" ? "secureConnect" : "connect", () => {
        clearTimeout(timer);
        resolve();
      });
      socket.once("error", fail);
      socket.once("close", () => fail(new Error("connection closed")));
    });
    ready.catch(() => undefined); // observed by send(); avoid an unhandled rejection here
    const conn: Connection = { socket, transport: dest.transport, ready };
    this.wire(conn, dest);
    return conn;
  }

  /** Framing, bookkeeping and cleanup for one connection, known to the peer as `peer`. */
  private wire(conn: Connection, peer: Endpoint): void {
    const { socket, transport } = conn;
    const key = connKey(peer);
    this.conns.set(key, conn);
    socket.setKeepAlive(true, 30_000);
    socket.setNoDelay(true);
    const framer = new StreamFramer(this.maxBytes);
    // Started by the first byte of a message, stopped when it is complete: a peer that trickles a
    // message (a byte now and then keeps the idle timer quiet) loses the connection all the same.
    let slow: NodeJS.Timeout | undefined;
    const closeSlow = (): void => {
      this.connLog(`slow ${peer.address}`, `sip: closing ${transport} connection ${conn.inbound ? "from" : "to"} ${peer.address}:${peer.port}: a message was not complete within ${this.limits.messageTimeoutMs} ms`);
      socket.destroy();
    };
    socket.on("data", (chunk: Buffer) => {
      for (const ev of framer.push(chunk)) {
        if (ev.kind === "message") this.handler?.message(ev.message, peer, ev.size);
        else if (ev.kind === "invalid") this.handler?.invalid(ev.reason, ev.partial, peer, ev.tooLarge === true, chunk.length);
        else if (ev.kind === "ping") socket.write("\r\n");
        else {
          this.connLog(`fatal ${peer.address}`, `sip: closing ${transport} connection ${conn.inbound ? "from" : "to"} ${peer.address}:${peer.port}: ${ev.reason}`);
          socket.destroy();
        }
      }
      if (!framer.pending) {
        clearTimeout(slow);
        slow = undefined;
      } else slow ??= setTimeout(closeSlow, this.limits.messageTimeoutMs);
    });
    socket.on("error", (err) => this.opts.logger.debug(`sip: ${transport} ${peer.address}:${peer.port}: ${err.message}`));
    socket.on("close", () => {
      clearTimeout(slow);
      if (this.conns.get(key) === conn) this.conns.delete(key);
    });
  }

  private async resolve(host: string): Promise<string> {
    if (net.isIP(host)) return host;
    const family = net.isIPv6(this.opts.bindAddress) ? 6 : 4;
    return (await lookup(host, { family })).address;
  }

  /** The local address the kernel would use toward `address` (when bound to a wildcard). */
  private async udpSourceFor(address: string): Promise<string> {
    const known = this.udpLocal.get(address);
    if (known) return known;
    const probe = dgram.createSocket(net.isIPv6(address) ? "udp6" : "udp4");
    try {
      await new Promise<void>((resolve, reject) => {
        probe.once("error", reject);
        probe.connect(9, address, () => resolve()); // connect() on UDP sends nothing
      });
      const host = probe.address().address;
      this.udpLocal.set(address, host);
      return host;
    } catch {
      return net.isIPv6(address) ? "::1" : "127.0.0.1";
    } finally {
      probe.close();
    }
  }
}

/**
 * The local address the kernel uses toward `host`: what the bridge binds by default, so that it
 * listens only where its voice mail server can reach it (loopback for a server on this host).
 */
export async function localAddressToward(host: string): Promise<string> {
  const address = net.isIP(host) ? host : (await lookup(host)).address;
  const probe = dgram.createSocket(net.isIPv6(address) ? "udp6" : "udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once("error", reject);
      probe.connect(9, address, () => resolve()); // connect() on UDP sends nothing
    });
    return probe.address().address;
  } finally {
    probe.close();
  }
}

function connKey(e: Endpoint): string {
  return `${e.transport}|${e.address}|${e.port}`;
}
