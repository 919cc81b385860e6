/**
 * The fault proxy of the test bed, against a local HTTP server: each fault does what it says,
 * and a seeded schedule repeats itself.
 */
import assert from "node:assert/strict";
import { createServer, request, type IncomingMessage, type Server } from "node:http";
import { after, before, describe, it } from "node:test";
import { FaultProxy, randomSchedule, seededRng, type FaultAction, type ProxiedRequest } from "../testbed/faultProxy.js";

interface Seen {
  method: string;
  url: string;
  body: string;
  /** False when the connection broke before the body was complete. */
  complete: boolean;
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request on a fresh connection; rejects with the socket error (ECONNRESET, ECONNREFUSED, ...). */
function send(url: string, method: string, path: string, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = request({ host: u.hostname, port: u.port, method, path, agent: false, headers: body ? { "content-type": "application/json" } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

const errorCode = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => "answered",
    (err: NodeJS.ErrnoException) => err.code ?? err.message,
  );

describe("fault proxy", () => {
  let upstream: Server;
  let upstreamUrl: string;
  const seen: Seen[] = [];
  /** Resolves the next time upstream saw a request end (complete or not). */
  let onSeen: (() => void) | undefined;
  const nextSeen = () => new Promise<void>((r) => (onSeen = r));

  before(async () => {
    upstream = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      const entry: Seen = { method: req.method ?? "", url: req.url ?? "", body: "", complete: false };
      seen.push(entry);
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        entry.complete = true;
        entry.body = Buffer.concat(chunks).toString();
        onSeen?.();
        res.writeHead(200, { "content-type": "application/json", "x-upstream": "yes" });
        res.end(JSON.stringify({ echo: entry.body, url: entry.url }));
      });
      req.on("close", () => {
        if (!entry.complete) onSeen?.();
      });
    });
    // An incomplete request (headers cut) is a client error for node:http; note it like the others.
    upstream.on("clientError", (_err, socket) => {
      seen.push({ method: "?", url: "?", body: "", complete: false });
      onSeen?.();
      socket.destroy();
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", () => r()));
    const addr = upstream.address();
    upstreamUrl = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  });

  after(async () => {
    await new Promise((r) => upstream.close(r));
  });

  async function withProxy(action: FaultAction | undefined, fn: (proxy: FaultProxy) => Promise<void>): Promise<void> {
    const proxy = await FaultProxy.start({ target: upstreamUrl, schedule: (req) => (req.seq === 1 ? action : undefined) });
    try {
      await fn(proxy);
    } finally {
      await proxy.close();
    }
  }

  it("forwards method, path with query, body, status and headers when there is no fault", async () => {
    await withProxy(undefined, async (proxy) => {
      seen.length = 0;
      const reply = await send(proxy.url, "PUT", "/_matrix/client/v3/rooms/!r/send/m.room.message/t1?user_id=%40a%3Alocalhost", '{"body":"hi"}');
      assert.equal(reply.status, 200);
      assert.equal(reply.headers["x-upstream"], "yes");
      assert.deepEqual(JSON.parse(reply.body), { echo: '{"body":"hi"}', url: "/_matrix/client/v3/rooms/!r/send/m.room.message/t1?user_id=%40a%3Alocalhost" });
      assert.deepEqual(seen.map((s) => [s.method, s.complete]), [["PUT", true]]);
      assert.equal(proxy.total, 0);
      assert.equal(proxy.requests, 1);
    });
  });

  it("answers 429 M_LIMIT_EXCEEDED with retry_after_ms without forwarding", async () => {
    await withProxy({ kind: "429", retryAfterMs: 1234 }, async (proxy) => {
      seen.length = 0;
      const reply = await send(proxy.url, "PUT", "/send/x", "{}");
      assert.equal(reply.status, 429);
      assert.deepEqual(JSON.parse(reply.body), { errcode: "M_LIMIT_EXCEEDED", error: "Too Many Requests (fault proxy)", retry_after_ms: 1234 });
      assert.equal(seen.length, 0, "upstream never saw it");
      assert.equal(proxy.counts["429"], 1);
      // The next request passes.
      assert.equal((await send(proxy.url, "GET", "/after")).status, 200);
    });
  });

  it("answers 502 in HTML, as a reverse proxy does, without forwarding", async () => {
    await withProxy({ kind: "502" }, async (proxy) => {
      seen.length = 0;
      const reply = await send(proxy.url, "POST", "/createRoom", "{}");
      assert.equal(reply.status, 502);
      assert.match(String(reply.headers["content-type"]), /text\/html/);
      assert.match(reply.body, /502 Bad Gateway/);
      assert.equal(seen.length, 0);
      assert.equal(proxy.counts["502"], 1);
    });
  });

  it("drops the answer of a request upstream handled, after the hold hook ran", async () => {
    let held = false;
    await withProxy({ kind: "drop-answer", hold: async () => void (held = true) }, async (proxy) => {
      seen.length = 0;
      const code = await errorCode(send(proxy.url, "PUT", "/send/m.room.message/t2", '{"n":1}'));
      assert.equal(code, "ECONNRESET");
      assert.deepEqual(seen.map((s) => [s.method, s.body, s.complete]), [["PUT", '{"n":1}', true]], "upstream got the whole request");
      assert.equal(held, true);
      assert.equal(proxy.counts["drop-answer"], 1);
      assert.match(proxy.applied[0]!.detail, /upstream answered 200/);
    });
  });

  it("resets before forwarding, after part of the request, or after all of it", async () => {
    for (const forward of ["none", "partial", "all"] as const) {
      await withProxy({ kind: "reset", forward }, async (proxy) => {
        seen.length = 0;
        const arrived = forward === "none" ? undefined : nextSeen();
        const code = await errorCode(send(proxy.url, "PUT", "/state/org.voicemail.mwi/a", '{"new":1,"old":2}'));
        assert.equal(code, "ECONNRESET", `reset (${forward})`);
        await arrived;
        if (forward === "none") assert.equal(seen.length, 0);
        if (forward === "partial") assert.deepEqual(seen.map((s) => s.complete), [false], "an incomplete request");
        if (forward === "all") assert.deepEqual(seen.map((s) => [s.body, s.complete]), [['{"new":1,"old":2}', true]]);
        assert.equal(proxy.counts.reset, 1);
      });
    }
  });

  it("delays an answer and then delivers it intact", async () => {
    await withProxy({ kind: "delay", ms: 50 }, async (proxy) => {
      seen.length = 0;
      const reply = await send(proxy.url, "GET", "/slow");
      assert.equal(reply.status, 200);
      assert.equal(JSON.parse(reply.body).url, "/slow");
      assert.equal(proxy.counts.delay, 1);
    });
  });

  it("refuses connections for a while, then listens again", async () => {
    await withProxy({ kind: "refuse", forMs: 300 }, async (proxy) => {
      seen.length = 0;
      assert.equal(await errorCode(send(proxy.url, "GET", "/first")), "ECONNRESET");
      assert.equal(await errorCode(send(proxy.url, "GET", "/during")), "ECONNREFUSED");
      await proxy.whenListening();
      assert.equal((await send(proxy.url, "GET", "/later")).status, 200);
      assert.deepEqual(seen.map((s) => s.url), ["/later"]);
      assert.equal(proxy.counts.refuse, 1);
    });
  });

  it("resets the client when upstream is down, without counting a fault", async () => {
    const proxy = await FaultProxy.start({ target: "http://127.0.0.1:1" });
    try {
      assert.equal(await errorCode(send(proxy.url, "GET", "/x")), "ECONNRESET");
      assert.equal(proxy.total, 0);
      assert.equal(proxy.upstreamFailures, 1);
    } finally {
      await proxy.close();
    }
  });
});

describe("seeded fault schedule", () => {
  const requests: ProxiedRequest[] = Array.from({ length: 200 }, (_, i) => ({
    seq: i + 1,
    method: i % 3 === 0 ? "POST" : "PUT",
    path: i % 3 === 0 ? "/_matrix/client/v3/createRoom" : `/_matrix/client/v3/rooms/!r/send/m.room.message/t${i}`,
  }));
  const rules = () => [
    { method: /^POST$/, path: /\/createRoom$/, probability: 0.5, action: () => ({ kind: "502" }) as FaultAction },
    { path: /\/send\//, probability: 0.2, action: (rng: ReturnType<typeof seededRng>) => ({ kind: "delay", ms: rng.int(1, 100) }) as FaultAction },
  ];
  const run = (seed: number, budget?: number) => {
    const s = randomSchedule(seededRng(seed), rules(), budget);
    return requests.map((r) => s.schedule(r));
  };

  it("makes the same choices for the same seed and other choices for another", () => {
    assert.deepEqual(run(42), run(42));
    assert.notDeepEqual(run(42), run(43));
  });

  it("keeps to the matchers and to the budget", () => {
    const picks = run(7);
    picks.forEach((action, i) => {
      if (action?.kind === "502") assert.equal(requests[i]!.method, "POST");
      if (action?.kind === "delay") assert.match(requests[i]!.path, /\/send\//);
    });
    assert.ok(picks.filter(Boolean).length > 10, "a 0.5 and a 0.2 chance over 200 requests fire more than 10 times");
    assert.equal(run(7, 5).filter(Boolean).length, 5);
  });

  it("fires a one-shot rule on the next matching request, before the random ones, and can cancel it", async () => {
    const s = randomSchedule(seededRng(1), rules(), 0);
    const armed = s.once({ path: /\/send\//, action: () => ({ kind: "drop-answer" }) });
    assert.equal(s.schedule(requests[0]!), undefined, "createRoom does not match");
    assert.deepEqual(s.schedule(requests[1]!), { kind: "drop-answer" });
    assert.equal((await armed.fired).seq, 2);
    assert.equal(s.schedule(requests[2]!), undefined, "only once");
    const cancelled = s.once({ path: /\/send\//, action: () => ({ kind: "502" }) });
    assert.equal(cancelled.cancel(), true);
    assert.equal(s.schedule(requests[4]!), undefined);
  });
});
