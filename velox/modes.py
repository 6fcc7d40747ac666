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
from typing import TYPE_CHECKING

from velox.engine import BarReplay, Engine
from velox.errors import ConfigError, DataError
from velox.oms import AuditLog
from velox.risk import RiskEngine, RiskLimits
from velox.strategy import Strategy
from velox.types import Instrument

if TYPE_CHECKING:
    import pandas as pd

    from velox.backtest.result import RunResult
    from velox.brokers.sim import SimConfig
    from velox.store import Store

__all__ = ["replay", "load_bars", "default_instruments", "LIVE_NOT_WIRED"]

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
) -> dict[tuple[str, str], pd.DataFrame]:
    """Return the stored bars every strategy subscribes to, by (instrument, timeframe)."""
    out = {}
    for strategy in strategies:
        for iid in strategy.instruments:
            for tf in strategy.all_timeframes:
                if (iid, tf) in out:
                    continue
                frame = store.read_bars(iid, tf, start, end)
                if frame.empty:
                    raise DataError(
                        f"no {tf} bars of {iid} in the store"
                        + (f" between {start} and {end}" if start or end else "")
                        + "; import them with `velox data import` (or `velox run` for the "
                        "bundled set) or pick another --symbol/--timeframe"
                    )
                out[(iid, tf)] = frame
    return out


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
) -> RunResult:
    """Return the result of an event-driven replay of stored bars through the full engine.

    Bars come from ``bars`` or else from ``store`` (default ``velox.store.open_store()``);
    the broker is a fresh :class:`~velox.brokers.sim.SimBroker` with ``velox.costs.CostModel``
    charges; orders go through the OMS and the risk engine exactly as in paper and live.

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
        bars = load_bars(store, runnable, start, end)
    broker = SimBroker(
        lookup,
        initial_cash=initial_cash,
        cost_model=cost_model,  # type: ignore[arg-type]
        config=sim_config,
    )
    engine = Engine(
        strategies,
        broker=broker,
        feed=BarReplay(bars),
        instruments=lookup,
        mode="replay",
        initial_cash=initial_cash,
        audit=audit,
        run_id=run_id,
        risk=RiskEngine(risk_limits if risk_limits is not None else RiskLimits()),
        flatten_on_error=flatten_on_error,
    )
    return engine.run()
