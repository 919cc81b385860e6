/** The `ami:` block of a system of kind ami: its schema, and its type after validation. */
import { Type, type Static } from "@sinclair/typebox";
import { Defaulted, DefaultedBlock } from "../../util/schema.js";

const host = Type.String({ minLength: 1, maxLength: 255, pattern: "^[A-Za-z0-9.:\\[\\]-]+$" });
/** A voicemail context: it goes into AMI headers, so nothing that could break them. */
export const CONTEXT_PATTERN = "^[A-Za-z0-9_.+-]{1,80}$";

/** What any AMI connection needs: where, who, and the context of mailboxes named without one. */
export const amiConnection = {
  host,
  port: Defaulted(Type.Integer({ minimum: 1, maximum: 65535 }), 5038),
  /** A manager.conf user; it never gets more than the rights the README lists. */
  username: Type.String({ minLength: 1, maxLength: 80, pattern: "^[A-Za-z0-9_.@+-]+$" }),
  secret: Type.String({ minLength: 1, maxLength: 256, pattern: "^[^\\r\\n]+$" }),
  /** The voicemail context of mailboxes named without "@context". */
  context: Defaulted(Type.String({ pattern: CONTEXT_PATTERN }), "default"),
  /** A Ping this often; one unanswered drops the connection, which is then made again. */
  keepAliveSeconds: Defaulted(Type.Integer({ minimum: 5, maximum: 3600 }), 30),
  /** Every action gets an answer within this, or fails. */
  actionTimeoutSeconds: Defaulted(Type.Integer({ minimum: 1, maximum: 120 }), 10),
};

export const amiSettings = Type.Object(
  {
    ...amiConnection,
    /** On every (re)connect every watched mailbox is asked for again: this many at once, and at most this many per second. */
    resync: DefaultedBlock(
      Type.Object(
        {
          concurrency: Defaulted(Type.Integer({ minimum: 1, maximum: 64 }), 4),
          perSecond: Defaulted(Type.Integer({ minimum: 1, maximum: 1000 }), 20),
        },
        { additionalProperties: false },
      ),
    ),
    /**
     * Ring-to-verify: `!link` rings the mailbox's phone with a one-time code as caller name and
     * says it (SayDigits) when answered. Off unless given.
     */
    verifyCall: Type.Optional(
      Type.Object(
        {
          /** The channel to ring; `{mailbox}` is the mailbox number, `{context}` its voicemail context. */
          dialString: Type.String({ minLength: 1, maxLength: 200, pattern: "^[A-Za-z0-9_.+*#@/{}:-]+$" }),
          /** How long the phone rings before the call is given up. */
          ringSeconds: Defaulted(Type.Integer({ minimum: 5, maximum: 120 }), 30),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export type AmiSettings = Static<typeof amiSettings>;

/** The settings of a connection used for caller details only (a SIP system's `sip.ami`). */
export const amiEnrichmentSettings = Type.Object(amiConnection, { additionalProperties: false });
