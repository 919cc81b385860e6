/** The AMI kind: Asterisk (and FreePBX) over the Asterisk Manager Interface. */
import { defineKind } from "../gateway.js";
import { AmiGateway } from "./amiGateway.js";
import { amiSettings } from "./settings.js";

export const amiKind = defineKind({
  kind: "ami",
  settings: amiSettings,
  check: ({ verifyCall, host }) => {
    const problems: string[] = [];
    const warnings: string[] = [];
    if (verifyCall && !verifyCall.dialString.includes("{mailbox}")) {
      problems.push("verifyCall.dialString: has no {mailbox}: every !link would ring the same phone");
    }
    if (!/^(127\.|::1$|\[::1\]$|localhost$)/.test(host)) {
      warnings.push("host: AMI is plain text: the secret and all events cross the network unencrypted (use loopback, a VPN or an SSH tunnel)");
    }
    return { problems, warnings };
  },
  create: (system, host) => new AmiGateway(system, host),
});
