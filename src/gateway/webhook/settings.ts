/** The `webhook:` block of a system of kind webhook: its schema, and its type after validation. */
import { Type, type Static } from "@sinclair/typebox";
import { Defaulted } from "../../util/schema.js";

export const webhookSettings = Type.Object(
  {
    /** HMAC-SHA256 key the voice mail system signs its requests with. */
    secret: Type.String({ minLength: 8 }),
    /** Listen on this port instead of the appservice listener. */
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    bindAddress: Type.Optional(Type.String({ minLength: 1 })),
    /** Requests with a larger body are refused with 413. */
    maxBodyBytes: Defaulted(Type.Integer({ minimum: 256, maximum: 1048576 }), 16384),
  },
  { additionalProperties: false },
);

export type WebhookSettings = Static<typeof webhookSettings>;
