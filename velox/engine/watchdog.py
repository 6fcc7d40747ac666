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

An asynchronous exception is only delivered between Python bytecodes, so a strategy blocked
inside C code (``time.sleep``, a blocking ``socket.recv``) does not see it. When the engine runs
on the main thread (``velox replay``, ``velox paper``, a notebook), the watchdog then also sends
that thread ``SIGUSR2`` (``signal.pthread_kill``): the blocking call is interrupted (EINTR), its
Python signal handler raises the same :class:`StrategyTimeout`, and the strategy is stopped as
above, so a replay with such a strategy ends with that error instead of hanging. Limit: C code
that never returns to Python (a long numpy call) or an engine on another thread cannot be
interrupted; the hang is logged, and the kill switch does not depend on it
(:class:`velox.engine.commands.KillThread` acts while the callback hangs).
"""

from __future__ import annotations

import ctypes
import logging
import signal
import threading
import time
from typing import Protocol

from velox.errors import VeloxError

log = logging.getLogger(__name__)

DEFAULT_CALLBACK_BUDGET = 5.0  # seconds a strategy callback may run before it is stopped
#: Sent to the main thread when the asynchronous exception did not arrive (a wait in C code).
INTERRUPT_SIGNAL = getattr(signal, "SIGUSR2", None)


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
        self._fired = -1  # the callback (its sequence number) the watchdog is stopping
        self._previous_handler: object = None
        self._signals = False  # a handler for INTERRUPT_SIGNAL is installed (main thread)

    def start(self) -> None:
        """Start watching the calling (engine) thread."""
        self._target = threading.get_ident()
        if INTERRUPT_SIGNAL is not None and threading.current_thread() is threading.main_thread():
            try:
                self._previous_handler = signal.signal(INTERRUPT_SIGNAL, self._on_signal)
                self._signals = True
            except ValueError:  # not the main interpreter: asynchronous exceptions only
                self._signals = False
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (the engine's run is over)."""
        self._done.set()
        self._thread.join()
        if self._signals:
            signal.signal(INTERRUPT_SIGNAL, self._previous_handler)  # type: ignore[arg-type]
            self._signals = False

    def _on_signal(self, signum: int, frame: object) -> None:
        """Raise the timeout in the main thread if the overrunning callback still runs."""
        engine = self.engine
        if engine._callback_runner is not None and engine._callback_seq == self._fired:
            raise _timeout_class(self.budget)()

    def _watch(self) -> None:
        seen_seq = -1
        since = time.monotonic()
        signalled = -1
        while not self._done.wait(self.poll):
            engine = self.engine
            seq, runner = engine._callback_seq, engine._callback_runner
            now = time.monotonic()
            if runner is None or seq != seen_seq:
                seen_seq, since = seq, now
                continue
            name = getattr(getattr(runner, "strategy", None), "name", "?")
            if now - since >= self.budget and self._fired != seq:
                self._fired = seq
                log.error("strategy %s: callback ran over its %.1f s budget; stopping it",
                          name, self.budget)  # fmt: skip
                if engine._callback_seq == seq:  # narrows (cannot close) a finish-now race
                    self._interrupt()
            elif self._fired == seq and signalled != seq:
                # a poll later and still inside it: blocked in C code, deaf to the exception
                signalled = seq
                if self._signals and engine._callback_seq == seq:
                    log.error("strategy %s: blocked inside C code; interrupting it with %s",
                              name, INTERRUPT_SIGNAL.name)  # type: ignore[union-attr]  # fmt: skip
                    signal.pthread_kill(self._target, INTERRUPT_SIGNAL)  # type: ignore[arg-type]
                else:
                    log.error("strategy %s: blocked inside C code and cannot be interrupted "
                              "(engine not on the main thread); the kill switch still works",
                              name)  # fmt: skip

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
