/** The pages the docs tests read. */
const ROOT = new URL("../../", import.meta.url).pathname;

/** README.md, SECURITY.md, the client's README and every page in docs/. */
export async function docPages(): Promise<string[]> {
  const pages = ["README.md", "SECURITY.md", "clients/python/README.md"];
  for await (const entry of Deno.readDir(`${ROOT}docs`)) {
    if (entry.isFile && entry.name.endsWith(".md")) pages.push(`docs/${entry.name}`);
  }
  return pages.sort();
}
