/** Moving bytes to another thread instead of copying them on this one. */

/**
 * The buffer to move with `bytes` in a `postMessage`, when moving it moves nothing else: a view
 * of a whole ArrayBuffer (the sender's view is then empty). A SharedArrayBuffer is shared, not
 * copied, anyway; a view into a bigger buffer (a Redis reply's) is left to be copied.
 */
export function movable(bytes: Uint8Array): Transferable[] {
  const { buffer } = bytes;
  const whole = buffer instanceof ArrayBuffer && bytes.byteOffset === 0 &&
    bytes.byteLength === buffer.byteLength;
  return whole ? [buffer] : [];
}
