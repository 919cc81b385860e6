/**
 * The long fault schedule (issue 7): rounds of the fault scenario of test/soak/scenario.ts in
 * one world (Synapse and the bridge behind fault proxies), each round with fresh users and its
 * own seed, until SOAK_MINUTES (default 10) have passed; then the faults survived per kind,
 * restarts, kills, updates accepted and the invariant's result. Exit code 1 on any violation.
 *
 *   npm run soak                      ten minutes of rounds
 *   FAULT_SEED=123 npm run soak       replays one round (the seed a failure printed)
 *   SOAK_LOAD=0 npm run soak          the fault rounds only, without the load run after them
 *
 * Then the load run of bench/load.ts (LOAD_SECONDS, default 60): connections, a UDP flood and a
 * webhook flood while a real user receives MWI; the exit code is 1 if either part failed.
 *
 * Knobs (env): SOAK_MINUTES, SOAK_ROUNDS (at most this many), SOAK_FAULTS (bridge->Synapse
 * faults per round, default 60), SOAK_AS_FAULTS (Synapse->bridge, default 6), SOAK_RESTARTS
 * and SOAK_KILLS (per round, default 1 each), SOAK_UPDATES (per mailbox, default 12).
 */
import { FAULT_KINDS, faultSeed, seededRng, type FaultKind } from "../test/testbed/faultProxy.js";
import { ensureTestbed } from "../test/testbed/synapse.js";
import type { RoundResult } from "../test/soak/scenario.js";

// The users' SDK logs every /sync failure while Synapse restarts, with a stack trace: expected
// here, and it buries the report. Read when the SDK helpers load, hence the late import below.
process.env.MATRIX_SDK_LOG_LEVEL ??= "silent";
const { describeRound, FaultWorld, runRound } = await import("../test/soak/scenario.js");

const num = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number >= 0, not ${raw}`);
  return n;
};

async function main(): Promise<number> {
  const status = await ensureTestbed();
  if (!status.ok) {
    console.error(`soak: the test bed is unavailable: ${status.reason}`);
    return 2;
  }
  const replay = Boolean(process.env.FAULT_SEED);
  const minutes = num("SOAK_MINUTES", 10);
  const maxRounds = replay ? 1 : num("SOAK_ROUNDS", Infinity);
  const baseSeed = faultSeed();
  // A replay runs exactly the given seed; otherwise each round's seed comes from the base seed.
  const seeds = seededRng(baseSeed);
  const nextSeed = () => (replay ? baseSeed : Math.floor(seeds.next() * 0x100000000));
  console.log(`soak: ${replay ? `replaying seed=${baseSeed}` : `base seed=${baseSeed}, ${minutes} min`}`);

  const deadline = Date.now() + minutes * 60_000;
  const fw = await FaultWorld.create((line) => {
    if (process.env.SOAK_VERBOSE) console.log(line);
  });
  const results: RoundResult[] = [];
  try {
    for (let round = 1; round <= maxRounds && (round === 1 || Date.now() < deadline); round++) {
      const seed = nextSeed();
      console.log(`soak: round ${round} seed=${seed}`);
      const result = await runRound(fw, {
        seed,
        tag: `s${round}`,
        users: 3,
        updatesPerMailbox: num("SOAK_UPDATES", 12),
        gapMs: [200, 1500],
        faultBudget: num("SOAK_FAULTS", 60),
        appserviceFaultBudget: num("SOAK_AS_FAULTS", 6),
        synapseRestarts: num("SOAK_RESTARTS", 1),
        bridgeKills: num("SOAK_KILLS", 1),
        quietTimeoutMs: 120_000,
      });
      results.push(result);
      console.log(`soak: round ${round}: ${describeRound(result)}`);
      if (result.violations.length) {
        for (const v of result.violations) console.log(`soak:   VIOLATION ${v}`);
        console.log(`soak:   evidence: ${result.evidenceFile} (replay: FAULT_SEED=${seed} npm run soak)`);
      }
    }
  } finally {
    await fw.close();
  }

  const total = (f: (r: RoundResult) => number) => results.reduce((n, r) => n + f(r), 0);
  const byKind = FAULT_KINDS.map((k: FaultKind) => `${k} ${total((r) => r.faults[k])}`).join(", ");
  const failed = results.filter((r) => r.violations.length);
  console.log(
    [
      `soak: ${results.length} round(s) (${replay ? `seed=${baseSeed}` : `base seed=${baseSeed}`})`,
      `  faults survived: ${total((r) => r.homeserverFaults + r.appserviceFaults)} (${byKind})`,
      `  Synapse restarts: ${total((r) => r.synapseRestarts)}; bridge kills: ${total((r) => r.bridgeKills)}; failed bridge starts: ${total((r) => r.bridgeStartFailures)}`,
      `  updates accepted: ${total((r) => r.updatesAccepted)} (webhook retries: ${total((r) => r.webhookRetries)})`,
      `  invariant: ${failed.length ? `VIOLATED in ${failed.length} round(s): ${failed.map((r) => `seed=${r.seed} (${r.violations.length})`).join(", ")}` : "holds in every round"}`,
    ].join("\n"),
  );
  const faultsCode = failed.length ? 1 : 0;
  if (process.env.SOAK_LOAD === "0" || replay) return faultsCode;
  console.log("soak: the load run (bench/load.ts)");
  const { runLoad } = await import("./load.js");
  const loadCode = await runLoad();
  console.log(`soak: fault rounds ${faultsCode ? "FAILED" : "passed"}; load run ${loadCode === 0 ? "passed" : loadCode === 1 ? "FAILED" : "did not run"}`);
  return Math.max(faultsCode, loadCode);
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`soak: ${err.stack ?? err.message}`);
    process.exit(2);
  },
);
