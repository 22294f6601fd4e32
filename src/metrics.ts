/**
 * The server's Prometheus metrics, kept with prom-client and served at `GET /metrics`.
 * Labels only ever hold values from fixed sets (an outcome, a limit, an event kind), never a
 * session id, code, a package name or a path, so the number of series stays bounded whatever
 * clients send.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { SecurityKind } from "./audit.ts";
import type { Answer } from "./session/answer.ts";
import type { LimitHit } from "./session/outcome.ts";
import { stuckWorkers } from "./sandbox/interpreter.ts";

const OUTCOMES = ["ok", "error"] as const;
const LIMITS: (LimitHit | "none")[] = [
  "none",
  "timeout",
  "memory",
  "stdout",
  "stderr",
  "result",
  "crash",
];
const SECURITY_KINDS: SecurityKind[] = ["denied", "limit", "worker-killed", "broad-permissions"];

/** What the scrape reads from the running server at that moment. */
export interface MetricsSources {
  /** Interpreters ready in the pool. */
  poolReady: () => number;
  /** Sessions held in memory (`live`) and checkpointed without an interpreter (`hibernated`). */
  sessions: () => { live: number; hibernated: number };
}

/** Every metric Moat exports, in one registry (no global default registry: tests make many). */
export class Metrics {
  readonly registry = new Registry();
  #sources?: MetricsSources;

  readonly calls = new Counter({
    name: "moat_calls_total",
    help: "Execute calls answered, by outcome (ok, or a Python error) and the limit hit, if any.",
    labelNames: ["outcome", "limit"] as const,
    registers: [this.registry],
  });
  readonly callDuration = new Histogram({
    name: "moat_call_duration_seconds",
    help: "Time from a call's start (packages included) to its answer.",
    labelNames: ["outcome"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });
  readonly sessions: Gauge<"state"> = new Gauge({
    name: "moat_sessions",
    help: "Sessions by state: live (an interpreter in memory) or hibernated (checkpoint only).",
    labelNames: ["state"] as const,
    registers: [this.registry],
    collect: () => {
      const counts = this.#sources?.sessions() ?? { live: 0, hibernated: 0 };
      this.sessions.set({ state: "live" }, counts.live);
      this.sessions.set({ state: "hibernated" }, counts.hibernated);
    },
  });
  readonly poolReady: Gauge = new Gauge({
    name: "moat_pool_ready",
    help: "Pre-started interpreters ready to hand to a new session.",
    registers: [this.registry],
    collect: () => this.poolReady.set(this.#sources?.poolReady() ?? 0),
  });
  readonly boots = new Counter({
    name: "moat_interpreter_boots_total",
    help: "Interpreters started (from the snapshot), by outcome.",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
  });
  readonly bootDuration = new Histogram({
    name: "moat_interpreter_boot_duration_seconds",
    help: "Time to boot one interpreter, as the worker measured it.",
    buckets: [0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1, 1.5, 2, 3, 5, 10],
    registers: [this.registry],
  });
  readonly packageLoads = new Counter({
    name: "moat_package_loads_total",
    help: "Packages installed into an interpreter for a call (dependencies included).",
    registers: [this.registry],
  });
  readonly packageFailures = new Counter({
    name: "moat_package_load_failures_total",
    help: "Packages a call asked for that were not loaded (refused, not found, or failed).",
    registers: [this.registry],
  });
  readonly checkpoints = new Counter({
    name: "moat_checkpoints_total",
    help: "Session checkpoints written, by outcome.",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
  });
  readonly checkpointBytes = new Histogram({
    name: "moat_checkpoint_bytes",
    help: "Size of each session checkpoint written.",
    buckets: [2 ** 16, 2 ** 18, 2 ** 20, 2 ** 22, 2 ** 24, 2 ** 26, 2 ** 28, 2 ** 30],
    registers: [this.registry],
  });
  readonly checkpointDuration = new Histogram({
    name: "moat_checkpoint_duration_seconds",
    help: "Time to write one session checkpoint.",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly checkpointHold = new Histogram({
    name: "moat_checkpoint_hold_seconds",
    help: "Time a checkpoint holds its session (taking the state; the store write runs after).",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly security = new Counter({
    name: "moat_security_events_total",
    help: "Security events, by kind (as in the audit log's security lines).",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });
  readonly forwards = new Counter({
    name: "moat_forwards_total",
    help: "Requests for a session another instance runs: passed to it (forwarded), taken " +
      "over from a dead instance (takeover), or answered with an error because the hop failed.",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
  });
  readonly toolCalls = new Counter({
    name: "moat_tool_calls_total",
    help: "Host tool calls from sandboxed code, by who answered (client, upstream) and how " +
      "they ended (ok, error, timeout, gone, too-big, refused).",
    labelNames: ["source", "outcome"] as const,
    registers: [this.registry],
  });
  readonly outbound = new Counter({
    name: "moat_outbound_requests_total",
    help: "HTTP requests sandboxed code sent through the host, by network.allow entry (other: " +
      "a host not allowed) and how they ended (ok, refused, rate-limited, timeout, too-big, " +
      "failed).",
    labelNames: ["host", "outcome"] as const,
    registers: [this.registry],
  });
  readonly tenantCalls = new Counter({
    name: "moat_tenant_calls_total",
    help: "Calls answered in the sessions of each tenant of MOAT_TENANTS, by outcome (ok, error).",
    labelNames: ["tenant", "outcome"] as const,
    registers: [this.registry],
  });
  readonly instanceInfo = new Gauge({
    name: "moat_instance_info",
    help:
      "Always 1; its labels name this instance (MOAT_INSTANCE_ID) and its mode (deploy, local).",
    labelNames: ["instance", "mode"] as const,
    registers: [this.registry],
  });
  readonly stuckWorkers: Gauge = new Gauge({
    name: "moat_workers_stuck",
    help: "Stopped interpreters whose thread still runs (Python inside one C function that " +
      "never checks for signals); each keeps a core and its memory until the server restarts.",
    registers: [this.registry],
    collect: () => this.stuckWorkers.set(stuckWorkers()),
  });
  readonly residentMemory: Gauge = new Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory of the server process, its interpreters included.",
    registers: [this.registry],
    collect: () => this.residentMemory.set(Deno.memoryUsage().rss),
  });

  /** Every allowed host's series exist from the start, at 0. */
  outboundHosts(hosts: string[]): void {
    for (const host of [...hosts, "other"]) {
      for (const outcome of ["ok", "refused", "rate-limited"]) {
        this.outbound.inc({ host, outcome }, 0);
      }
    }
  }

  constructor() {
    // Every series exists from the start at 0, so rates and alerts work before the first event.
    for (const outcome of OUTCOMES) {
      this.callDuration.zero({ outcome });
      for (const limit of LIMITS) this.calls.inc({ outcome, limit }, 0);
    }
    for (const outcome of ["ok", "failed"]) {
      this.boots.inc({ outcome }, 0);
      this.checkpoints.inc({ outcome }, 0);
    }
    for (const kind of SECURITY_KINDS) this.security.inc({ kind }, 0);
  }

  /**
   * Names this instance, in one info series (a label on every series would multiply them by
   * the number of instances a scraper sees; one series per process keeps that bounded).
   */
  instance(id: string, mode: "deploy" | "local"): void {
    this.instanceInfo.reset();
    this.instanceInfo.set({ instance: id, mode }, 1);
  }

  /** Tells the gauges where to read the server's state at scrape time. */
  observe(sources: MetricsSources): void {
    this.#sources = sources;
  }

  /** One answered call: its outcome, limit, duration and the packages it loaded or not. */
  call(answer: Answer, tenant?: string): void {
    this.calls.inc({ outcome: answer.outcome, limit: answer.limit ?? "none" });
    if (tenant) this.tenantCalls.inc({ tenant, outcome: answer.outcome });
    this.callDuration.observe({ outcome: answer.outcome }, answer.durationMs / 1000);
    if (answer.packages) {
      this.packageLoads.inc(answer.packages.loaded.length);
      this.packageFailures.inc(answer.packages.failed.length);
    }
  }

  /** One interpreter boot; `ms` is its boot time when it succeeded. */
  boot(ms: number | undefined): void {
    this.boots.inc({ outcome: ms === undefined ? "failed" : "ok" });
    if (ms !== undefined) this.bootDuration.observe(ms / 1000);
  }

  /** One checkpoint (durable sessions call this when they land). */
  /** How long a checkpoint kept its session's next call waiting. */
  checkpointHeld(ms: number): void {
    this.checkpointHold.observe(ms / 1000);
  }

  checkpoint(bytes: number, ms: number, ok: boolean): void {
    this.checkpoints.inc({ outcome: ok ? "ok" : "failed" });
    if (ok) {
      this.checkpointBytes.observe(bytes);
      this.checkpointDuration.observe(ms / 1000);
    }
  }

  /** One security event. */
  securityEvent(kind: SecurityKind): void {
    this.security.inc({ kind });
  }

  /** The Prometheus text exposition of every metric. */
  async text(): Promise<string> {
    return await this.registry.metrics();
  }

  /** The content type of `text()`. */
  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * The server's metrics. One per process, like the audit log that feeds it: the audit functions
 * see every call and every security event, wherever they come from.
 */
export const metrics = new Metrics();
