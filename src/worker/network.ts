/** `moat.fetch`: the only network Python gets, and only to the policy's `network.allow`. */

function hostAllowed(url: URL, allowed: string[]): boolean {
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  return allowed.some((entry) => entry === url.hostname || entry === `${url.hostname}:${port}`);
}

/**
 * `moat.fetch` seen from JavaScript: only http(s) to the policy's hosts, no redirects, and the
 * answer as JSON text, so Python receives no JavaScript object.
 */
export function fetchJson(
  allowed: string[],
  maxBytes: number,
): (url: string, optionsJson: string) => Promise<string> {
  const realFetch = fetch;
  return async (url, optionsJson) => {
    try {
      const target = new URL(url);
      if (!/^https?:$/.test(target.protocol) || !hostAllowed(target, allowed)) {
        return JSON.stringify({ error: `host '${target.host}' is not in network.allow` });
      }
      const options = JSON.parse(optionsJson);
      const body = options.body ? Uint8Array.fromBase64(options.body) : undefined;
      const res = await realFetch(target, {
        method: String(options.method),
        headers: options.headers,
        body,
        redirect: "manual",
      });
      const bytes = new Uint8Array(await res.arrayBuffer());
      if (bytes.length > maxBytes) {
        return JSON.stringify({ error: `response of ${bytes.length} bytes exceeds the limit` });
      }
      const headers = Object.fromEntries(res.headers);
      return JSON.stringify({ status: res.status, headers, body: bytes.toBase64() });
    } catch (err) {
      return JSON.stringify({ error: String((err as Error)?.message ?? err) });
    }
  };
}
