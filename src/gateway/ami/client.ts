/**
 * An AMI client of our own (one TCP connection): banner, Login, actions matched to their answers
 * by ActionID, event lists (`EventList: start` ... `Complete`), events, a keep-alive `Ping`, and
 * reconnects with backoff and jitter. Every action has a timeout; a frame the parser refuses,
 * a Ping unanswered, or a refused login drops the connection. The secret is only ever written
 * to the socket, never to a log line or an error message.
 */
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { backoffDelay } from "../../core/backoff.js";
import { AmiPacket, DEFAULT_FRAME_LIMITS, FrameParser, serializeAction, type FrameLimits } from "./frame.js";

export interface AmiLogger {
  debug(line: string): void;
  info(line: string): void;
  warn(line: string): void;
}

export interface AmiClientOptions {
  host: string;
  port: number;
  username: string;
  secret: string;
  /** The Login's `Events:` (an event mask such as "call", or "off"). */
  events: string;
  /** For log lines: which system this connection is. */
  name: string;
  log: AmiLogger;
  keepAliveMs?: number;
  actionTimeoutMs?: number;
  connectTimeoutMs?: number;
  backoff?: { baseMs: number; maxMs: number };
  /** Events in one list (e.g. a VoicemailBoxSummary of a full mailbox) at most; more fails the action. */
  maxListEvents?: number;
  /** Bytes of one list's events at most (headers counted); more fails the action. */
  maxListBytes?: number;
  /** Actions waiting for an answer at most; more are refused at once. */
  maxPending?: number;
  limits?: FrameLimits;
  /** After each successful login (the first and every reconnect). */
  onReady?: () => void;
  onEvent?: (event: AmiPacket) => void;
}

export interface AmiAnswer {
  response: AmiPacket;
  /** The list events, for an action that answers with an event list. */
  events: AmiPacket[];
}

/** Why an action failed; `transient`: no answer (not connected, timed out), unlike an `Error` response. */
export class AmiError extends Error {
  constructor(
    message: string,
    readonly transient: boolean,
  ) {
    super(message);
  }
}

interface Pending {
  action: string;
  resolve(answer: AmiAnswer): void;
  reject(err: AmiError): void;
  timer: NodeJS.Timeout;
  response?: AmiPacket;
  events: AmiPacket[];
  listBytes: number;
}

export class AmiClient {
  private socket?: Socket;
  private ready = false;
  private stopped = true;
  private attempt = 0;
  private retryTimer?: NodeJS.Timeout;
  private keepAliveTimer?: NodeJS.Timeout;
  private readonly pending = new Map<string, Pending>();
  private readonly prefix = randomBytes(4).toString("hex");
  private counter = 0;

  constructor(private readonly options: AmiClientOptions) {}

  private get keepAliveMs(): number {
    return this.options.keepAliveMs ?? 30_000;
  }

  private get actionTimeoutMs(): number {
    return this.options.actionTimeoutMs ?? 10_000;
  }

  private get where(): string {
    return `${this.options.name}: AMI ${this.options.host}:${this.options.port}`;
  }

  /** Logged in: actions can be sent. */
  get connected(): boolean {
    return this.ready;
  }

  /** Connects, and keeps reconnecting until stop(). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const socket = this.socket;
    if (socket && this.ready) {
      // Polite, but bounded: the socket is destroyed right after.
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 500);
        socket.write(serializeAction([["Action", "Logoff"]]), () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    this.drop("stopped", false);
  }

  /**
   * Sends an action (an `ActionID` is added) and resolves with its response and, for an event
   * list, its events. Rejects with AmiError on an `Error` response, a timeout, or no connection.
   */
  action(fields: Record<string, string>, timeoutMs = this.actionTimeoutMs): Promise<AmiAnswer> {
    const name = fields.Action ?? "?";
    if (!this.ready || !this.socket) return Promise.reject(new AmiError(`AMI ${name}: not connected`, true));
    return this.send(this.socket, fields, timeoutMs);
  }

  private send(socket: Socket, fields: Record<string, string>, timeoutMs: number): Promise<AmiAnswer> {
    const name = fields.Action ?? "?";
    if (this.pending.size >= (this.options.maxPending ?? 1_000)) return Promise.reject(new AmiError(`AMI ${name}: too many actions waiting`, true));
    const id = `${this.prefix}-${++this.counter}`;
    let wire: string;
    try {
      wire = serializeAction([...Object.entries(fields).filter(([k]) => k !== "ActionID"), ["ActionID", id]]);
    } catch (err) {
      return Promise.reject(new AmiError(`AMI ${name}: ${(err as Error).message}`, false));
    }
    return new Promise<AmiAnswer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new AmiError(`AMI ${name}: no answer within ${timeoutMs} ms`, true));
      }, timeoutMs);
      this.pending.set(id, { action: name, resolve, reject, timer, events: [], listBytes: 0 });
      socket.write(wire);
    });
  }

  private connect(): void {
    if (this.stopped) return;
    const { host, port } = this.options;
    const socket = connect({ host, port });
    this.socket = socket;
    const parser = new FrameParser(this.options.limits ?? DEFAULT_FRAME_LIMITS);
    const connectTimer = setTimeout(() => {
      if (this.socket === socket && !this.ready) this.drop(`no login within ${this.options.connectTimeoutMs ?? 10_000} ms`, true);
    }, this.options.connectTimeoutMs ?? 10_000);
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => {
      if (this.socket !== socket) return;
      for (const frame of parser.push(chunk)) {
        if (this.socket !== socket) return;
        if (frame.type === "error") return this.drop(`bad data from the server: ${frame.reason}`, true);
        if (frame.type === "banner") {
          this.login(socket).then(
            () => clearTimeout(connectTimer),
            (err: Error) => this.socket === socket && this.drop(`login failed: ${err.message}`, true),
          );
          continue;
        }
        this.onPacket(frame.packet);
      }
    });
    socket.on("error", (err) => {
      if (this.socket === socket) this.drop(err.message, true);
    });
    socket.on("close", () => {
      clearTimeout(connectTimer);
      if (this.socket === socket) this.drop("connection closed", true);
    });
  }

  private async login(socket: Socket): Promise<void> {
    const { username, secret, events } = this.options;
    // The secret goes to the socket only: AmiError messages name the action, never its fields.
    await this.send(socket, { Action: "Login", Username: username, Secret: secret, Events: events }, this.actionTimeoutMs);
    if (this.socket !== socket) return;
    this.ready = true;
    this.attempt = 0;
    this.options.log.info(`${this.where}: logged in as ${username}`);
    this.keepAlive(socket);
    this.options.onReady?.();
  }

  private keepAlive(socket: Socket): void {
    this.keepAliveTimer = setTimeout(() => {
      if (this.socket !== socket || !this.ready) return;
      this.send(socket, { Action: "Ping" }, this.actionTimeoutMs).then(
        () => this.keepAlive(socket),
        (err: AmiError) => this.socket === socket && this.drop(`keep-alive: ${err.message}`, true),
      );
    }, this.keepAliveMs);
  }

  private onPacket(packet: AmiPacket): void {
    const id = packet.get("ActionID");
    const entry = id === undefined ? undefined : this.pending.get(id);
    if (packet.get("Response") !== undefined) {
      if (!entry || !id) return; // an answer to nobody (an action that timed out)
      if (/^error$/i.test(packet.get("Response")!)) {
        this.settle(id, entry);
        entry.reject(new AmiError(`AMI ${entry.action}: ${(packet.get("Message") ?? "error").slice(0, 200)}`, false));
        return;
      }
      entry.response = packet;
      if (!/^start$/i.test(packet.get("EventList") ?? "")) {
        this.settle(id, entry);
        entry.resolve({ response: packet, events: [] });
      }
      return;
    }
    if (packet.get("Event") === undefined) return;
    if (entry?.response && id) {
      if (/^complete$/i.test(packet.get("EventList") ?? "")) {
        this.settle(id, entry);
        entry.resolve({ response: entry.response, events: entry.events });
        return;
      }
      // Bounded in count and bytes: a PBX that lists without end cannot fill the bridge's memory.
      entry.listBytes += packet.headers.reduce((sum, [k, v]) => sum + k.length + v.length + 4, 0);
      const maxEvents = this.options.maxListEvents ?? 10_000;
      const maxBytes = this.options.maxListBytes ?? 4 * 1024 * 1024;
      if (entry.events.length >= maxEvents || entry.listBytes > maxBytes) {
        this.settle(id, entry);
        entry.reject(new AmiError(`AMI ${entry.action}: a list longer than ${maxEvents} events or ${maxBytes} bytes`, false));
        return;
      }
      entry.events.push(packet);
      return;
    }
    try {
      this.options.onEvent?.(packet);
    } catch (err) {
      this.options.log.warn(`${this.where}: event handler failed: ${(err as Error).message}`);
    }
  }

  private settle(id: string, entry: Pending): void {
    clearTimeout(entry.timer);
    this.pending.delete(id);
  }

  /** Ends the connection; every action waiting fails; a reconnect follows unless stopped. */
  private drop(reason: string, reconnect: boolean): void {
    const socket = this.socket;
    const wasReady = this.ready;
    this.socket = undefined;
    this.ready = false;
    clearTimeout(this.keepAliveTimer);
    socket?.destroy();
    for (const [id, entry] of this.pending) {
      this.settle(id, entry);
      entry.reject(new AmiError(`AMI ${entry.action}: connection lost (${reason})`, true));
    }
    if (!reconnect || this.stopped) return;
    const delay = backoffDelay(this.attempt++, this.options.backoff ?? { baseMs: 1_000, maxMs: 60_000 });
    const line = `${this.where}: ${reason}; reconnecting in ${Math.round(delay)} ms`;
    // A PBX that stays away is told at the 1st, 2nd, 4th, 8th ... failure: seen, not a flood.
    if (wasReady || (this.attempt & (this.attempt - 1)) === 0) this.options.log.warn(line);
    else this.options.log.debug(line);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
