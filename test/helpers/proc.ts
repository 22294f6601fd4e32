/**
 * What another process uses, for tests and scripts that watch the server. Read with `ps` and
 * `cat`: Deno reads /proc only with --allow-all.
 */

/** Resident memory of the process, in bytes. */
export async function rssBytes(pid: number): Promise<number> {
  const out = await new Deno.Command("ps", { args: ["-o", "rss=", "-p", String(pid)] }).output();
  return Number(new TextDecoder().decode(out.stdout).trim()) * 1024;
}

/** CPU seconds (user + system, all threads) the process has used so far. */
export async function cpuSeconds(pid: number): Promise<number> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/stat`] }).output();
  const fields = new TextDecoder().decode(out.stdout).split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks
}
