"""A watchdog that unwinds a strategy callback which overruns its time budget.

Why: one thread owns strategy, OMS and risk state, so a strategy stuck in ``on_bar`` (an
endless loop, a long sleep) would stall the whole engine. The engine marks each callback in
two plain attributes (``_callback_runner``, ``_callback_seq``) — no clock read or thread
handoff on the hot path. This thread polls them every ``poll`` seconds (a quarter of the
budget, at most 1 s: each wake-up of a second Python thread costs the engine thread a few
milliseconds of GIL handoff on this machine type, so the poll is kept rare); when the same
callback is still running after ``budget`` seconds, it raises :class:`StrategyTimeout` inside
the engine thread (``PyThreadState_SetAsyncExc``), the callback unwinds, and the engine stops
that strategy (log + ``strategy_error`` alert) and goes on.

Limit: an asynchronous exception is only delivered between Python bytecodes. A strategy hung
inside C code (a blocking socket read without a timeout, a long numpy call) is not interrupted;
such a hang is reported (logged) once per callback, and the kill switch does not depend on it.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from typing import Protocol

from velox.errors import VeloxError

log = logging.getLogger(__name__)

DEFAULT_CALLBACK_BUDGET = 5.0  # seconds a strategy callback may run before it is stopped


class StrategyTimeout(VeloxError):
    """A strategy callback ran longer than the engine's callback budget."""


class _Watched(Protocol):
    _callback_runner: object | None
    _callback_seq: int


class CallbackWatchdog:
    """Poll an engine's callback marks and interrupt a callback that overruns its budget."""

    def __init__(self, engine: _Watched, budget: float, *, poll: float = 1.0) -> None:
        self.engine = engine
        self.budget = budget
        self.poll = min(poll, budget / 4)  # a callback is stopped within budget + poll
        self._target = threading.get_ident()  # the engine thread: the one that starts us
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="velox-watchdog", daemon=True)

    def start(self) -> None:
        """Start watching the calling (engine) thread."""
        self._target = threading.get_ident()
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (the engine's run is over)."""
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        seen_seq = -1
        since = time.monotonic()
        fired = -1
        while not self._done.wait(self.poll):
            engine = self.engine
            seq, runner = engine._callback_seq, engine._callback_runner
            now = time.monotonic()
            if runner is None or seq != seen_seq:
                seen_seq, since = seq, now
                continue
            if now - since >= self.budget and fired != seq:
                fired = seq
                name = getattr(getattr(runner, "strategy", None), "name", "?")
                log.error("strategy %s: callback ran over its %.1f s budget; stopping it",
                          name, self.budget)  # fmt: skip
                if engine._callback_seq == seq:  # narrows (cannot close) a finish-now race
                    self._interrupt()

    def _interrupt(self) -> None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(self._target), ctypes.py_object(_timeout_class(self.budget))
        )


def _timeout_class(budget: float) -> type[StrategyTimeout]:
    """Return a StrategyTimeout subclass whose no-argument constructor carries the message.

    ``PyThreadState_SetAsyncExc`` takes a class and instantiates it without arguments.
    """

    def __init__(self: StrategyTimeout) -> None:
        StrategyTimeout.__init__(
            self, f"callback ran over its {budget:g} s budget (endless loop or long wait?)"
        )

    return type("StrategyTimeout", (StrategyTimeout,), {"__init__": __init__})
