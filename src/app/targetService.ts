/**
 * More places a user's voicemail is told (F4, F11): another Matrix account (also on another
 * homeserver), which must accept the bot's invite, or a room the bot was invited to, added by a
 * member with the power to send messages in and change that room. Nobody can be spammed by
 * someone else's command: targets and pending invites per user are bounded, an account that
 * declined is not invited again until it asks itself (it opens a direct chat with the main bot),
 * and a removed target is kept (hidden) so that remove-then-add invites nobody again at once.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "matrix-appservice-bridge";
import { DEFAULT_LIMITS } from "../config/schema.js";
import type { BridgeConfig } from "../config/types.js";
import type { DeliveryService } from "../delivery/deliveryService.js";
import { extraTarget, ownerCannotPost, ownerPower } from "../delivery/targets.js";
import { accountRoomName } from "../core/format.js";
import type { BotDirectory } from "../matrix/bots.js";
import { membershipOf, openDirectRoom } from "../matrix/membership.js";
import { bridgeInfoEvents } from "../matrix/bridgeInfo.js";
import type { ExtraTarget, VoicemailStore } from "../store/store.js";

export const USER_ID = /^@[^:\s]+:[^\s]+$/;
const ROOM_ID = /^![^:\s]+:[^\s]+$/;
const ROOM_ALIAS = /^#[^:\s]+:[^\s]+$/;

export class TargetError extends Error {}

type Limits = typeof DEFAULT_LIMITS;

export class TargetService {
  private readonly limits: Limits;
  /** Rooms the main bot was invited to that are no target yet: left when the time is up. */
  private readonly unusedRooms = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly store: VoicemailStore,
    private readonly bots: BotDirectory,
    private readonly delivery: DeliveryService,
    private readonly log: Logger,
    limits: Partial<BridgeConfig["limits"]> = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  private get intent() {
    return this.bots.intent(this.bots.main);
  }

  stop(): void {
    for (const timer of this.unusedRooms.values()) clearTimeout(timer);
    this.unusedRooms.clear();
  }

  /** Adds a target; returns what the user should be told. */
  async add(ownerId: string, address: string): Promise<string> {
    if (USER_ID.test(address)) return this.addAccount(ownerId, address);
    if (ROOM_ID.test(address) || ROOM_ALIAS.test(address)) return this.addRoom(ownerId, address);
    throw new TargetError(`"${address}" is neither a Matrix user ID (@name:server) nor a room (!id:server or #alias:server).`);
  }

  /** The owner's targets, and the record (live or removed) for this address. */
  private async existing(ownerId: string, address: string): Promise<{ live: ExtraTarget[]; same?: ExtraTarget }> {
    const all = await this.store.listTargets(ownerId);
    const same = all.find((t) => t.address === address || (t.kind === "room" && t.roomId === address));
    return { live: all.filter((t) => t.removedAt === undefined), ...(same ? { same } : {}) };
  }

  private checkRoomForMore(live: ExtraTarget[], account: boolean): void {
    if (live.length >= this.limits.maxTargets) {
      throw new TargetError(`You have ${live.length} targets, the most allowed: remove one first.`);
    }
    const pending = live.filter((t) => t.kind === "account" && t.status === "invited").length;
    if (account && pending >= this.limits.maxPendingInvites) {
      throw new TargetError(`${pending} of your invites are not accepted yet, the most allowed: wait for them, or remove one.`);
    }
  }

  /** The account asked the bridge itself since it declined: it opened (or joined) a direct chat with the main bot. */
  private async askedSince(account: string, refusedAt: number): Promise<boolean> {
    const dm = await this.store.getDmRoom(account, this.bots.main.userId);
    return dm !== undefined && dm.userJoined && dm.createdAt > refusedAt;
  }

  private async addAccount(ownerId: string, account: string): Promise<string> {
    if (account === ownerId) throw new TargetError("You are told already: add another account.");
    if (this.bots.isBot(account)) throw new TargetError("That is one of the bridge's bots.");
    const { live, same } = await this.existing(ownerId, account);
    if (same?.status === "refused" && !(await this.askedSince(account, same.refusedAt ?? same.createdAt))) {
      this.log.info(`${ownerId} asked again for ${account}, who declined: not invited`);
      throw new TargetError(`${account} declined to be told about your voicemail, so they are not invited again. They can open a direct chat with ${this.bots.main.userId} if they change their mind.`);
    }
    if (same && same.removedAt === undefined && same.status !== "refused") throw new TargetError(`${account} is already one of your targets.`);
    if (same?.removedAt !== undefined && same.status === "invited") {
      // An invite withdrawn unanswered: not sent again before it would have expired.
      const again = same.createdAt + this.limits.inviteExpirySeconds * 1000;
      if (Date.now() < again) {
        throw new TargetError(`You invited ${account} on ${new Date(same.createdAt).toISOString()} and they did not answer; you can invite them again after ${new Date(again).toISOString()}.`);
      }
    }
    this.checkRoomForMore(live.filter((t) => t.id !== same?.id), true);
    // One record per owner and address: a removed or refused one is reused.
    const target: ExtraTarget = { id: same?.id ?? randomUUID(), ownerId, kind: "account", address: account, status: "invited", createdAt: Date.now() };
    if (same) await this.store.updateTarget(target);
    else if (!(await this.store.addTarget(target))) throw new TargetError(`${account} is already one of your targets.`);
    try {
      const roomId = await openDirectRoom(
        this.intent,
        account,
        accountRoomName(ownerId),
        `${ownerId} asked the voicemail bridge to tell you about their voicemail. Leave this room to refuse.`,
        // The room shows the owner's voicemail: the bridge info says so (MSC2346).
        bridgeInfoEvents(this.bots.main.userId, this.bots.main, ownerId),
      );
      await this.store.updateTarget({ ...target, roomId });
    } catch (err) {
      if (same) await this.store.updateTarget(same);
      else await this.store.removeTarget(target.id);
      this.log.warn(`could not invite ${account} as a target of ${ownerId}: ${(err as Error).message}`);
      throw new TargetError(`Could not invite ${account}: the homeserver said no.`);
    }
    this.log.info(`${ownerId} added the account ${account} as a target; invited`);
    return `Invited ${account}. Your voicemail is told there once they accept; if they decline, nothing is sent.`;
  }

  private async addRoom(ownerId: string, address: string): Promise<string> {
    const roomId = await this.intent.resolveRoom(address).catch(() => undefined);
    if (!roomId) throw new TargetError(`Cannot find the room ${address}.`);
    const botMembership = await membershipOf(this.intent, roomId, this.bots.main.userId);
    if (botMembership !== "join") {
      throw new TargetError(`Invite ${this.bots.main.userId} into ${address} first, then say this again.`);
    }
    if ((await membershipOf(this.intent, roomId, ownerId)) !== "join") throw new TargetError(`You are not in ${address}.`);
    const power = await ownerPower(this.intent, roomId, ownerId).catch(() => undefined);
    if (!power) throw new TargetError(`Cannot read the power levels of ${address}: try again later.`);
    if (power.level < power.required) {
      throw new TargetError(`Only a member who may send messages in and change ${address} (power level ${power.required}) may send voicemail there.`);
    }
    const { live, same } = await this.existing(ownerId, address);
    if (same && same.removedAt === undefined && same.status !== "refused") throw new TargetError(`${address} is already one of your targets.`);
    this.checkRoomForMore(live.filter((t) => t.id !== same?.id), false);
    const target: ExtraTarget = { id: same?.id ?? randomUUID(), ownerId, kind: "room", address, roomId, status: "active", createdAt: Date.now() };
    if (same) await this.store.updateTarget(target);
    else if (!(await this.store.addTarget(target))) throw new TargetError(`${address} is already one of your targets.`);
    clearTimeout(this.unusedRooms.get(roomId));
    this.unusedRooms.delete(roomId);
    this.log.info(`${ownerId} added the room ${roomId} as a target`);
    return `Your voicemail notifications now go to ${address} too.`;
  }

  async remove(ownerId: string, address: string): Promise<boolean> {
    const target = (await this.store.listTargets(ownerId)).find((t) => t.removedAt === undefined && (t.address === address || t.roomId === address));
    if (!target) return false;
    if (target.kind === "account") {
      // Kept, hidden: a refusal stays one, and a withdrawn invite is not sent again at once.
      await this.store.updateTarget({ ...target, removedAt: Date.now() });
      if (target.roomId) await this.intent.leave(target.roomId).catch(() => undefined);
    } else {
      await this.store.removeTarget(target.id);
    }
    this.log.info(`${ownerId} removed the target ${target.address}`);
    return true;
  }

  /** The targets the owner has (removed ones are kept hidden). */
  async list(ownerId: string): Promise<ExtraTarget[]> {
    return (await this.store.listTargets(ownerId)).filter((t) => t.removedAt === undefined);
  }

  /** Membership changes in a target's room: acceptance, refusal, the owner leaving, or the bot being removed. */
  async onMembership(roomId: string, userId: string, membership: string): Promise<boolean> {
    const targets = await this.store.targetsByRoom(roomId);
    const gone = membership === "leave" || membership === "ban";
    for (const target of targets) {
      if (target.kind === "account" && userId === target.address) {
        if (membership === "join" && target.status !== "active" && target.removedAt === undefined) {
          await this.store.updateTarget({ ...target, status: "active" });
          this.log.info(`${userId} accepted to be told about the voicemail of ${target.ownerId}`);
          this.delivery.kick(extraTarget(target.id));
        } else if (gone && target.status !== "refused") {
          await this.store.updateTarget({ ...target, status: "refused", refusedAt: Date.now() });
          this.log.info(`${userId} declined or left the voicemail room of ${target.ownerId}`);
          this.delivery.kick(extraTarget(target.id));
        }
      } else if (target.kind === "room" && userId === target.ownerId && gone) {
        await this.delivery.refuseRoom(target, "you are no longer in the room");
      } else if (userId === this.bots.main.userId && gone && target.status !== "refused") {
        await this.store.updateTarget({ ...target, status: "refused", refusedAt: Date.now() });
        this.log.info(`the bot was removed from ${roomId}, a target of ${target.ownerId}`);
      }
    }
    return targets.length > 0;
  }

  /** The power levels of a room changed: room targets whose owner may no longer post there stop. */
  async onPowerLevels(roomId: string): Promise<void> {
    for (const target of await this.store.targetsByRoom(roomId)) {
      if (target.kind !== "room" || target.status === "refused") continue;
      const why = await ownerCannotPost(this.intent, roomId, target.ownerId);
      if (why) await this.delivery.refuseRoom(target, why);
    }
  }

  /**
   * The main bot joined a room on an invite that made no DM: a room that may become a target.
   * False when it is too large to stay in; otherwise it is left unless it became a target in time.
   */
  invitedInto(roomId: string, members: number): boolean {
    if (members > this.limits.maxRoomMembers) return false;
    if (!this.unusedRooms.has(roomId)) this.scheduleLeave(roomId);
    return true;
  }

  /**
   * On start: the timers of rooms the main bot joined before a restart are gone, so every joined
   * room that is neither a target nor a DM gets a full period again (the join time is not kept).
   */
  async reviewJoinedRooms(): Promise<number> {
    const joined = (await this.intent.matrixClient.getJoinedRooms()) as string[];
    let pending = 0;
    for (const roomId of joined) {
      if (this.unusedRooms.has(roomId) || (await this.inUse(roomId))) continue;
      this.scheduleLeave(roomId);
      pending++;
    }
    if (pending) this.log.info(`${pending} room(s) of ${this.bots.main.userId} are no target: left in ${this.limits.unusedRoomSeconds} s unless they become one`);
    return pending;
  }

  /** A live target of any kind, or a DM, keeps the main bot in a room. */
  private async inUse(roomId: string): Promise<boolean> {
    if ((await this.store.targetsByRoom(roomId)).some((t) => t.removedAt === undefined)) return true;
    return (await this.store.getDmRoomById(roomId)) !== undefined;
  }

  private scheduleLeave(roomId: string): void {
    const timer = setTimeout(() => {
      this.unusedRooms.delete(roomId);
      void this.leaveIfUnused(roomId).catch((err: Error) => this.log.warn(`could not leave the unused room ${roomId}: ${err.message}`));
    }, this.limits.unusedRoomSeconds * 1000);
    timer.unref();
    this.unusedRooms.set(roomId, timer);
  }

  private async leaveIfUnused(roomId: string): Promise<void> {
    if ((await this.store.targetsByRoom(roomId)).some((t) => t.kind === "room" && t.removedAt === undefined)) return;
    if (await this.store.getDmRoomById(roomId)) return;
    await this.intent.leave(roomId);
    this.log.info(`${this.bots.main.userId} left ${roomId}: it did not become a target within ${this.limits.unusedRoomSeconds} s`);
  }
}
