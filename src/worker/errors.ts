/**
 * Error shapes shared by the worker and the host. The worker may import nothing outside
 * `src/worker/`, so what both sides build lives here.
 */

/** The protocol's error object (PROTOCOL.md §1–2). */
export interface PythonErrorBody {
  name: "PythonError";
  message: string;
  pythonExceptionType: string;
  pythonExceptionValue: string;
  stack?: string;
}

/**
 * A `PythonError` for an outcome the runner did not build itself (a timeout, a lost
 * interpreter, an answer that could not be encoded); `message` ends with `Type: value`.
 */
export function pythonError(type: string, value: string, trace = ""): PythonErrorBody {
  return {
    name: "PythonError",
    message: `${trace ? `${trace}\n` : ""}${value ? `${type}: ${value}` : type}`,
    pythonExceptionType: type,
    pythonExceptionValue: value,
  };
}

/** The message of anything thrown, Error or not. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
