/** Matrix event types and state keys the bridge writes. Namespaced: they are not in the spec. */

export const MWI_EVENT_TYPE = "org.voicemail.mwi";
export const MWI_SUMMARY_EVENT_TYPE = "org.voicemail.mwi.summary";

/** One state event per mailbox: the system ID cannot contain "/", so the first one splits. */
export function mailboxStateKey(systemId: string, mailbox: string): string {
  return `${systemId}/${mailbox}`;
}
