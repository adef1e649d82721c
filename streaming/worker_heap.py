"""Keep PySpark's reused Python workers from re-scanning their whole heap after every task.

PySpark's daemon runs a full `gc.collect()` in a reused worker after each task. A scoring
worker holds MLflow, torch and a model (~330k objects): that collection took 0.15 s on a
quiet core and ~0.45 s on the stream's busy ones -- and the next task on that worker waits
for it, so every micro-batch paid it on each of its Python stages. Objects that live as
long as the worker (imports, a loaded model) are frozen out of the collector's view once
they exist; what a task allocates is still collected.
"""

from __future__ import annotations

import gc

# Fewer unfrozen objects than this are not worth a full collection to freeze.
_WORTH_FREEZING = 10_000


def freeze_long_lived() -> None:
    """Move every object that exists now out of the cyclic collector's scans. Cheap to
    repeat: a no-op unless the heap grew a lot since the last call (a model was loaded)."""
    if len(gc.get_objects()) < _WORTH_FREEZING:
        return
    gc.collect()
    gc.freeze()
