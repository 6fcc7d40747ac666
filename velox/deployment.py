"""Deployments on a broker's live market data: live trading and its dry run.

``velox live STRATEGY --broker kite --confirm-live`` and ``velox paper STRATEGY --broker kite``
are one function, :func:`deploy`, handing the one :class:`velox.engine.Engine` a different
venue, never a different code path:

==========  ========================  ==============================  ==========  ==========
mode        market data               orders go to                    clock       audit mode
==========  ========================  ==============================  ==========  ==========
live        the broker's ticker       the broker                      FeedClock   live
dry-run     the broker's ticker       the simulator server (its own   FeedClock   paper
                                      process, fed the live ticks)
==========  ========================  ==============================  ==========  ==========

Both venues of a deployment are built at the start (the live one only with ``confirm_live``),
so the ``switch-mode`` command moves a running deployment between them
(:meth:`velox.engine.Engine.switch_venue`): dry-run ⇄ live, audited, flat book only. The
simulator runs in its own process (:mod:`velox.brokers.sim.paper`) so a dry run survives an
engine crash as a broker would; a restarted deployment (same ``run_id``) resumes it.

The broker comes from :func:`velox.brokers.connect` by name: one registry line per broker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, time
from pathlib import Path
from typing import TYPE_CHECKING

from velox.brokers.base import ConnectionEvent, MarketData, TickMode
from velox.calendar import IST, is_trading_day, session_bounds
from velox.errors import ConfigError
from velox.feeds.clock import FeedClock, to_ns
from velox.risk import RiskLimits
from velox.strategy import Strategy
from velox.types import Tick

if TYPE_CHECKING:
    from velox.engine import RunResult
    from velox.store import Store

__all__ = ["deploy", "ClockedFeed", "LIVE_REFUSED"]

log = logging.getLogger(__name__)

LIVE_REFUSED = (
    "refusing to trade live through {broker!r} without --confirm-live: real orders need that "
    "explicit flag (or run `velox paper STRATEGY --broker {broker}` for a dry run on live data)"
)


class ClockedFeed:
    """A live :class:`~velox.brokers.base.MarketData` whose ticks move a :class:`FeedClock`.

    The clock reads the market's time from the ticks (the broker's exchange timestamps) on the
    feed's own thread, before the tick reaches the engine's queue. ``stop_after`` ends the feed
    (and so the run) once the market's time passes the close of the first tick's session plus
    that many seconds (``None``: run until stopped); the clock is watched between ticks too,
    since a closed market sends none.
    """

    def __init__(
        self, feed: MarketData, clock: FeedClock, *, stop_after: float | None = 60.0
    ) -> None:
        self.feed = feed
        self.clock = clock
        self.name = feed.name
        self.stop_after = stop_after
        self._stop_ns: int | None = None
        self._stopped = threading.Event()

    def subscribe(self, instrument_ids: Collection[str], mode: TickMode = TickMode.QUOTE) -> None:
        self.feed.subscribe(instrument_ids, mode)

    def unsubscribe(self, instrument_ids: Collection[str]) -> None:
        self.feed.unsubscribe(instrument_ids)

    def run(self, callback: Callable[[Tick | ConnectionEvent], object]) -> None:
        advance = self.clock.advance_to

        def on_event(event: Tick | ConnectionEvent) -> None:
            if event.__class__ is Tick:
                ns = to_ns(event.ts)  # type: ignore[union-attr]
                if self._stop_ns is None and self.stop_after is not None:
                    self._stop_ns = _session_close_ns(event.ts) + int(self.stop_after * 1e9)  # type: ignore[union-attr]
                advance(ns)
            callback(event)

        watcher = threading.Thread(target=self._watch, name="velox-feed-clock", daemon=True)
        watcher.start()
        try:
            self.feed.run(on_event)
        finally:
            self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(0.1):
            if self._stop_ns is not None and self.clock.now_ns() >= self._stop_ns:
                log.info("the session is over (%s): ending the run", self.clock.now())
                self.stop()
                return

    def stop(self) -> None:
        self._stopped.set()
        self.feed.stop()


def _session_close_ns(ts: datetime) -> int:
    """Return the close of ``ts``'s session (UTC ns); the end of its IST day if it is none."""
    day = ts.astimezone(IST).date()
    if is_trading_day(day):
        return to_ns(session_bounds(day)[1].to_pydatetime())
    return to_ns(datetime.combine(day, time(23, 59, 59), tzinfo=IST))


def deploy(
    strategies: Strategy | Sequence[Strategy],
    *,
    broker: str,
    dry_run: bool,
    confirm_live: bool = False,
    run_id: str | None = None,
    account: str | None = None,
    initial_cash: float | None = None,
    risk_limits: RiskLimits | None = None,
    store: Store | None = None,
    socket_path: Path | None = None,
    reconcile_every: float = 60.0,
    stop_after: float | None = 60.0,
    dump_path: Path | None = None,
) -> RunResult:
    """Return the result of trading ``strategies`` on ``broker``'s live market data.

    ``dry_run=True`` sends the orders to the simulated exchange (paper trading on live data,
    run id ``P1`` by default); ``dry_run=False`` to the broker itself, which needs
    ``confirm_live=True`` (run id ``L1``). With ``confirm_live`` a dry run may also be
    switched to live by the ``switch-mode`` command, and a live run may always be switched to
    its dry run. ``initial_cash`` defaults to the broker's cash for a live run and ₹10 lakh for
    a dry run. The run ends ``stop_after`` seconds after the close of the session of its first
    tick (``None``: when stopped: Ctrl-C, ``engine.stop()``).

    Everything that can be checked is checked before anything starts: the options, the
    instruments, the broker session (an expired or missing login raises
    :class:`~velox.errors.AuthExpired` naming ``velox broker login``), and that no other engine
    runs ``run_id``. The run is recorded (``runs`` row, audit trail ``order_events``) and
    takes the store's operator commands; a restart with the same ``run_id`` resumes it.
    """
    from velox.brokers import connect
    from velox.brokers.sim.paper import (
        PaperConnection,
        PaperVenue,
        paper_socket,
        socket_state,
        start_sim_server,
    )
    from velox.modes import check_paper_options, default_instruments, trade_recorded

    if isinstance(strategies, Strategy):
        strategies = [strategies]
    strategies = list(strategies)
    if not strategies:
        raise ConfigError("a deployment needs at least one strategy")
    if not dry_run and not confirm_live:
        raise ConfigError(LIVE_REFUSED.format(broker=broker))
    mode = "paper" if dry_run else "live"
    run_id = run_id or ("P1" if dry_run else "L1")
    account = account or broker
    check_paper_options(run_id=run_id, speed=1.0, start=None, end=None,
                        initial_cash=initial_cash or 1.0, account=account)  # fmt: skip
    lookup = default_instruments()
    for strategy in strategies:
        for iid in strategy.instruments:
            lookup(iid)
    if store is None:
        from velox.store import open_store

        store = open_store(create=False)
    connection = connect(broker, store=store, instruments=lookup)  # AuthExpired: log in first
    try:
        live = connection.broker
        if initial_cash is None:
            initial_cash = live.funds().cash if not dry_run else 1_000_000.0
        path = Path(socket_path) if socket_path is not None else paper_socket(run_id)
        with store.hold_run(run_id):
            if socket_state(path) == "live":
                log.info("[%s] resuming run %s: its dry-run simulator is still running", mode,
                         run_id)  # fmt: skip
            else:
                start_sim_server((), path, speed=1.0, initial_cash=initial_cash,
                                 dump_path=dump_path)  # fmt: skip
            link = PaperConnection(path)
            dry = PaperVenue(link)
            try:
                ids = sorted({iid for s in strategies for iid in s.instruments})
                connection.feed.subscribe(ids, TickMode.FULL)  # full: exchange timestamps
                clock = FeedClock()
                result = trade_recorded(
                    strategies, store=store, run_id=run_id, mode=mode, account=account,
                    initial_cash=initial_cash,
                    params={"broker": broker, "confirm_live": confirm_live},
                    risk_limits=risk_limits, reconcile_every=reconcile_every,
                    broker=live if not dry_run else dry,
                    venues={"dry-run": dry, **({"live": live} if confirm_live else {})},
                    feed=ClockedFeed(connection.feed, clock, stop_after=stop_after),
                    clock=clock, instruments=lookup,
                )  # fmt: skip
                dry.shutdown()  # a finished run's simulator exits (a crashed one stays up)
                return result
            finally:
                link.close()
    finally:
        connection.close()
