/** Opens the store a `database.uri` names: the scheme picks the engine. */
import { MemoryStore } from "./memoryStore.js";
import { NedbStore } from "./nedbStore.js";
import { PostgresStore } from "./postgresStore.js";
import { SUPPORTED_STORES, type StoreLog, type TransferableStore } from "./store.js";

export async function openStore(uri: string, log?: StoreLog): Promise<TransferableStore> {
  if (uri.startsWith("nedb:")) {
    const dir = uri.slice("nedb:".length);
    if (!dir) throw new Error(`database.uri: "nedb:" needs a directory, as in nedb:./data`);
    return NedbStore.open(dir, log);
  }
  if (/^postgres(ql)?:\/\//.test(uri)) return PostgresStore.open(uri, log);
  if (uri === "memory:") return new MemoryStore();
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(uri)?.[1] ?? uri;
  throw new Error(`database.uri: unsupported store "${scheme}"; supported: ${SUPPORTED_STORES.join(", ")}`);
}
