/**
 * JSON schema of config.yaml. Validation fills in defaults, so the rest of the bridge reads a
 * complete BridgeConfig. Each system kind adds its own settings block under `kind`.
 */

const localpart = { type: "string", pattern: "^[a-z0-9._=/-]+$", minLength: 1, maxLength: 100 };
const httpUrl = { type: "string", pattern: "^https?://[^\\s/]+" };
const port = { type: "integer", minimum: 1, maximum: 65535 };

const systemBase = {
  id: { type: "string", pattern: "^[a-z0-9_-]+$", minLength: 1, maxLength: 64 },
  name: { type: "string", minLength: 1, maxLength: 100 },
  botLocalpart: localpart,
  avatarUrl: { type: "string", pattern: "^mxc://[^/]+/.+" },
  footer: { type: "string", maxLength: 500 },
  kind: { type: "string" },
};

const webhookSystem = {
  type: "object",
  required: ["id", "name", "botLocalpart", "kind", "webhook"],
  additionalProperties: false,
  properties: {
    ...systemBase,
    kind: { const: "webhook" },
    webhook: {
      type: "object",
      required: ["secret"],
      additionalProperties: false,
      properties: {
        secret: { type: "string", minLength: 8 },
        port,
        bindAddress: { type: "string", minLength: 1 },
        maxBodyBytes: { type: "integer", minimum: 256, maximum: 1048576, default: 16384 },
      },
    },
  },
};

const host = { type: "string", minLength: 1, maxLength: 255, pattern: "^[A-Za-z0-9.:\\[\\]-]+$" };

const sipSystem = {
  type: "object",
  required: ["id", "name", "botLocalpart", "kind", "sip"],
  additionalProperties: false,
  properties: {
    ...systemBase,
    kind: { const: "sip" },
    sip: {
      type: "object",
      required: ["server"],
      additionalProperties: false,
      properties: {
        server: {
          type: "object",
          required: ["host"],
          additionalProperties: false,
          properties: {
            host,
            port: { ...port, default: 5060 },
            transport: { enum: ["udp", "tcp", "tls"], default: "udp" },
            caFile: { type: "string", minLength: 1 },
            rejectUnauthorized: { type: "boolean", default: true },
          },
        },
        domain: host,
        local: {
          type: "object",
          additionalProperties: false,
          default: {},
          properties: {
            bindAddress: { type: "string", minLength: 1, default: "0.0.0.0" },
            port: { type: "integer", minimum: 0, maximum: 65535, default: 5070 },
            publicAddress: host,
          },
        },
        expires: { type: "integer", minimum: 60, maximum: 86400, default: 3600 },
        unsolicitedSources: {
          type: "array",
          default: [],
          items: { type: "string", pattern: "^[0-9a-fA-F.:]+(/[0-9]{1,3})?$" },
        },
        asteriskSpool: {
          type: "object",
          required: ["dir"],
          additionalProperties: false,
          properties: {
            dir: { type: "string", minLength: 1 },
            context: { type: "string", pattern: "^[A-Za-z0-9_-]+$", default: "default" },
          },
        },
      },
    },
  },
};

export const SYSTEM_KINDS = ["webhook", "sip"] as const;

export const configSchema = {
  type: "object",
  required: ["homeserver", "appservice", "systems"],
  additionalProperties: false,
  properties: {
    homeserver: {
      type: "object",
      required: ["url", "domain"],
      additionalProperties: false,
      properties: {
        url: httpUrl,
        domain: { type: "string", minLength: 1, pattern: "^[A-Za-z0-9.:\\[\\]-]+$" },
      },
    },
    appservice: {
      type: "object",
      required: ["port", "url"],
      additionalProperties: false,
      properties: {
        bindAddress: { type: "string", minLength: 1, default: "127.0.0.1" },
        port,
        url: httpUrl,
        botLocalpart: { ...localpart, default: "voicemail" },
        botDisplayName: { type: "string", minLength: 1, maxLength: 100, default: "Voicemail" },
        botAvatarUrl: { type: "string", pattern: "^mxc://[^/]+/.+" },
      },
    },
    database: {
      type: "object",
      additionalProperties: false,
      default: {},
      properties: {
        uri: { type: "string", pattern: "^nedb:.+", default: "nedb:./data" },
      },
    },
    permissions: {
      type: "object",
      default: {},
      additionalProperties: { enum: ["none", "user", "admin"] },
    },
    systems: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        required: ["kind"],
        properties: { kind: { enum: [...SYSTEM_KINDS] } },
        allOf: [
          { if: { required: ["kind"], properties: { kind: { const: "webhook" } } }, then: webhookSystem },
          { if: { required: ["kind"], properties: { kind: { const: "sip" } } }, then: sipSystem },
        ],
      },
    },
    defaultTimezone: { type: "string", minLength: 1, default: "UTC" },
    footer: { type: "string", maxLength: 500 },
    logging: {
      type: "object",
      additionalProperties: false,
      default: {},
      properties: {
        level: { enum: ["debug", "info", "warn", "error"], default: "info" },
        file: { type: "string", minLength: 1 },
      },
    },
    metrics: {
      type: "object",
      additionalProperties: false,
      default: {},
      properties: { enabled: { type: "boolean", default: true } },
    },
    encryption: {
      type: "object",
      additionalProperties: false,
      default: {},
      properties: {
        key: { type: "string", pattern: "^[A-Za-z0-9+/]{43}=$" },
        keyFile: { type: "string", minLength: 1, default: "./credentials.key" },
      },
    },
  },
} as const;
