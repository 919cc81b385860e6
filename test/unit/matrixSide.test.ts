/** Bot registration, the library's log lines, the appservice ping and the event dispatcher. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { WeakEvent } from "matrix-appservice-bridge";
import { EventDispatcher } from "../../src/app/events/dispatch.js";
import { RegisteredBots } from "../../src/matrix/bots.js";
import { quietLibraryLogger, type LibraryLogger } from "../../src/matrix/libraryLogs.js";
import { APPSERVICE_PING_PATH, pingHomeserver, servePing } from "../../src/matrix/ping.js";
import { CARRIER_BOT, FakeHomeserver, MAIN_BOT, botDirectory, recordingLogger } from "./fakeMatrixSide.js";

describe("bot registration", () => {
  it("an existing bot is no error: no forced registration, and every Intent knows its bot exists", async () => {
    const hs = new FakeHomeserver();
    hs.users.add(CARRIER_BOT); // registered by an earlier run
    const registered = new RegisteredBots();
    const bots = botDirectory(hs, undefined, registered);
    const log = recordingLogger();
    await bots.syncProfiles(log);
    assert.ok(!hs.requests.some((r) => r.includes("ensureRegistered (forced)")), hs.requests.join("\n"));
    assert.equal(registered.isUserRegistered(CARRIER_BOT), true);
    assert.ok(hs.sdkRegistered.has(CARRIER_BOT) && hs.sdkRegistered.has(MAIN_BOT), "the bot-sdk's list too: its join and leave check it");
    assert.ok(!log.lines.some((l) => /^(ERROR|WARN)/.test(l)), log.lines.join("\n"));
  });

  it("registers each new bot once, the appservice's own sender too (Synapse makes it only then)", async () => {
    const hs = new FakeHomeserver();
    const registered = new RegisteredBots();
    const bots = botDirectory(hs, undefined, registered);
    const log = recordingLogger();
    await bots.registerAll(log);
    await bots.registerAll(log);
    const registers = hs.requests.filter((r) => r.endsWith("/_matrix/client/v3/register"));
    assert.equal(registers.length, 2);
    assert.ok(hs.users.has(CARRIER_BOT) && hs.users.has(MAIN_BOT));
    assert.deepEqual(log.lines.sort(), [`INFO registered bot ${CARRIER_BOT}`, `INFO registered bot ${MAIN_BOT}`]);
  });
});

describe("the library's log lines", () => {
  const capture = () => {
    const lines: { level: string; module: string; text: string }[] = [];
    const at = (level: string) => (module: string, ...parts: unknown[]) =>
      void lines.push({ level, module, text: parts.map((p) => (typeof p === "string" ? p : JSON.stringify(p))).join(" ") });
    const inner: LibraryLogger = { info: at("info"), warn: at("warn"), error: at("error"), debug: at("debug"), trace: at("trace") };
    return { lines, logger: quietLibraryLogger(inner) };
  };

  it("a refused connection is one line without a stack trace, at DEBUG (the caller says what it meant)", () => {
    const { lines, logger } = capture();
    const err = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:8008"), { code: "ECONNREFUSED" });
    logger.error("MatrixHttpClient", "(REQ-20)", err);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.level, "debug");
    assert.equal(lines[0]!.text, "(REQ-20) ECONNREFUSED connect ECONNREFUSED 127.0.0.1:8008");
    assert.doesNotMatch(lines[0]!.text, /\n|\bat /);
  });

  it("a homeserver error answer is one line", () => {
    const { lines, logger } = capture();
    logger.error("MatrixHttpClient", "(REQ-69)", { errcode: "M_FORBIDDEN", error: "You don't have permission" });
    assert.deepEqual(lines, [{ level: "debug", module: "MatrixHttpClient", text: "(REQ-69) M_FORBIDDEN: You don't have permission" }]);
  });

  it("an existing user is no error", () => {
    const { lines, logger } = capture();
    logger.error("Appservice", "Error registering user: User ID is in use");
    assert.equal(lines[0]!.level, "debug");
  });

  it("other lines keep their level; errors in them are still one line", () => {
    const { lines, logger } = capture();
    logger.info("Appservice", "Processing transaction");
    logger.error("Appservice", "Failed", new Error("boom"));
    assert.deepEqual(lines, [
      { level: "info", module: "Appservice", text: "Processing transaction" },
      { level: "error", module: "Appservice", text: "Failed boom" },
    ]);
  });
});

describe("appservice ping (MSC2659)", () => {
  it("serves POST /_matrix/app/v1/ping with the homeserver token and answers {}", () => {
    let route: { method: string; path: string; authenticate?: boolean; handler: (req: unknown, res: unknown) => void } | undefined;
    servePing({ addAppServicePath: (opts) => void (route = opts as never) }, recordingLogger());
    assert.equal(route?.method, "POST");
    assert.equal(route?.path, APPSERVICE_PING_PATH);
    assert.equal(route?.authenticate, true, "like every appservice route: the homeserver token");
    let answer: { status?: number; body?: unknown } = {};
    const res = { status: (s: number) => ((answer.status = s), res), json: (b: unknown) => void (answer.body = b) };
    route!.handler({ body: { transaction_id: "t1" } }, res);
    assert.deepEqual(answer, { status: 200, body: {} });
  });

  it("pings the homeserver at start and logs the outcome in one line", async () => {
    const calls: unknown[][] = [];
    const log = recordingLogger();
    const ok = await pingHomeserver({ doRequest: async (...args: unknown[]) => (calls.push(args), { duration_ms: 12 }) }, "voicemail", log);
    assert.equal(ok, true);
    assert.equal(calls[0]![0], "POST");
    assert.equal(calls[0]![1], "/_matrix/client/v1/appservice/voicemail/ping");
    assert.equal(typeof (calls[0]![3] as { transaction_id?: unknown }).transaction_id, "string");
    assert.deepEqual(log.lines, ["INFO homeserver ping succeeded: the homeserver reached the bridge in 12 ms"]);
  });

  it("a failed or unanswered ping is a warning, never a refusal to start", async () => {
    const log = recordingLogger();
    const failing = { doRequest: async () => Promise.reject(Object.assign(new Error("x"), { errcode: "M_CONNECTION_FAILED", body: { errcode: "M_CONNECTION_FAILED", error: "connection refused" } })) };
    assert.equal(await pingHomeserver(failing, "voicemail", log), false);
    assert.equal(await pingHomeserver({ doRequest: () => new Promise(() => undefined) }, "voicemail", log, 5), false);
    assert.equal(log.lines.length, 2);
    assert.match(log.lines[0]!, /^WARN homeserver ping failed \(M_CONNECTION_FAILED: connection refused\)/);
    assert.match(log.lines[1]!, /^WARN homeserver ping failed \(no answer within/);
  });
});

describe("EventDispatcher", () => {
  const event = (roomId: string, n: number): WeakEvent =>
    ({ type: "m.room.member", room_id: roomId, sender: "@u:localhost", state_key: "@u:localhost", event_id: `$${n}`, content: { membership: "join" } }) as unknown as WeakEvent;

  it("handles the events of one room in order, other rooms alongside, and one broken event stops nothing", async () => {
    const log = recordingLogger();
    const seen: string[] = [];
    const dispatcher = new EventDispatcher({
      bots: { isBot: () => false },
      log,
      onMessage: async () => undefined,
      membership: {
        onMembership: async (e) => {
          seen.push(`start ${e.event_id}`);
          await new Promise((r) => setImmediate(r));
          if (e.event_id === "$1") throw new Error("broken");
          seen.push(`end ${e.event_id}`);
        },
      },
    });
    await Promise.all([dispatcher.dispatch(event("!a", 1)), dispatcher.dispatch(event("!a", 2)), dispatcher.dispatch(event("!a", 3))]);
    assert.deepEqual(seen, ["start $1", "start $2", "end $2", "start $3", "end $3"]);
    assert.equal(log.lines.length, 1);
    assert.match(log.lines[0]!, /^ERROR event \$1 \(m\.room\.member\) in !a: broken/);
  });

  it("a homeserver error in an event is a warning, not an error", async () => {
    const log = recordingLogger();
    const dispatcher = new EventDispatcher({
      bots: { isBot: () => false },
      log,
      onMessage: async () => undefined,
      membership: { onMembership: async () => Promise.reject(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" })) },
    });
    await dispatcher.dispatch(event("!a", 1));
    assert.deepEqual(log.lines, ["WARN event $1 (m.room.member) in !a: ECONNRESET socket hang up"]);
  });
});
