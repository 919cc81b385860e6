/**
 * `npm run sandbox`: a complete local installation to try the bridge by hand. Brings up a
 * Synapse from the test bed on 127.0.0.1:8008, registers the bridge with it, creates a demo
 * user linked to a demo mailbox, starts the bridge and prints how to log in and post an MWI.
 * Everything lives in ./.sandbox and survives restarts; Ctrl-C stops it all.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { MIN_SECRET_LENGTH } from "../../src/gateway/webhook/settings.js";
import { signedHeaders } from "../../src/gateway/webhook/signature.js";
import { NedbStore } from "../../src/store/nedbStore.js";
import { BridgeProcess, prepareBridge } from "./bridgeProcess.js";
import { ensureTestbed, startSynapse } from "./synapse.js";

const DIR = resolve(".sandbox");
const SYNAPSE_PORT = Number(process.env.SANDBOX_SYNAPSE_PORT ?? 8008);
const BRIDGE_PORT = Number(process.env.SANDBOX_BRIDGE_PORT ?? 9000);
const DEMO_PASSWORD = "demo-password";

function sandboxSecret(): string {
  const file = join(DIR, "webhook-secret");
  // A sandbox from before secrets had to be 32 characters gets a new one.
  if (!existsSync(file) || readFileSync(file, "utf8").trim().length < MIN_SECRET_LENGTH) {
    writeFileSync(file, randomBytes(32).toString("hex"), { mode: 0o600 });
  }
  return readFileSync(file, "utf8").trim();
}

async function main(): Promise<void> {
  const status = await ensureTestbed();
  if (!status.ok) {
    console.error(`The sandbox needs the local test bed, which is unavailable: ${status.reason}`);
    process.exit(1);
  }
  mkdirSync(DIR, { recursive: true });
  const secret = sandboxSecret();
  const bridgeUrl = `http://127.0.0.1:${BRIDGE_PORT}`;
  const files = await prepareBridge(DIR, {
    homeserver: { url: `http://127.0.0.1:${SYNAPSE_PORT}`, domain: "localhost" },
    appservice: { bindAddress: "127.0.0.1", port: BRIDGE_PORT, url: bridgeUrl, botLocalpart: "voicemail" },
    database: { uri: `nedb:${join(DIR, "data")}` },
    permissions: { localhost: "user", "@admin:localhost": "admin" },
    systems: [
      { id: "carrier", name: "Carrier Voicemail", botLocalpart: "vm_carrier", kind: "webhook", footer: "Dial *86 to listen", webhook: { secret } },
    ],
  });

  // The demo user's mailbox is linked before the bridge opens the store.
  const store = await NedbStore.open(join(DIR, "data"));
  await store.addLink({ userId: "@demo:localhost", systemId: "carrier", mailbox: "1001", mwiEnabled: true, linkedBy: "sandbox", createdAt: Date.now() });
  await store.close();

  console.log("Starting Synapse…");
  const hs = await startSynapse({ port: SYNAPSE_PORT, dataDir: join(DIR, "synapse"), registrationFiles: [files.registrationPath] });
  for (const [name, password, admin] of [["demo", DEMO_PASSWORD, false], ["admin", "admin-password", true]] as const) {
    await hs.registerUser(name, password, admin).catch((err: Error) => {
      if (!/taken|in use/i.test(err.message)) throw err;
    });
  }
  console.log("Starting the bridge…");
  const bridge = new BridgeProcess(files, bridgeUrl);
  await bridge.start();

  const example = JSON.stringify({ mailbox: "1001", waiting: true, new: 1, old: 0, message: { ani: "+15551234567", dnis: "+15557654321" } });
  const response = await fetch(`${bridgeUrl}/webhook/carrier`, {
    method: "POST",
    headers: { "content-type": "application/json", ...signedHeaders(secret, example) },
    body: example,
  });

  console.log(`
The sandbox is running (state in ${DIR}; bridge log: ${files.logPath}).

  Homeserver   http://127.0.0.1:${SYNAPSE_PORT}   (in Element: "Edit" the homeserver, enter this URL)
  Log in as    demo / ${DEMO_PASSWORD}   (linked to Carrier Voicemail mailbox 1001)
               admin / admin-password   (may use !admin)
  Bots         @vm_carrier:localhost (Carrier Voicemail), @voicemail:localhost (all systems)

A first MWI was posted (HTTP ${response.status}): accept the invite from Carrier Voicemail.
Post another one, signed with the sandbox's webhook secret:

  body='{"mailbox":"1001","waiting":true,"new":2,"old":1}'
  ts=$(date +%s)
  sig=$(printf %s "$ts.$body" | openssl dgst -sha256 -hmac "$(cat ${join(DIR, "webhook-secret")})" | sed 's/^.* //')
  curl -i -X POST ${bridgeUrl}/webhook/carrier -H "X-Signature-Timestamp: $ts" -H "X-Signature-256: sha256=$sig" -d "$body"

Ctrl-C stops the bridge and Synapse.`);

  const stop = async () => {
    console.log("\nStopping…");
    await bridge.stop();
    await hs.stop();
    process.exit(0);
  };
  process.once("SIGINT", () => void stop());
  process.once("SIGTERM", () => void stop());
  // Keep the event loop alive until a signal.
  setInterval(() => undefined, 1 << 30);
}

await main();
