"""A last-resort finder: `import numpy` after numpy was refused raises ModuleNotFoundError with
the reason, instead of Pyodide's hint to run micropip (which Moat does not offer).

Run by the worker the first time a package could not be had; the value of the last line is the
dict of reasons (import name -> text) the worker fills and empties."""

import sys

# An interpreter restored from a checkpoint already has the finder: keep its reasons.
_kept = [f for f in sys.meta_path if getattr(f, "__name__", "") == "MoatUnavailableFinder"]


class MoatUnavailableFinder:
    reasons = _kept[0].reasons if _kept else {}

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        reason = cls.reasons.get(name)
        if reason is None or path is not None:
            return None
        error = ModuleNotFoundError(f"No module named {name!r}: {reason}", name=name)
        error._PYODIDE_ADDED_NOTE = True  # keep Pyodide from adding its micropip hint
        raise error

    @classmethod
    def invalidate_caches(cls):
        pass


sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__name__", "") != "MoatUnavailableFinder"]
sys.meta_path.append(MoatUnavailableFinder)
del _kept
MoatUnavailableFinder.reasons
