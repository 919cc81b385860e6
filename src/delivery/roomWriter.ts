/**
 * Writes into one room as one bot: messages with stable transaction IDs, state events, and the
 * look into the room's recent messages that tells whether a send whose answer was lost arrived.
 */
import { isDeepStrictEqual } from "node:util";
import type { Intent } from "matrix-appservice-bridge";
import { atLeastDelay, backoffDelay, type BackoffOptions } from "../core/backoff.js";
import { OUTBOX_ID_FIELD } from "../matrix/content.js";

/** How a failed request should be handled. */
export type SendFailure = (
  | { kind: "retry"; afterMs: number }
  | { kind: "gone" }
  | { kind: "fatal" }
) & {
  reason: string;
  /** False when the homeserver cannot have stored the request (it never got it, or refused it). */
  maybeStored: boolean;
  /** The homeserver asked to slow down (429): its wait is kept even when it is seen well elsewhere. */
  rateLimited?: true;
};

interface MatrixErrorLike {
  errcode?: string;
  statusCode?: number;
  retryAfterMs?: number;
  body?: { retry_after_ms?: number; errcode?: string; error?: string };
  code?: string;
  message?: string;
}

/** The retry schedule of a homeserver that is down or overloaded: 1 s doubling to 60 s, jittered. */
export const RETRY_BACKOFF: BackoffOptions = { baseMs: 1000, maxMs: 60_000 };

/** Errors that happen before a request is sent: the homeserver never saw it. */
const NOT_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ENETUNREACH", "EHOSTUNREACH", "ERR_INVALID_URL"]);

/** `attempt` counts from 1 (the first failure). */
export function classifyFailure(err: unknown, attempt: number, retry: BackoffOptions = RETRY_BACKOFF): SendFailure {
  const e = (err ?? {}) as MatrixErrorLike;
  const errcode = e.errcode ?? e.body?.errcode;
  const status = e.statusCode;
  const reason = `${status ?? e.code ?? "error"} ${errcode ?? ""} ${e.body?.error ?? e.message ?? ""}`.replace(/\s+/g, " ").trim();
  const backoff = backoffDelay(attempt - 1, retry);
  // An answer in 4xx says the request was not stored; 5xx (also from a proxy), a reset or a
  // timeout leave it open.
  const answered = status !== undefined && status >= 400 && status < 500;
  const maybeStored = !answered && !(e.code !== undefined && NOT_SENT.has(e.code));
  if (status === 429 || errcode === "M_LIMIT_EXCEEDED") {
    const asked = e.retryAfterMs ?? e.body?.retry_after_ms;
    return { kind: "retry", afterMs: asked !== undefined ? atLeastDelay(asked) : backoff, reason, maybeStored: false, rateLimited: true };
  }
  if (status === 403 || errcode === "M_FORBIDDEN" || errcode === "M_NOT_FOUND") return { kind: "gone", reason, maybeStored };
  if (answered) return { kind: "fatal", reason, maybeStored };
  return { kind: "retry", afterMs: backoff, reason, maybeStored };
}

/** How far back the bridge looks for a message whose answer was lost. */
const LOOKBACK_EVENTS = 100;
const PAGE = 50;

export class RoomWriter {
  constructor(
    private readonly intent: Intent,
    readonly roomId: string,
  ) {}

  private path(...parts: string[]): string {
    return `/_matrix/client/v3/rooms/${[this.roomId, ...parts].map(encodeURIComponent).join("/")}`;
  }

  async send(type: string, content: Record<string, unknown>, txnId: string): Promise<string> {
    const response = (await this.intent.matrixClient.doRequest("PUT", this.path("send", type, txnId), null, content)) as { event_id: string };
    return response.event_id;
  }

  async state(type: string, stateKey: string, content: Record<string, unknown>): Promise<void> {
    await this.intent.matrixClient.sendStateEvent(this.roomId, type, stateKey, content);
  }

  /**
   * The event IDs of this bot's recent messages that carry one of these outbox IDs, from the
   * room's last LOOKBACK_EVENTS messages of the bot (newest first, as the bot sees them).
   */
  async findOutboxMessages(outboxIds: Set<string>): Promise<Map<string, string>> {
    const found = new Map<string, string>();
    const filter = JSON.stringify({ senders: [this.intent.userId], types: ["m.room.message"] });
    let from: string | undefined;
    for (let seen = 0; seen < LOOKBACK_EVENTS && found.size < outboxIds.size; ) {
      const page = (await this.intent.matrixClient.doRequest("GET", this.path("messages"), {
        dir: "b",
        limit: PAGE,
        filter,
        ...(from ? { from } : {}),
      })) as { chunk?: { event_id: string; sender?: string; content?: Record<string, unknown> }[]; end?: string };
      const chunk = page.chunk ?? [];
      for (const event of chunk) {
        const id = event.content?.[OUTBOX_ID_FIELD];
        if (event.sender === this.intent.userId && typeof id === "string" && outboxIds.has(id) && !found.has(id)) found.set(id, event.event_id);
      }
      seen += chunk.length;
      if (!page.end || chunk.length === 0) break;
      from = page.end;
    }
    return found;
  }

  /** True when the room's state event already has this content (a state send whose answer was lost). */
  async stateIs(type: string, stateKey: string, content: Record<string, unknown>): Promise<boolean> {
    const current = await this.intent.matrixClient.getRoomStateEventContent(this.roomId, type, stateKey).catch(() => undefined);
    return isDeepStrictEqual(current, JSON.parse(JSON.stringify(content)));
  }
}
