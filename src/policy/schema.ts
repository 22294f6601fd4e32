import { z } from "zod";

/** Limits applied to every call and to the server as a whole. */
export const LimitsSchema = z.object({
  /** Wall-clock time for one call when the request names none. */
  timeoutMs: z.number().int().positive().default(30_000),
  /** The most a request may ask for with `timeoutMs`. */
  maxTimeoutMs: z.number().int().positive().default(300_000),
  /** How long an interrupted call may take to stop before its worker is terminated. */
  graceMs: z.number().int().positive().default(1_000),
  /** Linear memory one interpreter may grow to, in MiB. */
  memoryMb: z.number().int().min(64).max(4096).default(512),
  /** Bytes of stdout kept per call; the rest is cut and marked as cut. */
  stdoutBytes: z.number().int().positive().default(4 * 1024 * 1024),
  /** Bytes of stderr kept per call. */
  stderrBytes: z.number().int().positive().default(1024 * 1024),
  /** Bytes of the JSON `result` kept per call. */
  resultBytes: z.number().int().positive().default(4 * 1024 * 1024),
  /** Largest accepted HTTP request body. */
  bodyBytes: z.number().int().positive().default(16 * 1024 * 1024),
  /** Largest file one upload may write into a session's working directory (413 past it). */
  fileBytes: z.number().int().positive().default(16 * 1024 * 1024),
  /**
   * Bytes of files a session's working directory may hold after an upload (what the code wrote
   * counts too). Files live in the interpreter's memory, so this is part of `memoryMb`.
   */
  filesBytes: z.number().int().positive().default(64 * 1024 * 1024),
  /** Sessions that may exist at once, the default session included. */
  sessions: z.number().int().positive().default(32),
  /** Seconds a session may stay unused before it is removed. */
  idleTtlSeconds: z.number().int().positive().default(1800),
  /** Calls that may wait behind the running one in a session before 429. */
  queuedCalls: z.number().int().positive().default(16),
  /** Pre-started interpreters kept ready for new sessions. */
  poolSize: z.number().int().min(0).max(64).default(2),
  /**
   * Resident memory the whole server may use, in MiB; past it the interpreter holding the most
   * memory is stopped, so that the kernel never kills the server and every session with it.
   */
  serverMemoryMb: z.number().int().min(256).default(8192),
  /** A persistent session is checkpointed once it has been quiet this long after a call. */
  checkpointDelayMs: z.number().int().min(0).default(250),
  /** While calls keep coming, a session is checkpointed at least this often. */
  checkpointMaxMs: z.number().int().positive().default(2000),
  /** A persistent session idle this long is checkpointed and its interpreter stopped. */
  hibernateAfterSeconds: z.number().int().positive().default(300),
  /** Sessions the store keeps (live and hibernated); past it the least recently used goes. */
  storedSessions: z.number().int().positive().default(1000),
  /**
   * MCP sessions open at once over HTTP (`/mcp`); past it an `initialize` is answered 503. Each
   * holds a little memory until it ends, even one that never calls a tool.
   */
  mcpSessions: z.number().int().positive().default(256),
  /**
   * How long Python waits for one host tool's result (a client's `tool-results`, or an upstream
   * MCP server's answer) before the call gets a `ToolError`; the call's own time limit still holds.
   */
  toolCallMs: z.number().int().positive().default(60_000),
  /** Host tool calls one execute request may make; past it each call raises `ToolError`. */
  toolCalls: z.number().int().min(0).default(100),
}).strict();

/** Which Python packages sessions may load, and from where. */
export const PackagesSchema = z.object({
  /** Distribution names that may be loaded; `"*"` allows every name not denied. */
  allow: z.array(z.string()).default(["*"]),
  /** Distribution names that are always refused. */
  deny: z.array(z.string()).default([]),
  /** Packages loaded into every interpreter before it is handed to a session. */
  preload: z.array(z.string()).default([]),
  /**
   * Where Pyodide-built wheels come from: an http(s) URL or a directory (relative to the working
   * directory) holding `pyodide-lock.json` and the wheels, as scripts/mirror_packages.ts builds
   * it. Unset: Pyodide's CDN for the pinned version, with the lock file Pyodide ships.
   */
  index: z.string().min(1).optional(),
  /**
   * A PyPI-style simple index (PEP 503/691) for pure-Python wheels Pyodide does not ship, such
   * as `https://pypi.org/simple/`; null or unset: none.
   */
  pypi: z.string().regex(/^https?:\/\/\S+$/, "must be the http(s) URL of a simple index").nullable()
    .default(null),
  /** Most entries one call's `packages` list may hold; beyond it the call is a 400. */
  maxPerCall: z.number().int().min(1).max(100_000).default(256),
  /**
   * MiB of downloaded wheels kept in the cache (on disk, and in memory while not in use): past
   * it the least recently used are evicted, except wheels a running install is using.
   */
  cacheMb: z.number().int().min(1).default(2048),
}).strict();

/** `${NAME}`: a server environment variable, read by the host; the sandbox never sees it. */
export const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** `name` or `name:port`, lower case: a host as `network.allow` names it. */
const HostSchema = z.string().regex(
  /^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)(:[0-9]{1,5})?$/,
  "must be a host name or address, optionally with :port (lower case, no scheme or path)",
);

/** A header name (an HTTP token) and a value without line breaks. */
const HeadersSchema = z.record(
  z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, "must be an HTTP header name"),
  z.string().regex(/^[^\r\n\0]*$/, "must not hold line breaks or NUL"),
);

/** One allowed host, with what the host adds to every request to it. */
export const AllowedHostSchema = z.object({
  host: HostSchema,
  /**
   * Added by the host to every request Python sends to this host, replacing any of the same name;
   * values may name server environment variables as `${NAME}`. Python never sees them.
   */
  headers: HeadersSchema.default({}),
  /** Requests one session may send to this host in any 60 seconds; unset: no cap. */
  perMinute: z.number().int().positive().optional(),
}).strict();

/** Network access for Python code: every request goes through the host, which checks it. */
export const NetworkSchema = z.object({
  /** Hosts Python code may reach, as `name`/`name:port` or `{host, headers, perMinute}`. */
  allow: z.array(z.union([HostSchema, AllowedHostSchema])).default([]).superRefine(
    (entries, ctx) => {
      const seen = new Set<string>();
      entries.forEach((e, i) => {
        const host = typeof e === "string" ? e : e.host;
        if (seen.has(host)) {
          ctx.addIssue({ code: "custom", path: [i], message: `'${host}' is named twice` });
        }
        seen.add(host);
      });
    },
  ),
}).strict();

/** An upstream MCP server whose tools become `moat_tools.<name>` in every session (code mode). */
export const McpServerSchema = z.object({
  /** The module's name: `from moat_tools import <name>`. */
  name: z.string().regex(
    /^[a-z_][a-z0-9_]*$/,
    "must be a lower-case Python identifier (letters, digits, _), the module's name",
  ),
  /** Its Streamable HTTP endpoint. */
  url: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }),
  /** Sent with every request to it; values may name server environment variables as `${NAME}`. */
  headers: z.record(z.string(), z.string()).default({}),
}).strict();

/** Tools that run outside the sandbox and that sandboxed code calls. */
export const ToolsSchema = z.object({
  mcp: z.array(McpServerSchema).default([]).superRefine((servers, ctx) => {
    const seen = new Set<string>();
    servers.forEach((s, i) => {
      if (seen.has(s.name)) {
        ctx.addIssue({ code: "custom", path: [i, "name"], message: `'${s.name}' is named twice` });
      }
      seen.add(s.name);
    });
  }),
}).strict();

/** A host directory mounted read-only into every session's file system. */
export const MountSchema = z.object({
  host: z.string().min(1),
  at: z.string().regex(/^\/[^\0]*$/, "must be an absolute path inside the sandbox"),
}).strict();

/** What the audit log records. */
export const AuditSchema = z.object({
  /** Log the code of each call (off: code may hold secrets). */
  logCode: z.boolean().default(false),
}).strict();

/** A security policy file, as found in `policies/`. */
export const PolicySchema = z.object({
  limits: LimitsSchema.default(LimitsSchema.parse({})),
  packages: PackagesSchema.default(PackagesSchema.parse({})),
  network: NetworkSchema.default(NetworkSchema.parse({})),
  mounts: z.array(MountSchema).default([]),
  audit: AuditSchema.default(AuditSchema.parse({})),
  tools: ToolsSchema.default(ToolsSchema.parse({})),
}).strict().superRefine((p, ctx) => {
  if (p.limits.timeoutMs > p.limits.maxTimeoutMs) {
    ctx.addIssue({
      code: "custom",
      path: ["limits", "timeoutMs"],
      message: `must not exceed limits.maxTimeoutMs (${p.limits.maxTimeoutMs})`,
    });
  }
  if (p.limits.fileBytes > p.limits.filesBytes) {
    ctx.addIssue({
      code: "custom",
      path: ["limits", "fileBytes"],
      message: `must not exceed limits.filesBytes (${p.limits.filesBytes})`,
    });
  }
  if (p.limits.filesBytes > p.limits.memoryMb * 1024 * 1024) {
    ctx.addIssue({
      code: "custom",
      path: ["limits", "filesBytes"],
      message: `must not exceed limits.memoryMb (${p.limits.memoryMb} MiB): ` +
        "files are held in the interpreter's memory",
    });
  }
});

export type Policy = z.infer<typeof PolicySchema>;
export type Limits = z.infer<typeof LimitsSchema>;
export type McpServer = z.infer<typeof McpServerSchema>;
export type AllowedHost = z.infer<typeof AllowedHostSchema>;

/** The hosts of `network.allow`, whichever form each entry takes. */
export function allowedHosts(policy: Pick<Policy, "network">): string[] {
  return policy.network.allow.map((e) => typeof e === "string" ? e : e.host);
}
