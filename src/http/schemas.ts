/**
 * The shapes of Moat's JSON responses, for the OpenAPI document (request bodies are validated
 * with the schemas beside their handlers: `ExecBodySchema`, the session API's create body).
 * test/openapi_test.ts parses real answers with these, so the document says what is sent.
 */
import { z } from "zod";

/** The `{id}` of a named session. */
export const SessionIdParams = z.object({
  id: z.string().meta({
    description: "A session id from `POST /v1/sessions` (or `default`)",
    examples: ["default"],
  }),
});

/** Every HTTP-level failure (PROTOCOL.md §3). */
export const ErrorSchema = z.object({
  error: z.object({ name: z.string(), message: z.string() }),
}).meta({ id: "Error" });

const PythonErrorSchema = z.object({
  name: z.literal("PythonError"),
  message: z.string().meta({ description: "The user's traceback, ending `Type: message`." }),
  pythonExceptionType: z.string(),
  pythonExceptionValue: z.string(),
  stack: z.string().optional().meta({ description: "What was printed before the error." }),
});

const PackageSchema = z.object({ name: z.string(), version: z.string() });
const PackageNoteSchema = z.object({ name: z.string(), reason: z.string() });

/** The answer of an execute call: every Python-level outcome is a 200 with this body. */
export const AnswerSchema = z.object({
  result: z.unknown().meta({
    description: "The last expression's value as JSON, an image object, its repr(), or null.",
  }),
  stdout: z.string(),
  stderr: z.string(),
  error: PythonErrorSchema.nullable(),
  packages: z.object({
    loaded: z.array(PackageSchema),
    skipped: z.array(PackageNoteSchema),
    failed: z.array(PackageNoteSchema),
  }),
  durationMs: z.number(),
  resources: z.object({
    durationMs: z.number(),
    memoryBytes: z.number().int(),
    limit: z.enum(["timeout", "memory", "stdout", "stderr", "result", "crash"]).nullable(),
    cut: z.object({ stdout: z.boolean(), stderr: z.boolean(), result: z.boolean() }),
    network: z.object({
      requests: z.number().int(),
      bytesIn: z.number().int(),
      refused: z.number().int(),
      rateLimited: z.array(z.string()),
    }).optional().meta({
      description: "The call's outbound HTTP requests (present when it sent any): how many, " +
        "response bytes, how many the policy refused, and the hosts whose perMinute it reached.",
    }),
  }),
  restored: z.boolean().optional().meta({
    description: "True when this call restored the session from its checkpoint first.",
  }),
  restoreMs: z.number().optional(),
  lost: z.array(z.object({ what: z.string(), why: z.string() })).optional().meta({
    description: "What a restore could not bring back.",
  }),
  checkpoint: z.object({
    ok: z.boolean(),
    reason: z.string().optional(),
    bytes: z.number().int().optional(),
    seq: z.number().int().optional(),
    ms: z.number().optional(),
  }).optional().meta({
    description: 'A `"checkpoint": "sync"` call\'s checkpoint once stored (`ok: true`, its ' +
      "size, number and time), or a checkpoint that failed (`ok: false` and why; said in every " +
      "answer until one is stored).",
  }),
}).meta({
  id: "Answer",
  examples: [{
    result: 42,
    stdout: "hi\n",
    stderr: "",
    error: null,
    packages: { loaded: [], skipped: [], failed: [] },
    durationMs: 0.6,
    resources: {
      durationMs: 0.6,
      memoryBytes: 20_250_624,
      limit: null,
      cut: { stdout: false, stderr: false, result: false },
    },
  }],
});

/** What `GET /v1/sessions/{id}` reports (also the smolagents health check's body). */
export const SessionInfoSchema = z.object({
  id: z.string(),
  mode: z.enum(["persistent", "ephemeral"]),
  created: z.string().meta({ format: "date-time" }),
  lastUsed: z.string().meta({ format: "date-time" }),
  expires: z.string().nullable().meta({
    description: "When the session is removed if unused; null for the default session.",
  }),
  calls: z.number().int(),
  busy: z.boolean(),
  queued: z.number().int(),
  memoryBytes: z.number().int(),
  packages: z.array(z.string()),
  instance: z.string().meta({ description: "`MOAT_INSTANCE_ID` of the instance holding it." }),
  tenant: z.string().optional().meta({
    description: "The tenant (`MOAT_TENANTS`) that owns it; absent for the operator's sessions.",
  }),
}).meta({ id: "SessionInfo" });

/** `GET /health/ready`: whether this instance can serve a new session now, and if not, why. */
export const ReadySchema = z.object({
  status: z.enum(["ready", "not-ready"]),
  /** One sentence per thing that is not ready; empty when ready. */
  notReady: z.array(z.string()),
  poolReady: z.number().int(),
  store: z.enum(["ok", "unreachable"]),
  instance: z.string(),
}).meta({ id: "Ready" });

/** `GET /health`. */
export const HealthSchema = z.looseObject({
  status: z.enum(["ok", "stopping"]),
  poolReady: z.number().int().optional(),
  sessions: z.number().int().optional(),
  /** Stopped interpreters whose thread still runs (see SECURITY.md); absent when none. */
  stuckWorkers: z.number().int().optional(),
}).meta({ id: "Health" });
