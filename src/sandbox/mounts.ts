import type { Policy } from "../policy/schema.ts";
import { absolute } from "../permissions/flags.ts";
import type { MountEntry } from "../protocol/messages.ts";

/** A mount that cannot be used; the message names the directory. */
export class MountError extends Error {
  override name = "MountError";
}

/**
 * Reads the policy's mounts once at start-up; every interpreter gets a copy at boot, so no
 * worker ever holds a read permission and nothing written in the sandbox reaches the host.
 * Symbolic links are skipped: a link must not carry a mount outside its directory.
 */
export async function readMounts(
  mounts: Policy["mounts"],
  maxBytes: number,
): Promise<MountEntry[]> {
  const entries: MountEntry[] = [];
  let total = 0;
  const walk = async (dir: string, at: string) => {
    entries.push({ path: at });
    for await (const item of Deno.readDir(dir)) {
      const from = `${dir}/${item.name}`;
      const to = `${at === "/" ? "" : at}/${item.name}`;
      if (item.isDirectory) await walk(from, to);
      else if (item.isFile) {
        const bytes = await Deno.readFile(from);
        total += bytes.length;
        if (total > maxBytes) {
          throw new MountError(`Mounts hold more than ${maxBytes} bytes; mount less`);
        }
        entries.push({ path: to, bytes });
      }
    }
  };
  for (const mount of mounts) {
    const host = absolute(mount.host);
    try {
      await walk(host, mount.at.replace(/(.)\/+$/, "$1"));
    } catch (err) {
      if (err instanceof MountError) throw err;
      throw new MountError(`Mount '${mount.host}' cannot be read: ${(err as Error).message}`);
    }
  }
  return entries;
}
