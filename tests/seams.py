"""The engine functions the crash tests wrap, named once, and one way to wrap them.

tests/runner_process.py makes a run slow or crashes it at a precise point by wrapping an engine
function at module level. A renamed or moved function must not silently disarm such a test: `wrap`
fails at once, naming the seam, when the module has no such callable.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

# The seams, in one place: (module, function). Rename here when the engine renames them.
AGGREGATE_WINDOW = ("xrdagg.jobs.incremental", "aggregate_window")  # a job run, before its commit
REBUILD_CHUNK = ("xrdagg.jobs.recompute", "rebuild_chunk")  # one recompute chunk, before commit
APPLY_REBUILD = ("xrdagg.jobs.apply", "_apply")  # a topology apply, before its commit
# A chunk's result is recorded once its transaction has committed.
CHUNK_COMMITTED = ("xrdagg.jobs.recompute", "ChunkResult")
SEAMS = (AGGREGATE_WINDOW, REBUILD_CHUNK, APPLY_REBUILD, CHUNK_COMMITTED)


class SeamMissingError(RuntimeError):
    pass


def target(module: ModuleType | str, name: str) -> Callable[..., Any]:
    """The function `name` of `module`, or SeamMissingError saying what is missing."""
    if isinstance(module, str):
        module = importlib.import_module(module)
    function = getattr(module, name, None)
    if function is None or not callable(function):
        raise SeamMissingError(
            f"test seam {module.__name__}.{name} is gone (renamed or moved?): the crash tests "
            f"wrap it; update the seam names at the top of tests/seams.py"
        )
    return function


def wrap(
    module: ModuleType | str, name: str, *, after: Callable[[Any], None]
) -> Callable[..., Any]:
    """Replace `module.name` by a function that calls it, then `after(its result)`.

    The engine calls these functions through their module's globals, so the replacement is what
    runs. Returns the original function.
    """
    if isinstance(module, str):
        module = importlib.import_module(module)
    original = target(module, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        after(result)
        return result

    setattr(module, name, wrapper)
    return original
