/**
 * The PostgreSQL engine against a real PostgreSQL (Debian's package, started on loopback by the
 * test bed harness): the shared store suite, then what only this engine has (migrations and their
 * lock, the refusal of a newer schema, text PostgreSQL cannot keep, errors without the password).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { PostgresStore, redactUri } from "../../src/store/postgresStore.js";
import { openStore } from "../../src/store/openStore.js";
import { MIGRATIONS } from "../../src/store/postgresMigrations.js";
import type { StoreLog } from "../../src/store/store.js";
import { postgresUnavailable, requirePostgres, startPostgres, type RunningPostgres } from "../testbed/postgres.js";
import { freePort } from "../testbed/ports.js";
import { link, room, storeSuite } from "./storeSuite.js";

const quiet: StoreLog = { warn: () => undefined };

const unavailable = postgresUnavailable();
if (unavailable) {
  it("PostgreSQL store engine", (t) => {
    requirePostgres(t);
  });
} else {
  let pg: RunningPostgres;
  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    await pg?.stop();
  });

  let lastUri = "";
  storeSuite("postgres", {
    open: async () => PostgresStore.open((lastUri = await pg.createSchema()), quiet),
    reopen: async () => PostgresStore.open(lastUri, quiet),
  });

  describe("PostgresStore", () => {
    it("openStore opens postgres:// and postgresql:// URIs", async () => {
      const uri = await pg.createDatabase();
      for (const u of [uri, uri.replace(/^postgres:/, "postgresql:")]) {
        const store = await openStore(u, quiet);
        assert.ok(store instanceof PostgresStore);
        await store.close();
      }
    });

    it("migrates a fresh database once; two bridges starting at once both open it", async () => {
      const uri = await pg.createDatabase();
      const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresStore.open(uri, quiet)));
      try {
        for (const store of stores) assert.equal(await store.schemaVersion(), MIGRATIONS.length);
        const admin = pg.admin(new URL(uri).pathname.slice(1));
        const rows = await admin`SELECT version FROM voicemail_schema ORDER BY version`;
        assert.deepEqual(rows.map((r) => r.version), MIGRATIONS.map((_, i) => i + 1), "each step applied once");
        // What one wrote, the others read: one database.
        assert.equal(await stores[0]!.addLink(link()), true);
        assert.equal(await stores[3]!.addLink(link()), false);
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
    });

    it("refuses a database whose schema is newer than the code, and changes nothing", async () => {
      const uri = await pg.createDatabase();
      const store = await PostgresStore.open(uri, quiet);
      await store.addLink(link());
      await store.close();
      const admin = pg.admin(new URL(uri).pathname.slice(1));
      await admin`INSERT INTO voicemail_schema (version, applied_at) VALUES (${MIGRATIONS.length + 1}, 0)`;
      await assert.rejects(PostgresStore.open(uri, quiet), (err: Error) => {
        assert.match(err.message, new RegExp(`schema version ${MIGRATIONS.length + 1}, newer than this bridge \\(${MIGRATIONS.length}\\): upgrade the bridge`));
        assert.ok(!err.message.includes(pg.password), err.message);
        return true;
      });
      const [row] = await admin`SELECT count(*) AS n FROM mailbox_links`;
      assert.equal(Number(row!.n), 1);
    });

    it("an upgrade runs only the new steps, keeps the data, and says so; the older code then refuses the database", async () => {
      const uri = await pg.createDatabase();
      const first = await PostgresStore.open(uri, quiet);
      await first.addLink(link());
      await first.close();
      const warnings: string[] = [];
      const next = [...MIGRATIONS, ["ALTER TABLE profiles ADD COLUMN locale text", "CREATE INDEX profiles_by_locale ON profiles (locale)"]];
      const upgraded = await PostgresStore.open(uri, { warn: (m) => warnings.push(m) }, { migrations: next });
      try {
        assert.equal(await upgraded.schemaVersion(), MIGRATIONS.length + 1);
        assert.deepEqual(await upgraded.listLinks("@alice:localhost"), [link()]);
        assert.equal(warnings.length, 1);
        assert.match(warnings[0]!, new RegExp(`^PostgreSQL postgres://bridge:\\*\\*\\*@127\\.0\\.0\\.1:\\d+/\\w+: schema migrated from version ${MIGRATIONS.length} to ${MIGRATIONS.length + 1}$`));
      } finally {
        await upgraded.close();
      }
      // Opened again with the same steps: nothing to do, nothing said.
      await (await PostgresStore.open(uri, { warn: (m) => warnings.push(m) }, { migrations: next })).close();
      assert.equal(warnings.length, 1);
      await assert.rejects(PostgresStore.open(uri, quiet), /newer than this bridge/);
    });

    it("a failed upgrade step leaves the database as it was", async () => {
      const uri = await pg.createDatabase();
      await (await PostgresStore.open(uri, quiet)).close();
      const broken = [...MIGRATIONS, ["ALTER TABLE profiles ADD COLUMN locale text", "ALTER TABLE nowhere ADD COLUMN x int"]];
      await assert.rejects(PostgresStore.open(uri, quiet, { migrations: broken }), /cannot open the PostgreSQL store .*relation "nowhere" does not exist/);
      const admin = pg.admin(new URL(uri).pathname.slice(1));
      const columns = await admin`SELECT column_name FROM information_schema.columns WHERE table_name = 'profiles' AND column_name = 'locale'`;
      assert.equal(columns.length, 0, "the first statement of the step was rolled back");
      const store = await PostgresStore.open(uri, quiet);
      assert.equal(await store.schemaVersion(), MIGRATIONS.length);
      await store.close();
    });

    it("a failed migration leaves nothing behind (one transaction)", async () => {
      const uri = await pg.createDatabase();
      // A table of the first step exists already: the step fails part way.
      const admin = pg.admin(new URL(uri).pathname.slice(1));
      await admin`CREATE TABLE handled_events (x int)`;
      await assert.rejects(PostgresStore.open(uri, quiet), /handled_events/);
      const tables = await admin`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`;
      assert.deepEqual(tables.map((r) => r.tablename), ["handled_events"]);
    });

    it("connection errors are one clear line without the password", async () => {
      const port = await freePort();
      const refused = `postgres://bridge:s3cret-pw@127.0.0.1:${port}/voicemail`;
      await assert.rejects(openStore(refused, quiet), (err: Error) => {
        assert.match(err.message, /^cannot open the PostgreSQL store postgres:\/\/bridge:\*\*\*@127\.0\.0\.1:\d+\/voicemail: .*ECONNREFUSED/);
        assert.ok(!err.message.includes("s3cret-pw"));
        assert.ok(!err.message.includes("\n"));
        return true;
      });
      const wrong = pg.uri("postgres").replace(encodeURIComponent(pg.password), "wrong-password");
      await assert.rejects(openStore(wrong, quiet), (err: Error) => {
        assert.match(err.message, /password authentication failed for user "bridge"/);
        assert.ok(!err.message.includes("wrong-password"));
        return true;
      });
    });

    it("redactUri hides the password and the query", () => {
      assert.equal(redactUri("postgres://u:p%40ss@db.example:5432/vm?password=x&sslmode=require"), "postgres://u:***@db.example:5432/vm");
      assert.equal(redactUri("postgres://db.example/vm"), "postgres://db.example/vm");
      assert.ok(!redactUri("postgres://u:secret@[bad").includes("secret"));
    });

    it("text PostgreSQL cannot keep is refused, not changed: two IDs never meet in one row", async () => {
      const store = await PostgresStore.open(await pg.createDatabase(), quiet);
      try {
        await assert.rejects(store.addLink(link({ userId: "@a\u0000:localhost" })), /link\.userId holds a NUL character or an unpaired UTF-16 surrogate/);
        await assert.rejects(store.addLink(link({ userId: "@a\ud800:localhost" })), /unpaired UTF-16 surrogate/);
        // The client would send both as U+FFFD: a stored U+FFFD must not answer for them.
        await store.saveDmRoom(room({ userId: "@a\ufffd:localhost" }));
        await assert.rejects(store.getDmRoom("@a\ud800:localhost", room().botUserId), /unpaired/);
        await assert.rejects(store.getDmRoom("@a\udc00:localhost", room().botUserId), /unpaired/);
        // Paired surrogates (an emoji) are fine.
        assert.equal(await store.addLink(link({ userId: "@\u{1F600}:localhost" })), true);
        assert.equal((await store.listLinks("@\u{1F600}:localhost")).length, 1);
        assert.equal(await store.listLinks("@a\u0000:localhost").catch((e: Error) => e.message.includes("NUL")), true);
      } finally {
        await store.close();
      }
    });

    it("json fields keep what jsonb would refuse (NUL, unpaired surrogates in a notice)", async () => {
      const store = await PostgresStore.open(await pg.createDatabase(), quiet);
      try {
        const notice = { body: "a\u0000b\ud800c", html: "<b>\udc00</b>" };
        await store.addOutboxEntries([{ id: "e1", seq: 1, ownerId: "@a:localhost", targetKey: "k", withMessage: true, notice, createdAt: 1 }]);
        assert.deepEqual((await store.outboxEntries())[0]!.notice, notice);
      } finally {
        await store.close();
      }
    });

    it("acceptChange is all or nothing: a clashing entry leaves no state and no other entry", async () => {
      const store = await PostgresStore.open(await pg.createDatabase(), quiet);
      try {
        const state = { systemId: "carrier", mailbox: "1001", waiting: true, new: 1, old: 0, urgentNew: 0, urgentOld: 0, updated: 5 };
        const entry = (id: string) => ({ id, seq: 1, ownerId: "@a:localhost", targetKey: "k", withMessage: true, change: { kind: "counts" as const, current: state }, createdAt: 1 });
        await store.addOutboxEntries([entry("taken")]);
        await assert.rejects(store.acceptChange(state, [entry("fresh"), entry("taken")]));
        assert.equal(await store.getMailboxState("carrier", "1001"), undefined);
        assert.deepEqual((await store.outboxEntries()).map((e) => e.id), ["taken"]);
      } finally {
        await store.close();
      }
    });

    it("an outage: operations reject without the password, and the same store works again after", async () => {
      const store = await PostgresStore.open(await pg.createDatabase(), quiet);
      try {
        await store.addLink(link());
        await pg.pause();
        const messages: string[] = [];
        for (const attempt of [() => store.listLinks("@alice:localhost"), () => store.acceptChange({ systemId: "carrier", mailbox: "1001", waiting: false, new: 0, old: 0, urgentNew: 0, urgentOld: 0, updated: 1 }, [])]) {
          await assert.rejects(attempt(), (err: Error) => {
            messages.push(err.message);
            assert.match(err.message, /^PostgreSQL postgres:\/\/bridge:\*\*\*@127\.0\.0\.1:\d+\/vm_\w+ is out of reach: connect ECONNREFUSED/);
            assert.ok(!err.message.includes(pg.password) && !String(err.stack).includes(pg.password), err.message);
            return true;
          });
        }
        console.log(`while PostgreSQL was down: ${messages.join(" | ")}`);
        await pg.resume();
        assert.deepEqual(await store.listLinks("@alice:localhost"), [link()]);
        assert.equal(await store.getMailboxState("carrier", "1001"), undefined, "the failed change left nothing");
      } finally {
        await store.close();
      }
    });

    it("counts up to 2^32-1 and ms time stamps come back as numbers", async () => {
      const store = await PostgresStore.open(await pg.createDatabase(), quiet);
      try {
        const state = { systemId: "s", mailbox: "m", waiting: true, new: 4294967295, old: 4294967295, urgentNew: 1, urgentOld: 2, updated: 8_640_000_000_000_000 };
        await store.saveMailboxState(state);
        assert.deepEqual(await store.getMailboxState("s", "m"), state);
      } finally {
        await store.close();
      }
    });
  });
}
