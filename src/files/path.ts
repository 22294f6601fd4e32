/**
 * The names the files API accepts, checked before anything reaches a worker: a relative path
 * of plain segments inside the session's working directory. The worker checks again and
 * resolves the name itself (see `src/worker/files.ts`), so a rule missed here is not an escape.
 */
import { BadRequest } from "../errors.ts";

/** Longest path, in UTF-8 bytes (Linux's PATH_MAX is 4096; names are for people). */
export const MAX_PATH_BYTES = 1024;
/** Longest segment, in UTF-8 bytes (NAME_MAX). */
export const MAX_SEGMENT_BYTES = 255;

const encoder = new TextEncoder();
// Control characters (a newline would forge listing lines and headers), and `\`, which a
// Windows client means as a separator.
// deno-lint-ignore no-control-regex
const FORBIDDEN = /[\u0000-\u001f\u007f\\]/;

/**
 * The request target's path exactly as the client sent it, still percent-encoded: `new URL()`
 * would resolve `.` and `..` (and read `\` as `/`), so a refused name would reach the check
 * already rewritten into an accepted one.
 */
export function rawPathname(url: string): string {
  const start = url.indexOf("/", url.indexOf("://") + 3);
  if (start === -1) return "/";
  const end = url.slice(start).search(/[?#]/);
  return end === -1 ? url.slice(start) : url.slice(start, start + end);
}

/**
 * The file path named by the URL's remaining segments, still percent-encoded as they came.
 * Refused with a 400 naming the rule: an empty segment (an absolute path, `a//b`, a trailing
 * `/`), `.` or `..`, an encoded `/`, a NUL or other control character, `\`, a name that is
 * not in Unicode NFC form (the API speaks NFC only, so two names that look the same are never
 * two files), or one longer than the limits above.
 */
export function filePath(rawSegments: string[]): string {
  if (rawSegments.length === 0) throw bad("the file path is empty");
  const segments = rawSegments.map((raw) => {
    try {
      return decodeURIComponent(raw);
    } catch {
      throw bad(`'${raw}' is not valid percent-encoded UTF-8`);
    }
  });
  return checkPath(segments.join("/"), segments);
}

/** Checks a decoded relative path (`a/b.csv`); returns it unchanged when it is acceptable. */
export function checkPath(path: string, segments = path.split("/")): string {
  if (encoder.encode(path).length > MAX_PATH_BYTES) {
    throw bad(`the file path is longer than ${MAX_PATH_BYTES} bytes`);
  }
  for (const [i, segment] of segments.entries()) {
    if (segment === "") {
      throw bad(
        i === 0
          ? "absolute paths are refused: name a file inside the working directory"
          : "the file path has an empty segment ('a//b' or a trailing '/')",
      );
    }
    if (segment === "." || segment === "..") {
      throw bad(`'${segment}' segments are refused: name a file inside the working directory`);
    }
    if (segment.includes("/")) throw bad("an encoded '/' (%2F) inside a segment is refused");
    if (segment.includes("\0")) throw bad("NUL bytes are refused in file names");
    if (FORBIDDEN.test(segment)) {
      throw bad("control characters and '\\' are refused in file names");
    }
    if (encoder.encode(segment).length > MAX_SEGMENT_BYTES) {
      throw bad(`a segment of the file path is longer than ${MAX_SEGMENT_BYTES} bytes`);
    }
    if (segment.normalize("NFC") !== segment) {
      throw bad(
        "the file name is not in Unicode NFC form; send it NFC-normalised " +
          "(two names that differ only by normalisation are one name here)",
      );
    }
  }
  return path;
}

function bad(why: string): BadRequest {
  return new BadRequest(`Bad file path: ${why}`);
}
