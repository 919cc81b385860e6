import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { openApiDocument } from "../../src/app/adminApi/openapi.js";
import { apiWorld, type ApiWorld } from "./adminApiHarness.js";

const ALICE = "@alice:localhost";
const BOB = "@bob:localhost";
const u = encodeURIComponent;

let w: ApiWorld;
beforeEach(async () => {
  w = await apiWorld();
});
afterEach(async () => {
  await w.close();
});

/** Every answer is JSON; errors have both fields. */
function assertError(res: { status: number; json: any; headers: Headers }, status: number, errcode: string, message?: RegExp): void {
  assert.equal(res.status, status, JSON.stringify(res.json));
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  assert.equal(res.json.errcode, errcode);
  assert.equal(typeof res.json.error, "string");
  if (message) assert.match(res.json.error, message);
}

describe("admin API: access", () => {
  it("refuses a request without a token, with a wrong one, and one in another scheme: 401", async () => {
    assertError(await w.call("GET", "/users", { token: null }), 401, "M_MISSING_TOKEN");
    const wrong = await w.call("GET", "/users", { token: "x".repeat(48) });
    assertError(wrong, 401, "M_UNKNOWN_TOKEN");
    assert.match(wrong.headers.get("www-authenticate") ?? "", /^Bearer/);
    assertError(await w.call("GET", "/users", { token: w.token.slice(0, -1) }), 401, "M_UNKNOWN_TOKEN");
    assertError(await w.call("GET", "/users", { token: null, headers: { authorization: `Basic ${w.token}` } }), 401, "M_MISSING_TOKEN");
    // Nothing changes without the token, and no route is told apart from another.
    assertError(await w.call("POST", `/users/${u(ALICE)}/links`, { token: null, body: { systemId: "carrier", mailbox: "1001" } }), 401, "M_MISSING_TOKEN");
    assertError(await w.call("GET", "/no/such/route", { token: null }), 401, "M_MISSING_TOKEN");
    assert.equal((await w.store.listLinks(ALICE)).length, 0);
    assert.equal((await w.call("GET", "/users")).status, 200);
  });

  it("logs refusals without the token, once per kind and address", async () => {
    await w.call("GET", "/users", { token: "wrong-token-wrong-token-wrong-token" });
    await w.call("GET", "/users", { token: "wrong-token-wrong-token-wrong-token" });
    await w.call("GET", "/users", { token: null });
    const lines = w.log.lines.filter((l) => /refused/.test(l.message));
    assert.equal(lines.length, 2);
    assert.match(lines[0]!.message, /127\.0\.0\.1: wrong token/);
    assert.match(lines[1]!.message, /127\.0\.0\.1: no bearer token/);
    assert.ok(!w.log.lines.some((l) => l.message.includes("wrong-token") || l.message.includes(w.token)));
  });

  it("answers 404 for unknown routes and paths outside the API, 405 with Allow for wrong methods", async () => {
    assertError(await w.call("GET", "/nothing"), 404, "M_UNRECOGNIZED");
    assertError(await w.call("GET", `/users/${u(ALICE)}/links/carrier`), 404, "M_UNRECOGNIZED");
    const outside = await fetch(w.base.replace("/_voicemail/admin/v1", "/elsewhere"), { headers: { authorization: `Bearer ${w.token}` } });
    assert.equal(outside.status, 404);
    assert.equal(((await outside.json()) as { errcode: string }).errcode, "M_UNRECOGNIZED");
    const put = await w.call("PUT", "/users");
    assertError(put, 405, "M_UNRECOGNIZED");
    assert.equal(put.headers.get("allow"), "GET");
    const del = await w.call("DELETE", `/users/${u(ALICE)}/links`);
    assertError(del, 405, "M_UNRECOGNIZED");
    assert.equal(del.headers.get("allow"), "GET, POST");
    assertError(await w.call("POST", "/openapi.json"), 405, "M_UNRECOGNIZED");
    assertError(await w.call("GET", "/users/%E0%A4%A"), 404, "M_UNRECOGNIZED");
  });

  it("rate limits per client address with 429 and Retry-After, also before the token is checked", async () => {
    await w.close();
    let clock = 1_000_000;
    w = await apiWorld({ rateLimit: { requests: 3, windowSeconds: 60 } }, () => clock);
    assert.equal((await w.call("GET", "/users")).status, 200);
    assert.equal((await w.call("GET", "/users", { token: null })).status, 401);
    assert.equal((await w.call("GET", "/openapi.json", { token: null })).status, 200);
    clock += 20_000;
    const limited = await w.call("GET", "/users");
    assertError(limited, 429, "M_LIMIT_EXCEEDED", /40 s/);
    assert.equal(limited.headers.get("retry-after"), "40");
    assertError(await w.call("GET", "/users", { token: null }), 429, "M_LIMIT_EXCEEDED");
    clock += 40_000;
    assert.equal((await w.call("GET", "/users")).status, 200);
    assert.equal(w.log.lines.filter((l) => /over the rate limit/.test(l.message)).length, 1);
  });

  it("takes JSON bodies only, within the size limit, with known fields only", async () => {
    await w.close();
    w = await apiWorld({ maxBodyBytes: 256 });
    await w.store.updateProfile(ALICE, {});
    const settings = `/users/${u(ALICE)}/settings`;
    assertError(await w.call("PATCH", settings, { raw: JSON.stringify({ timezone: "x".repeat(300) }), headers: { "content-type": "application/json" } }), 413, "M_TOO_LARGE", /256 bytes/);
    assertError(await w.call("PATCH", settings, { raw: '{"delivery":"always"}', headers: { "content-type": "text/plain" } }), 415, "M_NOT_JSON");
    assertError(await w.call("PATCH", settings, { raw: "{nope", headers: { "content-type": "application/json" } }), 400, "M_NOT_JSON");
    assertError(await w.call("PATCH", settings, { body: ["delivery"] }), 400, "M_BAD_JSON", /object/);
    assertError(await w.call("PATCH", settings, { body: { delivary: "always" } }), 400, "M_BAD_JSON", /"delivary"/);
    assertError(await w.call("PATCH", settings, { body: {} }), 400, "M_BAD_JSON", /which settings/);
    assertError(await w.call("POST", "/systems/carrier/resync", { body: { now: true } }), 400, "M_BAD_JSON");
    assert.deepEqual(await w.store.getProfile(ALICE).then((p) => p && { d: p.delivery, t: p.timezone }), { d: undefined, t: undefined });
  });
});

describe("admin API: the OpenAPI document", () => {
  it("is served without a token and names exactly the routes the API has", async () => {
    const res = await w.call("GET", "/openapi.json", { token: null });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, JSON.parse(JSON.stringify(openApiDocument)));
    assert.match(res.json.openapi, /^3\./);
    const METHODS = ["get", "post", "patch", "put", "delete"];
    const documented = Object.entries(res.json.paths as Record<string, Record<string, unknown>>)
      .flatMap(([path, item]) => Object.keys(item).filter((k) => METHODS.includes(k)).map((m) => `${m.toUpperCase()} ${path}`))
      .sort();
    const served = ["GET /openapi.json", ...w.api.routes.map((r) => `${r.method} ${r.path}`)].sort();
    assert.deepEqual(documented, served);
    // Every path parameter of a route is declared in its document entry.
    for (const route of w.api.routes) {
      const item = res.json.paths[route.path];
      const declared = [...(item.parameters ?? []), ...(item[route.method.toLowerCase()].parameters ?? [])].filter((p: any) => p.in === "path").map((p: any) => p.name);
      const inPath = [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      assert.deepEqual(declared.sort(), inPath.sort(), route.path);
      assert.ok(item[route.method.toLowerCase()].responses["401"], `${route.method} ${route.path} documents 401`);
    }
  });
});

describe("admin API: users", () => {
  it("lists users by ID in pages, searches them, and finds those linked to one mailbox", async () => {
    for (const id of ["@carol:b.org", ALICE, BOB, "@dave:b.org"]) await w.store.updateProfile(id, {});
    await w.mailboxes.link(BOB, "carrier", "1001", "@admin:localhost");
    const first = await w.call("GET", "/users?limit=2");
    assert.equal(first.status, 200);
    assert.deepEqual(first.json.users.map((p: any) => p.userId), [ALICE, BOB]);
    assert.equal(first.json.next, BOB);
    const second = await w.call("GET", `/users?limit=2&after=${u(first.json.next)}`);
    assert.deepEqual(second.json.users.map((p: any) => p.userId), ["@carol:b.org", "@dave:b.org"]);
    const last = await w.call("GET", `/users?limit=2&after=${u("@dave:b.org")}`);
    assert.deepEqual(last.json, { users: [] });
    const found = await w.call("GET", "/users?search=B.ORG");
    assert.deepEqual(found.json.users.map((p: any) => p.userId), ["@carol:b.org", "@dave:b.org"]);
    assert.equal(found.json.next, undefined);
    const linked = await w.call("GET", "/users?system=carrier&mailbox=1001");
    assert.deepEqual(linked.json.users.map((p: any) => p.userId), [BOB]);
    assertError(await w.call("GET", "/users?limit=0"), 400, "M_INVALID_PARAM", /limit/);
    assertError(await w.call("GET", "/users?limit=1e3"), 400, "M_INVALID_PARAM");
    assertError(await w.call("GET", "/users?system=carrier"), 400, "M_INVALID_PARAM", /together/);
    assertError(await w.call("GET", "/users?system=nope&mailbox=1"), 400, "M_INVALID_PARAM", /no system "nope"/);
  });

  it("shows a user's settings, links and targets, never credentials", async () => {
    await w.mailboxes.link(ALICE, "carrier", "1001", ALICE, { credentials: { username: "1001", password: "hunter2-secret" } });
    await w.targets.add(ALICE, BOB);
    await w.store.updateProfile(ALICE, { timezone: "Europe/Berlin" });
    const res = await w.call("GET", `/users/${u(ALICE)}`);
    assert.equal(res.status, 200);
    assert.equal(res.json.userId, ALICE);
    assert.deepEqual(res.json.settings, { timezone: "Europe/Berlin" });
    assert.equal(res.json.links.length, 1);
    assert.equal(res.json.links[0].hasCredentials, true);
    assert.equal(res.json.links[0].linkedBy, ALICE);
    assert.equal(res.json.targets[0].address, BOB);
    assert.equal(res.json.targets[0].lastName, undefined);
    const [link] = await w.store.listLinks(ALICE);
    assert.ok(!res.text.includes("hunter2") && !res.text.includes(link!.sealedCredentials!) && !/sealed|password/i.test(res.text));
    const links = await w.call("GET", `/users/${u(ALICE)}/links`);
    assert.ok(!links.text.includes(link!.sealedCredentials!) && !/sealed|password/i.test(links.text));
    assertError(await w.call("GET", `/users/${u(BOB)}`), 404, "M_NOT_FOUND", /no user @bob/);
    assertError(await w.call("GET", `/users/${u(BOB)}/links`), 404, "M_NOT_FOUND");
    assertError(await w.call("GET", `/users/alice`), 400, "M_INVALID_PARAM", /not a Matrix user ID/);
  });

  it("changes settings as !set does: canonical time zones, known modes, all or nothing", async () => {
    await w.store.updateProfile(ALICE, {});
    const path = `/users/${u(ALICE)}/settings`;
    const res = await w.call("PATCH", path, { body: { timezone: "europe/berlin", delivery: "when-online" } });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json.settings, { timezone: "Europe/Berlin", delivery: "when-online" });
    assertError(await w.call("PATCH", path, { body: { delivery: "always", timezone: "Mars/Olympus" } }), 400, "M_INVALID_PARAM", /not a time zone/);
    assertError(await w.call("PATCH", path, { body: { notify: "everywhere" } }), 400, "M_INVALID_PARAM", /per-system, summary, both/);
    assertError(await w.call("PATCH", path, { body: { delivery: 1 } }), 400, "M_INVALID_PARAM", /string/);
    const stored = await w.store.getProfile(ALICE);
    assert.equal(stored?.delivery, "when-online");
    assert.equal(stored?.timezone, "Europe/Berlin");
    assert.equal((await w.call("PATCH", path, { body: { notify: "both" } })).json.settings.notify, "both");
    assert.ok(w.log.has("info", /^admin API \(127\.0\.0\.1\): set notify of @alice:localhost$/));
    assertError(await w.call("PATCH", `/users/${u(BOB)}/settings`, { body: { notify: "both" } }), 404, "M_NOT_FOUND");
    assert.equal(await w.store.getProfile(BOB), undefined);
  });
});

describe("admin API: links", () => {
  it("links a mailbox as !admin link does, once, and says how MWI reaches the user", async () => {
    const path = `/users/${u(ALICE)}/links`;
    const res = await w.call("POST", path, { body: { systemId: "carrier", mailbox: "1001" } });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.json.outcome, "linked");
    assert.equal(res.json.link.linkedBy, "admin-api");
    assert.equal(res.json.link.hasCredentials, false);
    assert.match(res.json.mwi, /system's credentials/);
    assert.deepEqual(w.carrier.calls, ["watch 1001"]);
    assert.match(w.notices[0]!, /Mailbox 1001 of Carrier is now linked/);
    assert.ok(w.log.has("info", /^admin API \(127\.0\.0\.1\): linked carrier\/1001 to @alice:localhost$/));
    const again = await w.call("POST", path, { body: { systemId: "carrier", mailbox: "1001" } });
    assert.equal(again.status, 200);
    assert.equal(again.json.outcome, "already-linked");
    assert.equal((await w.store.listLinks(ALICE)).length, 1);
    const pushed = await w.call("POST", path, { body: { systemId: "hook", mailbox: "+15551234567" } });
    assert.equal(pushed.status, 201);
    assert.equal(pushed.json.mwi, "pushed by the system");
  });

  it("refuses a link to an unknown system, a bad mailbox or user, missing fields", async () => {
    const path = `/users/${u(ALICE)}/links`;
    assertError(await w.call("POST", path, { body: { systemId: "nope", mailbox: "1001" } }), 400, "M_INVALID_PARAM", /no system "nope"; systems: carrier, hook/);
    assertError(await w.call("POST", path, { body: { systemId: "carrier", mailbox: "10 01" } }), 400, "M_INVALID_PARAM", /not a mailbox/);
    assertError(await w.call("POST", path, { body: { systemId: "carrier", mailbox: 1001 } }), 400, "M_INVALID_PARAM", /string/);
    assertError(await w.call("POST", path, { body: { systemId: "carrier" } }), 400, "M_BAD_JSON", /missing field\(s\): mailbox/);
    assertError(await w.call("POST", path), 400, "M_BAD_JSON", /missing/);
    assertError(await w.call("POST", `/users/${u("@no server")}/links`, { body: { systemId: "carrier", mailbox: "1001" } }), 400, "M_INVALID_PARAM");
    assert.equal((await w.store.listLinks(ALICE)).length, 0);
    assert.equal(await w.store.getProfile(ALICE), undefined);
  });

  it("switches a link's MWI and unlinks it; 404 for links that are not there", async () => {
    await w.mailboxes.link(ALICE, "carrier", "1001", "@admin:localhost");
    await w.mailboxes.link(BOB, "carrier", "2002", "@admin:localhost");
    const path = `/users/${u(ALICE)}/links/carrier/1001`;
    const off = await w.call("PATCH", path, { body: { mwiEnabled: false } });
    assert.equal(off.status, 200, off.text);
    assert.deepEqual([off.json.link.mwiEnabled, off.json.changed], [false, true]);
    assert.equal(w.carrier.calls.at(-1), "unwatch 1001");
    assert.equal((await w.call("PATCH", path, { body: { mwiEnabled: false } })).json.changed, false);
    assertError(await w.call("PATCH", path, { body: { mwiEnabled: "no" } }), 400, "M_INVALID_PARAM", /true or false/);
    // Another user's mailbox is not Alice's to change.
    assertError(await w.call("PATCH", `/users/${u(ALICE)}/links/carrier/2002`, { body: { mwiEnabled: false } }), 404, "M_NOT_FOUND", /has no linked mailbox 2002/);
    assertError(await w.call("DELETE", `/users/${u(ALICE)}/links/carrier/2002`), 404, "M_NOT_FOUND");
    assert.equal((await w.store.listLinks(BOB))[0]!.mwiEnabled, true);
    assertError(await w.call("DELETE", `/users/${u(ALICE)}/links/nope/1001`), 404, "M_NOT_FOUND", /no system/);
    const gone = await w.call("DELETE", path);
    assert.equal(gone.status, 200);
    assert.equal(gone.json.unlinked.mailbox, "1001");
    assert.deepEqual(await w.store.listLinks(ALICE), []);
    assert.ok(w.log.has("info", /^admin API \(127\.0\.0\.1\): unlinked carrier\/1001 from @alice:localhost$/));
    assertError(await w.call("DELETE", path), 404, "M_NOT_FOUND");
    assert.equal((await w.store.listLinks(BOB)).length, 1);
  });

  it("reads a percent-encoded slash as part of its segment", async () => {
    await w.mailboxes.link(ALICE, "carrier", "1001@default", "@admin:localhost");
    assertError(await w.call("DELETE", `/users/${u(ALICE)}/links/carrier/1001%2Fdefault`), 404, "M_NOT_FOUND");
    assert.equal((await w.call("DELETE", `/users/${u(ALICE)}/links/carrier/${u("1001@default")}`)).status, 200);
  });
});

describe("admin API: targets", () => {
  it("lists, adds with the same checks as !target add, and removes targets", async () => {
    await w.store.updateProfile(ALICE, {});
    const path = `/users/${u(ALICE)}/targets`;
    assert.deepEqual((await w.call("GET", path)).json, { targets: [] });
    const added = await w.call("POST", path, { body: { address: BOB } });
    assert.equal(added.status, 200, added.text);
    assert.equal(added.json.message, `Invited ${BOB}.`);
    assert.equal(added.json.targets[0].address, BOB);
    assertError(await w.call("POST", path, { body: { address: "nonsense" } }), 400, "M_INVALID_PARAM", /neither a Matrix user ID/);
    await w.call("POST", path, { body: { address: "@carol:localhost" } });
    assertError(await w.call("POST", path, { body: { address: "@dave:localhost" } }), 400, "M_INVALID_PARAM", /most allowed/);
    assertError(await w.call("POST", path, { body: {} }), 400, "M_BAD_JSON");
    assertError(await w.call("POST", `/users/${u(BOB)}/targets`, { body: { address: ALICE } }), 404, "M_NOT_FOUND");
    assert.equal((await w.call("DELETE", `${path}/${u(BOB)}`)).status, 200);
    assertError(await w.call("DELETE", `${path}/${u(BOB)}`), 404, "M_NOT_FOUND", /not a target/);
    assert.deepEqual((await w.call("GET", path)).json.targets.map((t: any) => t.address), ["@carol:localhost"]);
    assert.ok(w.log.has("info", /^admin API \(127\.0\.0\.1\): removed the target @bob:localhost of @alice:localhost$/));
  });
});

describe("admin API: systems and resync", () => {
  it("lists the systems with what a resync does on each", async () => {
    await w.mailboxes.link(ALICE, "carrier", "1001", "@admin:localhost");
    const res = await w.call("GET", "/systems");
    assert.deepEqual(res.json.systems, [
      { id: "carrier", kind: "ami", name: "Carrier", resync: "watch-again", followedMailboxes: 1 },
      { id: "hook", kind: "webhook", name: "Hook", resync: "push-only", followedMailboxes: 0 },
    ]);
  });

  it("resyncs one mailbox: the watch is dropped and taken again; refusals for the rest", async () => {
    await w.mailboxes.link(ALICE, "carrier", "1001", ALICE, { credentials: { username: "1001", password: "pw" } });
    w.carrier.calls.length = 0;
    await w.store.saveMailboxState({ systemId: "carrier", mailbox: "1001", waiting: true, new: 2, old: 0, urgentNew: 0, urgentOld: 0, updated: 5 });
    const res = await w.call("POST", "/systems/carrier/mailboxes/1001/resync");
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(w.carrier.calls, ["unwatch 1001", "watch 1001"]);
    // The watch gets the stored credentials back, as at start.
    assert.deepEqual(w.carrier.credentials.at(-1), { username: "1001", password: "pw" });
    assert.equal(res.json.state.new, 2);
    assert.ok(!res.text.includes("pw"));
    assertError(await w.call("POST", "/systems/carrier/mailboxes/9999/resync"), 404, "M_NOT_FOUND", /nobody follows/);
    assertError(await w.call("POST", "/systems/hook/mailboxes/1001/resync"), 409, "M_UNSUPPORTED", /pushes/);
    assertError(await w.call("POST", "/systems/nope/mailboxes/1001/resync"), 404, "M_NOT_FOUND");
    assertError(await w.call("POST", "/systems/carrier/mailboxes/bad%20box/resync"), 400, "M_INVALID_PARAM");
    await w.mailboxes.setMwi(ALICE, await w.store.listLinks(ALICE), false);
    assertError(await w.call("POST", "/systems/carrier/mailboxes/1001/resync"), 404, "M_NOT_FOUND");
  });

  it("resyncs a whole system in the background, one run at a time", async () => {
    for (const m of ["1001", "1002", "1003"]) await w.mailboxes.link(ALICE, "carrier", m, "@admin:localhost");
    await w.mailboxes.link(BOB, "carrier", "1001", "@admin:localhost");
    w.carrier.calls.length = 0;
    let release!: () => void;
    w.carrier.hold = new Promise((r) => (release = r));
    const res = await w.call("POST", "/systems/carrier/resync");
    assert.equal(res.status, 202, res.text);
    assert.deepEqual(res.json, { systemId: "carrier", mailboxes: 3 });
    assertError(await w.call("POST", "/systems/carrier/resync"), 409, "M_CONFLICT", /running/);
    assertError(await w.call("POST", "/systems/hook/resync"), 409, "M_UNSUPPORTED");
    assertError(await w.call("POST", "/systems/nope/resync"), 404, "M_NOT_FOUND");
    release();
    for (let i = 0; i < 200 && !w.log.has("info", /resync of carrier done/); i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(w.log.has("info", /resync of carrier done: 3 of 3 mailbox\(es\) refreshed/));
    assert.deepEqual(w.carrier.calls.filter((c) => c.startsWith("watch")).sort(), ["watch 1001", "watch 1002", "watch 1003"]);
    assert.equal((await w.call("POST", "/systems/carrier/resync")).status, 202);
  });
});

describe("admin API: outbox", () => {
  it("reads the depth per target and the age of each target's oldest entry", async () => {
    assert.deepEqual((await w.call("GET", "/outbox")).json, { entries: 0, targets: [] });
    const now = Date.now();
    const entry = (id: string, seq: number, targetKey: string, age: number) => ({ id, seq, ownerId: ALICE, targetKey, withMessage: true, createdAt: now - age * 1000 });
    const sys = JSON.stringify(["sys", ALICE, "carrier"]);
    const main = JSON.stringify(["main", ALICE]);
    await w.store.addOutboxEntries([entry("a", 1, sys, 30), entry("b", 2, sys, 10), entry("c", 3, main, 90)]);
    const res = await w.call("GET", "/outbox");
    assert.equal(res.json.entries, 3);
    assert.deepEqual(
      res.json.targets.map((t: any) => [t.targetKey, t.target, t.depth, t.oldestAgeSeconds]),
      [
        [main, { kind: "main", userId: ALICE }, 1, 90],
        [sys, { kind: "sys", userId: ALICE, systemId: "carrier" }, 2, 30],
      ],
    );
  });
});
