"""Run-mode wiring: the objects each mode hands to the one :class:`velox.engine.Engine`.

=======  ===================================  ==============  ==========  =====================
mode     market source                        broker          clock       audit log
=======  ===================================  ==============  ==========  =====================
replay   ``BarReplay`` of stored bars         ``SimBroker``   replay      memory (or store)
paper    live feed, or a paced bar replay     ``SimBroker``   wall clock  store ``order_events``
live     the broker's live feed               the broker      wall clock  store ``order_events``
=======  ===================================  ==============  ==========  =====================

Nothing else differs: the engine, OMS, risk checks and strategies are the same objects.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from velox.engine import Engine
from velox.errors import ConfigError
from velox.feeds.bar_replay import BarReplay
from velox.oms import AuditLog
from velox.risk import RiskEngine, RiskLimits
from velox.strategy import Strategy
from velox.types import Instrument

if TYPE_CHECKING:
    import pandas as pd

    from velox.brokers.sim import SimConfig
    from velox.engine import RunResult
    from velox.store import Store

__all__ = ["replay", "paper", "load_bars", "default_instruments", "LIVE_NOT_WIRED"]

log = logging.getLogger(__name__)

LIVE_NOT_WIRED = (
    "live trading is not wired yet: broker adapters arrive with the broker issue. Use "
    "`velox paper` (live data + simulated broker) meanwhile; live will also require "
    "--confirm-live"
)


@functools.cache
def _master_lookup() -> Callable[[str], Instrument]:
    from velox.instruments import load_bundled_master

    return load_bundled_master().get


def default_instruments() -> Callable[[str], Instrument]:
    """Return the bundled instrument master's lookup (loaded once per process)."""
    return _master_lookup()


def load_bars(
    store: Store,
    strategies: Sequence[Strategy],
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
) -> BarReplay:
    """Return a replay of the stored bars every strategy subscribes to.

    A subscription without bars (a timeframe not stored and not resampleable, an instrument
    with no data) raises :class:`~velox.errors.DataError` naming what is stored.
    """
    subs = [(i, tf) for s in strategies for i in s.instruments for tf in s.all_timeframes]
    return BarReplay.from_store(store, subs, start, end)


def replay(
    strategies: Strategy | Sequence[Strategy],
    *,
    bars: Mapping[tuple[str, str], pd.DataFrame] | None = None,
    store: Store | None = None,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    initial_cash: float = 1_000_000.0,
    risk_limits: RiskLimits | None = None,
    instruments: Mapping[str, Instrument] | Callable[[str], Instrument] | None = None,
    audit: AuditLog | None = None,
    run_id: str = "R1",
    sim_config: SimConfig | None = None,
    cost_model: object = None,
    flatten_on_error: bool = False,
    reconcile_every: float = 86_400.0,
) -> RunResult:
    """Return the result of an event-driven replay of stored bars through the full engine.

    Bars come from ``bars`` or else from ``store`` (default ``velox.store.open_store()``);
    the broker is a fresh :class:`~velox.brokers.sim.SimBroker` with ``velox.costs.CostModel``
    charges; orders go through the OMS and the risk engine exactly as in paper and live.
    The engine reconciles with the (in-process) simulator at the start and then once per day of
    replayed time (``reconcile_every`` seconds).

    Examples
    --------
    >>> from velox.strategy import load_strategy                       # doctest: +SKIP
    >>> SmaCross = load_strategy("strategies/sma_cross.py")             # doctest: +SKIP
    >>> result = replay(SmaCross(fast=10, slow=30), start="2019-01-01")  # doctest: +SKIP
    >>> result.stats["total_return"]                                     # doctest: +SKIP
    """
    from velox.brokers.sim import SimBroker

    if isinstance(strategies, Strategy):
        strategies = [strategies]
    strategies = list(strategies)
    if not strategies:
        raise ConfigError("replay needs at least one strategy")
    lookup = instruments if instruments is not None else default_instruments()
    get = lookup.__getitem__ if isinstance(lookup, Mapping) else lookup
    runnable, unknown = [], []
    for strategy in strategies:
        try:
            for iid in strategy.instruments:
                get(iid)
            runnable.append(strategy)
        except KeyError as exc:  # UnknownInstrument is a KeyError; the engine reports it too
            unknown.append(exc)
    if not runnable and unknown:
        raise unknown[0]
    if bars is None:
        if store is None:
            from velox.store import open_store

            store = open_store()
        feed = load_bars(store, runnable, start, end)
    else:
        feed = BarReplay(bars)
    broker = SimBroker(
        lookup,
        initial_cash=initial_cash,
        cost_model=cost_model,  # type: ignore[arg-type]
        config=sim_config,
    )
    engine = Engine(
        strategies,
        broker=broker,
        feed=feed,
        instruments=lookup,
        mode="replay",
        initial_cash=initial_cash,
        audit=audit,
        run_id=run_id,
        risk=RiskEngine(risk_limits if risk_limits is not None else RiskLimits()),
        reconcile_every=reconcile_every,
        flatten_on_error=flatten_on_error,
    )
    return engine.run()


def paper(
    strategies: Strategy | Sequence[Strategy],
    *,
    run_id: str = "P1",
    speed: float = 60.0,
    start: str | None = None,
    end: str | None = None,
    initial_cash: float = 1_000_000.0,
    risk_limits: RiskLimits | None = None,
    account: str = "paper",
    store: Store | None = None,
    socket_path: Path | None = None,
    commands_dir: Path | None = None,
    reconcile_every: float = 60.0,
    dump_path: Path | None = None,
) -> RunResult:
    """Return the result of paper trading: stored bars replayed at ``speed``× wall time.

    The simulator runs in its own process (started here unless one already listens on the
    run's socket, which is how a restarted engine resumes the same run). The audit trail is
    the store's ``order_events``; on start the engine rebuilds orders, fills and positions
    from it, books fills it missed from the simulator and reconciles before trading.
    """
    from velox.brokers.sim.paper import (
        PaperBroker,
        PaperConnection,
        PaperFeed,
        listening,
        paper_socket,
        start_sim_server,
    )
    from velox.config import get_settings
    from velox.engine.commands import FileCommands
    from velox.oms import StoreAuditLog

    if isinstance(strategies, Strategy):
        strategies = [strategies]
    strategies = list(strategies)
    lookup = default_instruments()
    for strategy in strategies:
        for iid in strategy.instruments:
            lookup(iid)
    if store is None:
        from velox.store import open_store

        store = open_store()
    path = Path(socket_path) if socket_path is not None else paper_socket(run_id)
    subs = sorted({(i, tf) for s in strategies for i in s.instruments for tf in s.all_timeframes})
    if listening(path):
        log.info("[paper] resuming run %s: the simulator is still running", run_id)
    else:
        start_sim_server(subs, path, speed=speed, initial_cash=initial_cash, start=start,
                         end=end, dump_path=dump_path)  # fmt: skip
    link = PaperConnection(path)
    commands = FileCommands(
        commands_dir if commands_dir is not None else get_settings().data_dir / "commands",
        account=account,
    )
    engine = Engine(
        strategies,
        broker=PaperBroker(link),
        feed=PaperFeed(link, {iid for iid, _ in subs}),
        instruments=lookup,
        mode="paper",
        initial_cash=initial_cash,
        audit=StoreAuditLog(store, "paper"),
        run_id=run_id,
        risk=RiskEngine(risk_limits if risk_limits is not None else RiskLimits(), account=account),
        reconcile_every=reconcile_every,
        commands=commands,
        restore=True,
    )
    try:
        return engine.run()
    finally:
        link.close()
