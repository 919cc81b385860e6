/**
 * The file operations the NeDB store does itself, instead of NeDB's own: appends that are all or
 * nothing, fsync, and the recovery of a torn tail on open. The store takes them as one object so
 * that tests can make a write fail (a disk that is full, or broken) without a real one.
 */
import { closeSync, createReadStream, fsyncSync, openSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { open, stat, truncate } from "node:fs/promises";
import { basename } from "node:path";

export interface StoreFiles {
  /** Appends all of `data` or nothing: what a failed write left is cut off again before this rejects. */
  append(file: string, data: string, mode: number): Promise<void>;
  /** What was written to `file` is on the disk when this resolves. */
  sync(file: string): Promise<void>;
  /** The file's size in bytes (0 when it does not exist). */
  size(file: string): Promise<number>;
  /** Cuts the file back to `size` bytes. */
  truncate(file: string, size: number): Promise<void>;
  /** The file's text, to read a collection back after a failed write. */
  read(file: string): NodeJS.ReadableStream;
}

const missing = (err: unknown) => (err as NodeJS.ErrnoException).code === "ENOENT";

export const diskFiles: StoreFiles = {
  async append(file, data, mode) {
    const handle = await open(file, "a", mode);
    try {
      const before = (await handle.stat()).size;
      try {
        await handle.appendFile(data, "utf8");
      } catch (err) {
        // A disk that filled up mid-write leaves half a line: the next append would follow it.
        await handle.truncate(before);
        throw err;
      }
    } finally {
      await handle.close();
    }
  },
  async sync(file) {
    const handle = await open(file, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  async size(file) {
    try {
      return (await stat(file)).size;
    } catch (err) {
      if (missing(err)) return 0;
      throw err;
    }
  },
  truncate: (file, size) => truncate(file, size),
  read: (file) => createReadStream(file, { encoding: "utf8" }),
};

/** Parsable as NeDB reads a line: a JSON object (NeDB counts anything else as corrupt). */
function parsable(line: string): boolean {
  try {
    const doc: unknown = JSON.parse(line);
    return typeof doc === "object" && doc !== null;
  } catch {
    return false;
  }
}

export interface TornTail {
  lines: number;
  bytes: number;
  copy: string;
}

/**
 * Before NeDB reads `file`: a crash or power loss in the middle of an append leaves unparsable
 * line(s) at its end. They are cut off (a copy of them kept beside the file) and reported; an
 * unparsable line before a good one is not a torn write but damage, and nothing is dropped then.
 */
export function recoverTornTail(file: string, now = new Date()): TornTail | undefined {
  let content: Buffer;
  try {
    content = readFileSync(file);
  } catch (err) {
    if (missing(err)) return undefined;
    throw err;
  }
  // Lines as byte ranges, so that the cut falls exactly at the start of a line.
  const ranges: [number, number][] = [];
  for (let start = 0; start < content.length; ) {
    const newline = content.indexOf(0x0a, start);
    const end = newline === -1 ? content.length : newline;
    ranges.push([start, end]);
    start = end + 1;
  }
  const bad = ranges.map(([start, end]) => start !== end && !parsable(content.toString("utf8", start, end)));
  let firstTorn = bad.length;
  while (firstTorn > 0 && (bad[firstTorn - 1] || ranges[firstTorn - 1]![0] === ranges[firstTorn - 1]![1])) firstTorn--;
  const damaged = bad.slice(0, firstTorn).indexOf(true);
  if (damaged !== -1) {
    throw new Error(
      `${file}: line ${damaged + 1} is corrupt (not a JSON document) and is not the end of the file: refusing to open the store, so that nothing is lost; restore the file from a backup, or remove that line by hand`,
    );
  }
  const tornLines = bad.slice(firstTorn).filter(Boolean).length;
  if (!tornLines) return undefined;
  const cut = ranges[firstTorn]![0];
  const copy = `${file}.torn-${now.toISOString().replace(/[:.]/g, "-")}`;
  writeFileSync(copy, content.subarray(cut), { mode: 0o600, flag: "wx" });
  syncPath(copy);
  truncateSync(file, cut);
  syncPath(file);
  return { lines: tornLines, bytes: content.length - cut, copy: basename(copy) };
}

function syncPath(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * fsync for many writers at once: a request waits for the next round that starts after it, and
 * every request made while a round runs shares the one after (a group commit).
 */
export class GroupSync {
  private next?: { files: Set<string>; done: Promise<void> };
  private last: Promise<unknown> = Promise.resolve();

  constructor(private readonly files: StoreFiles) {}

  sync(paths: string[]): Promise<void> {
    if (!this.next) {
      const round: { files: Set<string>; done: Promise<void> } = { files: new Set(), done: Promise.resolve() };
      round.done = this.last.then(async () => {
        if (this.next === round) this.next = undefined;
        await Promise.all([...round.files].map((file) => this.files.sync(file)));
      });
      this.last = round.done.catch(() => undefined);
      this.next = round;
    }
    for (const path of paths) this.next.files.add(path);
    return this.next.done;
  }
}
