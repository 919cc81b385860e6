/**
 * Properties of the operations code with random input: the bridge info's state key never makes
 * two rooms' keys the same (hostile IDs with `/` and `%`), and /ready is ready exactly when
 * nothing is missing. The seed is printed; FC_SEED=<n> replays a failure.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { bridgeInfoStateKey } from "../../src/matrix/bridgeInfo.js";
import { readiness } from "../../src/app/readiness.js";
import type { Bot } from "../../src/matrix/bots.js";
import type { SystemConfig } from "../../src/config/types.js";

const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
console.log(`operations properties: FC_SEED=${seed}`);
const runs = (numRuns: number) => ({ numRuns, seed, includeErrorInReport: true });

const tricky = fc.string({ unit: fc.constantFrom("a", "/", "%", "2", "F", ":", "@", "b"), minLength: 1, maxLength: 8 });
const bot = (systemId: string | undefined): Bot => ({
  userId: "@bot:x",
  localpart: "bot",
  displayName: "Bot",
  ...(systemId !== undefined ? { system: { id: systemId, name: systemId } as SystemConfig } : {}),
});

describe("operations properties", () => {
  it("bridge info state keys: distinct (system, user) pairs never share a key", () => {
    fc.assert(
      fc.property(fc.option(tricky, { nil: undefined }), tricky, fc.option(tricky, { nil: undefined }), tricky, (s1, u1, s2, u2) => {
        if (s1 === s2 && u1 === u2) return;
        assert.notEqual(bridgeInfoStateKey(bot(s1), u1), bridgeInfoStateKey(bot(s2), u2), JSON.stringify([s1, u1, s2, u2]));
      }),
      runs(3000),
    );
  });

  it("readiness: ready exactly when the store is open, the homeserver answered and every system started", () => {
    const state = fc.constantFrom("started" as const, "starting" as const, "stopped" as const);
    fc.assert(
      fc.property(fc.boolean(), fc.boolean(), fc.dictionary(fc.string({ minLength: 1, maxLength: 5 }), state, { maxKeys: 5 }), (storeOpen, homeserverAnswered, systems) => {
        const r = readiness({ storeOpen, homeserverAnswered, systems });
        const missing = Number(!storeOpen) + Number(!homeserverAnswered) + Object.values(systems).filter((s) => s !== "started").length;
        assert.equal(r.ready, missing === 0);
        assert.equal(r.notReady.length, missing);
      }),
      runs(500),
    );
  });
});
