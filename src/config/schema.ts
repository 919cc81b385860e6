/**
 * The schema of config.yaml, in TypeBox: the one source of the config's JSON schema (for ajv) and
 * of its types (types.ts). Validation fills in defaults, so the bridge reads a complete config.
 * Each registered kind adds its settings block under the key named by `kind`.
 */
import { Type, type Static, type TObject, type TSchema, type TUnsafe } from "@sinclair/typebox";
import type { CountryCode } from "libphonenumber-js";
import type { PermissionLevel } from "../core/permissions.js";
import { KINDS, type RegisteredKind } from "../gateway/registry.js";
import type { KindDescriptor } from "../gateway/gateway.js";
import { Const, Defaulted, DefaultedBlock, StringEnum } from "../util/schema.js";

const localpart = Type.String({ pattern: "^[a-z0-9._=/-]+$", minLength: 1, maxLength: 100 });
const httpUrl = Type.String({ pattern: "^https?://[^\\s/]+" });
const port = Type.Integer({ minimum: 1, maximum: 65535 });
const mxcUrl = Type.String({ pattern: "^mxc://[^/]+/.+" });

/** The keys every system has, whatever its kind. */
const systemBase = {
  id: Type.String({ pattern: "^[a-z0-9_-]+$", minLength: 1, maxLength: 64 }),
  /** The bot's display name and the DM room's name. */
  name: Type.String({ minLength: 1, maxLength: 100 }),
  botLocalpart: localpart,
  avatarUrl: Type.Optional(mxcUrl),
  /** Appended to every notification of the system. */
  footer: Type.Optional(Type.String({ maxLength: 500 })),
};

type SystemProperties<K extends string, S extends TSchema> = typeof systemBase & { kind: TUnsafe<K> } & { [P in K]: S };

/** A system of one kind: the common keys, `kind`, and the kind's settings under its name. */
function systemSchema<K extends string, S extends TSchema>(kind: KindDescriptor<K, S>): TObject<SystemProperties<K, S>> {
  const properties = { ...systemBase, kind: Const(kind.kind), [kind.kind]: kind.settings } as SystemProperties<K, S>;
  return Type.Object(properties, { additionalProperties: false });
}

type SystemOf<D> = D extends KindDescriptor<infer K, infer S> ? Static<TObject<SystemProperties<K, S>>> : never;

export const SYSTEM_KINDS = KINDS.map((k) => k.kind);

/**
 * One system: a union discriminated by `kind`. As JSON it is `if kind = X then <X's schema>`
 * rather than `anyOf`, so that ajv reports the problem in the system's own kind only.
 */
const system = Type.Unsafe<SystemOf<RegisteredKind>>({
  type: "object",
  required: ["kind"],
  properties: { kind: { enum: SYSTEM_KINDS } },
  allOf: KINDS.map((kind) => ({
    if: { required: ["kind"], properties: { kind: { const: kind.kind } } },
    then: systemSchema<string, TSchema>(kind),
  })),
});

/** The `limits` block's defaults (also for embedders' and tests' configs that leave it out). */
export const DEFAULT_LIMITS = {
  maxTargets: 10,
  maxPendingInvites: 3,
  inviteExpirySeconds: 7 * 24 * 3600,
  unusedRoomSeconds: 24 * 3600,
  maxRoomMembers: 500,
};

const levels = ["none", "user", "admin"] as const satisfies readonly PermissionLevel[];

export const configSchema = Type.Object(
  {
    homeserver: Type.Object(
      {
        /** Client-server API base URL the bridge talks to. */
        url: httpUrl,
        /** The server name: the part after the colon in user IDs. */
        domain: Type.String({ minLength: 1, pattern: "^[A-Za-z0-9.:\\[\\]-]+$" }),
      },
      { additionalProperties: false },
    ),
    appservice: Type.Object(
      {
        bindAddress: Defaulted(Type.String({ minLength: 1 }), "127.0.0.1"),
        port,
        /** How the homeserver reaches this bridge; written into the registration. */
        url: httpUrl,
        /** The main bot: takes commands for every system. */
        botLocalpart: Defaulted(localpart, "voicemail"),
        botDisplayName: Defaulted(Type.String({ minLength: 1, maxLength: 100 }), "Voicemail"),
        botAvatarUrl: Type.Optional(mxcUrl),
      },
      { additionalProperties: false },
    ),
    database: DefaultedBlock(
      Type.Object(
        {
          /** `nedb:<directory>` (embedded, default), `postgres://...` (PostgreSQL) or `memory:` (nothing kept: tests, demos). */
          uri: Defaulted(Type.String({ pattern: "^(nedb:.+|postgres(ql)?://.+|memory:)$" }), "nedb:./data"),
        },
        { additionalProperties: false },
      ),
    ),
    /** User ID, server name or `*` -> level; the most specific entry wins. */
    permissions: DefaultedBlock(
      Type.Unsafe<Record<string, PermissionLevel>>({ type: "object", additionalProperties: { enum: [...levels] } }),
    ),
    systems: Type.Array(system, { minItems: 1 }),
    /** Time zone for users who set none (IANA name). */
    defaultTimezone: Defaulted(Type.String({ minLength: 1 }), "UTC"),
    /** Appended to every notification of every system, after the system's own footer. */
    footer: Type.Optional(Type.String({ maxLength: 500 })),
    /**
     * Where callers' national numbers are read ("030 1234567" with DE is +49 30 1234567): an
     * ISO 3166 region such as US or DE. Numbers with a + are shown in the international form anyway.
     */
    defaultRegion: Type.Optional(Type.Unsafe<CountryCode>({ type: "string", pattern: "^[A-Z]{2}$" })),
    logging: DefaultedBlock(
      Type.Object(
        {
          level: Defaulted(StringEnum(["debug", "info", "warn", "error"]), "info"),
          /** Also log to this file (rotated daily by the bridge library). */
          file: Type.Optional(Type.String({ minLength: 1 })),
        },
        { additionalProperties: false },
      ),
    ),
    /** Failed `!link` tries allowed per user and per mailbox (kept in memory: a restart forgets them). */
    linkLimits: DefaultedBlock(
      Type.Object(
        {
          userFailures: Defaulted(Type.Integer({ minimum: 1, maximum: 1000 }), 5),
          userWindowMinutes: Defaulted(Type.Integer({ minimum: 1, maximum: 10_080 }), 15),
          mailboxFailures: Defaulted(Type.Integer({ minimum: 1, maximum: 1000 }), 5),
          mailboxWindowMinutes: Defaulted(Type.Integer({ minimum: 1, maximum: 10_080 }), 60),
        },
        { additionalProperties: false },
      ),
    ),
    metrics: DefaultedBlock(Type.Object({ enabled: Defaulted(Type.Boolean(), true) }, { additionalProperties: false })),
    /** Bounds on what one user (or anyone who invites the main bot) can make the bridge do. */
    limits: DefaultedBlock(
      Type.Object(
        {
          /** Extra targets (`!target add`) per user. */
          maxTargets: Defaulted(Type.Integer({ minimum: 0 }), DEFAULT_LIMITS.maxTargets),
          /** Account targets per user whose invite is not accepted yet. */
          maxPendingInvites: Defaulted(Type.Integer({ minimum: 0 }), DEFAULT_LIMITS.maxPendingInvites),
          /** A target or DM not accepted within this keeps no queue: it is shown the current counts on join. */
          inviteExpirySeconds: Defaulted(Type.Integer({ minimum: 1 }), DEFAULT_LIMITS.inviteExpirySeconds),
          /** The main bot leaves a room it was invited to that did not become a target within this. */
          unusedRoomSeconds: Defaulted(Type.Integer({ minimum: 1 }), DEFAULT_LIMITS.unusedRoomSeconds),
          /** ...and at once a room with more members than this. */
          maxRoomMembers: Defaulted(Type.Integer({ minimum: 2 }), DEFAULT_LIMITS.maxRoomMembers),
        },
        { additionalProperties: false },
      ),
    ),
    /**
     * The admin HTTP API (src/app/adminApi): off unless this block is given. Its own listener,
     * on loopback unless told otherwise; every request but the OpenAPI document needs the token.
     */
    adminApi: Type.Optional(
      Type.Object(
        {
          /** `Authorization: Bearer <token>`; at least 32 characters (e.g. `openssl rand -hex 32`). */
          token: Type.String({ minLength: 32, maxLength: 1024, pattern: "^[\\x21-\\x7e]+$" }),
          bindAddress: Defaulted(Type.String({ minLength: 1 }), "127.0.0.1"),
          port,
          /** Requests per client address and window; more are answered 429 with Retry-After. */
          rateLimit: DefaultedBlock(
            Type.Object(
              {
                requests: Defaulted(Type.Integer({ minimum: 1, maximum: 100_000 }), 120),
                windowSeconds: Defaulted(Type.Integer({ minimum: 1, maximum: 3600 }), 60),
              },
              { additionalProperties: false },
            ),
          ),
          /** A request body larger than this is refused with 413. */
          maxBodyBytes: Defaulted(Type.Integer({ minimum: 256, maximum: 1_048_576 }), 65_536),
        },
        { additionalProperties: false },
      ),
    ),
    /** How mailbox credentials are sealed in the store. */
    encryption: DefaultedBlock(
      Type.Object(
        {
          /** Base64 of 32 random bytes; wins over keyFile. */
          key: Type.Optional(Type.String({ pattern: "^[A-Za-z0-9+/]{43}=$" })),
          /** Created with a fresh key (mode 0600) when missing. */
          keyFile: Defaulted(Type.String({ minLength: 1 }), "./credentials.key"),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
