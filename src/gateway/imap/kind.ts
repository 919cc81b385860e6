/** The IMAP kind: voicemail that a PBX or carrier delivers as e-mail, read from an IMAP folder. */
import { defineKind } from "../gateway.js";
import { ImapGateway } from "./imapGateway.js";
import { imapSettings } from "./settings.js";
import { compileRules } from "./voicemailRules.js";

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|\[::1\]|localhost)$/i;

export const imapKind = defineKind({
  kind: "imap",
  settings: imapSettings,
  check: (settings) => {
    const problems: string[] = [];
    const warnings: string[] = [];
    try {
      compileRules(settings.rules, settings.senders);
    } catch (err) {
      problems.push((err as Error).message);
    }
    if (settings.username !== undefined && settings.password === undefined) problems.push("password: is required with username");
    if (settings.username === undefined && settings.password !== undefined) problems.push("username: is required with password");
    if (!settings.tls && !LOOPBACK.test(settings.host)) {
      warnings.push("tls: false: the passwords cross the network in clear text where the server offers no STARTTLS");
    }
    if (!settings.rejectUnauthorized) warnings.push("rejectUnauthorized: false: anyone on the path can pose as the mail server and read the passwords");
    return { problems, warnings };
  },
  create: (system, host) => new ImapGateway(system, host),
});
