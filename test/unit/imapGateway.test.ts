/** The imap kind's gateway without a server: which capabilities each way of running offers, and !link refusals that need no login. */
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { describe, it } from "node:test";
import { Logger } from "matrix-appservice-bridge";
import { ImapGateway } from "../../src/gateway/imap/imapGateway.js";
import { DEFAULT_RULES, type ImapSettings } from "../../src/gateway/imap/settings.js";

function settings(extra: Partial<ImapSettings> = {}): ImapSettings {
  return {
    host: "127.0.0.1",
    port: 9,
    tls: false,
    rejectUnauthorized: true,
    folder: "INBOX",
    pollSeconds: 60,
    maxMessages: 100,
    maxFetchBytes: 65536,
    senders: [],
    rules: DEFAULT_RULES,
    ...extra,
  };
}

const gateway = (extra: Partial<ImapSettings> = {}) =>
  new ImapGateway({ id: "mail", kind: "imap", imap: settings(extra) }, { acceptUpdate: async () => undefined, log: new Logger("test") });

/** A port nobody listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

describe("imap gateway", () => {
  it("a shared account: watched with the system's credentials, no self-service linking", () => {
    const g = gateway({ username: "voicemail", password: "secret" });
    assert.equal(g.watching.systemCredentials, true);
    assert.equal(g.linking, undefined);
  });

  it("per-user accounts: linking by login; --auth-user and a mailbox that is no address are refused without asking the server", async () => {
    const g = gateway();
    assert.equal(g.watching.systemCredentials, false);
    assert.ok(g.linking);
    const other = await g.linking.prove({ userId: "@a:hs", mailbox: "grace@example.org", password: "x", authUser: "bob@example.org" });
    assert.equal(other.ok, false);
    assert.match((other as { reason: string }).reason, /no --auth-user/);
    const bare = await g.linking.prove({ userId: "@a:hs", mailbox: "2001", password: "x" });
    assert.equal(bare.ok, false);
    assert.match((bare as { reason: string }).reason, /mail address/);
  });

  it("an unreachable server is no verdict on the password (transient)", async () => {
    const g = gateway({ port: await closedPort() });
    const proof = await g.linking!.prove({ userId: "@a:hs", mailbox: "grace@example.org", password: "secret-pw" });
    assert.deepEqual(proof, { ok: false, reason: "the mail server could not be reached; try again later", transient: true });
  });

  it("watching without credentials on a per-user system logs and returns at once", async () => {
    const g = gateway();
    const t0 = Date.now();
    await g.watching.watch("grace@example.org");
    assert.ok(Date.now() - t0 < 1000);
    await g.stop();
  });
});
