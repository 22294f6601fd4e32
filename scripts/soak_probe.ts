/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
/**
 * The soak's `/health` prober (scripts/soak.ts), in a worker of its own: the soak's own event
 * loop is busy with its agents and their answers, and its delays are not the server's latency.
 * Posts each probe's time in ms and when it started (epoch ms), then "done".
 */
self.onmessage = async (e: MessageEvent<{ url: string; until: number }>) => {
  const { url, until } = e.data;
  while (Date.now() < until) {
    const at = Date.now();
    const t = performance.now();
    const res = await fetch(`${url}/health`);
    await res.body?.cancel();
    self.postMessage({ ms: performance.now() - t, at });
    await new Promise((r) => setTimeout(r, 100));
  }
  self.postMessage("done");
};
