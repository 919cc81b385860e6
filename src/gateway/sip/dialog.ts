/**
 * Dialog state of one subscription (RFC 3261 §12, RFC 6665 §4.1.2.4) and how requests inside
 * it are addressed (route set, loose and strict routing, §12.2.1.1).
 */
import { randomBytes } from "node:crypto";
import { parseNameAddr, parseSipUri } from "./headers.js";
import type { SipMessage } from "./message.js";

export interface Dialog {
  callId: string;
  localTag: string;
  /** Unknown until the 2xx or the first NOTIFY confirms the dialog. */
  remoteTag?: string;
  localSeq: number;
  remoteSeq?: number;
  /** Request-URI for requests in the dialog: the notifier's Contact, else the original URI. */
  remoteTarget: string;
  /** Route set as URIs (with their params), in the order they go into Route headers. */
  routeSet: string[];
  /** The route set and target come from the first message that confirmed the dialog. */
  confirmed: boolean;
}

export function randomToken(bytes = 8): string {
  return randomBytes(bytes).toString("hex");
}

export function newBranch(): string {
  return `z9hG4bK${randomToken(10)}`;
}

export function newDialog(requestUri: string): Dialog {
  return {
    callId: randomToken(16),
    localTag: randomToken(6),
    localSeq: Math.floor(Math.random() * 10_000) + 1,
    remoteTarget: requestUri,
    routeSet: [],
    confirmed: false,
  };
}

/**
 * Confirms the dialog from a 2xx to our SUBSCRIBE (Record-Route reversed, as a UAC) or from a
 * NOTIFY that raced ahead of it (Record-Route in order, as a UAS): RFC 3261 §12.1.
 */
export function confirmDialog(dialog: Dialog, msg: SipMessage, remoteTag: string | undefined): void {
  if (remoteTag !== undefined && dialog.remoteTag === undefined) dialog.remoteTag = remoteTag;
  if (dialog.confirmed) return;
  dialog.confirmed = true;
  const routes = msg.headers
    .getList("record-route")
    .map((r) => parseNameAddr(r)?.uri)
    .filter((u): u is string => u !== undefined);
  dialog.routeSet = msg.kind === "response" ? routes.reverse() : routes;
  const contact = parseNameAddr(msg.headers.getList("contact")[0] ?? "");
  if (contact && parseSipUri(contact.uri)) dialog.remoteTarget = contact.uri;
}

/** Request-URI and Route header values for the next request in the dialog. */
export function addressInDialog(dialog: Dialog): { uri: string; routes: string[] } {
  const first = dialog.routeSet[0];
  if (first === undefined) return { uri: dialog.remoteTarget, routes: [] };
  if (parseSipUri(first)?.params.has("lr")) return { uri: dialog.remoteTarget, routes: dialog.routeSet.map((r) => `<${r}>`) };
  // Strict router: it goes into the Request-URI, the remote target becomes the last route.
  return { uri: first, routes: [...dialog.routeSet.slice(1), dialog.remoteTarget].map((r) => `<${r}>`) };
}
