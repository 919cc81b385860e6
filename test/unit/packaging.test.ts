// What someone who installs or embeds the package gets.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  scripts: Record<string, string>;
};

describe("package.json", () => {
  it("does not hand a Node.js binary to those who embed the package", () => {
    // The `node` package puts a Node.js 22 binary first on the PATH of npm scripts: a tool for
    // this repository's own scripts on older systems, not something an embedder should receive.
    assert.equal(pkg.dependencies.node, undefined);
    assert.ok(pkg.devDependencies.node, "the repository's npm scripts still get Node.js 22 on a Node.js 20 system");
  });
  it("runs the dependency rules and the dead-code check with the tests", () => {
    assert.match(pkg.scripts.test ?? "", /npm run lint/);
    assert.match(pkg.scripts.lint ?? "", /depcruise/);
    assert.match(pkg.scripts.lint ?? "", /knip/);
  });
});
