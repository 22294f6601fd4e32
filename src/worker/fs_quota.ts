/**
 * Every byte the session's files hold counts against `limits.filesBytes`, wherever the code
 * writes them (its working directory, /tmp, anywhere in the in-memory file system): file contents
 * live in JavaScript buffers outside the wasm memory cap, so without this a file could grow until
 * the server ran short. A write past the limit fails with ENOSPC (Python's `OSError`) and the
 * session lives. The total is published in `stats[1]` (KiB) so that the host charges it to the
 * session's memory, and the memory watchdog sees who holds it.
 */
import type { PyodideAPI } from "pyodide";

// deno-lint-ignore no-explicit-any
type Any = any;

/** ENOSPC ("No space left on device", what a full disk says), in WASI numbering as Emscripten uses. */
const ENOSPC = 51;

/** The quota of one interpreter's file system. */
export interface FileQuota {
  /** Bytes the session's files hold now (as counted). */
  readonly used: number;
  /** Runs Moat's own writes (package installs, mounts, a restore) without counting them. */
  exempt<T>(fn: () => T): T;
  /** Counts what the file system holds now outside `skip` (after a restore). */
  recount(skip: string[]): void;
}

/** Hooks MEMFS's write, truncate, unlink and rename so that every file byte is counted. */
export function quotaFiles(py: PyodideAPI, limitBytes: number, stats: Int32Array): FileQuota {
  const FS = (py as Any).FS;
  const MEMFS = FS.filesystems.MEMFS;
  let used = 0;
  let exempt = 0;
  const publish = () => Atomics.store(stats, 1, Math.ceil(used / 1024));
  const grow = (by: number) => {
    if (exempt === 0 && by > 0 && used + by > limitBytes) {
      throw new FS.ErrnoError(ENOSPC);
    }
  };
  const account = (delta: number) => {
    used = Math.max(0, used + delta);
    publish();
  };

  // Nodes hold MEMFS's ops tables, which copied the functions when they were made: the hooks go
  // into the tables (every file and directory shares them) and into MEMFS for tables made later.
  const table = MEMFS.ops_table; // made with the root directory, before any boot of ours
  const fileStream = [MEMFS.stream_ops, table.file.stream];
  const fileNode = [MEMFS.node_ops, table.file.node];
  const dirNode = [MEMFS.node_ops, table.dir.node];
  const { write } = MEMFS.stream_ops;
  const hookedWrite = function (
    this: unknown,
    stream: Any,
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number,
    canOwn?: boolean,
  ) {
    const node = stream.node;
    const before = node.usedBytes ?? 0;
    // Checked before any byte is allocated: `f.seek(2**33); f.write(b"x")` is ENOSPC, not a crash.
    grow(Math.max(before, position + length) - before);
    const written = write.call(this, stream, buffer, offset, length, position, canOwn);
    account((node.usedBytes ?? 0) - before);
    return written;
  };
  for (const ops of fileStream) ops.write = hookedWrite;

  const { setattr, unlink, rename } = MEMFS.node_ops;
  const hookedSetattr = function (this: unknown, node: Any, attr: Any) {
    const before = FS.isFile(node.mode) ? node.usedBytes ?? 0 : 0;
    if (attr.size !== undefined && FS.isFile(node.mode)) grow(attr.size - before);
    setattr.call(this, node, attr);
    if (FS.isFile(node.mode)) account((node.usedBytes ?? 0) - before);
  };
  for (const ops of fileNode) ops.setattr = hookedSetattr;
  const held = (node: Any) => node && FS.isFile(node.mode) ? node.usedBytes ?? 0 : 0;
  const hookedUnlink = function (this: unknown, parent: Any, name: string) {
    const gone = held(parent.contents?.[name]);
    unlink.call(this, parent, name);
    account(-gone);
  };
  const hookedRename = function (this: unknown, node: Any, dir: Any, name: string) {
    const replaced = held(dir.contents?.[name]);
    rename.call(this, node, dir, name);
    account(-replaced);
  };
  for (const ops of dirNode) {
    ops.unlink = hookedUnlink;
    ops.rename = hookedRename;
  }

  return {
    get used() {
      return used;
    },
    exempt<T>(fn: () => T): T {
      exempt++;
      try {
        const out = fn();
        if (out instanceof Promise) {
          exempt++; // held until the promise settles
          out.finally(() => exempt--);
        }
        return out;
      } finally {
        exempt--;
      }
    },
    recount(skip: string[]) {
      used = 0;
      const visit = (path: string) => {
        if (skip.some((s) => path === s || path.startsWith(`${s}/`))) return;
        const node = FS.lookupPath(path, { follow: false }).node;
        if (FS.isFile(node.mode)) used += node.usedBytes ?? 0;
        else if (FS.isDir(node.mode) && node.contents) {
          for (const name of Object.keys(node.contents)) {
            visit(path === "/" ? `/${name}` : `${path}/${name}`);
          }
        }
      };
      visit("/");
      publish();
    },
  };
}
