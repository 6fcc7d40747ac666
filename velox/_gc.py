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

A live (tick-driven) engine cannot pause the collector for hours, but it can choose *when* it
runs: :func:`idle_gc` turns automatic collection off for the session and the engine calls
:func:`collect_if_due` whenever its queue is empty, so a collection that would have landed in
the middle of a tick's tick → order path (adding 50-150 µs to that order, bench/engine.py's
tick → order p99) runs between ticks instead. It collects exactly what CPython's own
thresholds would (``gc.get_threshold()``), so memory behaves as with automatic collection;
a flood that never lets the queue empty still collects, in the loop, once the young
generation reaches ten times its threshold. CPython also holds back full collections until
the objects awaiting one exceed a quarter of those that survived the last, which Python cannot
read; a full collection rescans everything the session keeps (milliseconds in a long session),
so :func:`collect_if_due` runs one only when the caller has been quiet (no event for a while)
or, in a market that never pauses, at most once every ``FULL_COLLECTION_GAP`` seconds.
Objects alive when the session starts (modules,
the strategies, a notebook's variables) are frozen for its duration (``gc.freeze()``) so a
full collection rescans only what the session made, and unfrozen when the last session ends (unless
something else had frozen objects before it began).
Sessions in several threads of one process share one count: the first turns automatic
collection off, the last turns it back on.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_idle_lock = threading.Lock()
_idle_sessions = 0
_idle_reenable = False
_idle_unfreeze = False
_last_full = 0.0

#: Seconds between two full collections of :func:`collect_if_due` when the caller is never quiet.
FULL_COLLECTION_GAP = 60.0


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


@contextmanager
def idle_gc() -> Iterator[None]:
    """Run the ``with`` body with automatic collection off; collect with :func:`collect_if_due`."""
    global _idle_sessions, _idle_reenable, _idle_unfreeze, _last_full
    with _idle_lock:
        if _idle_sessions == 0:
            _last_full = time.monotonic()
            _idle_reenable = gc.isenabled()
            # objects someone else froze stay frozen (a pre-forking server's, a benchmark's)
            _idle_unfreeze = gc.get_freeze_count() == 0
            gc.disable()
            gc.freeze()
        _idle_sessions += 1
    try:
        yield
    finally:
        with _idle_lock:
            _idle_sessions -= 1
            if _idle_sessions == 0:
                if _idle_unfreeze:
                    gc.unfreeze()
                if _idle_reenable:
                    gc.enable()


def collect_if_due(busy: bool = False, quiet: bool = False) -> None:
    """Collect the generations CPython's thresholds say are due (all young ones, none if none).

    ``busy``: events are waiting; collect only once the young generation has grown ten times
    past its threshold (so a stream that never pauses still frees its cycles). ``quiet``: the
    caller had nothing to do for a while, the moment for a due full collection.
    """
    global _last_full
    count0, count1, count2 = gc.get_count()
    th0, th1, th2 = gc.get_threshold()
    if th0 <= 0 or count0 < (10 * th0 if busy else th0):
        return
    if count1 < th1 - 1:
        gc.collect(0)
    elif count2 >= th2 - 1 and (quiet or time.monotonic() - _last_full >= FULL_COLLECTION_GAP):
        gc.collect(2)
        _last_full = time.monotonic()
    else:
        gc.collect(1)
