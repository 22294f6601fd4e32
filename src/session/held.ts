/**
 * What a session holds outside its interpreter's memory: answers its clients have not read yet,
 * calls and uploads waiting in its queue, checkpoint bytes on their way to the store. The memory
 * watchdog charges these to the session, so the session holding the memory is the one stopped,
 * and stopping it drops what can be dropped (unread answers), which frees it.
 */
export class Held {
  #bytes = 0;
  readonly #drops = new Set<() => void>();

  /** Bytes held now. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Charges `bytes` until the returned release is called (once is enough; more is harmless).
   * `drop`, when given, frees them early: it is called by `dropAll` and must release.
   */
  add(bytes: number, drop?: () => void): () => void {
    this.#bytes += bytes;
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      this.#bytes -= bytes;
      if (drop) this.#drops.delete(drop);
    };
    if (drop) this.#drops.add(drop);
    return release;
  }

  /** Drops everything that can be dropped; returns how many holders were dropped. */
  dropAll(): number {
    const drops = [...this.#drops];
    for (const drop of drops) drop();
    return drops.length;
  }
}
