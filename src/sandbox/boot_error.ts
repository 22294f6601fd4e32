/** A worker that died while booting; the message says why. */
export class BootError extends Error {
  override name = "BootError";
}
