/**
 * migrate-store: a NeDB store holding records of every kind, copied into a real PostgreSQL by the
 * command line, reads back equal; a target that is not empty is refused unless --force; the
 * checks that guard against a loss do fire (against engines made to lose or change a record).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { MemoryStore } from "../../src/store/memoryStore.js";
import { NedbStore } from "../../src/store/nedbStore.js";
import { PostgresStore } from "../../src/store/postgresStore.js";
import { copyStore, migrateStore } from "../../src/store/migrateStore.js";
import { differingKinds } from "../../src/store/contents.js";
import { CONTENT_KINDS, type StoreContents, type StoreLog, type VoicemailStore } from "../../src/store/store.js";
import type { MailboxState } from "../../src/core/mwi.js";
import { postgresUnavailable, requirePostgres, startPostgres, type RunningPostgres } from "../testbed/postgres.js";
import { link, room } from "./storeSuite.js";

const quiet: StoreLog = { warn: () => undefined };
const main = fileURLToPath(new URL("../../src/main.js", import.meta.url));

const state = (mailbox: string, extra: Partial<MailboxState> = {}): MailboxState => ({
  systemId: "carrier",
  mailbox,
  waiting: true,
  new: 2,
  old: 1,
  urgentNew: 1,
  urgentOld: 0,
  updated: 1_700_000_000_000,
  ...extra,
});

/** At least one record of every kind, with every optional field somewhere, and awkward text. */
async function fill(store: VoicemailStore): Promise<void> {
  await store.updateProfile("@alice:localhost", { timezone: "Europe/Berlin", delivery: "when-online", notify: "both" });
  await store.updateProfile("@bob:localhost", {});
  await store.addLink(link({ sealedCredentials: "v1.sealed.AAAA" }));
  await store.addLink(link({ systemId: "office", mailbox: "22", mwiEnabled: false, linkedBy: "@admin:localhost" }));
  await store.addLink(link({ userId: "@bob:localhost", mailbox: 'a"b|c/d' }));
  await store.saveDmRoom(room({ userJoined: true, lastName: "Carrier voicemail", lastSummary: '{"new":2}', lastTopic: "2 new \u{1F4EC}" }));
  await store.saveDmRoom(room({ botUserId: "@voicemail:localhost", roomId: "!main:localhost" }));
  await store.saveMailboxState(state("1001", { lastMessage: { ani: "+15551234567", callerName: "Zoë", dnis: "1001", time: "2026-11-25T14:03:00.000Z", duration: 42 } }));
  await store.saveMailboxState(state("1002", { waiting: false, new: 0, urgentNew: 0 }));
  const current = state("1003", { new: 4294967295 });
  await store.acceptChange(current, [
    { id: "e1", seq: 1, ownerId: "@alice:localhost", targetKey: '["sys","@alice:localhost","carrier"]', withMessage: true, change: { kind: "new-message", previous: state("1003"), current }, createdAt: 10 },
    { id: "e2", seq: 2, ownerId: "@alice:localhost", targetKey: '["main","@alice:localhost"]', withMessage: false, change: { kind: "counts", current }, createdAt: 11 },
  ]);
  await store.addOutboxEntries([
    { id: "e3", seq: 3, ownerId: "@bob:localhost", targetKey: '["main","@bob:localhost"]', withMessage: true, notice: { body: "Linked.", html: "<b>Linked.</b>", systemId: "carrier" }, createdAt: 12 },
  ]);
  await store.saveBatch({ id: "b1", targetKey: '["sys","@alice:localhost","carrier"]', entryIds: ["e1"], txnId: "vm.b1", roomId: "!one:localhost", createdAt: 13, open: false, done: [{ step: "message", eventId: "$m" }, { step: "state:org.voicemail.mwi:carrier/1003" }] });
  await store.addTarget({ id: "t1", ownerId: "@alice:localhost", kind: "account", address: "@erin:localhost", roomId: "!dm:localhost", status: "active", createdAt: 20, lastName: "n", lastSummary: "s", lastTopic: "t" });
  await store.addTarget({ id: "t2", ownerId: "@alice:localhost", kind: "room", address: "!team:localhost", status: "refused", createdAt: 21, refusedAt: 22, removedAt: 23 });
  await store.markEventHandled("$seen1", 100);
  await store.markEventHandled("$seen2", 200);
}

const everyKindPresent = (contents: StoreContents) => {
  for (const kind of CONTENT_KINDS) assert.ok(contents[kind].length > 0, `the fixture has ${kind}`);
};

describe("copyStore (engines in memory)", () => {
  it("copies every kind of record; the copy reads back equal", async () => {
    const from = new MemoryStore();
    await fill(from);
    const to = new MemoryStore();
    const report = await copyStore(from, to, { replace: false });
    const contents = await from.readAll();
    everyKindPresent(contents);
    assert.deepEqual(report.source, report.target);
    assert.deepEqual(differingKinds(contents, await to.readAll()), []);
  });

  it("refuses a target that is not empty unless told to replace it", async () => {
    const from = new MemoryStore();
    await fill(from);
    const to = new MemoryStore();
    await to.markEventHandled("$other", 1);
    await assert.rejects(copyStore(from, to, { replace: false }), /the target is not empty \(handledEvents 1\): pass --force/);
    assert.equal(await to.markEventHandled("$seen1", 1), true, "nothing was written");
    await copyStore(from, to, { replace: true });
    assert.equal(await to.markEventHandled("$other", 2), true, "what it held is gone");
    assert.deepEqual(differingKinds(await from.readAll(), await to.readAll()), ["handledEvents"]);
  });

  it("a target that loses a record is caught by the counts", async () => {
    const from = new MemoryStore();
    await fill(from);
    const lossy = new MemoryStore();
    const writeAll = lossy.writeAll.bind(lossy);
    lossy.writeAll = (contents, options) => writeAll({ ...contents, targets: contents.targets.slice(1) }, options);
    await assert.rejects(copyStore(from, lossy, { replace: false }), /the counts differ after the copy: source .*targets 2.*; target .*targets 1/);
  });

  it("a target that changes a record is caught by the read-back", async () => {
    const from = new MemoryStore();
    await fill(from);
    const changing = new MemoryStore();
    const writeAll = changing.writeAll.bind(changing);
    changing.writeAll = (contents, options) =>
      writeAll({ ...contents, links: contents.links.map((l, i) => (i ? l : { ...l, sealedCredentials: undefined })) as typeof contents.links }, options);
    await assert.rejects(copyStore(from, changing, { replace: false }), /reads back differently from the source in: links/);
  });

  it("refuses the same store on both sides and memory:", async () => {
    await assert.rejects(migrateStore("nedb:./x", "nedb:./x", { force: false }), /the same store/);
    await assert.rejects(migrateStore("memory:", "nedb:./x", { force: false }), /memory: keeps nothing/);
  });
});

describe("migrate-store nedb -> PostgreSQL (command line)", () => {
  let pg: RunningPostgres | undefined;
  let root: string;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), "vm-migrate-"));
    if (!postgresUnavailable()) pg = await startPostgres();
  });
  after(async () => {
    await pg?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  const cli = (...args: string[]) => spawnSync(process.execPath, [main, "migrate-store", ...args], { encoding: "utf8", timeout: 60_000 });

  it("copies everything, prints both counts, refuses a second run unless --force, and back again", async (t) => {
    if (!requirePostgres(t)) return;
    const dir = join(root, "data");
    const nedb = await NedbStore.open(dir, quiet);
    await fill(nedb);
    const expected = await nedb.readAll();
    await nedb.close();
    everyKindPresent(expected);
    const uri = await pg!.createDatabase();

    const run = cli("--from", `nedb:${dir}`, "--to", uri);
    assert.equal(run.status, 0, run.stderr);
    assert.ok(!run.stdout.includes(pg!.password) && !run.stderr.includes(pg!.password), "the password is never printed");
    for (const kind of CONTENT_KINDS) {
      const n = expected[kind].length;
      assert.match(run.stdout, new RegExp(`^${kind}\\s+${n}\\s+${n}$`, "m"), `${kind}: ${run.stdout}`);
    }

    const copy = await PostgresStore.open(uri, quiet);
    try {
      assert.deepEqual(differingKinds(expected, await copy.readAll()), []);
      // And through the interface the bridge uses.
      assert.deepEqual(await copy.listLinks("@alice:localhost"), expected.links.filter((l) => l.userId === "@alice:localhost").sort((a, b) => (a.systemId < b.systemId ? -1 : 1)));
      assert.deepEqual(await copy.getMailboxState("carrier", "1001"), expected.mailboxStates.find((s) => s.mailbox === "1001"));
      assert.deepEqual((await copy.outboxEntries()).map((e) => e.id), ["e1", "e2", "e3"]);
      assert.equal(await copy.markEventHandled("$seen1", 999), false, "handled events stay handled");
      assert.equal(await copy.maxOutboxSeq(), 3);
    } finally {
      await copy.close();
    }

    const again = cli("--from", `nedb:${dir}`, "--to", uri);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /^migrate-store: the target is not empty \(.*\): pass --force to replace what it holds\n$/);
    const forced = cli("--from", `nedb:${dir}`, "--to", uri, "--force");
    assert.equal(forced.status, 0, forced.stderr);

    // Back to a fresh NeDB directory: the same records.
    const back = join(root, "back");
    const reverse = cli("--from", uri, "--to", `nedb:${back}`);
    assert.equal(reverse.status, 0, reverse.stderr);
    const returned = await NedbStore.open(back, quiet);
    try {
      assert.deepEqual(differingKinds(expected, await returned.readAll()), []);
    } finally {
      await returned.close();
    }
  });

  it("copies more rows than one INSERT takes (chunks), all of them", async (t) => {
    if (!requirePostgres(t)) return;
    const from = new MemoryStore();
    const contents = await from.readAll();
    contents.links = Array.from({ length: 1234 }, (_, i) => link({ userId: `@u${i}:localhost`, sealedCredentials: `sealed-${i}` }));
    contents.handledEvents = Array.from({ length: 2001 }, (_, i) => ({ eventId: `$e${i}`, at: i }));
    await from.writeAll(contents, { replace: true });
    const to = await PostgresStore.open(await pg!.createDatabase(), quiet);
    try {
      const report = await copyStore(from, to, { replace: false });
      assert.equal(report.target.links, 1234);
      assert.equal(report.target.handledEvents, 2001);
      assert.equal((await to.listLinks("@u1233:localhost"))[0]?.sealedCredentials, "sealed-1233");
    } finally {
      await to.close();
    }
  });

  it("a PostgreSQL it cannot reach: one line on stderr, without the password", async () => {
    const dir = join(root, "small");
    const nedb = await NedbStore.open(dir, quiet);
    await nedb.close();
    const run = cli("--from", `nedb:${dir}`, "--to", "postgres://bridge:hunter2@127.0.0.1:1/voicemail");
    assert.equal(run.status, 1);
    assert.match(run.stderr, /^migrate-store: cannot open the PostgreSQL store postgres:\/\/bridge:\*\*\*@127\.0\.0\.1:1\/voicemail: .*ECONNREFUSED.*\n$/);
    assert.ok(!run.stderr.includes("hunter2"));
  });
});
