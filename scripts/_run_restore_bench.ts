import { restoreTimes } from "./bench_durable.ts";
const rows = await restoreTimes(Deno.args.includes("--quick"), (l) => console.error(`bench: ${l}`));
for (const r of rows) console.log(`${r.what}  ${r.value}  target ${r.target}: ${r.met ? "met" : "NOT met"}`);
