/** The voicemail questions the bridge asks over AMI, and how their answers become MWI. */
import { clampCount, type MessageInfo, type MwiCounts } from "../../core/mwi.js";
import type { AmiClient } from "./client.js";
import type { AmiPacket } from "./frame.js";
import { canonical, newestMessage, type AmiMailbox, type BoxDetail } from "./mailbox.js";

function count(packet: AmiPacket, key: string): number {
  const value = packet.get(key);
  return value !== undefined && /^\d{1,12}$/.test(value.trim()) ? clampCount(Number(value)) : 0;
}

/**
 * `MailboxCount` answers `UrgMessages` (its docs say `UrgentMessages`) and leaves urgent messages
 * out of `NewMessages`; the bridge's `new` counts them (as RFC 3842 does), `urgentNew` alone.
 * Asterisk has no urgent old messages (a heard urgent message is an old one).
 */
export function countsFrom(response: AmiPacket): MwiCounts {
  const urgent = count(response, "UrgMessages") || count(response, "UrgentMessages");
  const fresh = count(response, "NewMessages") + urgent;
  return { waiting: fresh > 0, new: clampCount(fresh), old: count(response, "OldMessages"), urgentNew: urgent, urgentOld: 0 };
}

export async function mailboxCount(client: AmiClient, mailbox: AmiMailbox): Promise<MwiCounts> {
  const { response } = await client.action({ Action: "MailboxCount", Mailbox: canonical(mailbox) });
  return countsFrom(response);
}

/** Every message of the mailbox as `VoicemailBoxSummary` details it (one `VoicemailBoxDetail` each). */
export async function boxDetails(client: AmiClient, mailbox: AmiMailbox): Promise<BoxDetail[]> {
  const { events } = await client.action({ Action: "VoicemailBoxSummary", Context: mailbox.context, Mailbox: mailbox.box });
  return events
    .filter((e) => e.get("Event") === "VoicemailBoxDetail")
    .map((e) => ({
      folder: e.get("Folder") ?? "",
      ...(e.get("CallerID") !== undefined ? { callerId: e.get("CallerID")! } : {}),
      ...(e.get("Date") !== undefined ? { date: e.get("Date")! } : {}),
      ...(e.get("Duration") !== undefined ? { duration: e.get("Duration")! } : {}),
      ...(e.get("ID") !== undefined ? { id: e.get("ID")! } : {}),
    }));
}

/** The newest unheard message's caller, name, time and length, from `VoicemailBoxSummary`. */
export async function newestMessageOf(client: AmiClient, mailbox: AmiMailbox): Promise<MessageInfo | undefined> {
  return newestMessage(await boxDetails(client, mailbox), mailbox.box);
}

/** `VoicemailMove` (manager `write = user`): one message, by its msg_id, from its folder to another. */
export async function moveMessage(client: AmiClient, mailbox: AmiMailbox, folder: string, id: string, toFolder: string): Promise<void> {
  await client.action({ Action: "VoicemailMove", Context: mailbox.context, Mailbox: mailbox.box, Folder: folder, ID: id, ToFolder: toFolder });
}

/** `VoicemailRemove` (manager `write = user`): one message, by its msg_id, from its folder. */
export async function removeMessage(client: AmiClient, mailbox: AmiMailbox, folder: string, id: string): Promise<void> {
  await client.action({ Action: "VoicemailRemove", Context: mailbox.context, Mailbox: mailbox.box, Folder: folder, ID: id });
}
