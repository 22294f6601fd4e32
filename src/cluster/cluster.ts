/**
 * Several instances on one session store: each writes a heartbeat (`instances.ts`), accepts
 * requests other instances forward to it (`hop.ts`), and passes on those for sessions another
 * instance runs (`forward.ts`). Started by `main.ts` whenever the store is not `memory`.
 */
import type { MiddlewareHandler } from "hono";
import { metrics } from "../metrics.ts";
import type { Store } from "../store/store.ts";
import { forwardToOwner } from "./forward.ts";
import { HopVerifier } from "./hop.ts";
import { Instances } from "./instances.ts";
import { peerKeys } from "./keys.ts";

/** What `startCluster` works with. */
export interface ClusterOptions {
  store: Store;
  /** The store's secret (`MOAT_STORE_KEY`, or the one generated on this machine). */
  secret: string;
  instanceId: string;
  /** `MOAT_ADVERTISE_URL`. */
  advertiseUrl?: string;
  /** Whether this instance holds a session's lease (`Checkpoints.holds`). */
  holds: (sessionId: string) => boolean;
  /** Called when this instance's heartbeat lapsed (`Checkpoints.forgetLeases`). */
  onLapse: () => void;
  leaseTtlMs: number;
  /** A description of the store for the start-up warning (`describeStore`). */
  storeLine: string;
  log: (line: string) => void;
}

/** This instance's part in a deployment of several. */
export interface Cluster {
  instances: Instances;
  hops: HopVerifier;
  forward: MiddlewareHandler;
  stop(): Promise<void>;
}

/** Writes the first heartbeat, says who else shares the store, and builds the middleware. */
export async function startCluster(o: ClusterOptions): Promise<Cluster> {
  const keys = await peerKeys(o.secret);
  const instances = new Instances({
    store: o.store,
    keys,
    instanceId: o.instanceId,
    url: o.advertiseUrl,
    onLapse: o.onLapse,
    log: o.log,
  });
  await instances.start();
  await warnOthers(o, instances).catch(() => {});
  return {
    instances,
    hops: new HopVerifier(keys.hops, o.instanceId),
    forward: forwardToOwner({
      store: o.store,
      instances,
      holds: o.holds,
      key: keys.hops,
      leaseTtlMs: o.leaseTtlMs,
      count: (outcome) => metrics.forwards.inc({ outcome }),
      log: o.log,
    }),
    stop: () => instances.stop(),
  };
}

/**
 * Says at start-up which other instances share the store. Two servers in one checkout share its
 * KV file, often by accident (a second one started with another policy): say so plainly.
 */
async function warnOthers(o: ClusterOptions, instances: Instances): Promise<void> {
  const others = await instances.others();
  if (!others.length) return;
  const names = others.map((r) => `${r.id} (pid ${r.pid}${r.url ? `, ${r.url}` : ""})`);
  const all = others.every((r) => r.url) && o.advertiseUrl;
  if (o.store.kind === "kv" && !all) {
    o.log(
      `warning: ${names.join(", ")} already uses ${o.storeLine}: the servers share its sessions, ` +
        "and a session one of them runs waits for it on the other. For a server of its own, " +
        "start this one with MOAT_STORE=memory (no durable sessions) or MOAT_STORE=kv:PATH (a " +
        "file of its own); to serve each other's sessions, set MOAT_ADVERTISE_URL on both",
    );
    return;
  }
  o.log(
    `${others.length} other instance${others.length > 1 ? "s" : ""} on this store: ` +
      `${names.join(", ")}; ${
        all
          ? "calls for their sessions are forwarded to them"
          : "without MOAT_ADVERTISE_URL on each, a session moves to the instance its call reaches"
      }`,
  );
}
