/**
 * Opens a docs page in Debian's headless Chromium with playwright-core and prints, as one JSON
 * line, the operations it lists, every URL it requested, and what failed. A separate process
 * because playwright needs `sys` access and reads /proc/sys (which Deno allows only with -A),
 * more than the test runner holds; this is the test's browser driver, never part of Moat:
 *
 *   deno run -A test/helpers/docs_browser.ts http://127.0.0.1:8000/docs test-artifacts/docs.png
 */
import { chromium } from "playwright-core";

/** Where Debian's `chromium` package puts the browser. */
export const CHROMIUM = "/usr/bin/chromium";

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Loads `url`, waits for Swagger UI to list the operations, saves a full-page screenshot. */
export async function visitDocs(url: string, screenshot: string) {
  const profile = await Deno.makeTempDir({ prefix: "moat-chromium-" });
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 900 },
  });
  try {
    const page = browser.pages()[0] ?? await browser.newPage();
    const requests: string[] = [];
    const failures: string[] = [];
    page.on("request", (r) => requests.push(r.url()));
    page.on("requestfailed", (r) => failures.push(`${r.url()}: ${r.failure()?.errorText}`));
    page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error") failures.push(`console: ${m.text()}`);
    });
    const status = (await page.goto(url))?.status();
    await page.waitForSelector(".opblock-summary-path", { timeout: 60_000 });
    const shown = await page.$$eval(".opblock-summary", (blocks) =>
      blocks.map((b) => {
        const method = b.querySelector(".opblock-summary-method")?.textContent?.trim();
        const path = b.querySelector(".opblock-summary-path")?.getAttribute("data-path");
        return `${method} ${path}`;
      }));
    const title = await page.title();
    // Open `POST /` so that the screenshot (and the caller) see its request example.
    await page.locator(".opblock-post .opblock-summary").first().click();
    const body = page.locator(".opblock-post .body-param__example, .opblock-post .example").first();
    await body.waitFor({ timeout: 30_000 });
    const example = await body.textContent();
    await page.screenshot({ path: screenshot, fullPage: true });
    return { status, title, shown, example, requests, failures };
  } finally {
    await browser.close();
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const [url, screenshot] = Deno.args;
  console.log(JSON.stringify(await visitDocs(url, screenshot)));
}
