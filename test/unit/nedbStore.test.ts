import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  appendFileSync,
  chmodSync,
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { Readable } from "node:stream";
import { basename, join } from "node:path";

import { NedbStore } from "../../src/store/nedbStore.js";
import { MemoryStore } from "../../src/store/memoryStore.js";
import { openStore } from "../../src/store/openStore.js";
import { SCHEMA_VERSION, type OutboxEntry } from "../../src/store/store.js";
import type { MailboxState } from "../../src/core/mwi.js";
import { diskFiles, type StoreFiles } from "../../src/store/storeFiles.js";
import { link, room, storeSuite } from "./storeSuite.js";

const FILES = ["dm_rooms.db", "handled_events.db", "links.db", "mailbox_state.db", "meta.db", "outbox.db", "outbox_batches.db", "profiles.db", "targets.db"];

let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), "vm-nedb-"));
});
after(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
const freshDir = () => join(root, `store-${++counter}`);



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
    await assert.rejects(openStore("mysql://db/voicemail"), {
      message: 'database.uri: unsupported store "mysql"; supported: nedb:<directory>, postgres://user:password@host:port/database, memory:',
    });
    await assert.rejects(openStore("./data"), /unsupported store "\.\/data"; supported: nedb:<directory>, postgres:\/\/.*, memory:/);
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

const mailboxState = (overrides: Partial<MailboxState> = {}): MailboxState => ({
  systemId: "carrier",
  mailbox: "1001",
  waiting: false,
  new: 0,
  old: 0,
  urgentNew: 0,
  urgentOld: 0,
  updated: 1000,
  ...overrides,
});

const outboxEntry = (id: string, seq: number, body = "hi"): OutboxEntry => ({
  id,
  seq,
  ownerId: "@alice:localhost",
  targetKey: '["main","@alice:localhost"]',
  withMessage: true,
  notice: { body, html: body },
  createdAt: seq,
});

const collect = () => {
  const warnings: string[] = [];
  const errors: string[] = [];
  return { warnings, errors, log: { warn: (m: string) => warnings.push(m), error: (m: string) => errors.push(m) } };
};

describe("NedbStore torn writes and damage", () => {
  it("a torn last line (a crash mid-append) is cut off, kept beside the file, and logged once", async () => {
    const dir = freshDir();
    let store = await NedbStore.open(dir);
    await store.addLink(link());
    await store.close();
    const file = join(dir, "links.db");
    const good = readFileSync(file);
    const torn = '{"userId":"@bob:localhost","systemId":"carr';
    appendFileSync(file, torn);
    const { warnings, log } = collect();
    store = await NedbStore.open(dir, log);
    try {
      assert.deepEqual(await store.listLinks("@alice:localhost"), [link()]);
      assert.equal(warnings.length, 1, warnings.join("\n"));
      const copies = readdirSync(dir).filter((f) => f.startsWith("links.db.torn-"));
      assert.equal(copies.length, 1);
      assert.equal(warnings[0], `links.db in ${dir} ended in a torn write (the bridge stopped while writing it): dropped its last 1 line(s), ${torn.length} bytes, kept in ${copies[0]}`);
      assert.equal(readFileSync(join(dir, copies[0]!), "utf8"), torn);
      assert.equal(statSync(join(dir, copies[0]!)).mode & 0o777, 0o600);
      assert.ok(!readFileSync(file, "utf8").includes("@bob"), "the torn line left links.db");
      assert.ok(readFileSync(file).length >= good.length - 1);
    } finally {
      await store.close();
    }
  });

  it("a torn tail of several lines in a long file (half a line, then the zeros a power loss leaves) is not dropped silently", async () => {
    const dir = freshDir();
    let store = await NedbStore.open(dir);
    await store.addOutboxEntries(Array.from({ length: 30 }, (_, i) => outboxEntry(`e${i}`, i + 1)));
    await store.close();
    const file = join(dir, "outbox.db");
    const tail = `${JSON.stringify(outboxEntry("e30", 31)).slice(0, 40)}\n${"\0".repeat(100)}\n`;
    appendFileSync(file, tail);
    const { warnings, log } = collect();
    store = await NedbStore.open(dir, log);
    try {
      assert.equal((await store.outboxEntries()).length, 30);
      assert.equal(warnings.length, 1, warnings.join("\n"));
      assert.match(warnings[0]!, new RegExp(`^outbox\\.db in .* dropped its last 2 line\\(s\\), ${Buffer.byteLength(tail)} bytes, kept in outbox\\.db\\.torn-`));
    } finally {
      await store.close();
    }
  });

  it("damage in the middle of a file refuses the open, naming file and line, and changes nothing", async () => {
    const dir = freshDir();
    let store = await NedbStore.open(dir);
    await store.addOutboxEntries(Array.from({ length: 30 }, (_, i) => outboxEntry(`e${i}`, i + 1)));
    await store.close();
    const file = join(dir, "outbox.db");
    const fileLines = readFileSync(file, "utf8").split("\n");
    fileLines[10] = "{not json";
    writeFileSync(file, fileLines.join("\n"));
    const damaged = readFileSync(file);
    await assert.rejects(NedbStore.open(dir, collect().log), (err: Error) => {
      assert.equal(
        err.message,
        `${file}: line 11 is corrupt (not a JSON document) and is not the end of the file: refusing to open the store, so that nothing is lost; restore the file from a backup, or remove that line by hand`,
      );
      return true;
    });
    assert.deepEqual(readFileSync(file), damaged);
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes(".torn-")), []);
  });
});

/** A disk that is full (ENOSPC) for some files, on demand; sync can be held or fail. */
class FaultyFiles implements StoreFiles {
  failAppend: (file: string) => boolean = () => false;
  failSync = false;
  /** How many reads back fail before one works. */
  failReads = 0;
  appends = 0;
  readonly syncs: string[] = [];
  private held?: { promise: Promise<void>; release: () => void };

  async append(file: string, data: string, mode: number): Promise<void> {
    this.appends++;
    if (this.failAppend(file)) throw Object.assign(new Error(`ENOSPC: no space left on device, write '${file}'`), { code: "ENOSPC" });
    return diskFiles.append(file, data, mode);
  }
  async sync(file: string): Promise<void> {
    this.syncs.push(basename(file));
    await this.held?.promise;
    if (this.failSync) throw Object.assign(new Error(`EIO: i/o error, fsync`), { code: "EIO" });
    return diskFiles.sync(file);
  }
  read(file: string): NodeJS.ReadableStream {
    if (this.failReads-- > 0) return Readable.from((async function* () { throw Object.assign(new Error("EMFILE: too many open files"), { code: "EMFILE" }); })());
    return diskFiles.read(file);
  }
  size = (file: string) => diskFiles.size(file);
  truncate = (file: string, size: number) => diskFiles.truncate(file, size);
  hold(): void {
    let release = () => {};
    const promise = new Promise<void>((resolve) => (release = resolve));
    this.held = { promise, release };
  }
  release(): void {
    this.held?.release();
    this.held = undefined;
  }
}

const named = (name: string) => (file: string) => basename(file) === name;

describe("NedbStore write errors fail closed", () => {
  it("an outbox append that fails: acceptChange rejects and nothing of it appears, now or after a reopen; the next one works", async () => {
    const dir = freshDir();
    const files = new FaultyFiles();
    let store = await NedbStore.open(dir, collect().log, { files });
    await store.saveMailboxState(mailboxState());
    files.failAppend = named("outbox.db");
    await assert.rejects(store.acceptChange(mailboxState({ new: 1, waiting: true, updated: 2000 }), [outboxEntry("e1", 1)]), { code: "ENOSPC" });
    assert.deepEqual(await store.outboxEntries(), []);
    assert.equal((await store.getMailboxState("carrier", "1001"))?.new, 0);
    files.failAppend = () => false;
    await store.acceptChange(mailboxState({ new: 2, waiting: true, updated: 3000 }), [outboxEntry("e2", 2)]);
    await store.close();
    store = await NedbStore.open(dir, collect().log);
    try {
      assert.deepEqual((await store.outboxEntries()).map((e) => e.id), ["e2"]);
      assert.equal((await store.getMailboxState("carrier", "1001"))?.new, 2);
    } finally {
      await store.close();
    }
  });

  it("a state append that fails after the entries were written: the entries are taken back (no repair brings them back on open)", async () => {
    const dir = freshDir();
    const files = new FaultyFiles();
    const { warnings, errors, log } = collect();
    let store = await NedbStore.open(dir, log, { files });
    await store.saveMailboxState(mailboxState());
    files.failAppend = named("mailbox_state.db");
    await assert.rejects(store.acceptChange(mailboxState({ new: 1, waiting: true, updated: 2000 }), [outboxEntry("e1", 1)]), { code: "ENOSPC" });
    assert.deepEqual(await store.outboxEntries(), []);
    assert.equal((await store.getMailboxState("carrier", "1001"))?.new, 0);
    assert.ok(!readFileSync(join(dir, "outbox.db"), "utf8").includes('"e1"'), "outbox.db was cut back");
    files.failAppend = () => false;
    await store.addLink(link());
    await store.close();
    store = await NedbStore.open(dir, log);
    try {
      assert.deepEqual(await store.outboxEntries(), []);
      assert.equal((await store.getMailboxState("carrier", "1001"))?.new, 0);
      assert.deepEqual(warnings, [], "nothing to repair");
      assert.deepEqual(errors, []);
    } finally {
      await store.close();
    }
  });

  it("reading the file back after a failed write may fail a few times (EMFILE); only when it keeps failing does the store stop", async () => {
    const dir = freshDir();
    const files = new FaultyFiles();
    const { errors, log } = collect();
    const store = await NedbStore.open(dir, log, { files });
    try {
      files.failAppend = named("outbox.db");
      files.failReads = 2;
      await assert.rejects(store.acceptChange(mailboxState({ new: 1, updated: 2000 }), [outboxEntry("e1", 1)]), { code: "ENOSPC" });
      assert.deepEqual(await store.outboxEntries(), []);
      assert.deepEqual(errors, []);
      files.failReads = Infinity;
      await assert.rejects(store.acceptChange(mailboxState({ new: 1, updated: 2000 }), [outboxEntry("e1", 1)]), { code: "ENOSPC" });
      assert.equal(errors.length, 1, errors.join("\n"));
      assert.match(errors[0]!, /stops: a write to .*outbox\.db failed \(ENOSPC.*\) and reading the file back failed too \(EMFILE: too many open files\); it takes no more updates/);
      files.failAppend = () => false;
      await assert.rejects(store.outboxEntries(), /is stopped after a failed write/);
    } finally {
      await store.close();
    }
  });

  it("a failed fsync stops the store: one ERROR line, every later write and outbox read rejects", async () => {
    const dir = freshDir();
    const files = new FaultyFiles();
    const { errors, log } = collect();
    const store = await NedbStore.open(dir, log, { files });
    assert.equal(store.problem(), undefined);
    files.failSync = true;
    await assert.rejects(store.acceptChange(mailboxState({ new: 1, updated: 2000 }), [outboxEntry("e1", 1)]), { code: "EIO" });
    files.failSync = false;
    assert.match(store.problem() ?? "", /^stopped after a failed write/, "/ready tells it");
    await assert.rejects(store.acceptChange(mailboxState({ new: 2, updated: 3000 }), []), /is stopped after a failed write/);
    await assert.rejects(store.outboxEntries(), /is stopped after a failed write/);
    await assert.rejects(store.addLink(link()), /is stopped after a failed write/);
    assert.equal(errors.length, 1, errors.join("\n"));
    assert.match(errors[0]!, new RegExp(`^the store in ${dir} stops: an fsync of .* failed \\(EIO: i/o error, fsync\\); it takes no more updates: fix the disk and restart the bridge$`));
    await store.close();
  });
});

describe("NedbStore syncs before acceptChange resolves", () => {
  it("no accept resolves before its files are fsynced, and accepts at the same time share one fsync", async () => {
    const dir = freshDir();
    const files = new FaultyFiles();
    const store = await NedbStore.open(dir, collect().log, { files });
    try {
      files.hold();
      files.appends = 0;
      const resolved: number[] = [];
      const accepts = Array.from({ length: 10 }, (_, i) =>
        store.acceptChange(mailboxState({ new: i + 1, updated: 2000 + i }), [outboxEntry(`e${i}`, i + 1)]).then(() => resolved.push(i)),
      );
      // Every accept has written both its lines: all now wait for their fsync.
      while (files.appends < 20 && !resolved.length) await new Promise((resolve) => setImmediate(resolve));
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(resolved, [], "nothing resolved before its fsync");
      files.release();
      await Promise.all(accepts);
      assert.equal(resolved.length, 10);
      // The first accept's round, then one round for the nine that came while it ran.
      assert.deepEqual(files.syncs.sort(), ["mailbox_state.db", "mailbox_state.db", "outbox.db", "outbox.db"]);
    } finally {
      files.release();
      await store.close();
    }
  });
});

describe("NedbStore on a full disk (a 64 KiB tmpfs)", () => {
  it("acceptChange rejects, leaves nothing behind, and works again once there is room", async (t) => {
    const mountPoint = freshDir();
    mkdirSync(mountPoint, { recursive: true });
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mountPoint], { stdio: "pipe" });
    } catch (err) {
      t.skip(`cannot mount a tmpfs (${(err as Error).message.split("\n")[0]}): needs root`);
      return;
    }
    try {
      const dir = join(mountPoint, "store");
      let store = await NedbStore.open(dir, collect().log);
      await store.saveMailboxState(mailboxState());
      // Fill what is left; an entry larger than a page then needs a page the disk does not have.
      const filler = join(mountPoint, "filler");
      const fd = openSync(filler, "w");
      try {
        for (;;) writeSync(fd, Buffer.alloc(1024));
      } catch (err) {
        assert.equal((err as NodeJS.ErrnoException).code, "ENOSPC");
      } finally {
        closeSync(fd);
      }
      const big = "x".repeat(10_000);
      await assert.rejects(store.acceptChange(mailboxState({ new: 1, waiting: true, updated: 2000 }), [outboxEntry("e1", 1, big)]), { code: "ENOSPC" });
      assert.deepEqual(await store.outboxEntries(), [], "nothing of the rejected change is left to deliver");
      assert.equal((await store.getMailboxState("carrier", "1001"))?.new, 0);
      rmSync(filler);
      await store.acceptChange(mailboxState({ new: 2, waiting: true, updated: 3000 }), [outboxEntry("e2", 2)]);
      await store.close();
      store = await NedbStore.open(dir, collect().log);
      try {
        assert.deepEqual((await store.outboxEntries()).map((e) => e.id), ["e2"]);
        assert.equal((await store.getMailboxState("carrier", "1001"))?.new, 2);
      } finally {
        await store.close();
      }
    } finally {
      execFileSync("umount", [mountPoint]);
    }
  });
});
