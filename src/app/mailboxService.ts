/**
 * What happens to mailboxes: updates from the gateways, links and unlinks, MWI on and off.
 * Commands and the admin side call this; it calls the store, the gateways and the delivery.
 */
import type { Logger } from "matrix-appservice-bridge";
import type { RenderedText } from "../core/format.js";
import { applyUpdate, type MwiUpdate } from "../core/mwi.js";
import type { LinkProof, LinkRequest, MailboxCredentials, VoicemailGateway } from "../gateway/gateway.js";
import type { DeliveryService } from "../delivery/deliveryService.js";
import type { TargetKey } from "../delivery/targets.js";
import type { SecretBox } from "../store/secretBox.js";
import type { MailboxLink, OutboxEntry, VoicemailStore } from "../store/store.js";
import { KeyedQueue } from "../util/keyedQueue.js";
import type { VoicemailMetrics } from "../util/metrics.js";
import { DEFAULT_LINK_LIMITS, LinkAttempts, type LinkLimits } from "./linkAttempts.js";
import { VerificationCodes } from "./verificationCodes.js";

export type LinkOutcome = "linked" | "already-linked";

/** A proof, or none made: too many failed tries, and when the next one may start. */
export type LinkTry = LinkProof | { ok: false; tooManyTriesUntil: number };

type TooManyTries = { ok: false; tooManyTriesUntil: number };

/** A ring-to-verify call: started (the code expires then), refused, or not made. */
export type RingTry = { ok: true; expiresAt: number } | { ok: false; reason: string; transient?: boolean } | TooManyTries;

/** A `!verify` code: it linked the mailbox, or why not. */
export type VerifyTry =
  | { ok: true; systemId: string; mailbox: string; outcome: LinkOutcome }
  | { ok: false; reason: "none" | "expired" | "wrong" }
  | TooManyTries;

export class MailboxService {
  private readonly mailboxQueue = new KeyedQueue();
  private readonly linkAttempts: LinkAttempts;
  private readonly codes: VerificationCodes;

  constructor(
    private readonly store: VoicemailStore,
    private readonly gateways: Map<string, VoicemailGateway>,
    private readonly delivery: DeliveryService,
    private readonly secrets: SecretBox,
    private readonly log: Logger,
    private readonly metrics?: VoicemailMetrics,
    linkLimits: LinkLimits = DEFAULT_LINK_LIMITS,
    now: () => number = Date.now,
  ) {
    this.linkAttempts = new LinkAttempts(linkLimits, now);
    this.codes = new VerificationCodes(now);
  }

  gateway(systemId: string): VoicemailGateway | undefined {
    return this.gateways.get(systemId);
  }

  /**
   * Stores an update from a voice mail system: the new state and its outbox entries in one
   * atomic step (store.acceptChange), so that a crash can neither lose the notification nor,
   * with the update repeated, tell it twice.
   */
  acceptUpdate(update: MwiUpdate): Promise<void> {
    return this.mailboxQueue.run(JSON.stringify([update.systemId, update.mailbox]), async () => {
      const previous = await this.store.getMailboxState(update.systemId, update.mailbox);
      const change = applyUpdate(previous, update);
      this.metrics?.mwiUpdates.inc({ system: update.systemId, changed: String(Boolean(change)) });
      if (!change) return;
      const links = await this.store.linksForMailbox(update.systemId, update.mailbox);
      const entries: OutboxEntry[] = [];
      for (const link of links.filter((l) => l.mwiEnabled)) entries.push(...(await this.delivery.prepareChange(link.userId, change)));
      await this.store.acceptChange(change.current, entries);
      const c = change.current;
      this.log.info(`mwi ${c.systemId}/${c.mailbox}: ${c.new} new, ${c.old} old (${change.kind}) for ${links.length} user(s)`);
      for (const key of new Set(entries.map((e) => e.targetKey))) this.delivery.kick(key);
    });
  }

  /**
   * Shows the mailbox's current state to the user (after a link or `!mwi on`), after an optional
   * notice. A state that changed at or after `changedSince` was already delivered as a change.
   */
  private async resync(userId: string, systemId: string, mailbox: string, notice?: RenderedText, changedSince?: number): Promise<void> {
    const keys: TargetKey[] = [];
    if (notice) keys.push(await this.delivery.enqueueNotice(userId, systemId, notice));
    const current = await this.store.getMailboxState(systemId, mailbox);
    const deliveredAlready = current !== undefined && changedSince !== undefined && current.updated >= changedSince;
    if (current && !deliveredAlready) keys.push(...(await this.delivery.enqueueChange(userId, { kind: "counts", current })));
    for (const key of new Set(keys)) this.delivery.kick(key);
  }

  /**
   * Links a mailbox; `welcome` is told to the user in the system's DM before its counts;
   * `credentials` (from a proven self-service link) are stored sealed, and replace those of an
   * existing link (a new password). A link whose MWI is off stays off. `proofWatch`: the proof
   * left the mailbox watched for this link alone; released when the link fails to be stored or
   * its MWI is off.
   */
  async link(
    userId: string,
    systemId: string,
    mailbox: string,
    linkedBy: string,
    options: { welcome?: RenderedText; credentials?: MailboxCredentials; proofWatch?: boolean } = {},
  ): Promise<LinkOutcome> {
    const sealedCredentials = options.credentials ? this.secrets.seal(JSON.stringify(options.credentials)) : undefined;
    const releaseProofWatch = async () => {
      if (options.proofWatch) await this.gateways.get(systemId)?.watching?.unwatch(mailbox);
    };
    let added: boolean;
    let mwiEnabled = true;
    try {
      added = await this.store.addLink({
        userId,
        systemId,
        mailbox,
        mwiEnabled: true,
        linkedBy,
        createdAt: Date.now(),
        ...(sealedCredentials ? { sealedCredentials } : {}),
      });
      if (!added) {
        const existing = (await this.store.listLinks(userId)).find((l) => l.systemId === systemId && l.mailbox === mailbox);
        mwiEnabled = existing?.mwiEnabled ?? true;
        if (existing && sealedCredentials && existing.sealedCredentials !== sealedCredentials) {
          await this.store.setLinkCredentials(userId, systemId, mailbox, sealedCredentials);
          this.log.info(`${linkedBy} replaced the credentials of ${systemId}/${mailbox} for ${userId}`);
        }
      }
    } catch (err) {
      await releaseProofWatch().catch((e: Error) => this.log.warn(`could not release the watch of ${systemId}/${mailbox}: ${e.message}`));
      throw err;
    }
    // `!mwi off` stays off until the user says `!mwi on`: the proof must not have switched it on upstream.
    if (!mwiEnabled) await releaseProofWatch();
    if (!added) return "already-linked";
    await this.store.updateProfile(userId, {});
    await this.watch(systemId, mailbox);
    this.log.info(`${linkedBy} linked ${systemId}/${mailbox} to ${userId}`);
    await this.resync(userId, systemId, mailbox, options.welcome);
    return "linked";
  }

  /**
   * Asks the system whether the user's credentials open the mailbox, unless the user or the
   * mailbox has failed too often of late (linkAttempts.ts). A proof that succeeded, or that got
   * no verdict (the server was not reached), does not count. The gateway logs its own refusals.
   */
  async proveLink(systemId: string, request: LinkRequest): Promise<LinkTry> {
    const linking = this.gateways.get(systemId)?.linking;
    if (!linking) throw new Error(`system ${systemId} has no self-service linking`);
    const start = this.linkAttempts.begin(request.userId, systemId, request.mailbox);
    if (!start.ok) {
      const whose = start.limit === "user" ? "the user's" : "the mailbox's";
      this.log.info(`${systemId}: link of ${request.mailbox} for ${request.userId} refused: too many failed tries (${whose} limit) until ${new Date(start.until).toISOString()}`);
      return { ok: false, tooManyTriesUntil: start.until };
    }
    let proof: LinkProof;
    try {
      proof = await linking.prove(request);
    } catch (err) {
      start.attempt.forget();
      throw err;
    }
    if (proof.ok || proof.transient) start.attempt.forget();
    return proof;
  }

  /** The user may start a try on the mailbox now, or is told when. */
  private beginTry(userId: string, systemId: string, mailbox: string, what: string): ReturnType<LinkAttempts["begin"]> {
    const start = this.linkAttempts.begin(userId, systemId, mailbox);
    if (!start.ok) {
      const whose = start.limit === "user" ? "the user's" : "the mailbox's";
      this.log.info(`${systemId}: ${what} of ${mailbox} for ${userId} refused: too many tries (${whose} limit) until ${new Date(start.until).toISOString()}`);
    }
    return start;
  }

  /**
   * Ring-to-verify: rings the mailbox's phone with a one-time code for the user. Every call
   * counts as a failed try of the user and the mailbox until its code is used: calls cannot be
   * used to ring someone's phone over and over.
   */
  async ringToVerify(systemId: string, userId: string, mailbox: string): Promise<RingTry> {
    const verification = this.gateways.get(systemId)?.callVerification;
    if (!verification) throw new Error(`system ${systemId} has no ring-to-verify`);
    if (!verification.accepts(mailbox)) return { ok: false, reason: "that is not a mailbox of this system" };
    const start = this.beginTry(userId, systemId, mailbox, "verification call");
    if (!start.ok) return { ok: false, tooManyTriesUntil: start.until };
    const { code, expiresAt } = this.codes.issue(userId, systemId, mailbox, start.attempt);
    let result;
    try {
      result = await verification.ring(mailbox, code);
    } catch (err) {
      this.codes.withdraw(userId);
      throw err;
    }
    if (!result.ok) {
      // A refused call keeps counting (it may ring again); one that never left does not.
      if (result.transient) this.codes.withdraw(userId);
      return result;
    }
    this.log.info(`${systemId}: verification call for ${mailbox} started for ${userId}`);
    return { ok: true, expiresAt };
  }

  /** `!verify <code>`: the user's pending code, if right, links its mailbox to them. A wrong code counts as a failed try. */
  async verifyCode(userId: string, code: string): Promise<VerifyTry> {
    const pending = this.codes.pendingFor(userId);
    if (pending) {
      const start = this.beginTry(userId, pending.systemId, pending.mailbox, "verification");
      if (!start.ok) return { ok: false, tooManyTriesUntil: start.until };
      const checked = this.codes.check(userId, code);
      if (checked.ok) {
        start.attempt.forget();
        const outcome = await this.link(userId, checked.systemId, checked.mailbox, userId);
        return { ok: true, systemId: checked.systemId, mailbox: checked.mailbox, outcome };
      }
      if (checked.reason !== "wrong") start.attempt.forget();
      else this.log.info(`${pending.systemId}: wrong verification code for ${pending.mailbox} from ${userId}`);
      return { ok: false, reason: checked.reason };
    }
    const checked = this.codes.check(userId, code);
    return { ok: false, reason: checked.ok ? "none" : checked.reason };
  }

  /** Someone follows the mailbox (MWI on) who linked it with a password: their credentials can watch it. */
  async followedWithPassword(systemId: string, mailbox: string): Promise<boolean> {
    return (await this.store.linksForMailbox(systemId, mailbox)).some((l) => l.mwiEnabled && l.sealedCredentials !== undefined);
  }

  /** Some link of the mailbox has MWI on: the gateway watches it for them. */
  async isWatchWanted(systemId: string, mailbox: string): Promise<boolean> {
    return (await this.store.linksForMailbox(systemId, mailbox)).some((l) => l.mwiEnabled);
  }

  async unlink(userId: string, systemId: string, mailbox: string, by: string): Promise<boolean> {
    const removed = await this.store.removeLink(userId, systemId, mailbox);
    if (!removed) return false;
    this.log.info(`${by} unlinked ${systemId}/${mailbox} from ${userId}`);
    const gateway = this.gateways.get(systemId);
    await gateway?.watching?.unwatch(mailbox);
    // Others still linked keep the mailbox watched, now with their own credentials: the
    // watch may have used the ones just forgotten.
    if ((await this.store.linksForMailbox(systemId, mailbox)).some((l) => l.mwiEnabled)) await this.watch(systemId, mailbox);
    return true;
  }

  /** The sender's links that a `[system [mailbox]]` selection names. */
  async selectLinks(userId: string, systemId?: string, mailbox?: string): Promise<MailboxLink[]> {
    return (await this.store.listLinks(userId)).filter(
      (l) => (!systemId || l.systemId === systemId) && (!mailbox || l.mailbox === mailbox),
    );
  }

  /** Switches MWI for some of the user's links; returns the links it changed. */
  async setMwi(userId: string, links: MailboxLink[], enabled: boolean): Promise<MailboxLink[]> {
    const changed = links.filter((l) => l.mwiEnabled !== enabled);
    for (const link of changed) {
      const switchedOnAt = Date.now();
      await this.store.setLinkMwi(userId, link.systemId, link.mailbox, enabled);
      const gateway = this.gateways.get(link.systemId);
      const upstream = gateway?.upstreamMwi;
      if (upstream) {
        const othersWant = (await this.store.linksForMailbox(link.systemId, link.mailbox)).some((l) => l.mwiEnabled);
        // Switching on resolves once the system has reported the mailbox again (or gave up).
        if (enabled) await upstream.switchOn(link.mailbox, await this.credentialsFor(link.systemId, link.mailbox));
        else if (!othersWant) await upstream.switchOff(link.mailbox);
      } else if (gateway?.watching) {
        // Kinds that watch without an upstream switch (AMI): off releases the watch (nothing
        // changes at the system), on watches again and resolves once the counts are fresh.
        const othersWant = (await this.store.linksForMailbox(link.systemId, link.mailbox)).some((l) => l.mwiEnabled);
        if (enabled) await this.watch(link.systemId, link.mailbox);
        else if (!othersWant) await gateway.watching.unwatch(link.mailbox);
      }
      // Nothing still queued for the mailbox arrives after "MWI is off". A batch already in flight
      // (being sent, or retried after a lost answer) may still finish: it cannot be called back.
      if (!enabled) await this.delivery.dropQueued(userId, link.systemId, link.mailbox);
      this.log.info(`${userId} switched MWI ${enabled ? "on" : "off"} for ${link.systemId}/${link.mailbox}`);
      // Upstream systems sent nothing while MWI was off: the stored counts may be stale. If the
      // fresh report changed them, that change has reached the user already.
      const refreshed = upstream !== undefined || gateway?.watching !== undefined;
      if (enabled) await this.resync(userId, link.systemId, link.mailbox, undefined, refreshed ? switchedOnAt : undefined);
    }
    return changed;
  }

  /** What opens the mailbox for this user's own link: their own credentials, else those the watch uses. */
  async credentialsOfLink(link: MailboxLink): Promise<MailboxCredentials | undefined> {
    if (link.sealedCredentials) {
      try {
        return JSON.parse(this.secrets.open(link.sealedCredentials)) as MailboxCredentials;
      } catch (err) {
        this.log.error(`credentials of ${link.systemId}/${link.mailbox} for ${link.userId} cannot be read: ${(err as Error).message}`);
      }
    }
    return this.credentialsFor(link.systemId, link.mailbox);
  }

  /** Credentials of any enabled link of the mailbox: one watch serves every user linked to it. */
  private async credentialsFor(systemId: string, mailbox: string): Promise<MailboxCredentials | undefined> {
    const links = await this.store.linksForMailbox(systemId, mailbox);
    for (const link of links.filter((l) => l.mwiEnabled && l.sealedCredentials)) {
      try {
        return JSON.parse(this.secrets.open(link.sealedCredentials!)) as MailboxCredentials;
      } catch (err) {
        this.log.error(`credentials of ${systemId}/${mailbox} for ${link.userId} cannot be read: ${(err as Error).message}`);
      }
    }
    return undefined;
  }

  private async watch(systemId: string, mailbox: string): Promise<void> {
    await this.gateways.get(systemId)?.watching?.watch(mailbox, await this.credentialsFor(systemId, mailbox));
  }

  /**
   * Asks the system for the mailbox's counts afresh (the admin API's resync): a kind that watches
   * drops its watch and watches again, which resolves once the system's first report is in (SIP:
   * a new subscription and its NOTIFY; AMI: a fresh count; IMAP: a new session's STATUS). A kind
   * that only pushes (webhook) has nothing to ask; a mailbox nobody follows is not watched at all.
   * The report goes through acceptUpdate: users hear of it only if the counts changed.
   */
  async refresh(systemId: string, mailbox: string): Promise<"refreshed" | "push-only" | "not-followed"> {
    const watching = this.gateways.get(systemId)?.watching;
    if (!watching) return "push-only";
    if (!(await this.isWatchWanted(systemId, mailbox))) return "not-followed";
    await watching.unwatch(mailbox);
    await this.watch(systemId, mailbox);
    return "refreshed";
  }

  /** The system's mailboxes some user wants MWI for (what watchAll watches). */
  async followedMailboxes(systemId: string): Promise<string[]> {
    const links = await this.store.linksForSystem(systemId);
    return [...new Set(links.filter((l) => l.mwiEnabled).map((l) => l.mailbox))];
  }

  /**
   * On start: every mailbox some user wants MWI for is watched again, without anyone asking.
   * Not one after the other: a watch may wait for the system's first report of the mailbox.
   */
  async watchAll(systemId: string): Promise<number> {
    const mailboxes = await this.followedMailboxes(systemId);
    for (const mailbox of mailboxes) {
      void this.watch(systemId, mailbox).catch((err: Error) => this.log.error(`cannot watch ${systemId}/${mailbox}: ${err.message}`));
    }
    return mailboxes.length;
  }
}
