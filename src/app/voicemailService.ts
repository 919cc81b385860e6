/**
 * The messages themselves, upstream: `!voicemails`, `!heard` and `!delete` act at the voice mail
 * system through a kind's `messages` capability, only on mailboxes the user has linked (looked
 * up for every call). The new counts are never made up here: the kind reports them as ordinary
 * MWI updates afterwards. A delete is armed by `!delete` and done by `!delete confirm` within a
 * minute, and only if the mailbox's newest message is still the one that was named.
 */
import type { MessagesCapability, VoicemailMessage } from "../gateway/gateway.js";
import type { MailboxLink } from "../store/store.js";
import type { MailboxService } from "./mailboxService.js";

export const DELETE_CONFIRM_MS = 60_000;

/** What became of one linked mailbox. */
export type MailboxOutcome<T> =
  | { link: MailboxLink; ok: true; value: T }
  /** The kind cannot do this at all (plain SIP, webhook). */
  | { link: MailboxLink; ok: false; unsupported: true }
  | { link: MailboxLink; ok: false; unsupported?: false; reason: string };

/** A delete that waits for its confirmation. */
export interface PendingDelete {
  link: MailboxLink;
  message: VoicemailMessage;
  until: number;
}

export type DeleteConfirmation =
  | { ok: true; link: MailboxLink; message: VoicemailMessage }
  | { ok: false; reason: "none" | "expired" | "changed" | "unlinked" }
  | { ok: false; reason: "failed"; link: MailboxLink; detail: string };

export class VoicemailService {
  private readonly pending = new Map<string, PendingDelete>();

  constructor(
    private readonly mailboxes: MailboxService,
    private readonly now: () => number = Date.now,
  ) {}

  /** The user's own links that match (all of them when nothing is named). */
  links(userId: string, systemId?: string, mailbox?: string): Promise<MailboxLink[]> {
    return this.mailboxes.selectLinks(userId, systemId, mailbox);
  }

  private capability(link: MailboxLink): MessagesCapability | undefined {
    return this.mailboxes.gateway(link.systemId)?.messages;
  }

  private async each<T>(links: readonly MailboxLink[], run: (cap: MessagesCapability, link: MailboxLink) => Promise<T>): Promise<MailboxOutcome<T>[]> {
    const out: MailboxOutcome<T>[] = [];
    for (const link of links) {
      const cap = this.capability(link);
      if (!cap) {
        out.push({ link, ok: false, unsupported: true });
        continue;
      }
      try {
        out.push({ link, ok: true, value: await run(cap, link) });
      } catch (err) {
        out.push({ link, ok: false, reason: (err as Error).message });
      }
    }
    return out;
  }

  /** Every message of each linked mailbox, newest first. */
  list(links: readonly MailboxLink[]): Promise<MailboxOutcome<VoicemailMessage[]>[]> {
    return this.each(links, async (cap, link) => cap.list(link.mailbox, await this.mailboxes.credentialsOfLink(link)));
  }

  /**
   * Marks heard the newest unheard message among these mailboxes, or (`all`) every unheard one
   * of each; the value is what was marked, per mailbox (empty: nothing was unheard).
   */
  async markHeard(links: readonly MailboxLink[], all: boolean): Promise<MailboxOutcome<VoicemailMessage[]>[]> {
    const listed = await this.list(links);
    let newest: { link: MailboxLink; message: VoicemailMessage } | undefined;
    if (!all) {
      for (const l of listed) {
        if (!l.ok) continue;
        const first = l.value.find((m) => m.fresh);
        if (first && (!newest || (first.time ?? 0) > (newest.message.time ?? 0))) newest = { link: l.link, message: first };
      }
    }
    const out: MailboxOutcome<VoicemailMessage[]>[] = [];
    for (const l of listed) {
      if (!l.ok) {
        out.push(l);
        continue;
      }
      const chosen = all ? l.value.filter((m) => m.fresh) : newest?.link === l.link ? [newest.message] : [];
      if (!all && !chosen.length) continue;
      const [done] = await this.each([l.link], async (cap, link) => {
        if (chosen.length) await cap.markHeard(link.mailbox, chosen.map((m) => m.id), await this.mailboxes.credentialsOfLink(link));
        return chosen;
      });
      out.push(done!);
    }
    return out;
  }

  /** Arms the delete of the mailbox's newest message (replacing one armed before); undefined when it has none. */
  async askDelete(userId: string, link: MailboxLink): Promise<MailboxOutcome<PendingDelete | undefined>> {
    const [listed] = await this.list([link]);
    if (!listed!.ok) return listed!;
    const message = listed!.value[0];
    if (!message) {
      this.pending.delete(userId);
      return { link, ok: true, value: undefined };
    }
    const pending = { link, message, until: this.now() + DELETE_CONFIRM_MS };
    this.pending.set(userId, pending);
    return { link, ok: true, value: pending };
  }

  /** Removes the armed message if it is still armed, still linked and still the mailbox's newest. */
  async confirmDelete(userId: string): Promise<DeleteConfirmation> {
    const pending = this.pending.get(userId);
    this.pending.delete(userId);
    if (!pending) return { ok: false, reason: "none" };
    if (this.now() > pending.until) return { ok: false, reason: "expired" };
    const { link, message } = pending;
    const [current] = await this.links(userId, link.systemId, link.mailbox);
    if (!current) return { ok: false, reason: "unlinked" };
    const cap = this.capability(current);
    if (!cap) return { ok: false, reason: "unlinked" };
    try {
      const credentials = await this.mailboxes.credentialsOfLink(current);
      const [newest] = await cap.list(current.mailbox, credentials);
      if (!newest || newest.id !== message.id) return { ok: false, reason: "changed" };
      await cap.remove(current.mailbox, message.id, credentials);
      return { ok: true, link: current, message };
    } catch (err) {
      return { ok: false, reason: "failed", link: current, detail: (err as Error).message };
    }
  }
}
