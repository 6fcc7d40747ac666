"""One reader of the store per process, shared by every console and notebook widget in it.

A console must not query the store per browser tab: with a few hundred traders watching, a
poll per tab per 100 ms would be the database's whole load. :class:`LiveRuns` is the one place
that reads a run's live state. A background thread LISTENs on ``velox_runs`` and
``velox_commands`` (a run's recorder notifies after every batch it writes, a command after it
is issued or answered) and, for each run someone watches, re-reads its quotes, positions,
orders, fills, risk events, venue and the candles of the instruments on screen into an
immutable :class:`RunSnapshot` with a new version number. Each read fetches only the rows
written since the previous one (:meth:`velox.store.Store.run_changes`) and merges them; a table
that did not change keeps its frame object, so a component can skip it by identity.
Components compare versions and redraw only what changed, so the store sees one read per
batch per run whatever the number of viewers. A console on the web server is told of each
new snapshot (:meth:`LiveRuns.subscribe`) and redraws at once, so a tick reaches the screen
within one recorder flush and one read; a component alone in a notebook checks on its own
(cheap, store-free) timer.

Notifications are hints (a lost one is made up by a re-read every :data:`FLOOR_S` seconds).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pandas as pd

    from velox.store import Store
    from velox.store.runs import RunChanges

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Seconds between re-reads of a watched run when no notification came.
FLOOR_S = 2.0
#: A run nobody asked about for this long is no longer read.
IDLE_S = 60.0


@dataclass(frozen=True)
class RunSnapshot:
    """A watched run's state as last read from the store (frames are never modified)."""

    run_id: str
    version: int
    run: dict[str, Any]
    quotes: pd.DataFrame
    positions: pd.DataFrame
    orders: pd.DataFrame
    fills: pd.DataFrame
    risk_events: pd.DataFrame
    venue: str
    #: instrument_id -> its newest candles (the forming one last) for each watched chart.
    candles: dict[str, pd.DataFrame] = field(default_factory=dict)
    read_at: float = 0.0
    #: Frames derived from this snapshot (the watchlist's rows, say), computed by the first
    #: session that needs one and shared by every other: :meth:`derived_frame`.
    derived: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def derived_frame(self, name: str, build: Callable[[RunSnapshot], _T]) -> _T:
        """Return ``build(self)``, computed once per snapshot for all sessions (do not modify
        it). Two sessions racing may both build it; either result is the same."""
        frame = self.derived.get(name)
        if frame is None:
            frame = self.derived[name] = build(self)
        return frame

    @property
    def killed(self) -> bool:
        """True while the kill switch is engaged: its last kill/reset event is a kill."""
        events = self.risk_events
        if events.empty:
            return False
        switch = events[events["kind"].isin(["kill", "reset"])]
        return bool(len(switch)) and switch["kind"].iloc[-1] == "kill"


@dataclass
class _Rows:
    """A watched run's rows as merged so far, keyed as the tables are, and the frames built
    from them (kept, and handed to the next snapshot as the same objects, while unchanged)."""

    mark: int
    quotes: dict[str, tuple]
    positions: dict[tuple, tuple]
    orders: dict[str, tuple]
    fills: dict[int, tuple]
    risk_events: dict[int, tuple]
    frames: dict[str, pd.DataFrame]


def _merge(rows: _Rows | None, changes: RunChanges) -> _Rows:
    """Fold ``changes`` into ``rows`` (None, or a full read: start afresh); rebuild only the
    frames of tables that changed, in exactly the order the store's full readers return."""
    from velox.store.runs import (
        fills_frame,
        orders_frame,
        positions_frame,
        quotes_frame,
        risk_events_frame,
    )

    if rows is None or changes.full:
        rows = _Rows(0, {}, {}, {}, {}, {}, {})
    frames = dict(rows.frames)
    rows = _Rows(changes.mark, rows.quotes, rows.positions, rows.orders, rows.fills,
                 rows.risk_events, frames)  # fmt: skip
    keyed = (
        ("quotes", rows.quotes, changes.quotes, changes.quote_keys, quotes_frame, 1),
        ("positions", rows.positions, changes.positions, changes.position_keys,
         positions_frame, 4),
        ("orders", rows.orders, changes.orders, changes.order_keys, orders_frame, 1),
    )  # fmt: skip
    for name, known, changed, order, build, width in keyed:
        if changed or name not in frames:
            for row in changed:
                known[row[0] if width == 1 else row[:width]] = row
            if changed:  # the keys of every row, in the full reader's order
                merged = {key: known[key] for key in order}
                known.clear()
                known.update(merged)
            frames[name] = build(list(known.values()))
    appended = (
        ("fills", rows.fills, changes.fills, fills_frame, lambda r: r[0]),
        ("risk_events", rows.risk_events, changes.risk_events, risk_events_frame,
         lambda r: (r[1], r[0])),  # ts, id
    )  # fmt: skip
    for name, known, changed, build, order_key in appended:
        if changed or name not in frames:
            for row in changed:
                known[row[0]] = row
            ordered = sorted(known.values(), key=order_key)
            frames[name] = build([row[1:] for row in ordered])
    return rows


@dataclass
class _Watch:
    last_asked: float
    instruments: dict[str, float] = field(default_factory=dict)  # instrument -> last asked


class LiveRuns:
    """The process's reader of live run state (see the module docstring).

    :meth:`shared` returns the one instance of a store; :meth:`snapshot` returns the latest
    :class:`RunSnapshot` of a run (reading it synchronously the first time) and keeps the run
    watched; :meth:`watch_candles` adds an instrument's candles to what is read.
    """

    _instances: dict[int, LiveRuns] = {}
    _instances_lock = threading.Lock()

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._watched: dict[str, _Watch] = {}
        self._snapshots: dict[str, RunSnapshot] = {}
        self._rows: dict[str, _Rows] = {}  # merged rows of each watched run
        self._read_lock = threading.Lock()
        self._dirty: set[str] = set()
        self._version = 0
        self._instruments: dict[str, dict[str, Any] | None] | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._listeners: list[Callable[[str], bool]] = []
        self._thread: threading.Thread | None = None
        self.reads = 0  # store reads made (tests and the benchmark count them)

    @classmethod
    def shared(cls, store: Store) -> LiveRuns:
        """The one :class:`LiveRuns` of ``store`` in this process (started on first use)."""
        with cls._instances_lock:
            live = cls._instances.get(id(store))
            if live is None or live.store is not store:
                live = cls._instances[id(store)] = cls(store)
            return live

    # -- what components call ----------------------------------------------------------------

    def snapshot(self, run_id: str) -> RunSnapshot:
        """Return the latest snapshot of ``run_id`` (read now if it was never read)."""
        now = time.monotonic()
        with self._lock:
            watch = self._watched.setdefault(run_id, _Watch(now))
            watch.last_asked = now
            snap = self._snapshots.get(run_id)
        self._ensure_thread()
        if snap is None:
            snap = self._read(run_id)
        return snap

    def version(self, run_id: str) -> int:
        """The version of the run's latest snapshot (0 before the first read)."""
        snap = self._snapshots.get(run_id)
        return 0 if snap is None else snap.version

    def watch_candles(self, run_id: str, instrument_id: str) -> None:
        """Read ``instrument_id``'s candles with the run from now on (a chart shows them)."""
        now = time.monotonic()
        with self._lock:
            watch = self._watched.setdefault(run_id, _Watch(now))
            new = instrument_id not in watch.instruments
            watch.instruments[instrument_id] = now
        if new:
            self.refresh(run_id)

    def subscribe(self, listener: Callable[[str], bool]) -> None:
        """Call ``listener(run_id)`` on the reader's thread after each new snapshot; a
        listener returning False is dropped (its screen is gone). It must be quick and
        thread-safe: a console's hands the update to its own session's event loop."""
        with self._lock:
            self._listeners.append(listener)

    def refresh(self, run_id: str, *, wait: bool = False) -> None:
        """Re-read ``run_id`` now (after a command, say) or on the reader thread."""
        if wait:
            self._read(run_id)
        else:
            with self._lock:
                self._dirty.add(run_id)
            self._wake.set()

    def instrument(self, instrument_id: str) -> dict[str, Any] | None:
        """Lot and tick size of ``instrument_id`` (None if unknown): from the store's master
        when it has the instrument (a broker's, imported), else the bundled master the paper
        engines trade on."""
        if self._instruments is None:
            frame = self.store.read_instruments()
            self._instruments = {
                row["id"]: {"lot_size": row["lot_size"], "tick_size": row["tick_size"]}
                for row in frame[["id", "lot_size", "tick_size"]].to_dict("records")
            }
        if instrument_id in self._instruments:
            return self._instruments[instrument_id]
        from velox.errors import VeloxError
        from velox.modes import default_instruments

        try:
            found = default_instruments()(instrument_id)
        except (VeloxError, KeyError, ValueError):
            known = None
        else:
            known = {"lot_size": found.lot_size, "tick_size": found.tick_size}
        # kept, an unknown id too: the bundled master's miss looks for close ids (≈ 50 ms),
        # and every console's page build asks for the ticket's instruments (bounded: the ids
        # come from pages)
        if len(self._instruments) < 200_000:
            self._instruments[instrument_id] = known
        return known

    def close(self) -> None:
        """Stop the reader thread (tests; a server process keeps it for its life)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._instances_lock:
            if self._instances.get(id(self.store)) is self:
                del self._instances[id(self.store)]

    # -- the reader ------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._loop, name="velox-ui-live",
                                                    daemon=True)  # fmt: skip
                    self._thread.start()

    def _loop(self) -> None:
        listener = None
        while not self._stop.is_set():
            try:
                if listener is None:
                    listener = self.store.listen("velox_runs", "velox_commands")
                notes = listener.wait(0.25)
            except Exception as exc:  # noqa: BLE001 - a store outage must not kill the reader
                log.warning("live reader: %s; retrying", exc)
                listener = None
                self._stop.wait(1.0)
                notes = []
            now = time.monotonic()
            with self._lock:
                for run_id in [r for r, w in self._watched.items() if now - w.last_asked > IDLE_S]:
                    del self._watched[run_id]
                    self._snapshots.pop(run_id, None)
                    self._rows.pop(run_id, None)
                for watch in self._watched.values():
                    for iid in [i for i, t in watch.instruments.items() if now - t > IDLE_S]:
                        del watch.instruments[iid]
                watched = set(self._watched)
                due = {r for r in watched if now - self._read_at(r) >= FLOOR_S}
                due |= self._dirty & watched
                self._dirty.clear()
            for _channel, payload in notes:
                if payload == "":
                    due |= watched  # reconnected or a command without targets: re-read all
                elif payload in watched:
                    due.add(payload)
            self._wake.clear()
            for run_id in sorted(due):
                try:
                    self._read(run_id)
                except Exception as exc:  # noqa: BLE001 - keep serving the other runs
                    log.warning("live reader: run %s: %s", run_id, exc)
        if listener is not None:
            listener.close()

    def _read_at(self, run_id: str) -> float:
        snap = self._snapshots.get(run_id)
        return 0.0 if snap is None else snap.read_at

    def _read(self, run_id: str) -> RunSnapshot:
        """Read what changed in the run since its last read (everything the first time) and
        publish the merged state as a new snapshot; unchanged tables keep their frames."""
        store = self.store
        with self._read_lock:  # one merge at a time: the reader thread and first snapshots
            with self._lock:
                watch = self._watched.get(run_id)
                wanted = list(watch.instruments) if watch is not None else []
                previous = self._snapshots.get(run_id)
                rows = self._rows.get(run_id)
            changes = store.run_changes(run_id, None if rows is None else rows.mark)
            rows = _merge(rows, changes)
            candles = {iid: store.run_candles(run_id, iid, limit=3) for iid in wanted}
            venue = store.run_venue(run_id)
            with self._lock:
                if run_id in self._watched or previous is None:
                    self._rows[run_id] = rows
        snap = RunSnapshot(
            run_id=run_id,
            version=0,
            run=changes.run,
            quotes=rows.frames["quotes"],
            positions=rows.frames["positions"],
            orders=rows.frames["orders"],
            fills=rows.frames["fills"],
            risk_events=rows.frames["risk_events"],
            venue=venue,
            candles=candles,
            read_at=time.monotonic(),
        )
        self.reads += 1
        with self._lock:
            self._version += 1
            object.__setattr__(snap, "version", self._version)
            if run_id in self._watched or previous is None:
                self._snapshots[run_id] = snap
            listeners = list(self._listeners)
        gone = []
        for listener in listeners:
            try:
                keep = listener(run_id)
            except Exception as exc:  # noqa: BLE001 - one screen's error must not stop others
                log.warning("live reader: a listener failed: %s", exc)
                keep = False
            if keep is False:
                gone.append(listener)
        if gone:
            with self._lock:
                self._listeners = [x for x in self._listeners if x not in gone]
        return snap
