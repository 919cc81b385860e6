/** Every bot message is built by src/matrix/content.ts, and pings nobody. */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { messageContent, noticeContent } from "../../src/matrix/content.js";

/** The sources, found from the compiled test's place (dist/test/unit) or the repository root. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith(".ts") ? [path] : [];
  });
}

describe("message content", () => {
  it('sets "m.mentions": {} so that "@room" or a display name in the body pings nobody', () => {
    const body = "New voicemail from @room, @alice:localhost and Alice";
    for (const content of [noticeContent({ body, html: body }), messageContent({ body, html: body }, "m.text", "outbox-1")]) {
      assert.deepEqual(content["m.mentions"], {});
      assert.equal(content.body, body);
    }
  });

  it("no message in src/ is sent without content.ts", () => {
    const root = new URL("../../../src/", import.meta.url).pathname;
    const files = sourceFiles(root);
    assert.ok(files.length > 20, `found the sources under ${root}`);
    const offenders: string[] = [];
    for (const file of files) {
      const lines = readFileSync(file, "utf8").split("\n");
      lines.forEach((line, i) => {
        // A message is sent by an intent's sendMessage or by RoomWriter.send("m.room.message", ...);
        // its content must come from messageContent/noticeContent (or a helper of content.ts).
        const sends = /\.sendMessage\(|\.send\("m\.room\.message"/.test(line);
        if (!sends || /^\s*(\/\/|\*)/.test(line) || /sendMessage\(roomId: string/.test(line)) return;
        if (!/(noticeContent|messageContent|notice)\(|, content, txnId\)/.test(lines.slice(i, i + 3).join(" "))) offenders.push(`${file}:${i + 1}: ${line.trim()}`);
      });
    }
    assert.deepEqual(offenders, []);
  });
});
