/**
 * The only changes the bridge makes on a mail server, for `!heard` and `!delete`: a short
 * read-write session of its own (the watching session stays read-only), which opens the folder
 * with SELECT, checks that its UIDVALIDITY is the one the UIDs were learnt under, changes exactly
 * the mails named by UID, and logs out. A delete is `\Deleted` plus `UID EXPUNGE` of that one
 * UID: a server without UIDPLUS would expunge every `\Deleted` mail of the folder, so it is refused.
 */
import type { MailboxCredentials } from "../gateway.js";
import { withTimeout } from "../../util/timeout.js";
import { createImapClient, isAuthFailure, type ServerSettings } from "./imapClient.js";

const WRITE_TIMEOUT_MS = 20_000;

export type MailChange = { kind: "seen"; uids: readonly number[] } | { kind: "delete"; uid: number };

/** A failure of ours, worded for the user; anything else (the server's own text) is logged, not shown. */
class ChangeRefused extends Error {}

export async function changeMails(
  server: ServerSettings,
  credentials: MailboxCredentials,
  folder: string,
  uidValidity: bigint,
  change: MailChange,
  log: (line: string) => void,
): Promise<void> {
  const client = createImapClient(server, credentials, { idle: false });
  client.on("error", () => undefined);
  const work = async () => {
    try {
      await client.connect();
    } catch (err) {
      throw new ChangeRefused(isAuthFailure(err) ? "the mail server refused the login" : "the mail server could not be reached; try again later");
    }
    const opened = await client.mailboxOpen(folder, { readOnly: false });
    if (opened.uidValidity !== uidValidity) throw new ChangeRefused("the mail folder changed meanwhile; nothing was changed, try again");
    if (change.kind === "seen") {
      if (change.uids.length && !(await client.messageFlagsAdd(change.uids.join(","), ["\\Seen"], { uid: true }))) throw new ChangeRefused("the mail server refused to mark the mail read");
      return;
    }
    if (!client.capabilities.has("UIDPLUS")) throw new ChangeRefused("the mail server cannot delete one mail alone (no UIDPLUS); nothing was deleted");
    if (!(await client.messageDelete(String(change.uid), { uid: true }))) throw new ChangeRefused("the mail server refused to delete the mail");
  };
  try {
    const done = await withTimeout(work().then(() => true), WRITE_TIMEOUT_MS, false);
    if (!done) throw new ChangeRefused("the mail server did not answer in time");
  } catch (err) {
    if (err instanceof ChangeRefused) throw err;
    log(`the mail server refused it: ${(err as Error).message}`);
    throw new ChangeRefused("the mail server refused it");
  } finally {
    await client.logout().catch(() => client.close());
  }
}
