/**
 * The admin API's routes: what each does, over the same services the commands use, with the
 * same validation (`!set`, `!admin link`). Paths are relative to ADMIN_API_PREFIX; `{name}`
 * is one path segment, percent-decoded (a user ID, a mailbox, a room address).
 */
import type { Logger } from "matrix-appservice-bridge";
import pLimit from "p-limit";
import type { SystemConfig } from "../../config/types.js";
import { canonicalTimeZone, escapeHtml } from "../../core/format.js";
import { MAILBOX_PATTERN } from "../../core/mwi.js";
import { parseTarget } from "../../delivery/targets.js";
import type { DeliveryMode, ExtraTarget, MailboxLink, NotifyMode, Profile, VoicemailStore } from "../../store/store.js";
import type { MailboxService } from "../mailboxService.js";
import type { ProfileService } from "../profileService.js";
import { TargetError, USER_ID, type TargetService } from "../targetService.js";
import { ApiError } from "./apiHttp.js";

export const ADMIN_API_PREFIX = "/_voicemail/admin/v1";

export type Method = "GET" | "POST" | "PATCH" | "DELETE";

export interface AdminServices {
  systems: readonly SystemConfig[];
  store: VoicemailStore;
  mailboxes: MailboxService;
  profiles: ProfileService;
  targets: Pick<TargetService, "add" | "remove" | "list">;
  log: Pick<Logger, "info" | "warn">;
}

export interface RouteRequest {
  params: Record<string, string>;
  query: URLSearchParams;
  /** The JSON body, when one was sent. */
  body: Record<string, unknown> | undefined;
  /** The client's address, for the log of changes. */
  caller: string;
}

export interface Reply {
  status: number;
  body: unknown;
}

export interface Route {
  method: Method;
  /** E.g. `/users/{userId}/links`. */
  path: string;
  handle(request: RouteRequest): Promise<Reply>;
}

const ok = (body: unknown): Reply => ({ status: 200, body });
const bad = (message: string) => new ApiError(400, "M_INVALID_PARAM", message);
const notFound = (message: string) => new ApiError(404, "M_NOT_FOUND", message);

/** The body's fields, refusing any the route does not know (a typo must not pass silently). */
function bodyOf(request: RouteRequest, allowed: readonly string[], required: readonly string[] = []): Record<string, unknown> {
  const body = request.body ?? {};
  const unknown = Object.keys(body).filter((k) => !allowed.includes(k));
  if (unknown.length) throw new ApiError(400, "M_BAD_JSON", `unknown field(s) ${unknown.map((k) => JSON.stringify(k)).join(", ")}; allowed: ${allowed.join(", ")}`);
  const missing = required.filter((k) => body[k] === undefined);
  if (missing.length) throw new ApiError(400, "M_BAD_JSON", `missing field(s): ${missing.join(", ")}`);
  return body;
}

function stringField(body: Record<string, unknown>, name: string): string | undefined {
  const value = body[name];
  if (value === undefined) return undefined;
  if (typeof value !== "string") throw bad(`${name} must be a string`);
  return value;
}

function userIdOf(request: RouteRequest): string {
  const userId = request.params.userId!;
  if (!USER_ID.test(userId)) throw bad(`"${userId.slice(0, 200)}" is not a Matrix user ID such as @alice:example.org`);
  return userId;
}

function mailboxOf(mailbox: string): string {
  if (!MAILBOX_PATTERN.test(mailbox)) throw bad(`"${mailbox.slice(0, 200)}" is not a mailbox (up to 128 letters, digits and @._+:*#-)`);
  return mailbox;
}

/** A link as the API shows it: whether credentials are stored, never the credentials. */
function linkView(link: MailboxLink) {
  return {
    userId: link.userId,
    systemId: link.systemId,
    mailbox: link.mailbox,
    mwiEnabled: link.mwiEnabled,
    linkedBy: link.linkedBy,
    hasCredentials: link.sealedCredentials !== undefined,
    createdAt: link.createdAt,
  };
}

function targetView(t: ExtraTarget) {
  const { lastName: _n, lastSummary: _s, lastTopic: _t, ...shown } = t;
  return shown;
}

function profileView(p: Profile) {
  return { userId: p.userId, createdAt: p.createdAt, settings: { timezone: p.timezone, delivery: p.delivery, notify: p.notify } };
}

const DELIVERY: readonly DeliveryMode[] = ["always", "when-online"];
const NOTIFY: readonly NotifyMode[] = ["per-system", "summary", "both"];
const RESYNC_CONCURRENCY = 4;

export function adminRoutes(services: AdminServices): Route[] {
  const { store, mailboxes, profiles, targets, log } = services;
  const systems = new Map(services.systems.map((s) => [s.id, s]));
  const resyncing = new Set<string>();

  const userOf = async (request: RouteRequest): Promise<Profile> => {
    const userId = userIdOf(request);
    const profile = await store.getProfile(userId);
    if (!profile) throw notFound(`the bridge knows no user ${userId}`);
    return profile;
  };
  const systemOf = (systemId: string | undefined, where: "path" | "body"): SystemConfig => {
    const system = systemId === undefined ? undefined : systems.get(systemId);
    if (system) return system;
    const message = `there is no system "${String(systemId).slice(0, 200)}"; systems: ${[...systems.keys()].join(", ")}`;
    throw where === "path" ? notFound(message) : bad(message);
  };
  const linkOf = async (request: RouteRequest): Promise<MailboxLink> => {
    const { userId } = await userOf(request);
    const system = systemOf(request.params.systemId, "path");
    const link = (await store.listLinks(userId)).find((l) => l.systemId === system.id && l.mailbox === request.params.mailbox);
    if (!link) throw notFound(`${userId} has no linked mailbox ${request.params.mailbox!.slice(0, 200)} on ${system.id}`);
    return link;
  };
  const changed = (request: RouteRequest, what: string) => log.info(`admin API (${request.caller}): ${what}`);
  /** How a mailbox linked without a password gets MWI on this system (what `!admin link` says). */
  const watchOf = async (systemId: string, mailbox: string): Promise<string> => {
    const watching = mailboxes.gateway(systemId)?.watching;
    if (!watching) return "pushed by the system";
    if (watching.systemCredentials) return "watched with the system's credentials";
    if (await mailboxes.followedWithPassword(systemId, mailbox)) return "watched with the credentials of a user who linked it with a password";
    return "not watched: this system has no credentials for admin links, and nobody who linked it with a password follows it";
  };

  return [
    {
      method: "GET",
      path: "/users",
      async handle({ query }) {
        const limitText = query.get("limit") ?? "100";
        const limit = Number(limitText);
        if (!/^\d+$/.test(limitText) || limit < 1 || limit > 1000) throw bad("limit must be a whole number from 1 to 1000");
        const system = query.get("system");
        const mailbox = query.get("mailbox");
        if ((system === null) !== (mailbox === null)) throw bad("system and mailbox go together");
        if (system !== null && mailbox !== null) {
          // Who follows one mailbox: few, so no paging.
          const links = await store.linksForMailbox(systemOf(system, "body").id, mailboxOf(mailbox));
          const found = await Promise.all(links.map((l) => store.getProfile(l.userId)));
          return ok({ users: found.filter((p): p is Profile => p !== undefined).map(profileView) });
        }
        const contains = query.get("search") ?? undefined;
        const after = query.get("after") ?? undefined;
        if (contains !== undefined && contains.length > 255) throw bad("search is at most 255 characters");
        const page = await store.listProfiles({ limit, ...(contains ? { contains } : {}), ...(after !== undefined ? { after } : {}) });
        const next = page.length === limit ? page[page.length - 1]!.userId : undefined;
        return ok({ users: page.map(profileView), ...(next !== undefined ? { next } : {}) });
      },
    },
    {
      method: "GET",
      path: "/users/{userId}",
      async handle(request) {
        const profile = await userOf(request);
        const links = await store.listLinks(profile.userId);
        return ok({ ...profileView(profile), links: links.map(linkView), targets: (await targets.list(profile.userId)).map(targetView) });
      },
    },
    {
      method: "PATCH",
      path: "/users/{userId}/settings",
      async handle(request) {
        const body = bodyOf(request, ["timezone", "delivery", "notify"]);
        const profile = await userOf(request);
        if (Object.keys(body).length === 0) throw new ApiError(400, "M_BAD_JSON", "say which settings to change: timezone, delivery, notify");
        // Everything is checked before anything is changed: a bad value changes nothing.
        const zone = stringField(body, "timezone");
        const timezone = zone === undefined ? undefined : canonicalTimeZone(zone);
        if (zone !== undefined && !timezone) throw bad(`"${zone.slice(0, 100)}" is not a time zone: use an IANA name such as Europe/Berlin`);
        const delivery = stringField(body, "delivery");
        if (delivery !== undefined && !DELIVERY.includes(delivery as DeliveryMode)) throw bad(`delivery must be one of ${DELIVERY.join(", ")}`);
        const notify = stringField(body, "notify");
        if (notify !== undefined && !NOTIFY.includes(notify as NotifyMode)) throw bad(`notify must be one of ${NOTIFY.join(", ")}`);
        const { userId } = profile;
        if (timezone) await profiles.setTimeZone(userId, timezone);
        if (delivery) await profiles.setDelivery(userId, delivery as DeliveryMode);
        if (notify) await profiles.setNotify(userId, notify as NotifyMode);
        changed(request, `set ${Object.keys(body).join(", ")} of ${userId}`);
        return ok(profileView((await store.getProfile(userId))!));
      },
    },
    {
      method: "GET",
      path: "/users/{userId}/links",
      async handle(request) {
        const { userId } = await userOf(request);
        return ok({ links: (await store.listLinks(userId)).map(linkView) });
      },
    },
    {
      method: "POST",
      path: "/users/{userId}/links",
      async handle(request) {
        const body = bodyOf(request, ["systemId", "mailbox"], ["systemId", "mailbox"]);
        // Like `!admin link`: the user need not be known yet; the link makes them so.
        const userId = userIdOf(request);
        const system = systemOf(stringField(body, "systemId"), "body");
        const mailbox = mailboxOf(stringField(body, "mailbox")!);
        const plain = `Mailbox ${mailbox} of ${system.name} is now linked to your account. Its message waiting indication will show here. Say !help for commands.`;
        const welcome = { body: plain, html: escapeHtml(plain) };
        const outcome = await mailboxes.link(userId, system.id, mailbox, "admin-api", { welcome });
        if (outcome === "linked") changed(request, `linked ${system.id}/${mailbox} to ${userId}`);
        const link = (await store.listLinks(userId)).find((l) => l.systemId === system.id && l.mailbox === mailbox)!;
        return { status: outcome === "linked" ? 201 : 200, body: { outcome, link: linkView(link), mwi: await watchOf(system.id, mailbox) } };
      },
    },
    {
      method: "PATCH",
      path: "/users/{userId}/links/{systemId}/{mailbox}",
      async handle(request) {
        const body = bodyOf(request, ["mwiEnabled"], ["mwiEnabled"]);
        if (typeof body.mwiEnabled !== "boolean") throw bad("mwiEnabled must be true or false");
        const link = await linkOf(request);
        const switched = await mailboxes.setMwi(link.userId, [link], body.mwiEnabled);
        if (switched.length) changed(request, `switched MWI ${body.mwiEnabled ? "on" : "off"} for ${link.systemId}/${link.mailbox} of ${link.userId}`);
        return ok({ link: linkView({ ...link, mwiEnabled: body.mwiEnabled }), changed: switched.length > 0 });
      },
    },
    {
      method: "DELETE",
      path: "/users/{userId}/links/{systemId}/{mailbox}",
      async handle(request) {
        const link = await linkOf(request);
        const removed = await mailboxes.unlink(link.userId, link.systemId, link.mailbox, "admin-api");
        if (!removed) throw notFound(`${link.userId} has no linked mailbox ${link.mailbox} on ${link.systemId}`);
        changed(request, `unlinked ${link.systemId}/${link.mailbox} from ${link.userId}`);
        return ok({ unlinked: linkView(link) });
      },
    },
    {
      method: "GET",
      path: "/users/{userId}/targets",
      async handle(request) {
        const { userId } = await userOf(request);
        return ok({ targets: (await targets.list(userId)).map(targetView) });
      },
    },
    {
      method: "POST",
      path: "/users/{userId}/targets",
      async handle(request) {
        const body = bodyOf(request, ["address"], ["address"]);
        const { userId } = await userOf(request);
        const address = stringField(body, "address")!;
        if (address.length > 255) throw bad("address is at most 255 characters");
        let message: string;
        try {
          message = await targets.add(userId, address);
        } catch (err) {
          // The same limits and checks as `!target add`, said the same way.
          if (err instanceof TargetError) throw new ApiError(400, "M_INVALID_PARAM", err.message);
          throw err;
        }
        changed(request, `added the target ${address} to ${userId}`);
        return ok({ message, targets: (await targets.list(userId)).map(targetView) });
      },
    },
    {
      method: "DELETE",
      path: "/users/{userId}/targets/{address}",
      async handle(request) {
        const { userId } = await userOf(request);
        const address = request.params.address!;
        if (!(await targets.remove(userId, address))) throw notFound(`${address.slice(0, 200)} is not a target of ${userId}`);
        changed(request, `removed the target ${address} of ${userId}`);
        return ok({ removed: address });
      },
    },
    {
      method: "GET",
      path: "/systems",
      async handle() {
        const list = await Promise.all(
          services.systems.map(async (s) => ({
            id: s.id,
            kind: s.kind,
            name: s.name,
            resync: mailboxes.gateway(s.id)?.watching ? "watch-again" : "push-only",
            followedMailboxes: (await mailboxes.followedMailboxes(s.id)).length,
          })),
        );
        return ok({ systems: list });
      },
    },
    {
      method: "POST",
      path: "/systems/{systemId}/resync",
      async handle(request) {
        bodyOf(request, []);
        const system = systemOf(request.params.systemId, "path");
        if (!mailboxes.gateway(system.id)?.watching) throw pushOnly(system);
        if (resyncing.has(system.id)) throw new ApiError(409, "M_CONFLICT", `a resync of ${system.id} is running already`);
        const followed = await mailboxes.followedMailboxes(system.id);
        changed(request, `resync of ${system.id} started (${followed.length} mailbox(es))`);
        resyncing.add(system.id);
        // Not awaited: thousands of mailboxes take longer than an HTTP client waits.
        const limit = pLimit(RESYNC_CONCURRENCY);
        void Promise.all(
          followed.map((mailbox) =>
            limit(() =>
              mailboxes.refresh(system.id, mailbox).then(
                () => true,
                (err: Error) => {
                  log.warn(`admin API: resync of ${system.id}/${mailbox} failed: ${err.message}`);
                  return false;
                },
              ),
            ),
          ),
        ).then((results) => {
          resyncing.delete(system.id);
          log.info(`admin API: resync of ${system.id} done: ${results.filter(Boolean).length} of ${results.length} mailbox(es) refreshed`);
        });
        return { status: 202, body: { systemId: system.id, mailboxes: followed.length } };
      },
    },
    {
      method: "POST",
      path: "/systems/{systemId}/mailboxes/{mailbox}/resync",
      async handle(request) {
        bodyOf(request, []);
        const system = systemOf(request.params.systemId, "path");
        const mailbox = mailboxOf(request.params.mailbox!);
        const outcome = await mailboxes.refresh(system.id, mailbox);
        if (outcome === "push-only") throw pushOnly(system);
        if (outcome === "not-followed") throw notFound(`nobody follows ${system.id}/${mailbox} (no link with MWI on): it is not watched`);
        changed(request, `resynced ${system.id}/${mailbox}`);
        return ok({ systemId: system.id, mailbox, state: (await store.getMailboxState(system.id, mailbox)) ?? null });
      },
    },
    {
      method: "GET",
      path: "/outbox",
      async handle() {
        const now = Date.now();
        const byTarget = new Map<string, { depth: number; oldest: number }>();
        for (const entry of await store.outboxEntries()) {
          const seen = byTarget.get(entry.targetKey);
          if (seen) {
            seen.depth++;
            seen.oldest = Math.min(seen.oldest, entry.createdAt);
          } else byTarget.set(entry.targetKey, { depth: 1, oldest: entry.createdAt });
        }
        const list = [...byTarget]
          .map(([targetKey, { depth, oldest }]) => ({
            targetKey,
            target: parseTarget(targetKey) ?? null,
            depth,
            oldestCreatedAt: oldest,
            oldestAgeSeconds: Math.max(0, Math.round((now - oldest) / 1000)),
          }))
          .sort((a, b) => a.oldestCreatedAt - b.oldestCreatedAt);
        return ok({ entries: list.reduce((n, t) => n + t.depth, 0), targets: list });
      },
    },
  ];
}

function pushOnly(system: SystemConfig): ApiError {
  return new ApiError(409, "M_UNSUPPORTED", `${system.id} (${system.kind}) pushes its updates: the bridge has nothing to ask it for`);
}
