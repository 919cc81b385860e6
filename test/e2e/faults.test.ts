/**
 * Delivery through seeded random faults (issue 7, "The fault harness"): the bridge behind fault
 * proxies both ways, Synapse restarted and the bridge killed at random points, three users with
 * mailboxes on two systems; then the invariant (see test/soak/scenario.ts). Short schedules
 * here; `npm run soak` runs long ones. FAULT_SEED=<n> replays one seed.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { faultSeed } from "../testbed/faultProxy.js";
import { describeRound, FaultWorld, runRound } from "../soak/scenario.js";
import { requireTestbed } from "./world.js";

const SEEDS = process.env.FAULT_SEED ? [faultSeed()] : [faultSeed(), faultSeed()];

describe("delivery through seeded faults", { timeout: 600_000 }, () => {
  for (const seed of SEEDS) {
    it(`keeps the invariant through about 40 faults, a Synapse restart and a bridge kill (seed=${seed})`, async (t) => {
      if (!(await requireTestbed(t as never))) return;
      console.error(`faults: seed=${seed} (replay with FAULT_SEED=${seed})`);
      const fw = await FaultWorld.create();
      try {
        const result = await runRound(fw, {
          seed,
          tag: "f",
          users: 3,
          updatesPerMailbox: 8,
          gapMs: [300, 1200],
          faultBudget: 40,
          appserviceFaultBudget: 4,
          synapseRestarts: 1,
          bridgeKills: 1,
          quietTimeoutMs: 120_000,
        });
        t.diagnostic(describeRound(result));
        assert.deepEqual(result.violations, [], `seed=${seed}: the invariant does not hold (replay with FAULT_SEED=${seed}; evidence in ${result.evidenceFile})\n${result.evidence}`);
      } finally {
        await fw.close();
      }
    });
  }
});
