/**
 * More places a user's voicemail is told (F4, F11): another Matrix account (also on another
 * homeserver), which must accept the bot's invite, or a room the bot was invited to, added by a
 * member with the power to change that room. Nobody can be spammed by someone else's command.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "matrix-appservice-bridge";
import type { DeliveryService } from "../delivery/deliveryService.js";
import { extraTarget } from "../delivery/targets.js";
import { accountRoomName } from "../core/format.js";
import type { BotDirectory } from "../matrix/bots.js";
import { membershipOf, openDirectRoom } from "../matrix/membership.js";
import type { ExtraTarget, VoicemailStore } from "../store/store.js";

export const USER_ID = /^@[^:\s]+:[^\s]+$/;
const ROOM_ID = /^![^:\s]+:[^\s]+$/;
const ROOM_ALIAS = /^#[^:\s]+:[^\s]+$/;

export class TargetError extends Error {}


export class TargetService {
  constructor(
    private readonly store: VoicemailStore,
    private readonly bots: BotDirectory,
    private readonly delivery: DeliveryService,
    private readonly log: Logger,
  ) {}

  private get intent() {
    return this.bots.intent(this.bots.main);
  }

  /** Adds a target; returns what the user should be told. */
  async add(ownerId: string, address: string): Promise<string> {
    if (USER_ID.test(address)) return this.addAccount(ownerId, address);
    if (ROOM_ID.test(address) || ROOM_ALIAS.test(address)) return this.addRoom(ownerId, address);
    throw new TargetError(`"${address}" is neither a Matrix user ID (@name:server) nor a room (!id:server or #alias:server).`);
  }

  private async addAccount(ownerId: string, account: string): Promise<string> {
    if (account === ownerId) throw new TargetError("You are told already: add another account.");
    if (this.bots.isBot(account)) throw new TargetError("That is one of the bridge's bots.");
    const id = randomUUID();
    const target: ExtraTarget = { id, ownerId, kind: "account", address: account, status: "invited", createdAt: Date.now() };
    if (!(await this.store.addTarget(target))) throw new TargetError(`${account} is already one of your targets.`);
    try {
      const roomId = await openDirectRoom(
        this.intent,
        account,
        accountRoomName(ownerId),
        `${ownerId} asked the voicemail bridge to tell you about their voicemail. Leave this room to refuse.`,
      );
      await this.store.updateTarget({ ...target, roomId });
    } catch (err) {
      await this.store.removeTarget(id);
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
    const levels = (await this.intent.matrixClient
      .getRoomStateEventContent(roomId, "m.room.power_levels", "")
      .catch(() => ({}))) as { users?: Record<string, number>; users_default?: number; state_default?: number };
    const level = levels.users?.[ownerId] ?? levels.users_default ?? 0;
    if (level < (levels.state_default ?? 50)) {
      throw new TargetError(`Only a member who may change ${address} (power level ${levels.state_default ?? 50}) may send voicemail there.`);
    }
    const target: ExtraTarget = { id: randomUUID(), ownerId, kind: "room", address, roomId, status: "active", createdAt: Date.now() };
    if (!(await this.store.addTarget(target))) throw new TargetError(`${address} is already one of your targets.`);
    this.log.info(`${ownerId} added the room ${roomId} as a target`);
    return `Your voicemail notifications now go to ${address} too.`;
  }


  async remove(ownerId: string, address: string): Promise<boolean> {
    const target = (await this.store.listTargets(ownerId)).find((t) => t.address === address || t.roomId === address);
    if (!target) return false;
    await this.store.removeTarget(target.id);
    if (target.kind === "account" && target.roomId) await this.intent.leave(target.roomId).catch(() => undefined);
    this.log.info(`${ownerId} removed the target ${target.address}`);
    return true;
  }

  list(ownerId: string): Promise<ExtraTarget[]> {
    return this.store.listTargets(ownerId);
  }

  /** Membership changes in a target's room: acceptance, refusal, or the bot being removed. */
  async onMembership(roomId: string, userId: string, membership: string): Promise<boolean> {
    const targets = await this.store.targetsByRoom(roomId);
    for (const target of targets) {
      if (target.kind === "account" && userId === target.address) {
        if (membership === "join" && target.status !== "active") {
          await this.store.updateTarget({ ...target, status: "active" });
          this.log.info(`${userId} accepted to be told about the voicemail of ${target.ownerId}`);
          this.delivery.kick(extraTarget(target.id));
        } else if ((membership === "leave" || membership === "ban") && target.status !== "refused") {
          await this.store.updateTarget({ ...target, status: "refused" });
          this.log.info(`${userId} declined or left the voicemail room of ${target.ownerId}`);
          this.delivery.kick(extraTarget(target.id));
        }
      } else if (userId === this.bots.main.userId && (membership === "leave" || membership === "ban")) {
        await this.store.updateTarget({ ...target, status: "refused" });
        this.log.info(`the bot was removed from ${roomId}, a target of ${target.ownerId}`);
      }
    }
    return targets.length > 0;
  }
}
