/** The SIP kind: voice mail servers that serve MWI by SUBSCRIBE/NOTIFY (RFC 3842). */
import { defineKind } from "../gateway.js";
import { SipGateway } from "./sipGateway.js";
import { sipSettings } from "./settings.js";

export const sipKind = defineKind({
  kind: "sip",
  settings: sipSettings,
  // The user agent takes UDP and TCP on the same port.
  listeners: ({ local }) => [{ key: "sip.local", protocols: ["udp", "tcp"], bindAddress: local.bindAddress, port: local.port }],
  create: (system, host) => new SipGateway(system, host),
});
