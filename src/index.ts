/** For embedding the bridge in another program; most installs use the executable instead. */
export { VoicemailBridge } from "./app/voicemailBridge.js";
export { ConfigError, configWarnings, loadConfig, parseConfigYaml, validateConfig } from "./config/load.js";
export { buildRegistration, readRegistration, writeRegistration } from "./config/registration.js";
export type { BridgeConfig, SystemConfig } from "./config/types.js";
export { parseMessageSummary } from "./gateway/sip/messageSummary.js";
export { signBody, signedHeaders, signRequest } from "./gateway/webhook/signature.js";
