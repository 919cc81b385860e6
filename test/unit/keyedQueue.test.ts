import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";

import { KeyedQueue } from "../../src/util/keyedQueue.js";

/** A promise the test resolves or rejects by hand. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every pending promise callback run. */
const settle = () => sleep(5);

describe("KeyedQueue", () => {
  it("runs the tasks of one key one at a time, in order", async () => {
    const queue = new KeyedQueue();
    const log: string[] = [];
    let running = 0;
    let maxRunning = 0;
    const task = (name: string, ms: number) => async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      log.push(`start ${name}`);
      await sleep(ms);
      log.push(`end ${name}`);
      running--;
      return name;
    };
    const results = await Promise.all([
      queue.run("alice", task("a", 20)),
      queue.run("alice", task("b", 1)),
      queue.run("alice", task("c", 10)),
    ]);
    assert.deepEqual(results, ["a", "b", "c"]);
    assert.deepEqual(log, ["start a", "end a", "start b", "end b", "start c", "end c"]);
    assert.equal(maxRunning, 1);
  });

  it("a later task does not start before the earlier one of its key settles", async () => {
    const queue = new KeyedQueue();
    const gate = deferred();
    let secondStarted = false;
    const first = queue.run("k", () => gate.promise);
    const second = queue.run("k", async () => {
      secondStarted = true;
      return 2;
    });
    await settle();
    assert.equal(secondStarted, false);
    gate.resolve();
    await first;
    assert.equal(await second, 2);
    assert.equal(secondStarted, true);
  });

  it("runs different keys at the same time", async () => {
    const queue = new KeyedQueue();
    const gateA = deferred();
    const started: string[] = [];
    const a = queue.run("alice", async () => {
      started.push("alice");
      await gateA.promise;
      return "a";
    });
    const b = queue.run("bob", async () => {
      started.push("bob");
      return "b";
    });
    // bob finishes while alice is still blocked.
    assert.equal(await b, "b");
    assert.deepEqual(started, ["alice", "bob"]);
    await settle();
    // Only alice's key still has work queued.
    assert.equal(queue.size, 1);
    gateA.resolve();
    assert.equal(await a, "a");
  });

  it("a rejecting task rejects its own promise and does not block the next one", async () => {
    const queue = new KeyedQueue();
    const order: string[] = [];
    const failing = queue.run("k", async () => {
      order.push("fail");
      throw new Error("boom");
    });
    const next = queue.run("k", async () => {
      order.push("next");
      return "ok";
    });
    await assert.rejects(failing, { message: "boom" });
    assert.equal(await next, "ok");
    assert.deepEqual(order, ["fail", "next"]);
  });

  it("a task that throws synchronously is a rejection too, and the queue goes on", async () => {
    const queue = new KeyedQueue();
    const failing = queue.run("k", (() => {
      throw new Error("sync boom");
    }) as () => Promise<never>);
    await assert.rejects(failing, { message: "sync boom" });
    assert.equal(await queue.run("k", async () => 7), 7);
  });

  it("after a rejection, the next task waits for the tasks queued before it", async () => {
    const queue = new KeyedQueue();
    const gate = deferred();
    const log: string[] = [];
    const p1 = queue.run("k", async () => {
      throw new Error("first");
    });
    const p2 = queue.run("k", async () => {
      await gate.promise;
      log.push("second");
    });
    const p3 = queue.run("k", async () => {
      log.push("third");
    });
    await assert.rejects(p1);
    await settle();
    assert.deepEqual(log, []);
    gate.resolve();
    await Promise.all([p2, p3]);
    assert.deepEqual(log, ["second", "third"]);
  });

  it("size counts keys with queued work and drops them once done", async () => {
    const queue = new KeyedQueue();
    assert.equal(queue.size, 0);
    const gate = deferred();
    const a = queue.run("a", () => gate.promise);
    const b = queue.run("b", () => gate.promise);
    const a2 = queue.run("a", async () => undefined);
    assert.equal(queue.size, 2);
    gate.resolve();
    await Promise.all([a, b, a2]);
    await settle();
    assert.equal(queue.size, 0);
  });

  it("idle() waits for every queued task, also ones queued while waiting", async () => {
    const queue = new KeyedQueue();
    const done: string[] = [];
    void queue.run("a", async () => {
      await sleep(15);
      done.push("a1");
      // Queued from inside a task, after idle() was called.
      void queue.run("c", async () => {
        await sleep(10);
        done.push("c");
      });
    });
    void queue.run("b", async () => {
      await sleep(5);
      done.push("b");
    });
    void queue.run("a", async () => {
      done.push("a2");
    });
    const failing = queue.run("b", async () => {
      throw new Error("ignored by idle");
    });
    failing.catch(() => undefined);
    await queue.idle();
    assert.deepEqual([...done].sort(), ["a1", "a2", "b", "c"]);
    assert.equal(queue.size, 0);
  });

  it("idle() on an empty queue resolves at once", async () => {
    const queue = new KeyedQueue();
    await queue.idle();
    assert.equal(queue.size, 0);
  });

  it("many tasks for one key keep their order", async () => {
    const queue = new KeyedQueue();
    const seen: number[] = [];
    const all = Array.from({ length: 50 }, (_, i) =>
      queue.run("k", async () => {
        if (i % 7 === 0) await sleep(1);
        seen.push(i);
        if (i % 10 === 3) throw new Error(`task ${i}`);
        return i;
      }),
    );
    const results = await Promise.allSettled(all);
    assert.deepEqual(seen, Array.from({ length: 50 }, (_, i) => i));
    results.forEach((r, i) => assert.equal(r.status, i % 10 === 3 ? "rejected" : "fulfilled", `task ${i}`));
  });
});
