/** One place that turns the settings into an ImapFlow client: TLS, bounds, no library logging (it would log secrets' neighbours). */
import { readFileSync } from "node:fs";
import { ImapFlow, type ImapFlowOptions } from "imapflow";
import type { MailboxCredentials } from "../gateway.js";
import type { ImapSettings } from "./settings.js";

/** Bounds on what the server may send in one response; the fetches ask for far less. */
const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;

export type ServerSettings = Pick<ImapSettings, "host" | "port" | "tls" | "caFile" | "rejectUnauthorized">;

export function createImapClient(server: ServerSettings, credentials: MailboxCredentials, options: { idle: boolean }): ImapFlow {
  const tls: NonNullable<ImapFlowOptions["tls"]> = { rejectUnauthorized: server.rejectUnauthorized };
  if (server.caFile) tls.ca = readFileSync(server.caFile);
  return new ImapFlow({
    host: server.host,
    port: server.port,
    secure: server.tls,
    tls,
    auth: { user: credentials.username, pass: credentials.password },
    logger: false,
    clientInfo: { name: "matrix-appservice-voicemail" },
    disableAutoIdle: !options.idle,
    // IDLE soon after each sync, so that a change by the user's mail client arrives at once.
    autoIdleDelay: 1000,
    // Where IDLE is missing, imapflow polls with NOOP this often (the session's own full resync is slower).
    maxIdleTime: 30_000,
    missingIdleCommand: "NOOP",
    connectionTimeout: 20_000,
    greetingTimeout: 15_000,
    maxLiteralSize: MAX_RESPONSE_BYTES,
    maxResponseSize: MAX_RESPONSE_BYTES * 2,
    maxLineLength: MAX_RESPONSE_BYTES,
  });
}

/** An error of a login the server refused (wrong user or password), as imapflow marks it. */
export function isAuthFailure(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { authenticationFailed?: boolean }).authenticationFailed === true;
}
