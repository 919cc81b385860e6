/** The `webhook:` block of a system of kind webhook: its schema, and its type after validation. */
import { Type, type Static } from "@sinclair/typebox";
import { Defaulted } from "../../util/schema.js";

/** A shorter HMAC key can be guessed offline from one signed request. */
export const MIN_SECRET_LENGTH = 32;

export const webhookSettings = Type.Object(
  {
    /** HMAC-SHA256 key the voice mail system signs its requests with. */
    secret: Type.String({ minLength: MIN_SECRET_LENGTH }),
    /** Listen on this port instead of the appservice listener. */
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    bindAddress: Type.Optional(Type.String({ minLength: 1 })),
    /** Requests with a larger body are refused with 413. */
    maxBodyBytes: Defaulted(Type.Integer({ minimum: 256, maximum: 1048576 }), 16384),
    /**
     * Also accept the old body-only signature (no X-Signature-Timestamp), for systems that
     * cannot send the timestamp yet. It can be replayed at any time: off unless needed.
     */
    legacySignature: Defaulted(Type.Boolean(), false),
  },
  { additionalProperties: false },
);

export type WebhookSettings = Static<typeof webhookSettings>;
