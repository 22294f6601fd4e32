/**
 * The session's files, as the files API sees them: regular files under the working directory,
 * which is also Python's cwd (so `open("data.csv")` finds an upload). The code may have made
 * anything there (symbolic links to `/etc`, devices, a directory replaced by a link), so every
 * path is resolved here one segment at a time without following links, and its real path must
 * lie inside the working directory. The host checked the name already (`src/files/path.ts`).
 */
import type { PyodideAPI } from "pyodide";
import type {
  FileInfo,
  FileListRequest,
  FilePathRequest,
  FilePutRequest,
  FileRefusal,
  Reply,
} from "../protocol/messages.ts";

/** Where session files live: the interpreter's home, and Python's working directory. */
export const WORK_DIR = "/home/pyodide";

interface Stat {
  mode: number;
  size: number;
  mtime: Date;
}

/** The part of Emscripten's FS used here. */
interface EmFS {
  lstat(path: string): Stat;
  readdir(path: string): string[];
  mkdir(path: string): void;
  mkdirTree(path: string): void;
  chdir(path: string): void;
  writeFile(path: string, data: Uint8Array, opts?: { canOwn?: boolean }): void;
  readFile(path: string): Uint8Array<ArrayBuffer>;
  unlink(path: string): void;
  lookupPath(path: string, opts?: { follow?: boolean }): { path: string; node: unknown };
  getPath(node: unknown): string;
  isFile(mode: number): boolean;
  isDir(mode: number): boolean;
  isLink(mode: number): boolean;
}

/** A request the files API must refuse, with the status the client gets. */
class Refused extends Error {
  constructor(readonly status: FileRefusal["status"], message: string) {
    super(message);
  }
}

const fsOf = (py: PyodideAPI) => py.FS as unknown as EmFS;

/** Makes the working directory and Python's cwd; run at every boot (the cwd is not in the snapshot). */
export function makeWorkDir(py: PyodideAPI): void {
  const fs = fsOf(py);
  fs.mkdirTree(WORK_DIR);
  fs.chdir(WORK_DIR);
}

/** Runs one file operation; a refusal becomes the reply's `refused`, other errors propagate. */
export function fileOp<T>(op: () => T): T | { refused: FileRefusal } {
  try {
    return op();
  } catch (err) {
    if (err instanceof Refused) return { refused: { status: err.status, message: err.message } };
    throw err;
  }
}

function statOrNull(fs: EmFS, path: string): Stat | null {
  try {
    return fs.lstat(path);
  } catch {
    return null;
  }
}

/** The type of a non-regular entry, for messages. */
function kindOf(fs: EmFS, st: Stat): string {
  if (fs.isLink(st.mode)) return "a symbolic link";
  if (fs.isDir(st.mode)) return "a directory";
  return "not a regular file";
}

/** The working directory, refused if the code replaced it (or a parent) with a link. */
function workDir(fs: EmFS): string {
  let at = "";
  for (const part of WORK_DIR.split("/").slice(1)) {
    at += `/${part}`;
    const st = statOrNull(fs, at);
    if (!st || !fs.isDir(st.mode)) {
      throw new Refused(409, "The working directory was removed or replaced by the code");
    }
  }
  return WORK_DIR;
}

/**
 * What to do with a missing parent directory: refuse (404), make it, or report the file as
 * absent (to check an upload before anything is made).
 */
type Parents = "require" | "create" | "probe";

/**
 * Resolves `path` inside the working directory without following any link: each parent must
 * be a real directory, and the real path of what is found must lie inside the working
 * directory. Returns the absolute path and the entry's stat (null: absent).
 */
function resolve(fs: EmFS, path: string, parents: Parents): { abs: string; st: Stat | null } {
  const segments = path.split("/");
  if (segments.some((s) => s === "" || s === "." || s === ".." || s.includes("\0"))) {
    throw new Refused(400, "Bad file path: it must name a file inside the working directory");
  }
  let at = workDir(fs);
  for (const [i, segment] of segments.entries()) {
    const next = `${at}/${segment}`;
    let st = statOrNull(fs, next);
    if (!st) refuseLookalike(fs, at, segment);
    const last = i === segments.length - 1;
    if (!last) {
      if (!st && parents === "probe") return { abs: `${at}/${segments.slice(i).join("/")}`, st };
      if (!st && parents === "create") {
        fs.mkdir(next);
        st = fs.lstat(next);
      }
      if (!st) throw new Refused(404, `No file '${path}' in the session's working directory`);
      if (!fs.isDir(st.mode)) {
        throw new Refused(400, `'${segments.slice(0, i + 1).join("/")}' is ${kindOf(fs, st)}`);
      }
    }
    at = next;
    if (last) {
      if (st && !fs.isLink(st.mode)) checkReal(fs, at);
      return { abs: at, st };
    }
  }
  throw new Refused(400, "Bad file path: it is empty");
}

/** The real path of `abs` (links followed) must be inside the working directory. */
function checkReal(fs: EmFS, abs: string): void {
  const real = fs.getPath(fs.lookupPath(abs, { follow: true }).node);
  if (!real.startsWith(`${WORK_DIR}/`)) {
    throw new Refused(400, "The file path resolves outside the working directory");
  }
}

/** A name the code made in another Unicode normalisation form is the same name to the API. */
function refuseLookalike(fs: EmFS, dir: string, segment: string): void {
  const twin = fs.readdir(dir).find((n) => n !== segment && n.normalize("NFC") === segment);
  if (twin !== undefined) {
    throw new Refused(
      409,
      `'${segment}' differs only by Unicode normalisation from an existing name in the working ` +
        "directory (made by the code); rename that one from Python",
    );
  }
}

function info(path: string, st: Stat): FileInfo {
  return { path, size: st.size, modifiedMs: st.mtime.getTime() };
}

function regularFile(fs: EmFS, path: string): { abs: string; st: Stat } {
  const { abs, st } = resolve(fs, path, "require");
  if (!st) throw new Refused(404, `No file '${path}' in the session's working directory`);
  if (!fs.isFile(st.mode)) throw new Refused(400, `'${path}' is ${kindOf(fs, st)}`);
  return { abs, st };
}

/** Every regular file under the working directory (links and other entries are skipped). */
function walk(
  fs: EmFS,
  max: number,
): { files: FileInfo[]; totalBytes: number; truncated: boolean } {
  const files: FileInfo[] = [];
  let totalBytes = 0;
  let truncated = false;
  const visit = (dir: string, prefix: string) => {
    for (const name of fs.readdir(dir).sort()) {
      if (name === "." || name === "..") continue;
      const st = fs.lstat(`${dir}/${name}`);
      if (fs.isDir(st.mode)) visit(`${dir}/${name}`, `${prefix}${name}/`);
      else if (fs.isFile(st.mode)) {
        totalBytes += st.size;
        if (files.length < max) files.push(info(prefix + name, st));
        else truncated = true;
      }
    }
  };
  visit(workDir(fs), "");
  return { files, totalBytes, truncated };
}

/**
 * Writes (or replaces) a file, within the per-file, per-session and memory limits; `filesUsed`
 * is what all the session's files hold now (`fs_quota.ts`), wherever they are.
 */
export function putFile(
  py: PyodideAPI,
  wasmBytes: number,
  filesUsed: number,
  msg: FilePutRequest,
): Reply<"files.put"> {
  const fs = fsOf(py);
  return fileOp(() => {
    const size = msg.bytes.length;
    if (size > msg.fileBytes) {
      throw new Refused(
        413,
        `The file is ${size} bytes; the policy's limits.fileBytes is ${msg.fileBytes}`,
      );
    }
    const { abs, st } = resolve(fs, msg.path, "probe");
    if (st && !fs.isFile(st.mode)) throw new Refused(400, `'${msg.path}' is ${kindOf(fs, st)}`);
    const total = filesUsed - (st?.size ?? 0) + size;
    if (total > msg.filesBytes) {
      throw new Refused(
        413,
        `The session's files would take ${total} bytes; the policy's limits.filesBytes is ` +
          `${msg.filesBytes} (delete some first)`,
      );
    }
    if (wasmBytes + total > msg.memoryBytes) {
      throw new Refused(
        413,
        `The interpreter's memory (${wasmBytes} bytes) and its files (${total} bytes) would ` +
          `exceed its limit of ${msg.memoryBytes} bytes (limits.memoryMb)`,
      );
    }
    resolve(fs, msg.path, "create"); // the parent directories, now that the file is accepted
    fs.writeFile(abs, msg.bytes, { canOwn: true });
    return { file: info(msg.path, fs.lstat(abs)), created: st === null };
  });
}

/** Reads a regular file. */
export function getFile(py: PyodideAPI, msg: FilePathRequest): Reply<"files.get"> {
  const fs = fsOf(py);
  return fileOp(() => {
    const { abs, st } = regularFile(fs, msg.path);
    try {
      return { file: info(msg.path, st), bytes: fs.readFile(abs) };
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      throw new Refused(413, `'${msg.path}' is too large to copy out within the memory limit`);
    }
  });
}

/** Lists the regular files, sorted by path. */
export function listFiles(py: PyodideAPI, msg: FileListRequest): Reply<"files.list"> {
  return fileOp(() => walk(fsOf(py), msg.max));
}

/** Deletes a regular file (a directory or link stays: the code made those). */
export function deleteFile(py: PyodideAPI, msg: FilePathRequest): Reply<"files.delete"> {
  const fs = fsOf(py);
  return fileOp(() => {
    const { abs, st } = regularFile(fs, msg.path);
    fs.unlink(abs);
    return { file: info(msg.path, st) };
  });
}
