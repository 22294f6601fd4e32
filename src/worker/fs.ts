/** The session's file system inside the worker. */
import type { PyodideAPI } from "pyodide";
import type { MountEntry } from "../protocol/messages.ts";

/** Copies the policy's mounts in, read-only (0444 files, 0555 directories). */
export function writeMounts(pyodide: PyodideAPI, entries: MountEntry[]): void {
  for (const entry of entries) {
    if (entry.bytes) {
      pyodide.FS.mkdirTree(entry.path.slice(0, entry.path.lastIndexOf("/")) || "/");
      pyodide.FS.writeFile(entry.path, entry.bytes);
    } else pyodide.FS.mkdirTree(entry.path);
  }
  for (const entry of entries.toReversed()) {
    pyodide.FS.chmod(entry.path, entry.bytes ? 0o444 : 0o555);
  }
}
