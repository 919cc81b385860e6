/**
 * Seeded random records through the PostgreSQL engine (a real server, as in postgresStore.test.ts):
 * each one is either kept exactly (it reads back as the memory engine reads it back) or refused
 * with the engine's one clear error, and only when its text holds what PostgreSQL text cannot (a
 * NUL or an unpaired surrogate); nothing is ever stored changed. The seed is printed; FC_SEED=<n>
 * replays a failure.
 */
import { after, before, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { PostgresStore } from "../../src/store/postgresStore.js";
import { MemoryStore } from "../../src/store/memoryStore.js";
import type { DmRoom, MailboxLink, OutboxEntry } from "../../src/store/store.js";
import type { MailboxState } from "../../src/core/mwi.js";
import { postgresUnavailable, requirePostgres, startPostgres, type RunningPostgres } from "../testbed/postgres.js";

const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
console.log(`PostgreSQL fuzz properties: FC_SEED=${seed}`);

/** Text of every kind: plain, any UTF-16 unit (lone surrogates, NUL), and full code points. */
const text = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: "binary", maxLength: 12 }),
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 6 }),
);
const unkeepable = (s: string) => s.includes("\u0000") || /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
/** What a JSON round trip keeps (as the NeDB engine does): -0 becomes 0, undefined goes. */
const jsonish = fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown);
const count = fc.integer({ min: 0, max: 4294967295 });
const stamp = fc.integer({ min: 0, max: 8_640_000_000_000_000 });

const record = fc.record({
  userId: text,
  systemId: text,
  mailbox: text,
  roomId: text,
  lastName: fc.option(text, { nil: undefined }),
  sealed: fc.option(text, { nil: undefined }),
  ani: text,
  body: text,
  extra: jsonish,
  counts: fc.tuple(count, count, count, count),
  at: stamp,
});

const unavailable = postgresUnavailable();
let pg: RunningPostgres | undefined;
before(async () => {
  if (!unavailable) pg = await startPostgres();
});
after(async () => {
  await pg?.stop();
});

it("random records are kept exactly or refused clearly, never changed", { timeout: 120_000 }, async (t) => {
  if (!requirePostgres(t)) return;
  const store = await PostgresStore.open(await pg!.createSchema(), { warn: () => undefined });
  const memory = new MemoryStore();
  let run = 0;
  let refused = 0;
  try {
    await fc.assert(
      fc.asyncProperty(record, async (r) => {
        const n = ++run;
        // Distinct keys per run: runs never see each other's rows.
        const key = (s: string) => `${n}:${s}`;
        const link: MailboxLink = { userId: key(r.userId), systemId: r.systemId, mailbox: r.mailbox, mwiEnabled: true, linkedBy: r.userId, createdAt: r.at };
        if (r.sealed !== undefined) link.sealedCredentials = r.sealed;
        const room: DmRoom = { userId: key(r.userId), botUserId: "@bot:x", roomId: key(r.roomId), userJoined: false, createdAt: r.at };
        if (r.lastName !== undefined) room.lastName = r.lastName;
        const [nw, old, un, uo] = r.counts;
        const state: MailboxState = { systemId: key(r.systemId), mailbox: r.mailbox, waiting: nw > 0, new: nw, old, urgentNew: un, urgentOld: uo, updated: r.at, lastMessage: { ani: r.ani } };
        const entry: OutboxEntry = { id: key("e"), seq: n, ownerId: key(r.userId), targetKey: key(r.roomId), withMessage: true, notice: { body: r.body, html: r.body, extra: r.extra } as never, createdAt: r.at };

        const keyText = [r.userId, r.systemId, r.mailbox, r.roomId, r.lastName ?? "", r.sealed ?? ""];
        const operations: [string, boolean, () => Promise<unknown>, () => Promise<unknown>][] = [
          ["link", keyText.slice(0, 3).some(unkeepable) || unkeepable(r.sealed ?? ""), () => store.addLink(link), () => memory.addLink(link)],
          ["room", [r.userId, r.roomId, r.lastName ?? ""].some(unkeepable), () => store.saveDmRoom(room), () => memory.saveDmRoom(room)],
          ["state", [r.systemId, r.mailbox].some(unkeepable), () => store.saveMailboxState(state), () => memory.saveMailboxState(state)],
          ["entry", [r.userId, r.roomId].some(unkeepable), () => store.addOutboxEntries([entry]), () => memory.addOutboxEntries([entry])],
        ];
        for (const [what, refusable, write, writeMemory] of operations) {
          try {
            await write();
          } catch (err) {
            assert.ok(refusable, `${what} was refused though PostgreSQL could keep it: ${(err as Error).message}`);
            assert.match((err as Error).message, /holds a NUL character or an unpaired UTF-16 surrogate, which PostgreSQL text cannot keep$/);
            refused++;
            continue;
          }
          assert.ok(!refusable, `${what} was accepted though its text cannot be kept`);
          await writeMemory();
        }
        const keepable = (...s: string[]) => !s.some(unkeepable);
        if (keepable(r.userId, r.systemId, r.mailbox, r.sealed ?? "")) {
          assert.deepEqual(await store.listLinks(link.userId), await memory.listLinks(link.userId));
        }
        if (keepable(r.userId, r.roomId, r.lastName ?? "")) {
          assert.deepEqual(await store.getDmRoom(room.userId, room.botUserId), await memory.getDmRoom(room.userId, room.botUserId));
          assert.deepEqual(await store.getDmRoomById(room.roomId), await memory.getDmRoomById(room.roomId));
        }
        if (keepable(r.systemId, r.mailbox)) {
          assert.deepEqual(await store.getMailboxState(state.systemId, state.mailbox), await memory.getMailboxState(state.systemId, state.mailbox));
        }
        if (keepable(r.userId, r.roomId)) assert.deepEqual(await store.outboxEntries(entry.targetKey), await memory.outboxEntries(entry.targetKey));
      }),
      { numRuns: 150, seed, includeErrorInReport: true },
    );
  } finally {
    await store.close();
  }
  console.log(`PostgreSQL fuzz: ${run} records, ${refused} writes refused for text PostgreSQL cannot keep`);
  assert.ok(refused > 0, "the generator reaches the refusals");
});
