/** A user's settings (`!set`): what commands may change of their profile, without the store itself. */
import type { DeliveryMode, NotifyMode, VoicemailStore } from "../store/store.js";

export class ProfileService {
  constructor(private readonly store: Pick<VoicemailStore, "updateProfile">) {}

  /** `zone` is a canonical IANA name (core/format's canonicalTimeZone). */
  async setTimeZone(userId: string, zone: string): Promise<void> {
    await this.store.updateProfile(userId, { timezone: zone });
  }

  async setDelivery(userId: string, delivery: DeliveryMode): Promise<void> {
    await this.store.updateProfile(userId, { delivery });
  }

  async setNotify(userId: string, notify: NotifyMode): Promise<void> {
    await this.store.updateProfile(userId, { notify });
  }
}
