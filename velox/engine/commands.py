"""Operator commands for a running engine: taken from the store, executed exactly once.

An operator (``velox kill``, the trader console) stores a command with
:meth:`velox.store.Store.issue_command`; its targets are the running paper/live runs it applies
to. Each engine's :class:`StoreCommands` hears about it through LISTEN ``velox_commands`` (and
polls every 0.25 s in case a notification was missed), and the engine then, on its own thread:

1. takes it (``take_command``: recorded in ``command_events`` before anything is done, and
   appended to the run's audit trail as a ``COMMAND`` row);
2. executes it (:func:`execute`);
3. answers it (``finish_command``: done or failed, with a result the operator reads).

A ``kill`` does not wait for the engine thread: :class:`KillThread` takes it as soon as it
arrives, also while a strategy callback hangs (an endless loop, or a wait inside C code that no
watchdog can interrupt: ``time.sleep``, a blocking ``socket.recv``, a long numpy call). Both
threads act only under the engine's lock (:attr:`velox.engine.Engine.lock`), which the engine
thread holds except while a strategy callback runs or while it waits for the next event; a
strategy that wakes up after the kill gets its orders refused by the engaged kill switch.

Exactly once: a command issued while the engine is down is pending when it comes back; one taken
but never answered (``kill -9`` in between) is taken again after the restart and repeated, which
is safe because every verb is idempotent — a kill of a killed engine changes nothing, a flatten
of a flat book sends nothing, and a manual ``order`` carries the client id
``<run_id>-C<command id>``, so an order the restored OMS already knows is never sent again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from velox.errors import RiskBreach, ValidationError, VeloxError
from velox.types import Order, OrderStatus

if TYPE_CHECKING:
    from velox.engine.core import Engine
    from velox.store import Store
    from velox.store.commands import Command

__all__ = ["CommandSource", "KillThread", "StoreCommands", "execute", "command_client_id"]

log = logging.getLogger(__name__)


class CommandSource(Protocol):
    """Where an engine's operator commands come from (the store's, :class:`StoreCommands`)."""

    def poll(self) -> list[Command]:
        """Return the commands this run has not finished (called every ~0.25 s, and at once
        after the source woke the engine)."""
        ...

    def take(self, command: Command) -> bool:
        """Record that the engine acts on ``command`` now; False if it was finished before."""
        ...

    def finish(self, command: Command, *, ok: bool, result: Mapping[str, object]) -> None:
        """Record the outcome of ``command``."""
        ...

    def attach(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` (from any thread) when a command for this run may have arrived (each
        attached function is called)."""
        ...

    def close(self) -> None:
        """Stop listening."""
        ...


class StoreCommands:
    """The commands of one run, from the store's ``commands`` table.

    A daemon thread LISTENs on ``velox_commands`` (its own connection) and wakes the engine when
    a notification names this run (or no run: a command issued while none was running); the
    engine's timers also poll every 0.25 s, so a lost notification delays a command by at most
    that. :meth:`poll` reads the pending commands in one query.
    """

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self._wakes: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"StoreCommands({self.run_id!r})"

    def poll(self) -> list[Command]:
        try:
            return self.store.pending_commands(self.run_id)
        except VeloxError as exc:  # the store is away: poll again on the next timer
            log.error("run %s cannot read its commands: %s", self.run_id, exc)
            return []

    def take(self, command: Command) -> bool:
        return self.store.take_command(command.id, self.run_id)

    def finish(self, command: Command, *, ok: bool, result: Mapping[str, object]) -> None:
        self.store.finish_command(command.id, self.run_id, ok=ok, result=result)

    def attach(self, wake: Callable[[], None]) -> None:
        self._wakes.append(wake)
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._listen, name=f"velox-commands-{self.run_id}", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _listen(self) -> None:
        listener = None
        while not self._stop.is_set():
            try:
                if listener is None:
                    listener = self.store.listen("velox_commands")
                    self._notify()  # anything issued before we listened
                for _channel, payload in listener.wait(0.5):
                    if payload in (self.run_id, ""):
                        self._notify()
            except VeloxError as exc:  # the store is away; the engine's poll still runs
                log.warning("run %s: command listener failed (%s); retrying", self.run_id, exc)
                if listener is not None:
                    listener.close()
                listener = None
                self._stop.wait(1.0)
        if listener is not None:
            listener.close()

    def _notify(self) -> None:
        for wake in list(self._wakes):
            wake()


class KillThread:
    """Act on a run's ``kill`` commands on a thread of its own, whatever the engine thread does.

    Why: the kill switch must work while a strategy hangs, and an asynchronous exception (the
    watchdog's) cannot reach a thread blocked inside C code. This thread wakes when the command
    source is notified (and every ``poll`` seconds in case a notification was lost), reads the
    pending ``kill`` commands, takes the engine's lock — free while the engine thread is inside
    a strategy callback or waiting for an event — and runs them through the engine's own
    command path (:meth:`velox.engine.Engine.execute_command`): taken and audited before it
    acts, every open order cancelled and every position squared off through the risk engine
    and the OMS, then answered. The engine thread, when it gets the lock back, sees the kill
    switch engaged and refuses new orders.
    """

    def __init__(self, engine: Engine, source: CommandSource, *, poll: float = 1.0) -> None:
        self.engine = engine
        self.source = source
        self.poll = poll
        self._woken = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name=f"velox-kill-{engine.run_id}", daemon=True
        )

    def start(self) -> None:
        """Start watching for kill commands."""
        self.source.attach(self._woken.set)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (the run is over); waits for a kill in progress to finish."""
        self._done.set()
        self._woken.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.is_set():
            self._woken.wait(self.poll)
            self._woken.clear()
            if self._done.is_set() or not self.engine.ready_for_commands():
                continue
            if not any(c.verb == "kill" for c in self.source.poll()):
                continue
            lock = self.engine.lock
            while not lock.acquire(timeout=0.25):  # the engine thread is busy, not hung
                if self._done.is_set():
                    return
            try:
                if self._done.is_set():
                    return
                engine = self.engine
                engine._deferring = True  # strategy callbacks wait for the engine thread
                try:
                    for command in self.source.poll():  # again: the engine may have taken it
                        if command.verb == "kill":
                            log.warning("run %s: kill command %s taken by the kill thread",
                                        engine.run_id, command.id)  # fmt: skip
                            engine.execute_command(command)
                finally:
                    engine._deferring = False
            finally:
                lock.release()


def command_client_id(run_id: str, command_id: int) -> str:
    """Return the client id of the order an ``order`` command places (``<run_id>-C<id>``)."""
    return f"{run_id}-C{command_id}"


def execute(engine: Engine, command: Command) -> tuple[bool, dict[str, object]]:
    """Execute one command on the engine's thread; return (ok, result for the operator)."""
    handler = _VERBS.get(command.verb)
    if handler is None:
        return False, {"error": f"unknown verb {command.verb!r}"}
    try:
        return handler(engine, command)
    except VeloxError as exc:
        return False, {"error": str(exc)}


def _who(command: Command) -> str:
    return command.issued_by or "operator"


def _kill(engine: Engine, command: Command) -> tuple[bool, dict[str, object]]:
    already = engine.risk.killed
    open_before = [o.client_id for o in engine.oms.open.values()]
    reason = str(command.args.get("reason") or "kill")
    engine.engage_kill(f"{_who(command)}: {reason}", limit="manual")
    return True, {
        "engaged": True,
        "already_engaged": already,
        "cancelled": open_before,
        "positions": _positions(engine),
    }


def _reset_kill(engine: Engine, command: Command) -> tuple[bool, dict[str, object]]:
    halted = engine.release_halt()
    if not engine.risk.killed:
        return True, {"reset": False, "detail": "the kill switch was not engaged",
                      "halt_released": halted}  # fmt: skip
    engine.reset_kill(_who(command))
    return True, {"reset": True, "halt_released": halted}


def _stop_strategy(engine: Engine, command: Command) -> tuple[bool, dict[str, object]]:
    name = command.strategy
    if not name:
        return False, {"error": "stop-strategy needs a strategy"}
    return engine.stop_strategy(name, reason=f"stopped by {_who(command)}")


def _start_strategy(engine: Engine, command: Command) -> tuple[bool, dict[str, object]]:
    name = command.strategy
    if not name:
        return False, {"error": "start-strategy needs a strategy"}
    return engine.start_strategy(name, reason=f"started by {_who(command)}")


def _flatten(engine: Engine, command: Command) -> tuple[bool, dict[str, object]]:
    cancelled, orders = engine.flatten(command.strategy, reason=f"flatten by {_who(command)}")
    return True, {"cancelled": cancelled, "square_off": orders, "positions": _positions(engine)}


def _cancel_order(engine: Engine, command: Command) -> tuple[bool, dict[str, object]]:
    client_id = str(command.args.get("client_id") or "")
    order = engine.oms.orders.get(client_id)
    if order is None:
        return False, {"error": f"this run has no order {client_id!r}"}
    if order.is_terminal:
        return True, {"client_id": client_id, "status": order.status.value,
                      "detail": "not working: nothing to cancel"}  # fmt: skip
    engine.cancel_working(client_id)
    return True, {"client_id": client_id, "status": engine.oms.orders[client_id].status.value}


def _order(engine: Engine, command: Command) -> tuple[bool, dict[str, object]]:
    cid = command_client_id(engine.run_id, command.id)
    known = engine.oms.orders.get(cid)
    if known is None:
        from velox.store.commands import ORDER_ARGS

        given = {k: command.args[k] for k in ORDER_ARGS if command.args.get(k) is not None}
        given.setdefault("tag", cid)
        try:  # Order coerces and checks every field (side, type, product, prices, qty)
            order = Order(  # type: ignore[arg-type]
                client_id=cid, strategy=command.strategy or "", created_at=engine.now(), **given
            )
        except (ValidationError, ValueError, TypeError) as exc:
            return False, {"client_id": cid, "error": str(exc)}
        try:
            engine.submit_manual(order)
        except RiskBreach as exc:
            return False, {"client_id": cid, "status": "REJECTED", "error": str(exc)}
        except (ValidationError, ValueError) as exc:
            return False, {"client_id": cid, "error": str(exc)}
    order = engine.oms.orders[cid]
    ok = order.status is not OrderStatus.REJECTED
    result: dict[str, object] = {"client_id": cid, "status": order.status.value,
                                 "repeated": known is not None}  # fmt: skip
    if not ok:
        result["error"] = order.status_message
    return ok, result


def _switch_mode(engine: Engine, command: Command) -> tuple[bool, dict[str, object]]:
    return engine.switch_venue(str(command.args.get("mode")), issued_by=_who(command))


def _positions(engine: Engine) -> dict[str, int]:
    return {k: v for k, v in engine.oms.account.net.items() if v}


_VERBS: dict[str, Callable[[Engine, Command], tuple[bool, dict[str, object]]]] = {
    "kill": _kill,
    "reset-kill": _reset_kill,
    "stop-strategy": _stop_strategy,
    "start-strategy": _start_strategy,
    "flatten": _flatten,
    "cancel-order": _cancel_order,
    "order": _order,
    "switch-mode": _switch_mode,
}
