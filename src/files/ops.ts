/**
 * The files API on the host: each operation is a worker request run in the session's queue
 * (after the calls already queued, never during one), and a refusal from the worker becomes
 * the HTTP error it names. Paths were checked by `path.ts`; the worker resolves them itself.
 */
import { MoatError, Unavailable } from "../errors.ts";
import type { Limits } from "../policy/schema.ts";
import type { FileInfo, FileRefusal } from "../protocol/messages.ts";
import type { Interpreter } from "../sandbox/interpreter.ts";
import type { SessionManager } from "../session/manager.ts";
import { messageOf } from "../worker/errors.ts";

/** Most files one listing returns (it says `truncated` past them). */
export const MAX_LISTED = 10_000;

/** One file as the API reports it. */
export interface FileEntry {
  path: string;
  size: number;
  /** ISO 8601. */
  modified: string;
}

/** What the worker refused, as the HTTP error the client gets. */
export class FileRefused extends MoatError {
  constructor(refusal: FileRefusal) {
    super(refusal.status, refusal.message);
    this.name =
      ({ 400: "BadRequest", 404: "FileNotFound", 409: "Conflict", 413: "PayloadTooLarge" })[
        refusal.status
      ];
  }
}

const entry = (f: FileInfo): FileEntry => ({
  path: f.path,
  size: f.size,
  modified: new Date(f.modifiedMs).toISOString(),
});

/** Files in sessions' working directories. */
export class SessionFiles {
  constructor(private readonly sessions: SessionManager) {}

  /** The limits of session `id`'s policy (a tenant's own, or the server's); 404 when unknown. */
  limits(id: string): Promise<Limits> {
    return this.sessions.limitsOf(id);
  }

  /** Writes `bytes` to `path` (parents made as needed); `created` is false when it replaced one. */
  async put(id: string, path: string, bytes: Uint8Array<ArrayBuffer>) {
    const { fileBytes, filesBytes, memoryMb } = await this.limits(id);
    const body = { path, bytes, fileBytes, filesBytes, memoryBytes: memoryMb * 1024 * 1024 };
    return await this.#run(
      id,
      async (i) => {
        const reply = unwrap(await i.file("files.put", body, [bytes.buffer]));
        return { file: entry(reply.file), created: reply.created };
      },
      true,
      bytes.byteLength,
    );
  }

  /** The file's bytes and details. */
  get(id: string, path: string) {
    return this.#run(id, async (i) => {
      const reply = unwrap(await i.file("files.get", { path }));
      return { file: entry(reply.file), bytes: reply.bytes };
    });
  }

  /** Every regular file of the working directory, sorted by path. */
  list(id: string) {
    return this.#run(id, async (i) => {
      const reply = unwrap(await i.file("files.list", { max: MAX_LISTED }));
      return {
        files: reply.files.map(entry),
        totalBytes: reply.totalBytes,
        limitBytes: (await this.limits(id)).filesBytes,
        truncated: reply.truncated,
      };
    });
  }

  /** Deletes one file. */
  delete(id: string, path: string) {
    return this.#run(
      id,
      async (i) => ({ deleted: unwrap(await i.file("files.delete", { path })).file.path }),
      true,
    );
  }

  /** `changes`: the task writes or removes a file, so the session is checkpointed after it. */
  async #run<T>(
    id: string,
    task: (interpreter: Interpreter) => Promise<T>,
    changes = false,
    bytes = 0,
  ): Promise<T> {
    return await this.sessions.withInterpreter(
      id,
      async (interpreter) => {
        try {
          return await task(interpreter);
        } catch (err) {
          if (err instanceof MoatError) throw err;
          // The worker was stopped meanwhile (the session deleted, the server short of memory).
          throw new Unavailable(
            `The session's interpreter stopped during the request: ${messageOf(err)}`,
          );
        }
      },
      changes,
      bytes,
    );
  }
}

function unwrap<T extends object>(reply: T | { refused: FileRefusal }): T {
  if ("refused" in reply) throw new FileRefused(reply.refused);
  return reply;
}
