/** The `imap:` block of a system of kind imap: its schema, and its type after validation. */
import { Type, type Static } from "@sinclair/typebox";
import { Defaulted, DefaultedBlock } from "../../util/schema.js";

/**
 * Where a rule looks: the subject, the decoded text body, the To or From addresses, or one
 * header (`header:X-Asterisk-CallerID`).
 */
const ruleSource = Type.String({ pattern: "^(subject|body|to|from|header:[!-9;-~]{1,76})$" });

const rule = Type.Object(
  {
    from: ruleSource,
    /** A regular expression (case-insensitive); its first group is the value, else the whole match. Default: the whole text. */
    pattern: Type.Optional(Type.String({ minLength: 1, maxLength: 1000 })),
  },
  { additionalProperties: false },
);

export type MailRule = Static<typeof rule>;

const rules = (defaults: MailRule[]) => Defaulted(Type.Array(rule, { maxItems: 20 }), defaults);

/**
 * Defaults that fit Asterisk's app_voicemail as it ships (and FreePBX, which keeps its
 * X-Asterisk headers): subject "[PBX]: New message 1 in mailbox 2001", headers
 * X-Asterisk-CallerID / X-Asterisk-CallerIDName, body "you were just left a 0:11 long message
 * (number 1) in mailbox 2001 from Grace Caller, on ...".
 */
export const DEFAULT_RULES = {
  mailbox: [
    // An urgent one: "[PBX]: New Urgent message 1 in mailbox 2001" (no priority header).
    { from: "subject", pattern: "\\bnew (?:urgent )?message \\d+ in mailbox ([^\\s,:;]+)" },
    // Asterisk's body ("... long message (number 1) in mailbox 2001 from ..."), FreePBX's ("There is a new voicemail in mailbox 2001:").
    { from: "body", pattern: "\\(number \\d+\\)\\s+in mailbox ([^\\s,:;]+)" },
    { from: "body", pattern: "\\bnew voicemail in mailbox ([^\\s,:;]+)" },
  ],
  ani: [{ from: "header:X-Asterisk-CallerID" }],
  // The body first: Asterisk 22 drops every non-ASCII letter from the header ("Jrg Mller").
  callerName: [
    { from: "body", pattern: "\\(number \\d+\\)\\s+in mailbox [^\\s,:;]+ from (.+?)(?: <[^>]*>)?, on " },
    { from: "header:X-Asterisk-CallerIDName" },
  ],
  dnis: [] as MailRule[],
  duration: [
    { from: "body", pattern: "\\bleft an? (\\d+(?::\\d{1,2}){0,2}) long message" },
    { from: "body", pattern: "\\blength:\\s*(\\d+(?::\\d{1,2}){0,2})" },
  ],
  time: [] as MailRule[],
  /** Urgent also when the priority headers say nothing: Asterisk marks urgent messages only in the subject. */
  urgent: [{ from: "subject", pattern: "\\bnew urgent message\\b" }],
} satisfies Record<string, MailRule[]>;

export const imapSettings = Type.Object(
  {
    host: Type.String({ minLength: 1, maxLength: 255, pattern: "^[A-Za-z0-9.:\\[\\]-]+$" }),
    port: Defaulted(Type.Integer({ minimum: 1, maximum: 65535 }), 143),
    /** true: implicit TLS (port 993 usually); false: STARTTLS where the server offers it. */
    tls: Defaulted(Type.Boolean(), false),
    /** A PEM file with the CA(s) to trust instead of the system's. */
    caFile: Type.Optional(Type.String({ minLength: 1 })),
    rejectUnauthorized: Defaulted(Type.Boolean(), true),
    /** The shared account that receives every mailbox's voicemail e-mails; without it users link their own accounts. */
    username: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    password: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    folder: Defaulted(Type.String({ minLength: 1, maxLength: 256 }), "INBOX"),
    /** A full resync this often, also where the server has no IDLE (changes arrive at once with IDLE). */
    pollSeconds: Defaulted(Type.Integer({ minimum: 5, maximum: 3600 }), 60),
    /** Only the newest this many mails of the folder are read; older ones are left out of the counts. */
    maxMessages: Defaulted(Type.Integer({ minimum: 1, maximum: 100_000 }), 5000),
    /** Of a mail's header and of its text, at most this many bytes are fetched. */
    maxFetchBytes: Defaulted(Type.Integer({ minimum: 4096, maximum: 1_048_576 }), 65_536),
    /** Only mails from these sender addresses count (empty: any sender); a From header is easily forged. */
    senders: Defaulted(Type.Array(Type.String({ minLength: 3, maxLength: 256 }), { maxItems: 100 }), []),
    /** Which mail is a voicemail of which mailbox, and what it says about the message; each list is tried in order. */
    rules: DefaultedBlock(
      Type.Object(
        {
          /** The first rule that matches names the mailbox; a mail no rule matches is not a voicemail. */
          mailbox: rules(DEFAULT_RULES.mailbox),
          ani: rules(DEFAULT_RULES.ani),
          callerName: rules(DEFAULT_RULES.callerName),
          /** Default: the mailbox. */
          dnis: rules(DEFAULT_RULES.dnis),
          /** "0:11", "1:02:03" or seconds. */
          duration: rules(DEFAULT_RULES.duration),
          /** Default: the Date header. */
          time: rules(DEFAULT_RULES.time),
          /** A match marks the voicemail urgent (as do X-Priority 1 or 2, Importance: high, Priority: urgent). */
          urgent: rules(DEFAULT_RULES.urgent),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export type ImapSettings = Static<typeof imapSettings>;
export type MailRules = ImapSettings["rules"];
