"""Velox: a Jupyter-first research and live-trading workbench for Indian markets.

``import velox`` is deliberately cheap: it imports no pandas, numba, vectorbt, panel or broker
SDK. Every submodule loads on first attribute access (``velox.indicators``, ``velox.engine``,
``velox.strategy`` …), and :func:`bars` and :func:`replay` import what they need when called.

=========================  ==================================================================
name                       what it does
=========================  ==================================================================
:func:`bars`               stored OHLCV bars of one instrument as a DataFrame (IST index)
:func:`replay`             an event-driven backtest of a strategy → :class:`RunResult`
:func:`research`           a vectorised backtest of its ``signals()`` → ``ResearchResult``
:func:`parity`             research vs replay of the same strategy: trades, charges, equity
:func:`check_lookahead`    whether ``signals()`` peeks at later bars
:func:`runs`               recorded runs (replays with ``record=True``, paper, live)
:func:`load_run`           a recorded run rebuilt from the store → :class:`RunResult`
:func:`load_strategy`      the Strategy class in a file or module (``velox.strategy``)
:func:`monte_carlo`        trade-order reshuffle / bootstrap of a result → ``MonteCarloReport``
:func:`optimize`           a parameter sweep (grid or random) of ``signals()`` → ``OptimizeResult``
:func:`walk_forward`       rolling / anchored walk-forward optimisation → ``WalkForwardReport``
:func:`scan`               instruments meeting a preset or condition on one bar, ranked
=========================  ==================================================================

Examples
--------
>>> import velox
>>> df = velox.bars("NSE:RELIANCE", "1d", start="2020-01-01")     # doctest: +SKIP
>>> df.columns.tolist()                                             # doctest: +SKIP
['open', 'high', 'low', 'close', 'volume']
>>> res = velox.replay("strategies/sma_cross.py", symbols="NSE:RELIANCE", timeframe="1d",
...                    fast=10, slow=30)                            # doctest: +SKIP
>>> res.trades.head()                                               # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Every public module of the package, imported on first attribute access (``velox.engine``).
_SUBMODULES = frozenset(
    {
        "alerts",
        "analytics",
        "backtest",
        "brokers",
        "builder",
        "calendar",
        "cli",
        "cli_engine",
        "cli_scan",
        "cli_pipeline",
        "cli_broker",
        "cli_sim",
        "cli_web",
        "cli_alerts",
        "auth",
        "web",
        "ui",
        "workbench",
        "deployment",
        "secrets",
        "config",
        "costs",
        "data",
        "engine",
        "errors",
        "feeds",
        "fno",
        "indicators",
        "instruments",
        "modes",
        "monitoring",
        "oms",
        "options",
        "pipelines",
        "reports",
        "risk",
        "scanner",
        "store",
        "strategy",
        "testing",
        "types",
        "universes",
    }
)

#: Names re-exported from submodules, resolved on first access: name → module.
_REEXPORTS = {
    "load_strategy": "velox.strategy",
    "RunResult": "velox.engine",
    "monte_carlo": "velox.backtest.montecarlo",
    "start_paper": "velox.modes",
    "optimize": "velox.backtest.optimize",
    "walk_forward": "velox.backtest.walkforward",
    "scan": "velox.scanner",
}

#: Keywords of :func:`replay` that configure the run rather than the strategy; every other
#: keyword is a strategy parameter. ``instrument_master`` is ``velox.modes.replay``'s
#: ``instruments`` (the strategy's instruments are ``symbols``); the rest pass through by name.
REPLAY_OPTIONS = frozenset(
    {
        "store",
        "initial_cash",
        "risk_limits",
        "instrument_master",
        "audit",
        "run_id",
        "sim_config",
        "cost_model",
        "slippage",
        "flatten_on_error",
        "reconcile_every",
        "record",  # also an explicit keyword of replay()
    }
)

if TYPE_CHECKING:
    from datetime import date, datetime

    import pandas as pd

    from velox.backtest.montecarlo import monte_carlo  # noqa: F401  (lazy re-export)
    from velox.backtest.optimize import optimize  # noqa: F401  (lazy re-export)
    from velox.backtest.research import ParityReport, ResearchResult
    from velox.backtest.walkforward import walk_forward  # noqa: F401  (lazy re-export)
    from velox.engine import RunResult
    from velox.scanner import scan  # noqa: F401  (lazy re-export)
    from velox.strategy import Strategy, load_strategy  # noqa: F401  (lazy re-export)


def bars(
    instrument_id: str,
    timeframe: str = "1d",
    start: str | datetime | None = None,
    end: str | datetime | None = None,
) -> pd.DataFrame:
    """Return stored OHLCV bars for one instrument as a DataFrame indexed by IST bar start.

    Higher timeframes not stored directly are resampled from finer stored bars, aligned to the
    09:15 IST session open (daily bars are labelled by session date, 00:00 IST). ``start`` and
    ``end`` are inclusive; naive strings/datetimes are read as IST.

    Raises
    ------
    velox.errors.DataError
        If nothing is stored for that instrument and timeframe (the message lists what is).

    Examples
    --------
    >>> import velox
    >>> velox.bars("NSE:NIFTY", "15m", start="2022-09-01", end="2022-09-30")  # doctest: +SKIP
    """
    from velox.calendar import check_timeframe
    from velox.errors import DataError
    from velox.store import open_store
    from velox.types import check_instrument_id

    check_instrument_id(instrument_id)
    check_timeframe(timeframe)
    store = open_store(create=False)
    frame = store.read_bars(instrument_id, timeframe, start=start, end=end)
    if frame.empty:
        summary = store.bar_summary()
        mine = summary[summary["instrument_id"] == instrument_id]
        if mine.empty:
            known = ", ".join(sorted(summary["instrument_id"].unique())[:12])
            raise DataError(
                f"no bars stored for {instrument_id!r}; stored instruments include: "
                f"{known or 'none — run `velox data import` or `make run`'}"
            )
        if start is None and end is None:
            have = ", ".join(sorted(mine["timeframe"]))
            raise DataError(
                f"no {timeframe} bars for {instrument_id} and none finer to resample from; "
                f"stored timeframes: {have}"
            )
    return frame


def replay(
    strategy_or_path: Strategy | type[Strategy] | str | Path,
    symbols: str | Sequence[str] | None = None,
    timeframe: str | None = None,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    bars: pd.DataFrame | Mapping[str, pd.DataFrame] | Mapping[tuple[str, str], pd.DataFrame]
    | None = None,
    record: bool = False,
    **params: Any,
) -> RunResult:  # fmt: skip
    """Return the result of an event-driven replay of one strategy: the notebook entry point.

    The strategy runs through the full engine (OMS, risk checks, the simulated broker with
    Indian charges) exactly as in ``velox replay`` and paper trading; see
    :func:`velox.modes.replay`, to which this delegates.

    Parameters
    ----------
    strategy_or_path
        A Strategy instance, a Strategy subclass, a file (``"strategies/sma_cross.py"``,
        optionally ``"…py:ClassName"``) or ``"module:Class"`` (:func:`load_strategy`).
    symbols
        Instrument id(s) to trade, e.g. ``"NSE:RELIANCE"``: the strategy's ``instruments``.
    timeframe
        The strategy's bar timeframe (``"5m"``, ``"1d"`` …).
    start, end
        First and last session, inclusive (naive values are IST). They limit the bars read from
        the store and also cut ``bars`` when given.
    bars
        Bars to replay instead of the store's: a DataFrame for a one-instrument strategy (the
        one symbol given, or the strategy's only instrument), or a mapping of instrument id →
        DataFrame at the strategy's timeframe (keys may also be ``(instrument id, timeframe)``
        for extra timeframes). Each frame is indexed by tz-aware bar start and must be on the
        timeframe's 09:15 IST grid (00:00 IST for ``1d``).
    record
        Store the run (orders, fills, positions, equity, risk events) under a new run id
        (``result.run_id``, or ``run_id=``): :func:`runs` lists it, :func:`load_run` rebuilds
        it. Off by default so research loops stay fast.
    **params
        The strategy's parameters (``fast=10``); an unknown name raises
        :class:`~velox.errors.ConfigError` with a suggestion. The names in
        :data:`REPLAY_OPTIONS` are run options instead, passed to :func:`velox.modes.replay`:
        ``initial_cash``, ``risk_limits``, ``store``, ``run_id``, ``sim_config``, ``cost_model``,
        ``slippage`` (a ``velox.costs`` slippage model for the simulator),
        ``audit``, ``flatten_on_error``, ``reconcile_every`` and ``instrument_master`` (its
        ``instruments``: the instrument lookup).

    Raises
    ------
    velox.errors.ConfigError
        For an unknown parameter, parameters given with a Strategy instance, or ``bars`` that
        do not say which instrument they are.
    velox.errors.DataError
        If ``bars`` are not on the timeframe's grid (5-minute bars for a daily strategy) or
        miss a subscribed instrument/timeframe, or the store has no bars.

    Examples
    --------
    >>> import velox
    >>> res = velox.replay("strategies/sma_cross.py", symbols="NSE:RELIANCE", timeframe="1d",
    ...                    fast=10, slow=30)                       # doctest: +SKIP
    >>> res.trades.head()                                          # doctest: +SKIP
    >>> res.stats["sharpe"]                                        # doctest: +SKIP
    >>> res.plot()                                                 # doctest: +SKIP
    >>> velox.replay(SmaCross, bars=df, initial_cash=500_000)      # doctest: +SKIP
    """
    from velox.modes import replay as run_replay

    options = {k: params.pop(k) for k in list(params) if k in REPLAY_OPTIONS}
    options["record"] = record
    if "instrument_master" in options:
        options["instruments"] = options.pop("instrument_master")
    strategy = _build_strategy(strategy_or_path, symbols, timeframe, params, options)
    frames = None if bars is None else _bar_frames(strategy, symbols, bars, start, end)
    return run_replay(strategy, bars=frames, start=start, end=end, **options)


def research(
    strategy_or_path: Strategy | type[Strategy] | str | Path,
    bars_or_symbols: pd.DataFrame | Mapping[str, pd.DataFrame] | str | Sequence[str]
    | None = None,
    timeframe: str | None = None,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    **params: Any,
) -> ResearchResult:  # fmt: skip
    """Return a vectorised backtest of a strategy's ``signals()``, exact to the engine's rules.

    The same Strategy class :func:`replay` runs, simulated in one compiled loop instead of the
    event loop, with the engine's conventions: an order decided at a bar's close fills at the
    next bar's open (through the slippage model); quantities as ``Context.target_weight``
    sizes them (``int(weight × equity / close)`` towards zero, whole lots); per-fill Indian
    charges exactly as ``velox.costs.CostModel`` computes them on the fill's date; the
    simulator's funds and holdings checks; MIS positions squared off at the configured time.
    See ``docs/research.md``.

    Parameters
    ----------
    strategy_or_path
        A Strategy instance, subclass, file (``"strategies/sma_cross.py"``) or ``"module:Class"``.
    bars_or_symbols
        Bars as :func:`replay` takes them (a DataFrame for one instrument, or a mapping of
        instrument id → DataFrame at the strategy's timeframe), or instrument id(s) whose bars
        are read from the store; None: the strategy's instruments, from the store.
    timeframe, start, end
        As for :func:`replay` (``start``/``end`` inclusive, naive values IST).
    **params
        Strategy parameters; the run options ``initial_cash`` (default 1,000,000),
        ``cost_model`` (``velox.costs.CostModel``), ``slippage`` (``NoSlippage``,
        ``TickSlippage``, ``BpsSlippage``), ``sim_config`` (``velox.brokers.sim.SimConfig``:
        square-off time and charge, MIS margin), ``instrument_master`` and ``store``.

    Returns
    -------
    velox.backtest.ResearchResult
        ``stats``, ``trades``, ``orders``, ``fills``, ``equity``, ``drawdown`` as in
        :class:`RunResult`, the vectorbt ``portfolio``, ``plot()``.

    Examples
    --------
    >>> import velox
    >>> res = velox.research("strategies/sma_cross.py", "NSE:RELIANCE", timeframe="1d",
    ...                      fast=10, slow=30)                          # doctest: +SKIP
    >>> res.stats["total_return"], res.stats["charges"]                 # doctest: +SKIP
    >>> res.portfolio.total_return()                                    # doctest: +SKIP
    """
    from velox.backtest.research import research as run_research

    return run_research(strategy_or_path, bars_or_symbols, timeframe, start, end, **params)


def parity(
    strategy_or_path: Strategy | type[Strategy] | str | Path,
    bars_or_symbols: pd.DataFrame | Mapping[str, pd.DataFrame] | str | Sequence[str]
    | None = None,
    timeframe: str | None = None,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    **params: Any,
) -> ParityReport:  # fmt: skip
    """Return a report comparing :func:`research` with :func:`replay` of the same strategy.

    ``report.ok`` when both make the same fills and trades (times, instruments, sides,
    quantities, prices), the same charges, and equity curves within 0.01 %
    (``equity_tolerance=``). See :func:`velox.backtest.research.parity`.

    Examples
    --------
    >>> import velox
    >>> velox.parity("strategies/sma_cross.py", df, fast=10, slow=30)    # doctest: +SKIP
    parity OK: 118 fills, 59 trades; charges differ by at most ₹0.00e+00; equity by 0.00e+00
    """
    from velox.backtest.research import parity as run_parity

    return run_parity(strategy_or_path, bars_or_symbols, timeframe, start, end, **params)


def check_lookahead(
    strategy_or_path: Strategy | type[Strategy] | str | Path, bars: pd.DataFrame, **params: Any
) -> list[int]:
    """Raise ``ValidationError`` if ``signals(bars)[:t] != signals(bars[:t])`` at some ``t``.

    Returns an empty list for a causal strategy; ``raise_error=False`` returns the offending
    cut points instead (:func:`velox.strategy.lookahead_violations`).

    Examples
    --------
    >>> import velox
    >>> velox.check_lookahead("strategies/sma_cross.py", df)             # doctest: +SKIP
    []
    """
    from velox.backtest.research import check_lookahead as check

    return check(strategy_or_path, bars, **params)


def runs(
    *, mode: str | None = None, status: str | None = None, limit: int | None = 50
) -> pd.DataFrame:
    """Return recorded runs, newest first: id, mode, account, status, strategies, times and
    the summary statistics of finished runs (``total_return``, ``sharpe`` …) as columns.

    Examples
    --------
    >>> import velox
    >>> velox.runs(mode="replay")[["run_id", "status", "total_return"]]   # doctest: +SKIP
    """
    from velox.store import open_store

    frame = open_store(create=False).runs(mode=mode, status=status, limit=limit)
    for key in ("total_return", "cagr", "max_drawdown", "sharpe", "trades", "charges"):
        frame[key] = [(s or {}).get(key) if isinstance(s, dict) else None for s in frame["summary"]]
    return frame


def load_run(run_id: str) -> RunResult:
    """Return a recorded run rebuilt from the store, equal to the :class:`RunResult` it
    produced (trades, orders, fills, equity, stats); see :func:`velox.modes.load_run`.

    Examples
    --------
    >>> import velox
    >>> res = velox.replay("strategies/sma_cross.py", symbols="NSE:RELIANCE", timeframe="1d",
    ...                    record=True)                                    # doctest: +SKIP
    >>> velox.load_run(res.run_id).trades.equals(res.trades)               # doctest: +SKIP
    True
    """
    from velox.modes import load_run as load

    return load(run_id)


def _build_strategy(
    spec: object,
    symbols: str | Sequence[str] | None,
    timeframe: str | None,
    params: dict[str, Any],
    options: Mapping[str, object],
) -> Strategy:
    from velox.errors import ConfigError
    from velox.strategy import Strategy, load_strategy

    if "instruments" in params:
        raise ConfigError(
            "velox.replay takes the strategy's instruments as symbols= (symbols='NSE:SBIN'); "
            "an instrument lookup goes in instrument_master="
        )
    overrides: dict[str, object] = dict(params)
    if symbols is not None:
        listed = (symbols,) if isinstance(symbols, str) else tuple(symbols)
        if not listed:
            raise ConfigError("symbols= is empty; give an instrument id such as 'NSE:RELIANCE'")
        overrides["instruments"] = listed
    if timeframe is not None:
        overrides["timeframe"] = timeframe
    if isinstance(spec, Strategy):
        if overrides:
            names = ", ".join(f"{k}=" for k in overrides)
            raise ConfigError(
                f"velox.replay got a {type(spec).__name__} instance and {names}: set those when "
                f"building it ({type(spec).__name__}(...)) or pass the class or its file instead"
            )
        return spec
    if isinstance(spec, (str, Path)):
        cls = load_strategy(str(spec))
    elif isinstance(spec, type) and issubclass(spec, Strategy):
        cls = spec
    else:
        raise ConfigError(
            f"velox.replay needs a Strategy instance, a Strategy subclass or a path such as "
            f"'strategies/sma_cross.py', not {type(spec).__name__}"
        )
    clash = sorted(set(options) & set(cls.parameters()))
    if clash:
        raise ConfigError(
            f"{cls.__name__} has a parameter {clash[0]!r}, which velox.replay takes as a run "
            f"option: build the strategy yourself, velox.replay({cls.__name__}({clash[0]}=...))"
        )
    return cls(**overrides)


def _bar_frames(
    strategy: Strategy,
    symbols: str | Sequence[str] | None,
    bars: pd.DataFrame | Mapping[str, pd.DataFrame] | Mapping[tuple[str, str], pd.DataFrame],
    start: date | datetime | str | None,
    end: date | datetime | str | None,
) -> dict[tuple[str, str], pd.DataFrame]:
    """Return ``bars`` as the engine's {(instrument, timeframe): frame}, cut and checked."""
    import pandas as pd

    from velox.errors import ConfigError, DataError

    name = type(strategy).__name__
    if isinstance(bars, pd.DataFrame):
        if len(strategy.instruments) != 1:
            given = "symbols" if symbols is not None else f"{name}.instruments"
            raise ConfigError(
                f"bars= is one DataFrame but {given} lists {len(strategy.instruments)} "
                f"instruments ({', '.join(strategy.instruments) or 'none'}): give one symbol, "
                "or bars as a mapping {instrument_id: DataFrame}"
            )
        bars = {strategy.instruments[0]: bars}
    if not isinstance(bars, Mapping):
        raise ConfigError(
            f"bars= must be a DataFrame or a mapping {{instrument_id: DataFrame}}, not "
            f"{type(bars).__name__}"
        )
    frames: dict[tuple[str, str], pd.DataFrame] = {}
    for key, frame in bars.items():
        iid, tf = key if isinstance(key, tuple) else (key, strategy.timeframe)
        if not isinstance(frame, pd.DataFrame):
            raise ConfigError(f"bars[{key!r}] must be a DataFrame, not {type(frame).__name__}")
        _check_grid(iid, tf, frame)
        frames[(iid, tf)] = _cut(frame, start, end)
    missing = [
        f"{iid} {tf}"
        for iid in strategy.instruments
        for tf in strategy.all_timeframes
        if (iid, tf) not in frames
    ]
    if missing:
        raise DataError(
            f"bars= has no frame for {', '.join(missing)}, which {name} subscribes to; add "
            f"them, keyed by instrument id (at {strategy.timeframe}) or (instrument id, "
            "timeframe)"
        )
    return frames


def _check_grid(instrument_id: str, timeframe: str, frame: pd.DataFrame) -> None:
    """Raise DataError unless every bar of ``frame`` starts on ``timeframe``'s grid.

    A 5-minute frame handed to a daily strategy would otherwise replay without a single
    order (no bar ever closes on the daily clock), silently.
    """
    import pandas as pd

    from velox.calendar import IST_NAME, TIMEFRAMES, bucket_start, check_timeframe
    from velox.errors import DataError

    check_timeframe(timeframe)
    index = frame.index
    what = f"bars for {instrument_id} at {timeframe}"
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(
            f"{what} must be indexed by bar start times (a tz-aware DatetimeIndex), not "
            f"{type(index).__name__}: e.g. df.set_index('ts')"
        )
    if index.tz is None:
        raise DataError(f"{what} have naive times; localise them: df.tz_localize({IST_NAME!r})")
    off = index != bucket_start(index, timeframe)
    if not off.any():
        return
    first = index[off][0].tz_convert(IST_NAME)
    grid = "00:00 IST of each date" if timeframe == "1d" else f"09:15 IST + k × {timeframe}"
    fits = [tf for tf in reversed(TIMEFRAMES) if (index == bucket_start(index, tf)).all()]
    dates = index.tz_convert(IST_NAME).normalize()
    if timeframe == "1d" and dates.is_unique:
        hint = "daily bars are labelled by session date at 00:00 IST: df.index.normalize()"
    elif fits:
        hint = f"they look like {fits[0]} bars: pass timeframe={fits[0]!r} or resample them"
    else:
        hint = "they fit no supported timeframe's grid"
    raise DataError(
        f"{what} are off the {timeframe} grid ({grid}): {first} is not a {timeframe} bar "
        f"start ({int(off.sum())} of {len(index)} bars are not); {hint}"
    )


def _cut(
    frame: pd.DataFrame, start: date | datetime | str | None, end: date | datetime | str | None
) -> pd.DataFrame:
    """Return the rows from ``start`` through ``end`` as the store reads them: both inclusive,
    a date-only ``end`` covering that whole day, naive values in IST."""
    import datetime as dt
    import re

    import pandas as pd

    from velox.calendar import IST_NAME

    def moment(value: date | datetime | str) -> pd.Timestamp:
        ts = pd.Timestamp(value)
        return ts.tz_localize(IST_NAME) if ts.tzinfo is None else ts

    if start is not None:
        frame = frame[frame.index >= moment(start)]
    if end is not None:
        date_only = (isinstance(end, dt.date) and not isinstance(end, dt.datetime)) or (
            isinstance(end, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", end.strip()) is not None
        )
        stop = moment(end)
        frame = (
            frame[frame.index < stop + pd.Timedelta(days=1)]
            if date_only
            else frame[frame.index <= stop]
        )
    return frame


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"velox.{name}")
        globals()[name] = module
        return module
    if name in _REEXPORTS:
        value = getattr(importlib.import_module(_REEXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'velox' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBMODULES, *_REEXPORTS})
