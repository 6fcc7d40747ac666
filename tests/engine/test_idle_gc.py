"""A live (tick-driven) engine collects garbage between ticks, not inside one (velox._gc).

Checked against CPython's own collector: cycles made during a session are freed during it
(seen by finalizers), automatic collection is off meanwhile and restored after, and objects
frozen by someone else stay frozen.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from velox._gc import collect_if_due, idle_gc


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def _tracked(obj: object) -> bool:
    """Whether ``obj`` is in a collectable generation (gc.get_objects skips frozen objects)."""
    return any(o is obj for o in gc.get_objects())


def _cycles(n: int, freed: list[int]) -> None:
    for _ in range(n):
        weakref.finalize(_Node(), freed.append, 1)


def _cycles_until(young: int, freed: list[int]) -> None:
    """Make cycles until the young generation counts ``young`` allocations."""
    while gc.get_count()[0] < young:
        _cycles(1, freed)


@pytest.fixture(autouse=True)
def _collector_restored():
    """Leave the process's collector as each test found it, even when one fails."""
    enabled, frozen = gc.isenabled(), gc.get_freeze_count()
    yield
    gc.unfreeze() if frozen == 0 else None
    gc.enable() if enabled else gc.disable()


def test_cycles_wait_for_collect_if_due_and_automatic_collection_returns_after() -> None:
    gc.enable()
    gc.collect()
    freed: list[int] = []
    with idle_gc():
        assert not gc.isenabled()
        _cycles(5 * gc.get_threshold()[0], freed)
        assert freed == []  # the automatic collector would have run several times by now
        collect_if_due()
        assert len(freed) > 0
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0  # what the session froze is collectable again


def test_a_busy_loop_collects_only_past_ten_thresholds() -> None:
    gc.collect()
    threshold = gc.get_threshold()[0]
    freed: list[int] = []
    with idle_gc():
        gc.collect(0)  # young generation empty: count starts near 0
        _cycles_until(3 * threshold, freed)
        collect_if_due(busy=True)
        assert freed == []
        _cycles_until(10 * threshold, freed)
        collect_if_due(busy=True)
        assert len(freed) > 0


def test_nested_sessions_restore_once_and_keep_foreign_frozen_objects() -> None:
    gc.enable()
    startup = [object()]  # a tracked object a pre-forking server froze at startup
    assert _tracked(startup)
    gc.freeze()
    assert not _tracked(startup)  # frozen: in the permanent generation, out of gc's view
    first, second = idle_gc(), idle_gc()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()  # the other session still runs
    second.__exit__(None, None, None)
    assert gc.isenabled()
    # Not unfrozen by us. (Not a count check: frozen objects other threads drop are freed by
    # reference counting and leave the permanent generation, so its size may shrink.)
    assert not _tracked(startup)


def test_a_tick_driven_engine_frees_cycles_during_the_session(
    master: Callable[[str], object],
) -> None:
    from velox.brokers.sim import SimBroker
    from velox.engine import Engine
    from velox.feeds import TickReplayFeed
    from velox.strategy import Context, Strategy
    from velox.types import Bar

    freed: list[int] = []
    seen: dict[str, object] = {"enabled": set(), "freed_during": 0}

    class MakesCycles(Strategy):
        instruments = ("NSE:RELIANCE",)
        timeframe = "1m"

        def on_tick(self, ctx: Context, bar: Bar) -> None:
            _cycles(5, freed)
            seen["enabled"].add(gc.isenabled())  # type: ignore[union-attr]
            seen["freed_during"] = len(freed)

    n = 6000
    idx = pd.Timestamp("2025-05-20 09:20", tz="Asia/Kolkata") + pd.to_timedelta(
        np.arange(n) * 500, unit="ms"
    )
    ticks = pd.DataFrame({"ltp": 1400.0 + (np.arange(n) % 9) * 0.1}, index=idx)
    ins = master("NSE:RELIANCE")
    gc.enable()
    engine = Engine(
        [MakesCycles()],
        broker=SimBroker({ins.id: ins}, initial_cash=1e6),
        feed=TickReplayFeed({ins.id: ticks}),
        instruments={ins.id: ins},
        initial_cash=1e6,
        mode="paper",
        reconcile_every=None,
    )
    thread = threading.Thread(target=engine.run)
    thread.start()
    thread.join(120)
    assert not thread.is_alive()
    assert seen["enabled"] == {False}  # automatic collection off throughout the session
    assert seen["freed_during"] > 0  # but collections ran between the ticks
    assert gc.isenabled()
