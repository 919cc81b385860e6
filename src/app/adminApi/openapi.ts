/**
 * The admin API's OpenAPI 3 document, served at `GET /_voicemail/admin/v1/openapi.json`.
 * Written out rather than generated from the routes, so that a test comparing the two can fail.
 */
import { ADMIN_API_PREFIX } from "./routes.js";

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: unknown) => ({ content: { "application/json": { schema } } });
const error = (description: string) => ({ description, ...json(ref("Error")) });
const pathParam = (name: string, description: string) => ({ name, in: "path", required: true, description, schema: { type: "string" } });

const userId = pathParam("userId", "a Matrix user ID, percent-encoded (@ is %40, : is %3A)");
const systemId = pathParam("systemId", "a system's id from the config");
const mailbox = pathParam("mailbox", "the mailbox as it was linked");

/** Answers every authenticated route can give. */
const refusals = {
  "401": error("no bearer token, or a wrong one"),
  "429": { ...error("too many requests from this address; see Retry-After"), headers: { "Retry-After": { schema: { type: "integer" } } } },
};
const withBody = {
  "400": error("bad input: the message says what"),
  "413": error("the body is larger than adminApi.maxBodyBytes"),
  "415": error("the body is not application/json"),
};

function op(summary: string, responses: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return { summary, ...extra, responses: { ...responses, ...refusals } };
}

const body = (schema: unknown) => ({ requestBody: { required: true, ...json(schema) } });
const userNotFound = error("the bridge knows no such user (or link, or target)");

export const openApiDocument = {
  openapi: "3.0.3",
  info: {
    title: "matrix-appservice-voicemail admin API",
    version: "1",
    description: "Users, their links, targets and settings; resyncs; the outbox. Every change is logged with the caller's address.",
  },
  servers: [{ url: ADMIN_API_PREFIX }],
  security: [{ bearer: [] }],
  paths: {
    "/openapi.json": { get: { summary: "this document", security: [], responses: { "200": { description: "the OpenAPI document" }, "429": refusals["429"] } } },
    "/users": {
      get: op(
        "list and search users (every user who ever linked a mailbox or changed a setting), ordered by user ID",
        {
          "200": { description: "a page of users; `next` is the `after` of the next page", ...json({ type: "object", properties: { users: { type: "array", items: ref("User") }, next: { type: "string" } } }) },
          "400": error("bad query"),
        },
        {
          parameters: [
            { name: "search", in: "query", description: "part of the user ID, ignoring case", schema: { type: "string", maxLength: 255 } },
            { name: "after", in: "query", description: "the last user ID of the previous page", schema: { type: "string" } },
            { name: "limit", in: "query", schema: { type: "integer", minimum: 1, maximum: 1000, default: 100 } },
            { name: "system", in: "query", description: "with mailbox: the users linked to that mailbox", schema: { type: "string" } },
            { name: "mailbox", in: "query", schema: { type: "string" } },
          ],
        },
      ),
    },
    "/users/{userId}": {
      parameters: [userId],
      get: op("a user's settings, links and targets", {
        "200": { description: "the user", ...json({ allOf: [ref("User"), { type: "object", properties: { links: { type: "array", items: ref("Link") }, targets: { type: "array", items: ref("Target") } } }] }) },
        "400": error("not a user ID"),
        "404": userNotFound,
      }),
    },
    "/users/{userId}/settings": {
      parameters: [userId],
      patch: op(
        "change settings, checked like !set (all or nothing)",
        { "200": { description: "the user with the new settings", ...json(ref("User")) }, ...withBody, "404": userNotFound },
        body(ref("Settings")),
      ),
    },
    "/users/{userId}/links": {
      parameters: [userId],
      get: op("the user's links", { "200": { description: "links", ...json({ type: "object", properties: { links: { type: "array", items: ref("Link") } } }) }, "400": error("not a user ID"), "404": userNotFound }),
      post: op(
        "link a mailbox to the user, as !admin link does (the user is welcomed in the system's chat)",
        { "201": { description: "linked", ...json(ref("LinkResult")) }, "200": { description: "it was linked already", ...json(ref("LinkResult")) }, ...withBody },
        body({ type: "object", required: ["systemId", "mailbox"], additionalProperties: false, properties: { systemId: { type: "string" }, mailbox: { type: "string" } } }),
      ),
    },
    "/users/{userId}/links/{systemId}/{mailbox}": {
      parameters: [userId, systemId, mailbox],
      patch: op(
        "switch MWI on or off for the link, as !mwi does",
        { "200": { description: "the link", ...json({ type: "object", properties: { link: ref("Link"), changed: { type: "boolean" } } }) }, ...withBody, "404": userNotFound },
        body({ type: "object", required: ["mwiEnabled"], additionalProperties: false, properties: { mwiEnabled: { type: "boolean" } } }),
      ),
      delete: op("unlink the mailbox from the user", { "200": { description: "unlinked", ...json({ type: "object", properties: { unlinked: ref("Link") } }) }, "400": error("bad input"), "404": userNotFound }),
    },
    "/users/{userId}/targets": {
      parameters: [userId],
      get: op("the user's extra targets", { "200": { description: "targets", ...json({ type: "object", properties: { targets: { type: "array", items: ref("Target") } } }) }, "400": error("not a user ID"), "404": userNotFound }),
      post: op(
        "add a target, as !target add does (same limits)",
        { "200": { description: "what the user would have been told, and the targets", ...json({ type: "object", properties: { message: { type: "string" }, targets: { type: "array", items: ref("Target") } } }) }, ...withBody, "404": userNotFound },
        body({ type: "object", required: ["address"], additionalProperties: false, properties: { address: { type: "string", description: "@user:server, !room:server or #alias:server" } } }),
      ),
    },
    "/users/{userId}/targets/{address}": {
      parameters: [userId, pathParam("address", "the target's address, percent-encoded")],
      delete: op("remove a target, as !target remove does", { "200": { description: "removed", ...json({ type: "object", properties: { removed: { type: "string" } } }) }, "400": error("not a user ID"), "404": userNotFound }),
    },
    "/systems": {
      get: op("the configured systems, what a resync does on each, and how many mailboxes are followed", {
        "200": {
          description: "systems",
          ...json({
            type: "object",
            properties: {
              systems: {
                type: "array",
                items: {
                  type: "object",
                  properties: { id: { type: "string" }, kind: { type: "string" }, name: { type: "string" }, resync: { enum: ["watch-again", "push-only"] }, followedMailboxes: { type: "integer" } },
                },
              },
            },
          }),
        },
      }),
    },
    "/systems/{systemId}/resync": {
      parameters: [systemId],
      post: op("ask the system afresh for every followed mailbox (in the background, a few at a time)", {
        "202": { description: "started", ...json({ type: "object", properties: { systemId: { type: "string" }, mailboxes: { type: "integer" } } }) },
        "400": error("a body was sent (none is taken)"),
        "404": error("no such system"),
        "409": error("the system only pushes (M_UNSUPPORTED), or a resync of it is running (M_CONFLICT)"),
      }),
    },
    "/systems/{systemId}/mailboxes/{mailbox}/resync": {
      parameters: [systemId, mailbox],
      post: op("ask the system afresh for one mailbox; answers once its report is in", {
        "200": { description: "the mailbox's state after the report", ...json({ type: "object", properties: { systemId: { type: "string" }, mailbox: { type: "string" }, state: { type: "object", nullable: true } } }) },
        "400": error("bad input"),
        "404": error("no such system, or nobody follows the mailbox"),
        "409": error("the system only pushes its updates"),
      }),
    },
    "/outbox": {
      get: op("notifications waiting per target, and the age of each target's oldest", {
        "200": {
          description: "depth per target, oldest first",
          ...json({
            type: "object",
            properties: {
              entries: { type: "integer" },
              targets: {
                type: "array",
                items: {
                  type: "object",
                  properties: {
                    targetKey: { type: "string" },
                    target: { type: "object", nullable: true, description: "kind sys (userId, systemId), main (userId) or extra (targetId)" },
                    depth: { type: "integer" },
                    oldestCreatedAt: { type: "integer", description: "ms since the epoch" },
                    oldestAgeSeconds: { type: "integer" },
                  },
                },
              },
            },
          }),
        },
      }),
    },
  },
  components: {
    securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "adminApi.token from the config" } },
    schemas: {
      Error: { type: "object", required: ["error", "errcode"], properties: { error: { type: "string" }, errcode: { type: "string", example: "M_NOT_FOUND" } } },
      Settings: {
        type: "object",
        additionalProperties: false,
        properties: { timezone: { type: "string", description: "IANA zone" }, delivery: { enum: ["always", "when-online"] }, notify: { enum: ["per-system", "summary", "both"] } },
      },
      User: { type: "object", properties: { userId: { type: "string" }, createdAt: { type: "integer" }, settings: { ...ref("Settings"), description: "unset: the default" } } },
      Link: {
        type: "object",
        properties: {
          userId: { type: "string" },
          systemId: { type: "string" },
          mailbox: { type: "string" },
          mwiEnabled: { type: "boolean" },
          linkedBy: { type: "string", description: "a user ID, or admin-api" },
          hasCredentials: { type: "boolean", description: "the user linked it with a password (never shown)" },
          createdAt: { type: "integer" },
        },
      },
      LinkResult: { type: "object", properties: { outcome: { enum: ["linked", "already-linked"] }, link: ref("Link"), mwi: { type: "string", description: "how the user gets MWI for it" } } },
      Target: {
        type: "object",
        properties: {
          id: { type: "string" },
          ownerId: { type: "string" },
          kind: { enum: ["account", "room"] },
          address: { type: "string" },
          roomId: { type: "string" },
          status: { enum: ["invited", "active", "refused"] },
          createdAt: { type: "integer" },
          refusedAt: { type: "integer" },
        },
      },
    },
  },
} as const;
