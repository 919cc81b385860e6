import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";

import { atLeast, permissionLevel } from "../../src/core/permissions.js";
import type { PermissionLevel } from "../../src/config/types.js";

const LEVELS: PermissionLevel[] = ["none", "user", "admin"];

describe("permissionLevel", () => {
  const permissions: Record<string, PermissionLevel> = {
    "*": "user",
    "example.org": "admin",
    "@mallory:example.org": "none",
    "@boss:other.net": "admin",
    "other.net": "none",
  };

  it("a user ID entry wins over its server and over *", () => {
    assert.equal(permissionLevel(permissions, "@mallory:example.org"), "none");
    assert.equal(permissionLevel(permissions, "@boss:other.net"), "admin");
  });

  it("a server entry wins over *", () => {
    assert.equal(permissionLevel(permissions, "@alice:example.org"), "admin");
    assert.equal(permissionLevel(permissions, "@eve:other.net"), "none");
  });

  it("* covers everyone else", () => {
    assert.equal(permissionLevel(permissions, "@carol:third.example"), "user");
  });

  it("nothing matching: none", () => {
    assert.equal(permissionLevel({}, "@alice:example.org"), "none");
    assert.equal(permissionLevel({ "example.org": "user" }, "@alice:example.com"), "none");
    assert.equal(permissionLevel({ "@alice:example.org": "admin" }, "@alice:example.org.evil"), "none");
  });

  it("a server name is the whole part after the first colon, port included", () => {
    assert.equal(permissionLevel({ "example.org:8448": "user" }, "@alice:example.org:8448"), "user");
    assert.equal(permissionLevel({ "example.org": "user" }, "@alice:example.org:8448"), "none");
    assert.equal(permissionLevel({ "sub.example.org": "user" }, "@alice:example.org"), "none");
    assert.equal(permissionLevel({ "example.org": "user" }, "@alice:sub.example.org"), "none");
  });

  it("matching is exact: case matters", () => {
    assert.equal(permissionLevel({ "@Alice:example.org": "admin" }, "@alice:example.org"), "none");
  });

  it("the sample config's permissions", () => {
    const sample: Record<string, PermissionLevel> = { localhost: "user", "@admin:localhost": "admin" };
    assert.equal(permissionLevel(sample, "@admin:localhost"), "admin");
    assert.equal(permissionLevel(sample, "@alice:localhost"), "user");
    assert.equal(permissionLevel(sample, "@alice:matrix.org"), "none");
  });

  it("property: the user entry, else the server entry, else *, else none", () => {
    const name = fc.stringMatching(/^[a-z]{1,3}$/);
    fc.assert(
      fc.property(
        name,
        name,
        fc.option(fc.constantFrom(...LEVELS), { nil: undefined }),
        fc.option(fc.constantFrom(...LEVELS), { nil: undefined }),
        fc.option(fc.constantFrom(...LEVELS), { nil: undefined }),
        (local, server, userLevel, serverLevel, starLevel) => {
          const userId = `@${local}:${server}.test`;
          const permissions: Record<string, PermissionLevel> = {};
          if (userLevel) permissions[userId] = userLevel;
          if (serverLevel) permissions[`${server}.test`] = serverLevel;
          if (starLevel) permissions["*"] = starLevel;
          assert.equal(permissionLevel(permissions, userId), userLevel ?? serverLevel ?? starLevel ?? "none");
        },
      ),
    );
  });
});

describe("atLeast", () => {
  it("orders none < user < admin", () => {
    const table: [PermissionLevel, PermissionLevel, boolean][] = [
      ["none", "none", true],
      ["none", "user", false],
      ["none", "admin", false],
      ["user", "none", true],
      ["user", "user", true],
      ["user", "admin", false],
      ["admin", "none", true],
      ["admin", "user", true],
      ["admin", "admin", true],
    ];
    for (const [level, required, expected] of table) {
      assert.equal(atLeast(level, required), expected, `${level} >= ${required}`);
    }
  });
});

describe("permissionLevel and inherited object keys", () => {
  it(
    "a server name that is also an Object.prototype key falls through to *",
    () => {
      assert.equal(permissionLevel({ "*": "user" }, "@a:constructor"), "user");
      assert.equal(permissionLevel({}, "@a:toString"), "none");
    },
  );
});
