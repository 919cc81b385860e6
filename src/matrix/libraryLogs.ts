/**
 * The Matrix library's own log lines, made fit for an admin: its HTTP client logs every failed
 * request at ERROR, an Error with its whole stack over several lines, before the caller has
 * decided anything. A refused connection while the homeserver restarts is no one's to act on;
 * the bridge logs what it means where it handles it ("delivery failed ...; retrying"). So: one
 * line each, and failed requests at DEBUG.
 */
import { createRequire } from "node:module";
import { Logger } from "matrix-appservice-bridge";
import { describeError } from "./membership.js";

type Level = "info" | "warn" | "error" | "debug" | "trace";
export type LibraryLogger = Record<Level, (module: string, ...parts: unknown[]) => void>;

/** Modules of the library that log each failed request on their own. */
const REQUEST_MODULES = ["MatrixHttpClient", "MatrixClientLite"];

function isFailure(part: unknown): boolean {
  if (part instanceof Error) return true;
  const p = part as { errcode?: unknown; body?: { errcode?: unknown } } | null;
  return typeof p === "object" && p !== null && (typeof p.errcode === "string" || typeof p.body?.errcode === "string");
}

/** Errors and homeserver answers as one line; everything else as it was. */
function flatten(part: unknown): unknown {
  return isFailure(part) ? describeError(part) : part;
}

export function quietLibraryLogger(inner: LibraryLogger): LibraryLogger {
  const at =
    (level: Level) =>
    (module: string, ...parts: unknown[]): void => {
      const failedRequest = (level === "error" || level === "warn") && REQUEST_MODULES.some((m) => module.startsWith(m)) && parts.some(isFailure);
      // An existing user is no error (the bridge registers its bots itself; this is a fallback).
      const userExists = parts.some((p) => typeof p === "string" && p.includes("User ID is in use"));
      inner[failedRequest || userExists ? "debug" : level](module, ...parts.map(flatten));
    };
  return { info: at("info"), warn: at("warn"), error: at("error"), debug: at("debug"), trace: at("trace") };
}

/** Puts the filter in front of the library's logger; call after `Logger.configure`. */
export function quietLibraryLogs(): void {
  if (!Logger.root.configured) return;
  // The bot-sdk instance the bridge library itself loaded (not a dependency of ours).
  const requireFromBridge = createRequire(createRequire(import.meta.url).resolve("matrix-appservice-bridge"));
  const { LogService } = requireFromBridge("@vector-im/matrix-bot-sdk") as { LogService: { setLogger(logger: LibraryLogger): void } };
  LogService.setLogger(quietLibraryLogger(Logger.botSdkLogger as unknown as LibraryLogger));
}
