import { MemoryStore } from "../../src/store/memoryStore.js";
import { storeSuite } from "./storeSuite.js";

let last = new MemoryStore();
storeSuite("memory", {
  open: async () => (last = new MemoryStore()),
  // Memory does not survive a process; a restart of the services over it keeps the instance.
  reopen: async () => last,
});
