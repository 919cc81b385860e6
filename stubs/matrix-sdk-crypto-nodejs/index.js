"use strict";
// matrix-bot-sdk loads this module at import time. The real package downloads a native
// library in a postinstall script, which cannot run on machines without general network
// access. The bridge never enables encryption, so every export only needs to exist; touching
// one throws a clear error instead of a confusing "Cannot find module".
const message =
  "matrix-appservice-voicemail does not support end-to-end encryption: " +
  "the native @matrix-org/matrix-sdk-crypto-nodejs binding is not installed";
module.exports = new Proxy({}, {
  get(_target, name) {
    if (name === "__esModule" || typeof name === "symbol" || name === "then") return undefined;
    return new Proxy(function unavailable() {}, {
      construct() { throw new Error(message); },
      apply() { throw new Error(message); },
      get(_t, prop) {
        if (typeof prop === "symbol") return undefined;
        throw new Error(message);
      },
    });
  },
});
