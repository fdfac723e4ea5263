"""The memory of a long `generate` process: the cyclic collector at its start, and freed memory given back to the
operating system at the end of each run.

Start-up (Dagster's imports, planning, the instance, the first run's start) makes a few hundred thousand
objects that live until the end, and almost no cyclic garbage (840 objects after the imports). The collector's
passes over that growing heap were pure cost — 0.26 s of the 0.9 s of imports, about 0.3 s before the first
create in all — and, once the run was going, each full pass over it stalled every poll for about 50 ms
(benchmarks/RESULTS.md). So `generate` pauses the collector while it starts (`pause_collector`) and, once the
first run's first wave of creates is on its way (`launch._side_by_side`), freezes what exists out of the
collector's passes and resumes it for what the runs make (`settle_collector`). What start-up left as cyclic
garbage stays frozen for the process's life: about 22,000 objects, the same at 2,000 and at 100,000 rows;
collecting them first would stall the first wave's creates 0.15-0.3 s.

`generate` executes many Dagster runs one after the other in one process, and each allocates and frees tens
of megabytes (HTTP buffers, decoded media, ledger rows, Dagster events). glibc's malloc keeps what was freed
in its arenas and Arrow's allocator (mimalloc) in its own pool, so the resident size crept up run after run
although nothing stayed alive: +0.5 MB per 50-output run, 250 MB to 330 MB over 10,000 outputs
(benchmarks/RESULTS.md). Releasing both at the end of each run keeps it flat.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import sys
from collections.abc import Callable
from types import ModuleType


def pause_collector() -> None:
    """No cyclic collection until `settle_collector` (see above)."""
    gc.disable()


#: the oldest generation's threshold while `generate` makes its full collections itself, and the one before
_NO_AUTOMATIC_FULL = 1 << 30
_oldest_threshold = [gc.get_threshold()[2]]


def settle_collector() -> None:
    """Start-up is over: if the collector is paused, what exists now is kept out of its passes, which resume for
    what comes next (`resume_collector` undoes all). Full collections are left to `generate`, which makes one
    after each range run in a gap between waves (`lulls.collect_in_lull`): one where the counters fell took
    40-90 ms, and among a wave's creates it delayed every create after it for the rest of the run. Not paused
    (a caller other than `generate`): nothing."""
    if gc.isenabled():
        return
    gc.freeze()
    young, middle, _oldest_threshold[0] = gc.get_threshold()
    gc.set_threshold(young, middle, _NO_AUTOMATIC_FULL)
    gc.enable()


def resume_collector() -> None:
    """Everything collectable again, as before `pause_collector`."""
    gc.unfreeze()
    young, middle, oldest = gc.get_threshold()
    if oldest == _NO_AUTOMATIC_FULL:
        gc.set_threshold(young, middle, _oldest_threshold[0])
    gc.enable()


def release_free_memory() -> None:
    """Returns the free pages of the C heap (glibc's `malloc_trim`) and Arrow's unused pool memory to the
    OS. Only memory nothing uses is released; elsewhere than glibc the heap part does nothing."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    arrow = sys.modules.get("pyarrow")  # never imported for this alone
    if arrow is not None and not _importing(arrow):
        arrow.default_memory_pool().release_unused()


def _importing(module: ModuleType) -> bool:
    """A module another thread is still importing: `generate` loads Arrow in a thread while its runs wait on the
    provider (`cli.launch._load_lineage_modules`), and a run ending meanwhile found `pyarrow` in `sys.modules`
    without its attributes yet (AttributeError: partially initialized module). The flag is the one the
    interpreter's own import lock checks for the same purpose."""
    return bool(getattr(module.__spec__, "_initializing", False))


def prefer_system_allocator() -> None:
    """Arrow allocates from the C heap from now on instead of its own mimalloc pool, unless the user chose a
    pool (`ARROW_DEFAULT_MEMORY_POOL`). For a long-lived process: mimalloc kept about twice what the lineage
    build had live, while the C heap's free pages go back with `release_free_memory` (peak of `generate` at
    10,000 outputs: 368 -> 337 MB in its lineage step). Before Arrow is loaded that is Arrow's own variable
    (so `generate` does not load it at its start, a few tenths of a second before the first create)."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    if "pyarrow" not in sys.modules:
        os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"
        return
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    return trim
