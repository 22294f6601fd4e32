/**
 * The session's files in a checkpoint. Pyodide's in-memory file system keeps file contents in
 * JavaScript, outside the wasm memory a snapshot holds, so a checkpoint carries every file,
 * directory and symlink that differs from a fresh boot, and the descriptors Python holds open.
 * Runs inside the worker only.
 */
import type { FileRecord, Lost, StreamRecord } from "./format.ts";

// deno-lint-ignore no-explicit-any
type FS = any;

/** Trees a checkpoint never carries: devices and process files, remade by every boot. */
const SKIPPED = ["/dev", "/proc"];
const O_CREAT = 64;
const O_EXCL = 128;
const O_TRUNC = 512;

/** How a node looked on a fresh boot, to tell a session's changes from Pyodide's own files. */
interface Mark {
  node: unknown;
  mtime: number;
  size: number;
  contents: unknown;
}

/** The file system of a fresh boot: path → mark. */
export type FreshTree = Map<string, Mark>;

function children(fs: FS, dir: string): string[] {
  return (fs.readdir(dir) as string[]).filter((n) => n !== "." && n !== "..");
}

function join(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

function walk(fs: FS, visit: (path: string, node: FS) => void): void {
  const pending = ["/"];
  while (pending.length) {
    const dir = pending.pop()!;
    for (const name of children(fs, dir)) {
      const path = join(dir, name);
      if (SKIPPED.includes(path)) continue;
      const node = fs.lookupPath(path, { follow: false }).node;
      visit(path, node);
      if (fs.isDir(node.mode) && !fs.isMountpoint?.(node)) pending.push(path);
    }
  }
}

function mark(node: FS): Mark {
  return {
    node,
    mtime: Number(node.mtime ?? 0),
    size: Number(node.usedBytes ?? 0),
    contents: node.contents,
  };
}

/** Records the tree as a fresh boot leaves it (before any checkpoint's files are applied). */
export function freshTree(fs: FS): FreshTree {
  const tree: FreshTree = new Map();
  walk(fs, (path, node) => tree.set(path, mark(node)));
  return tree;
}

function changed(fresh: Mark | undefined, node: FS): boolean {
  if (!fresh || fresh.node !== node) return true;
  const now = mark(node);
  return now.mtime !== fresh.mtime || now.size !== fresh.size || now.contents !== fresh.contents;
}

/**
 * What differs from the fresh tree: new or changed entries (file bytes become sections numbered
 * from `firstSection`) and removed paths. Paths under `skip` (the policy's read-only mounts,
 * which every boot copies in again) are left out.
 */
export function captureFiles(fs: FS, fresh: FreshTree, skip: string[], firstSection: number) {
  const files: FileRecord[] = [];
  const blobs: Uint8Array[] = [];
  const seen = new Set<string>();
  const skipped = (path: string) => skip.some((s) => path === s || path.startsWith(`${s}/`));
  walk(fs, (path, node) => {
    seen.add(path);
    if (skipped(path) || !changed(fresh.get(path), node)) return;
    const base = { path, mode: node.mode & 0o7777, mtime: Number(node.mtime ?? 0) };
    if (fs.isDir(node.mode)) files.push({ ...base, kind: "dir" });
    else if (fs.isLink(node.mode)) files.push({ ...base, kind: "link", target: fs.readlink(path) });
    else if (fs.isFile(node.mode)) {
      files.push({ ...base, kind: "file", section: firstSection + blobs.length });
      blobs.push(fs.readFile(path, { encoding: "binary" }));
    }
  });
  const removed = [...fresh.keys()].filter((p) => !seen.has(p) && !skipped(p));
  return { files, removed, blobs };
}

function ignoreExists(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    if ((err as { errno?: number })?.errno !== 20) throw err; // EEXIST
  }
}

/** Rebuilds a checkpoint's files on a fresh tree; permissions are set last so writes succeed. */
export function applyFiles(
  fs: FS,
  files: FileRecord[],
  removed: string[],
  sections: Uint8Array[],
): void {
  for (const path of removed.toSorted((a, b) => b.length - a.length)) {
    try {
      const node = fs.lookupPath(path, { follow: false }).node;
      if (fs.isDir(node.mode)) fs.rmdir(path);
      else fs.unlink(path);
    } catch {
      // already gone
    }
  }
  const byDepth = files.toSorted((a, b) => a.path.split("/").length - b.path.split("/").length);
  for (const f of byDepth) {
    const parent = f.path.slice(0, f.path.lastIndexOf("/")) || "/";
    ignoreExists(() => fs.mkdirTree(parent));
    if (f.kind === "dir") ignoreExists(() => fs.mkdir(f.path, 0o777));
    else if (f.kind === "link") {
      try {
        fs.unlink(f.path);
      } catch {
        // nothing there yet
      }
      fs.symlink(f.target, f.path);
    } else {
      try {
        fs.chmod(f.path, 0o666);
      } catch {
        // a new file
      }
      fs.writeFile(f.path, sections[f.section!], { canOwn: false });
    }
  }
  for (const f of byDepth.toReversed()) {
    if (f.kind === "link") continue;
    fs.chmod(f.path, f.mode);
    fs.utime(f.path, f.mtime, f.mtime);
  }
}

/** Descriptors past stdin/stdout/stderr; the ones that cannot be reopened are named in `lost`. */
export function captureStreams(fs: FS, lost: Lost[]): StreamRecord[] {
  const records: StreamRecord[] = [];
  (fs.streams as (FS | null)[]).forEach((stream, fd) => {
    if (!stream || fd <= 2) return;
    const node = stream.node;
    let path: string | undefined;
    try {
      path = fs.getPath(node);
      if (fs.lookupPath(path, { follow: false }).node !== node) path = undefined;
    } catch {
      path = undefined;
    }
    if (!path || !(fs.isFile(node.mode) || fs.isChrdev(node.mode))) {
      lost.push({
        what: `open file descriptor ${fd}${path ? ` (${path})` : ""}`,
        why: "it is not a file the checkpoint holds (a socket, a pipe, or a file since removed)",
      });
      return;
    }
    records.push({ fd, path, flags: stream.flags, position: Number(stream.position ?? 0) });
  });
  return records;
}

/** Reopens descriptors at their numbers and positions; a descriptor that cannot be is lost. */
export function applyStreams(fs: FS, streams: StreamRecord[], lost: Lost[]): void {
  for (const s of streams) {
    try {
      if (fs.streams[s.fd]) throw new Error(`descriptor ${s.fd} is taken at boot`);
      const opened = fs.open(s.path, s.flags & ~(O_CREAT | O_EXCL | O_TRUNC));
      const moved = opened.fd === s.fd ? opened : fs.dupStream(opened, s.fd);
      if (moved !== opened) fs.close(opened);
      moved.position = s.position;
    } catch (err) {
      lost.push({
        what: `open file descriptor ${s.fd} (${s.path})`,
        why: `it could not be reopened: ${(err as Error).message}`,
      });
    }
  }
}
