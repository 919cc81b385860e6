/**
 * What `/ready` answers: ready only when the store is open (and has not stopped after a failed
 * write), the homeserver has answered (the
 * start-up ping or any later request) and every voice mail system is started (connected, or
 * retrying on its own: a PBX that is down is the system's trouble, not a reason to restart the
 * bridge). `/live` answers 200 while the process runs.
 */

export interface ReadinessInput {
  storeOpen: boolean;
  /** Why an open store takes no more updates, if so. */
  storeProblem?: string | undefined;
  homeserverAnswered: boolean;
  /** Per system: started (connected or retrying), or not (yet, or no more). */
  systems: Record<string, "started" | "starting" | "stopped">;
}

export interface Readiness {
  ready: boolean;
  /** What is not ready, one phrase each; empty when ready. */
  notReady: string[];
}

export function readiness(input: ReadinessInput): Readiness {
  const notReady: string[] = [];
  if (!input.storeOpen) notReady.push("store: not open");
  else if (input.storeProblem) notReady.push(`store: ${input.storeProblem}`);
  if (!input.homeserverAnswered) notReady.push("homeserver: has not answered yet");
  for (const [id, state] of Object.entries(input.systems)) if (state !== "started") notReady.push(`system ${id}: ${state}`);
  return { ready: notReady.length === 0, notReady };
}

/** The state /ready reads, set as start-up and shut-down go. */
export class ReadinessState {
  storeOpen = false;
  /** Asked on each /ready: the store may stop after a failed write. */
  storeProblem: () => string | undefined = () => undefined;
  homeserverAnswered = false;
  readonly systems: Record<string, "started" | "starting" | "stopped"> = {};

  constructor(systemIds: readonly string[]) {
    for (const id of systemIds) this.systems[id] = "starting";
  }

  now(): Readiness {
    return readiness({ storeOpen: this.storeOpen, storeProblem: this.storeProblem(), homeserverAnswered: this.homeserverAnswered, systems: this.systems });
  }
}

/** The answer of `/ready` (and `/live`): status and JSON body. */
export function readinessAnswer(r: Readiness): { status: 200 | 503; body: { ready: boolean; notReady?: string[] } } {
  return r.ready ? { status: 200, body: { ready: true } } : { status: 503, body: { ready: false, notReady: r.notReady } };
}

export const LIVE_PATH = "/live";
export const READY_PATH = "/ready";

type PathAdder = { addAppServicePath(opts: { method: "GET"; path: string; authenticate?: boolean; handler: (req: unknown, res: { status(code: number): { json(body: unknown): void } }) => void }): void };

/**
 * Serves `/live` and `/ready` on the appservice listener, without the homeserver token (a load
 * balancer or an orchestrator asks; the answers name no user, room or secret). Call after `listen()`.
 */
export function serveHealth(bridge: PathAdder, state: ReadinessState): void {
  bridge.addAppServicePath({ method: "GET", path: LIVE_PATH, authenticate: false, handler: (_req, res) => res.status(200).json({ live: true }) });
  bridge.addAppServicePath({
    method: "GET",
    path: READY_PATH,
    authenticate: false,
    handler: (_req, res) => {
      const { status, body } = readinessAnswer(state.now());
      res.status(status).json(body);
    },
  });
}
