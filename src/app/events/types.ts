/** What the parts of the event handler share: the collaborators they use, no more. */
import type { Logger, WeakEvent } from "matrix-appservice-bridge";
import type { BridgeConfig } from "../../config/types.js";
import type { DeliveryService } from "../../delivery/deliveryService.js";
import type { BotDirectory } from "../../matrix/bots.js";
import type { DmRooms } from "../../matrix/dmRooms.js";
import type { VoicemailStore } from "../../store/store.js";
import type { TargetService } from "../targetService.js";

export interface EventPartsDeps {
  config: Pick<BridgeConfig, "permissions">;
  store: Pick<VoicemailStore, "getDmRoomById">;
  bots: BotDirectory;
  dms: DmRooms;
  targets: Pick<TargetService, "onMembership" | "invitedInto">;
  delivery: Pick<DeliveryService, "kickPerson">;
  log: Logger;
}

export type MemberEvent = WeakEvent & { state_key: string };

export function membershipIn(event: WeakEvent): string {
  return (event.content as { membership?: string }).membership ?? "";
}
