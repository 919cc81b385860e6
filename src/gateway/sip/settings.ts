/** The `sip:` block of a system of kind sip: its schema, and its type after validation. */
import { Type, type Static } from "@sinclair/typebox";
import { Defaulted, DefaultedBlock, StringEnum } from "../../util/schema.js";
import { amiEnrichmentSettings } from "../ami/settings.js";

const host = Type.String({ minLength: 1, maxLength: 255, pattern: "^[A-Za-z0-9.:\\[\\]-]+$" });

export const sipSettings = Type.Object(
  {
    /** The voice mail server (notifier) the bridge subscribes to. */
    server: Type.Object(
      {
        host,
        port: Defaulted(Type.Integer({ minimum: 1, maximum: 65535 }), 5060),
        transport: Defaulted(StringEnum(["udp", "tcp", "tls"]), "udp"),
        /** For tls: a PEM file with the CA(s) to trust instead of the system's. */
        caFile: Type.Optional(Type.String({ minLength: 1 })),
        rejectUnauthorized: Defaulted(Type.Boolean(), true),
      },
      { additionalProperties: false },
    ),
    /** Host part of mailbox URIs (sip:1001@domain); the server's host when unset. */
    domain: Type.Optional(host),
    /** The bridge's own SIP address, where NOTIFYs arrive. */
    local: DefaultedBlock(
      Type.Object(
        {
          /**
           * Unset: the address this host reaches `server.host` from (loopback for a server on this
           * host), so the bridge listens only where its server can reach it.
           */
          bindAddress: Type.Optional(Type.String({ minLength: 1 })),
          /** 0: any free port. */
          port: Defaulted(Type.Integer({ minimum: 0, maximum: 65535 }), 5070),
          /** Advertised in Via and Contact instead of the local address (NAT). */
          publicAddress: Type.Optional(host),
          /** Inbound TCP connections (transport tcp only) open at once, in all and per source address. */
          maxConnections: Defaulted(Type.Integer({ minimum: 1, maximum: 10_000 }), 64),
          maxConnectionsPerSource: Defaulted(Type.Integer({ minimum: 1, maximum: 10_000 }), 8),
          /** An inbound connection silent this long is closed. */
          idleTimeoutSeconds: Defaulted(Type.Integer({ minimum: 1, maximum: 86_400 }), 120),
          /** A message begun on a connection must be complete within this. */
          messageTimeoutSeconds: Defaulted(Type.Integer({ minimum: 1, maximum: 600 }), 10),
        },
        { additionalProperties: false },
      ),
    ),
    /**
     * `!link --auth-user NAME` with a NAME other than the mailbox: only where the server's
     * accounts are named otherwise, since with it a password proves NAME's account, not the mailbox.
     */
    allowAuthUser: Defaulted(Type.Boolean(), false),
    /**
     * The system's own account, for mailboxes linked without a password (`!admin link`): without
     * it they are watched only while someone who linked them with a password follows them. A PBX
     * user allowed to subscribe to any mailbox (Asterisk: an endpoint with `allow_subscribe`
     * may subscribe to the mailboxes of any AOR). `{mailbox}` in the username stands for the
     * mailbox, for PBXs whose mailbox accounts share one password.
     */
    credentials: Type.Optional(
      Type.Object(
        {
          username: Type.String({ minLength: 1, maxLength: 128, pattern: "^[^\\s\"]+$" }),
          password: Type.String({ minLength: 1, maxLength: 256 }),
        },
        { additionalProperties: false },
      ),
    ),
    /** Subscription expiry to ask for, in seconds; the server may grant less. */
    expires: Defaulted(Type.Integer({ minimum: 60, maximum: 86400 }), 3600),
    /** Sources (IP addresses or CIDR ranges) whose out-of-dialog MWI NOTIFYs are accepted. */
    unsolicitedSources: Defaulted(Type.Array(Type.String({ pattern: "^[0-9a-fA-F.:]+(/[0-9]{1,3})?$" })), []),
    /** Asterisk's voicemail spool, read for the caller and called number of the newest message. */
    asteriskSpool: Type.Optional(
      Type.Object(
        {
          dir: Type.String({ minLength: 1 }),
          context: Defaulted(Type.String({ pattern: "^[A-Za-z0-9_-]+$" }), "default"),
        },
        { additionalProperties: false },
      ),
    ),
    /**
     * An AMI connection for the caller details only (SIP stays the source of MWI): the newest
     * message's caller from `VoicemailBoxSummary`, where the bridge does not share the PBX's disk.
     * Used instead of asteriskSpool when both are given.
     */
    ami: Type.Optional(amiEnrichmentSettings),
  },
  { additionalProperties: false },
);

export type SipSettings = Static<typeof sipSettings>;
