import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { NedbStore } from "../../src/store/nedbStore.js";
import { MemoryStore } from "../../src/store/memoryStore.js";
import { openStore } from "../../src/store/openStore.js";
import { SCHEMA_VERSION, type DmRoom, type MailboxLink, type OutboxEntry } from "../../src/store/store.js";
import type { MailboxState } from "../../src/core/mwi.js";
import { storeSuite } from "./storeSuite.js";

const FILES = ["dm_rooms.db", "handled_events.db", "links.db", "mailbox_state.db", "meta.db", "outbox.db", "outbox_batches.db", "profiles.db", "targets.db"];

let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), "vm-nedb-"));
});
after(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
const freshDir = () => join(root, `store-${++counter}`);

const link = (overrides: Partial<MailboxLink> = {}): MailboxLink => ({
  userId: "@alice:localhost",
  systemId: "carrier",
  mailbox: "1001",
  mwiEnabled: true,
  linkedBy: "@alice:localhost",
  createdAt: 1000,
  ...overrides,
});

const room = (overrides: Partial<DmRoom> = {}): DmRoom => ({
  userId: "@alice:localhost",
  botUserId: "@vm_carrier:localhost",
  roomId: "!one:localhost",
  userJoined: false,
  createdAt: 1000,
  ...overrides,
});


describe("NedbStore.open", () => {
  it("creates the directory 0700 with its files 0600", async () => {
    const dir = freshDir();
    const store = await NedbStore.open(dir);
    try {
      assert.equal(statSync(dir).mode & 0o777, 0o700);
      const files = readdirSync(dir).sort();
      assert.deepEqual(files, FILES);
      for (const file of files) assert.equal(statSync(join(dir, file)).mode & 0o777, 0o600, file);
    } finally {
      await store.close();
    }
  });

  it("tightens an existing directory and files that were open to others", async () => {
    const dir = freshDir();
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    writeFileSync(join(dir, "profiles.db"), "", { mode: 0o644 });
    chmodSync(join(dir, "profiles.db"), 0o644);
    const store = await NedbStore.open(dir);
    try {
      assert.equal(statSync(dir).mode & 0o777, 0o700);
      assert.equal(statSync(join(dir, "profiles.db")).mode & 0o777, 0o600);
    } finally {
      await store.close();
    }
  });

  it("writes the schema version into meta.db", async () => {
    const dir = freshDir();
    const store = await NedbStore.open(dir);
    await store.close();
    const docs = readFileSync(join(dir, "meta.db"), "utf8")
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((doc) => doc.key === "schema");
    assert.equal(docs.length, 1);
    assert.equal(docs[0]!.version, SCHEMA_VERSION);
    assert.equal(SCHEMA_VERSION, 2);
  });

  it("refuses a store written by a newer version, naming both versions", async () => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "meta.db"), `${JSON.stringify({ key: "schema", version: SCHEMA_VERSION + 1, _id: "schema0000000001" })}\n`);
    await assert.rejects(NedbStore.open(dir), (err: Error) => {
      assert.equal(
        err.message,
        `the store in ${dir} has schema version ${SCHEMA_VERSION + 1}, newer than this bridge (${SCHEMA_VERSION}): upgrade the bridge`,
      );
      return true;
    });
  });

  it("opens a store of the current version written before", async () => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "meta.db"), `${JSON.stringify({ key: "schema", version: SCHEMA_VERSION, _id: "schema0000000001" })}\n`);
    const store = await NedbStore.open(dir);
    await store.close();
    const schemaDocs = readFileSync(join(dir, "meta.db"), "utf8")
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((doc) => doc.key === "schema");
    assert.deepEqual(schemaDocs.map((d) => d.version), [SCHEMA_VERSION]);
  });

  it("openStore picks the engine from the URI and names the supported ones for others", async () => {
    const dir = freshDir();
    const store = await openStore(`nedb:${dir}`);
    assert.ok(store instanceof NedbStore);
    await store.close();
    const memory = await openStore("memory:");
    assert.ok(memory instanceof MemoryStore);
    await memory.close();
    await assert.rejects(openStore("postgres://db/voicemail"), {
      message: 'database.uri: unsupported store "postgres"; supported: nedb:<directory>, memory:',
    });
    await assert.rejects(openStore("./data"), /unsupported store "\.\/data"; supported: nedb:<directory>, memory:/);
  });

  it("files stay 0600 after writes and close (NeDB may rewrite its files)", async () => {
    const dir = freshDir();
    const store = await NedbStore.open(dir);
    await store.updateProfile("@alice:localhost", { timezone: "UTC" });
    await store.addLink(link());
    await store.saveDmRoom(room());
    await store.close();
    const files = readdirSync(dir).sort();
    assert.deepEqual(files.filter((f) => f.endsWith(".db")), FILES);
    for (const file of files) assert.equal(statSync(join(dir, file)).mode & 0o777, 0o600, file);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
  });
});


const lines = (path: string) =>
  readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);

describe("NedbStore migration and repair", () => {
  it("a version 1 store: target keys become JSON, duplicate targets go, the version is 2", async () => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "meta.db"), `${JSON.stringify({ key: "schema", version: 1, _id: "schema0000000001" })}\n`);
    const old = (id: string, seq: number, targetKey: string): OutboxEntry & { _id: string } => ({
      _id: `outbox${String(seq).padStart(10, "0")}`,
      id,
      seq,
      ownerId: "@a|b:localhost",
      targetKey,
      withMessage: true,
      notice: { body: "hi", html: "hi" },
      createdAt: seq,
    });
    writeFileSync(
      join(dir, "outbox.db"),
      [old("e1", 1, "sys|@a|b:localhost|carrier"), old("e2", 2, "main|@a|b:localhost"), old("e3", 3, "extra|t-1")].map((d) => JSON.stringify(d)).join("\n") + "\n",
    );
    const t = (id: string, createdAt: number) => ({ _id: `target${id}000000000`, id, ownerId: "@o:localhost", kind: "account", address: "@x:localhost", status: "active", createdAt });
    writeFileSync(join(dir, "targets.db"), `${JSON.stringify(t("2", 2000))}\n${JSON.stringify(t("1", 1000))}\n`);

    const store = await NedbStore.open(dir);
    try {
      assert.deepEqual(
        (await store.outboxEntries()).map((e) => e.targetKey),
        ['["sys","@a|b:localhost","carrier"]', '["main","@a|b:localhost"]', '["extra","t-1"]'],
      );
      assert.deepEqual((await store.listTargets("@o:localhost")).map((x) => x.id), ["1"], "the first one stays");
      assert.equal(await store.addTarget({ ...t("3", 3000), kind: "account", status: "invited" } as never), false);
    } finally {
      await store.close();
    }
    assert.deepEqual(lines(join(dir, "meta.db")).filter((d) => d.key === "schema").map((d) => d.version), [2]);
  });

  it("after a crash between a change's entries and its state, the state is repaired from the entries on open", async () => {
    const dir = freshDir();
    let store = await NedbStore.open(dir);
    const before: MailboxState = { systemId: "carrier", mailbox: "1001", waiting: false, new: 0, old: 0, urgentNew: 0, urgentOld: 0, updated: 1000 };
    await store.saveMailboxState(before);
    const after = { ...before, waiting: true, new: 1, updated: 2000 };
    // What acceptChange writes first, as if the bridge died before the state.
    await store.addOutboxEntries([
      { id: "e1", seq: 1, ownerId: "@a:localhost", targetKey: '["main","@a:localhost"]', withMessage: true, change: { kind: "new-message", previous: before, current: after }, createdAt: 2000 },
    ]);
    await store.close();
    const warnings: string[] = [];
    store = await NedbStore.open(dir, { warn: (m) => warnings.push(m) });
    try {
      assert.deepEqual(await store.getMailboxState("carrier", "1001"), after);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /repaired the state of carrier\/1001/);
    } finally {
      await store.close();
    }
    // An older entry still waiting (a user offline) never takes the state back.
    store = await NedbStore.open(dir, { warn: (m) => warnings.push(m) });
    await store.saveMailboxState({ ...after, new: 3, updated: 3000 });
    await store.close();
    store = await NedbStore.open(dir, { warn: (m) => warnings.push(m) });
    assert.equal((await store.getMailboxState("carrier", "1001"))?.new, 3);
    await store.close();
    assert.equal(warnings.length, 1);
  });

  it("a compaction or permission fix-up that fails says so in one line", async () => {
    const dir = freshDir();
    const warnings: string[] = [];
    const store = await NedbStore.open(dir, { warn: (m) => warnings.push(m) });
    await store.addLink(link());
    // Compaction writes a new file and renames it over the old one: a directory that cannot be written fails it.
    rmSync(dir, { recursive: true, force: true });
    await store.close();
    assert.ok(warnings.length >= 1 && warnings.length <= 2, warnings.join("\n"));
    assert.match(warnings.join("\n"), /compaction of .* failed/);
    assert.ok(warnings.every((w) => !w.includes("\n")), "one line each");
  });
});

let engineDir = "";
storeSuite("nedb", {
  open: async () => NedbStore.open((engineDir = freshDir())),
  reopen: async () => NedbStore.open(engineDir),
});
