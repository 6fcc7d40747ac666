"""Pausing Python's cyclic garbage collector around bulk work that makes no reference cycles.

A replay, and the recorder's conversion of a batch into rows, allocate hundreds of thousands
of acyclic objects (orders, fills, audit rows, row tuples), which reference counting frees.
Each allocation burst would also trigger the cyclic GC, whose full collections rescan every
live object (the replay's state, the growing audit trail) again and again: ~10 % of a long
replay, and two thirds of the time to convert a million-bar replay's records (bench/engine.py,
record=True). So that work runs with the collector paused. Not ``gc.freeze()``: frozen objects
are never collected, and an engine, its strategies' contexts and its broker form cycles.

The collector's switch is process-wide: a pause only re-enables it if it was enabled when the
pause began, so nested and concurrent pauses never leave it off (at worst two overlapping
pauses in different threads re-enable it early, which costs time, never memory).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the ``with`` body with the cyclic garbage collector paused (see the module doc)."""
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
