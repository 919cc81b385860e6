/**
 * Hostile requests against the admin API: random methods, paths built from real and strange
 * segments, random bodies and tokens. Every answer is JSON with a known status, never a 500;
 * nothing changes without the token; what is stored for others stays as it was. The seed is
 * printed; FC_SEED=<n> replays a failure.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { apiWorld, type ApiWorld } from "./adminApiHarness.js";

const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
console.log(`admin API fuzz: FC_SEED=${seed}`);

const KNOWN = new Set([200, 201, 202, 400, 401, 404, 405, 409, 413, 415]);
const BOB = "@bob:localhost";

const segment = fc.oneof(
  fc.constantFrom("users", "links", "targets", "settings", "systems", "resync", "mailboxes", "outbox", "openapi.json", "carrier", "hook", "1001", "%40alice%3Alocalhost", "%40bob%3Alocalhost", ""),
  fc.string({ maxLength: 12 }).map(encodeURIComponent),
  fc.constantFrom("%", "%zz", "%E0%A4%A", "..", "%2F", "%00", "@", "?x=1", "#frag"),
);
const param = fc.oneof(
  fc.constantFrom("%40alice%3Alocalhost", "%40carol%3Alocalhost", "carrier", "hook", "1001", "1001%40default", "nope", "%40bob%3Alocalhost"),
  fc.string({ maxLength: 16 }).map(encodeURIComponent),
  fc.string({ unit: "grapheme", maxLength: 8 }).map(encodeURIComponent),
);
const TEMPLATES = [
  "/users", "/users/{}", "/users/{}/settings", "/users/{}/links", "/users/{}/links/{}/{}", "/users/{}/targets", "/users/{}/targets/{}",
  "/systems", "/systems/{}/resync", "/systems/{}/mailboxes/{}/resync", "/outbox", "/openapi.json",
];
/** Paths of the real routes with random values in their parameters: these get past the router. */
const routePath = fc.tuple(fc.constantFrom(...TEMPLATES), fc.array(param, { minLength: 3, maxLength: 3 }), fc.constantFrom("", "?limit=2", "?search=a&after=%40a", "?limit=x", "?system=carrier&mailbox=1001", "/"))
  .map(([t, values, tail]) => { let i = 0; return t.replace(/\{\}/g, () => values[i++]!) + tail; });
const body = fc.oneof(
  fc.constant(undefined),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.record({ systemId: fc.constantFrom("carrier", "hook", "x"), mailbox: fc.string({ maxLength: 20 }) }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
  fc.record({ timezone: fc.string(), delivery: fc.string(), notify: fc.string(), mwiEnabled: fc.anything(), address: fc.string() }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 200 }),
);

describe("admin API fuzz", () => {
  let w: ApiWorld;
  before(async () => {
    w = await apiWorld({ maxBodyBytes: 512 });
    await w.mailboxes.link(BOB, "carrier", "2002", "@admin:localhost");
    await w.store.updateProfile("@alice:localhost", {});
  });
  after(async () => {
    await w.close();
  });

  it("answers every request with JSON and a known status, never a 500, and changes nothing without the token", async () => {
    const bobBefore = JSON.stringify(await w.store.listLinks(BOB));
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("GET", "GET", "POST", "POST", "PATCH", "PATCH", "DELETE", "PUT", "OPTIONS"),
        fc.oneof({ arbitrary: routePath, weight: 3 }, { arbitrary: fc.array(segment, { minLength: 1, maxLength: 6 }).map((a) => `/${a.join("/")}`), weight: 1 }),
        body,
        fc.constantFrom("right", "right", "right", "none", "wrong"),
        fc.constantFrom("application/json", "text/plain", "application/json; charset=utf-8"),
        async (method, path, raw, auth, type) => {
          const links = JSON.stringify(await w.store.listLinks("@alice:localhost"));
          const token = auth === "right" ? w.token : auth === "wrong" ? "w".repeat(40) : null;
          const res = await w.call(method, path, { ...(raw !== undefined && method !== "GET" ? { raw } : {}), token, headers: { "content-type": type } });
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          assert.ok(KNOWN.has(res.status), `${method} ${path} -> ${res.status} ${res.text}`);
          assert.ok(res.json !== undefined, `${method} ${path}: not JSON: ${res.text}`);
          if (res.status >= 400) assert.ok(typeof res.json.error === "string" && typeof res.json.errcode === "string", res.text);
          if (auth !== "right") assert.equal(JSON.stringify(await w.store.listLinks("@alice:localhost")), links);
        },
      ),
      { numRuns: 300, seed },
    );
    assert.ok(!w.log.lines.some((l) => / failed: /.test(l.message)), w.log.lines.map((l) => l.message).join("\n"));
    // No generated path names Bob's mailbox 2002: his link is as it was.
    assert.equal(JSON.stringify(await w.store.listLinks(BOB)), bobBefore);
    console.log(`admin API fuzz: statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
  });
});
