/**
 * The store cannot be reached or did not answer in time (Redis down, the KV file unwritable).
 * Callers keep live sessions running and report the failed checkpoint. In a file of its own so
 * that the store's worker (`thread_worker.ts`) imports no more than the backend it runs.
 */
export class StoreUnavailable extends Error {
  override name = "StoreUnavailable";
}
