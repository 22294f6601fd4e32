/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
/**
 * One session's interpreter: the worker's entry. It answers the host's requests (see
 * `protocol/messages.ts`) one at a time; the host enforces time and replaces this worker when it
 * breaks, so nothing here trusts the code it runs.
 */
// First, so nothing can compile code from strings here even without the V8 flag (Deno Deploy).
import "./no_codegen.ts";
import { lowerPriority } from "./priority.ts";
import type { HostMessage, Reply, RequestKind, WorkerEnvelope } from "../protocol/messages.ts";
import {
  boot,
  checkpoint,
  type Live,
  makeSnapshot,
  memoryBytes,
  type PreparedLoad,
  prepareLoad,
} from "./boot.ts";
import { messageOf } from "./errors.ts";
import { ABANDONED, exec } from "./exec.ts";
import { deleteFile, getFile, listFiles, putFile } from "./files.ts";
import { Streamer } from "./stream.ts";
import { connectTools } from "./tools.ts";

// Below the thread that serves HTTP, before anything else runs here (see priority.ts).
lowerPriority();

let live: Live | undefined;
/** A load started by `prepare`, which the boot request (a restore) continues; used once. */
let prepared: PreparedLoad | undefined;
/**
 * The lifeline port, held for the worker's whole life and never used: when this thread ends for
 * any reason, the port closes and the host learns at once that the interpreter is gone.
 */
const held: unknown[] = [];
/**
 * Ends an interrupted awaiting call whose task will never run again (the interrupt landed in the
 * event loop's own code, between the cell's steps); set only while such a call is pending.
 */
let abandonCall: (() => void) | undefined;
/** How long a cancelled cell gets to finish on its own before it is abandoned. */
const ABANDON_AFTER_MS = 100;

/** `stats[2]` of the boot request: the id of the last request answered (see `answered`). */
let answeredId: Int32Array | undefined;

/**
 * Tells the host, before the answer is posted, that request `id` is answered: a host thread
 * that was busy when the grace after an interrupt ran out then knows the answer is on its way.
 */
function answered(id: number): void {
  if (answeredId) Atomics.store(answeredId, 2, id);
}

function reply<K extends RequestKind>(id: number, body: Reply<K>, transfer: Transferable[] = []) {
  answered(id);
  self.postMessage({ id, ok: true, reply: body } satisfies WorkerEnvelope, transfer);
}

function fail(id: number, err: unknown) {
  answered(id);
  self.postMessage({ id, ok: false, message: messageOf(err) } satisfies WorkerEnvelope);
}

function booted(): Live {
  if (!live) throw new Error("interpreter is not booted");
  return live;
}

async function handle(msg: HostMessage): Promise<void> {
  switch (msg.kind) {
    case "snapshot": {
      held.push(msg.lifeline);
      const bytes = await makeSnapshot(msg);
      return reply<"snapshot">(msg.id, { bytes }, [bytes.buffer]);
    }
    case "prepare": {
      const started = performance.now();
      held.push(msg.lifeline);
      if (prepared || live) throw new Error("this worker is already prepared or booted");
      prepared = prepareLoad(msg);
      await prepared.ready;
      return reply<"prepare">(msg.id, { prepareMs: performance.now() - started });
    }
    case "boot": {
      const started = performance.now();
      if (!prepared) held.push(msg.lifeline);
      answeredId = new Int32Array(msg.stats);
      const made = await boot(msg, prepared);
      prepared = undefined;
      live = made.live;
      connectTools((notice) => self.postMessage(notice), live.interrupt);
      const bootMs = performance.now() - started;
      const { restored } = made;
      return reply<"boot">(msg.id, { bootMs, memoryBytes: memoryBytes(live), restored });
    }
    case "checkpoint": {
      const taken = checkpoint(booted(), msg.baseId, msg.against);
      return reply<"checkpoint">(msg.id, taken, [taken.bytes.buffer, taken.delta.buffer]);
    }
    case "exec": {
      const abandoned = new Promise<typeof ABANDONED>((resolve) => {
        abandonCall = () => resolve(ABANDONED);
      });
      try {
        const streamer = msg.stream ? new Streamer((n) => self.postMessage(n)) : undefined;
        return reply<"exec">(msg.id, await exec(booted(), msg, abandoned, streamer));
      } finally {
        abandonCall = undefined;
      }
    }
    case "install": {
      const target = booted();
      let results;
      try {
        // Moat's own files: a package does not count against the session's limits.filesBytes.
        results = await target.files.exempt(() => target.packages.install(msg.wheels));
        target.packages.explainMissing(msg.unavailable);
      } catch (err) {
        results = msg.wheels.map((w) => ({ name: w.name, error: messageOf(err) }));
      }
      return reply<"install">(msg.id, { results, memoryBytes: memoryBytes(target) });
    }
    case "files.put": {
      const target = booted();
      const used = target.files.used;
      return reply<"files.put">(msg.id, putFile(target.py, memoryBytes(target), used, msg));
    }
    case "files.get": {
      const answer = getFile(booted().py, msg);
      return reply<"files.get">(msg.id, answer, "bytes" in answer ? [answer.bytes.buffer] : []);
    }
    case "files.list":
      return reply<"files.list">(msg.id, listFiles(booted().py, msg));
    case "files.delete":
      return reply<"files.delete">(msg.id, deleteFile(booted().py, msg));
    case "interrupt": {
      // No Python is running while a message is handled: the flag would only hit the event
      // loop's next step, so it is cleared and the awaiting cell is cancelled instead.
      if (!live) return;
      Atomics.store(live.interrupt, 0, 0);
      try {
        live.cancel();
      } catch {
        // nothing is running any more
      }
      return abandonLater();
    }
    default:
      throw new Error(`unknown request ${(msg satisfies never as { kind: string }).kind}`);
  }
}

self.onmessage = (event: MessageEvent<HostMessage>) => {
  const msg = event.data;
  handle(msg).catch((err) => "id" in msg && fail(msg.id, err));
};

/** Abandons the call pending now (not a later one) if it has not finished after a moment. */
function abandonLater(): void {
  const abandon = abandonCall;
  if (abandon) setTimeout(abandon, ABANDON_AFTER_MS);
}

// A KeyboardInterrupt that lands in the event loop's own code escapes as a rejected promise, not
// a crash: between a cell's steps it is that call's timeout; between calls it is the host's
// deadline stopping Python the session left running (a callback on the loop).
self.addEventListener("unhandledrejection", (event) => {
  const reason = String((event as PromiseRejectionEvent).reason ?? "");
  if (/\nKeyboardInterrupt\s*$/.test(reason)) {
    event.preventDefault();
    if (abandonCall) abandonLater();
  }
});
