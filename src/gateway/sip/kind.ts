/** The SIP kind: voice mail servers that serve MWI by SUBSCRIBE/NOTIFY (RFC 3842). */
import { defineKind } from "../gateway.js";
import { SipGateway } from "./sipGateway.js";
import { sipSettings } from "./settings.js";
import { parseSources } from "./sources.js";

export const sipKind = defineKind({
  kind: "sip",
  settings: sipSettings,
  // UDP always; TCP on the same port only for transport tcp. Without a bindAddress the address is
  // chosen at start (the one toward the server): checked as a wildcard, which collides with most.
  listeners: ({ local, server }) => [
    {
      key: "sip.local",
      protocols: server.transport === "tcp" ? ["udp", "tcp"] : ["udp"],
      bindAddress: local.bindAddress ?? (server.host.includes(":") ? "::" : "0.0.0.0"),
      port: local.port,
    },
  ],
  check: ({ unsolicitedSources, server, allowAuthUser, ami, asteriskSpool }) => {
    const { problems, warnings } = parseSources(unsolicitedSources);
    if (server.transport === "tls" && !server.rejectUnauthorized) {
      warnings.push("server.rejectUnauthorized: false: anyone on the path can pose as the server and read the mailbox passwords of every !link");
    }
    if (ami && asteriskSpool) warnings.push("ami and asteriskSpool both given: the caller details come over AMI, the spool is not read");
    if (allowAuthUser) warnings.push("allowAuthUser: true: a password proves the auth user's account, so the server must tie each auth user to its own mailbox");
    return { problems, warnings };
  },
  create: (system, host) => new SipGateway(system, host),
});
