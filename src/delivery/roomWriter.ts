/**
 * Writes into one room as one bot: messages with stable transaction IDs (a retry after a crash
 * is the same event to the homeserver, not a second one), and state events, which the
 * homeserver does not duplicate when the content is the same.
 */
import { createHash } from "node:crypto";
import type { Intent } from "matrix-appservice-bridge";

/** How a failed request should be handled. */
export type SendFailure =
  | { kind: "retry"; afterMs: number; reason: string }
  | { kind: "gone"; reason: string }
  | { kind: "fatal"; reason: string };

interface MatrixErrorLike {
  errcode?: string;
  statusCode?: number;
  retryAfterMs?: number;
  body?: { retry_after_ms?: number; errcode?: string; error?: string };
  code?: string;
  message?: string;
}

export function classifyFailure(err: unknown, attempt: number): SendFailure {
  const e = (err ?? {}) as MatrixErrorLike;
  const errcode = e.errcode ?? e.body?.errcode;
  const status = e.statusCode;
  const reason = `${status ?? e.code ?? "error"} ${errcode ?? ""} ${e.body?.error ?? e.message ?? ""}`.trim();
  // Backoff with jitter for a homeserver that is down or overloaded: 1 s doubling to 30 s.
  const backoff = Math.min(30_000, 1000 * 2 ** Math.min(attempt, 5)) * (0.75 + Math.random() * 0.5);
  if (status === 429 || errcode === "M_LIMIT_EXCEEDED") {
    return { kind: "retry", afterMs: e.retryAfterMs ?? e.body?.retry_after_ms ?? backoff, reason };
  }
  if (status === 403 || errcode === "M_FORBIDDEN" || errcode === "M_NOT_FOUND") return { kind: "gone", reason };
  if (status !== undefined && status >= 400 && status < 500) return { kind: "fatal", reason };
  return { kind: "retry", afterMs: backoff, reason };
}

/** The same batch of outbox entries always gets the same transaction ID. */
export function transactionId(prefix: string, ids: string[]): string {
  return `${prefix}.${createHash("sha256").update(ids.join(",")).digest("base64url").slice(0, 32)}`;
}

export class RoomWriter {
  constructor(
    private readonly intent: Intent,
    readonly roomId: string,
  ) {}

  async send(type: string, content: Record<string, unknown>, txnId: string): Promise<string> {
    const path = `/_matrix/client/v3/rooms/${encodeURIComponent(this.roomId)}/send/${encodeURIComponent(type)}/${encodeURIComponent(txnId)}`;
    const response = (await this.intent.matrixClient.doRequest("PUT", path, null, content)) as { event_id: string };
    return response.event_id;
  }

  async state(type: string, stateKey: string, content: Record<string, unknown>): Promise<void> {
    await this.intent.matrixClient.sendStateEvent(this.roomId, type, stateKey, content);
  }
}
