/**
 * SIP transports (RFC 3261 §18) over node: modules only: one UDP socket, TCP and TLS client
 * connections reused per remote (a notifier may send its NOTIFYs back over them), and a TCP
 * listener on the UDP port for notifiers that open their own connection to our Contact. The
 * bridge never accepts TLS connections: its TLS is client-side only.
 */
import { Buffer } from "node:buffer";
import dgram from "node:dgram";
import { lookup } from "node:dns/promises";
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
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
}

export interface TransportHandler {
  message(msg: SipMessage, source: Endpoint): void;
  /** A message we could not take; `partial` (when present) may still allow an error response. */
  invalid(reason: string, partial: SipMessage | undefined, source: Endpoint, tooLarge: boolean): void;
}

interface Connection {
  socket: net.Socket;
  ready: Promise<void>;
  transport: "tcp" | "tls";
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

  private constructor(
    private readonly opts: TransportOptions,
    private readonly udp: dgram.Socket,
    readonly localPort: number,
  ) {
    this.maxBytes = opts.maxMessageBytes ?? MAX_MESSAGE_BYTES;
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
    if (parsed.ok) this.handler?.message(parsed.message, source);
    else this.handler?.invalid(parsed.reason, parsed.partial, source, buf.length > this.maxBytes);
  }

  /** An inbound TCP connection: keyed by the peer's address, so responses go back over it. */
  private adopt(socket: net.Socket): void {
    const source: Endpoint = { transport: "tcp", address: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 };
    this.conns.get(connKey(source))?.socket.destroy();
    this.wire({ socket, transport: "tcp", ready: Promise.resolve() }, source);
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
    socket.on("data", (chunk: Buffer) => {
      for (const ev of framer.push(chunk)) {
        if (ev.kind === "message") this.handler?.message(ev.message, peer);
        else if (ev.kind === "invalid") this.handler?.invalid(ev.reason, ev.partial, peer, ev.tooLarge === true);
        else if (ev.kind === "ping") socket.write("\r\n");
        else {
          this.opts.logger.warn(`sip: closing ${transport} connection to ${peer.address}:${peer.port}: ${ev.reason}`);
          socket.destroy();
        }
      }
    });
    socket.on("error", (err) => this.opts.logger.debug(`sip: ${transport} ${peer.address}:${peer.port}: ${err.message}`));
    socket.on("close", () => {
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

function connKey(e: Endpoint): string {
  return `${e.transport}|${e.address}|${e.port}`;
}
