/**
 * Pyodide's hiwire table (the JavaScript values Python holds) around a checkpoint: which slots
 * must be pinned, how values Pyodide's serializer refuses are named, and what a restore puts in
 * their place. Runs inside the worker only.
 */

// deno-lint-ignore no-explicit-any
type Any = any;

/** Pyodide's fixed hiwire slots: its snapshot requires them to hold what they held at boot. */
const FIXED_SLOTS = 7;
const LOADED_PACKAGES_SLOT = 6;

/**
 * The lockdown drops Python's last references to some fixed slots' values (slot 1, jsglobals,
 * through the `js` module; slot 6 goes when a wheel is installed), which frees the slots for
 * reuse and makes the next snapshot fail. One more reference each, counted in wasm memory (so a
 * restored image keeps it), pins them. A reference is [version][index]1; see hiwire's macros.
 */
export function pinFixedSlots(module: Any): void {
  for (let index = 1; index < FIXED_SLOTS; index++) {
    const info = module.__hiwire_slot_info(index) >>> 0;
    if (!(info & 1)) continue; // not occupied (immortal values live elsewhere)
    module._hiwire_incref(((info & 0xfc000000) | (index << 1) | 1) >>> 0);
  }
}

/** Where a Pyodide internal sits, by name. */
type InternalName = { api?: string; module?: string };

const namesOf = new WeakMap<object, Map<unknown, InternalName>>();

/**
 * Pyodide's own functions Python holds (e.g. the event loop's `pyodide_js._api.scheduleCallback`),
 * named by where they sit, so a restore takes the new interpreter's. Listed once per interpreter
 * (the module has thousands of properties) and again only when a value is not found.
 */
export function internalNames(api: Any, module: Any): (value: unknown) => InternalName | undefined {
  let names = namesOf.get(module);
  let fresh = false;
  return (value) => {
    if (!names) [names, fresh] = [listInternals(api, module), true];
    const found = names.get(value);
    if (found || fresh) return found;
    [names, fresh] = [listInternals(api, module), true];
    namesOf.set(module, names);
    return names.get(value);
  };
}

function listInternals(api: Any, module: Any): Map<unknown, InternalName> {
  const names = new Map<unknown, { api?: string; module?: string }>();
  for (const [where, owner] of [["module", module], ["api", api]] as const) {
    for (const key of Object.getOwnPropertyNames(owner)) {
      let value: unknown;
      try {
        value = owner[key];
      } catch {
        continue;
      }
      if (typeof value === "function" || (typeof value === "object" && value !== null)) {
        names.set(value, { [where]: key });
      }
    }
  }
  namesOf.set(module, names);
  return names;
}

/** A hiwire slot's primitive value (Python may hold `undefined`), boxed for Pyodide's check. */
export class Primitive {
  constructor(readonly json: unknown) {}
}

function boxPrimitive(value: unknown): Primitive {
  if (value === undefined) return new Primitive({ undefined: true });
  if (typeof value === "bigint") return new Primitive({ bigint: String(value) });
  if (typeof value === "symbol") return new Primitive({ symbol: value.description ?? "" });
  return new Primitive({ value });
}

export function unboxPrimitive(json: Any): unknown {
  if (json?.undefined) return undefined;
  if ("bigint" in json) return BigInt(json.bigint);
  if ("symbol" in json) return Symbol(json.symbol);
  return json.value;
}

/**
 * Pyodide's serializer refuses slots holding primitives (`undefined`, numbers…), which Python
 * may hold; they are boxed for the walk and put back after it.
 */
export function withPrimitivesBoxed<T>(
  module: Any,
  serializer: (value: unknown) => unknown,
  serialize: (serializer: (value: unknown) => unknown) => T,
): T {
  const boxed: [number, unknown][] = [];
  // Slot 6 must look like `{}`: Pyodide's snapshot expects no packages loaded. In an image
  // restored here it is Pyodide's `loadedPackages`, which installs write to; each restore makes
  // it a fresh `{}`, and Moat keeps its own record of the packages (see `packages`).
  boxed.push([LOADED_PACKAGES_SLOT, module.__hiwire_get(LOADED_PACKAGES_SLOT)]);
  module.__hiwire_set(LOADED_PACKAGES_SLOT, {});
  for (let index = FIXED_SLOTS;; index++) {
    let value: unknown;
    try {
      value = module.__hiwire_get(index);
    } catch {
      break;
    }
    if (value === null || typeof value === "object" || typeof value === "function") continue;
    if (!(module.__hiwire_slot_info(index) & 1)) continue;
    boxed.push([index, value]);
    module.__hiwire_set(index, boxPrimitive(value));
  }
  try {
    return serialize(serializer);
  } finally {
    for (const [index, value] of boxed) module.__hiwire_set(index, value);
  }
}

/** Stand-ins a restore made for resolvers, so the next checkpoint names them the same way. */
const settledResolvers = new WeakSet<object>();

/** A resolver's stand-in after a restore: calling it does nothing. */
export function settledStandIn(): () => void {
  const settled = () => {};
  settledResolvers.add(settled);
  return settled;
}

/**
 * A promise's resolve or reject function (native, nameless). Python keeps the pair it was given
 * when JavaScript awaited a Python awaitable (each awaiting cell's, in Pyodide 314); whoever
 * awaited it was the old worker, so after a restore calling it does nothing, as it should.
 */
export function isResolver(value: unknown): boolean {
  if (settledResolvers.has(value as object)) return true;
  return typeof value === "function" && value.name === "" && value.length === 1 &&
    /^function \(\) \{ \[native code\] \}$/.test(Function.prototype.toString.call(value));
}

export function describe(value: unknown): string {
  if (typeof value === "function") {
    return `function ${value.name || String(value).slice(0, 120).replace(/\s+/g, " ")}`;
  }
  const name = (value as object)?.constructor?.name;
  return name ? `${name} object` : typeof value;
}
