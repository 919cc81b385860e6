/**
 * The appservice ping (MSC2659, Matrix 1.7). The homeserver asks `POST /_matrix/app/v1/ping`
 * when told to by `POST /_matrix/client/v1/appservice/{id}/ping`; a homeserver that gets a 404
 * there can mark the bridge as down. The bridge library has neither.
 */
import type { Bridge, Logger } from "matrix-appservice-bridge";
import { withTimeout } from "../util/timeout.js";
import { describeError } from "./membership.js";

export const APPSERVICE_PING_PATH = "/_matrix/app/v1/ping";

/** Serves the ping on the appservice listener, with the homeserver token like every appservice route. Call after `listen()`. */
export function servePing(bridge: Pick<Bridge, "addAppServicePath">, log: Logger): void {
  bridge.addAppServicePath({
    method: "POST",
    path: APPSERVICE_PING_PATH,
    // The library refuses a missing or wrong token (query or Authorization: Bearer) with 403.
    authenticate: true,
    handler: (req, res) => {
      const transactionId = (req.body as { transaction_id?: unknown } | undefined)?.transaction_id;
      log.debug(`pinged by the homeserver${typeof transactionId === "string" ? ` (${transactionId})` : ""}`);
      res.status(200).json({});
    },
  });
}

type PingClient = { doRequest(method: string, path: string, qs?: unknown, body?: unknown): Promise<unknown> };

/**
 * Asks the homeserver to ping the bridge: proves both directions work. The outcome is one log
 * line; the bridge starts either way (a homeserver that is slow or old is no reason to refuse).
 */
export async function pingHomeserver(client: PingClient, appserviceId: string, log: Logger, timeoutMs = 15_000): Promise<boolean> {
  const transactionId = `voicemail-start-${Date.now()}`;
  const path = `/_matrix/client/v1/appservice/${encodeURIComponent(appserviceId)}/ping`;
  const outcome = await withTimeout(
    client.doRequest("POST", path, null, { transaction_id: transactionId }).then(
      (answer) => ({ ok: true as const, ms: (answer as { duration_ms?: number } | undefined)?.duration_ms }),
      (err: unknown) => ({ ok: false as const, why: describeError(err) }),
    ),
    timeoutMs,
    { ok: false as const, why: `no answer within ${timeoutMs / 1000} s` },
  );
  if (outcome.ok) log.info(`homeserver ping succeeded: the homeserver reached the bridge${outcome.ms !== undefined ? ` in ${outcome.ms} ms` : ""}`);
  else log.warn(`homeserver ping failed (${outcome.why}): check that the homeserver can reach appservice.url; starting anyway`);
  return outcome.ok;
}
