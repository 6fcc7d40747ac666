"""Walk-forward optimisation: optimise in-sample, trade the winner out-of-sample, repeat.

:func:`walk_forward` (``velox.walk_forward``) cuts the bars into folds. In each fold the
strategy's parameters are optimised on the **in-sample** window by :func:`velox.optimize`
and the best combination is backtested on the **out-of-sample** window that follows it. The
:class:`WalkForwardReport` holds every fold (windows, best parameters, in- and out-of-sample
statistics, the out-of-sample :class:`~velox.backtest.ResearchResult`), the stitched
out-of-sample equity curve, its statistics and a parameter stability table.

Conventions (``docs/research-sweeps.md``):

* **Windows.** ``train``/``test``/``step`` are either whole numbers of **bars** (rows of the
  bars' time index; for a universe, the union of its instruments' bar times) or calendar
  **spans** (``"365D"``, ``"90D"``, ``pd.Timedelta``, ``pd.DateOffset(months=6)``): a window
  is ``[start, start + span)`` of bar start times. Both of one kind. Fold ``k``'s in-sample
  window starts at ``k × step`` (rolling) or at the first bar (``anchored=True``: it grows by
  ``step`` each fold) and is ``train`` long; its out-of-sample window is the ``test`` after
  it. ``step`` defaults to ``test``, so the out-of-sample windows tile the bars after the first
  in-sample window without gaps or overlaps; the last one ends with the bars (it may be
  shorter). A ``step`` larger than ``test`` leaves gaps (never traded); a smaller one is
  refused (overlapping out-of-sample windows would count bars twice).
* **In-sample.** ``velox.optimize`` on the in-sample bars alone (the strategy warms up inside
  the window, as a plain ``velox.research`` of those bars would).
* **Warm-up out-of-sample.** With ``warmup="history"`` (default) the best strategy's
  ``signals()`` see every bar from the first one up to the end of the out-of-sample window,
  and only the out-of-sample rows are traded: indicators are warm on the first out-of-sample
  bar, as they would be for a strategy that had been running (causal ``signals`` cannot see
  the future; ``velox.check_lookahead`` tests that). ``warmup=N`` gives them the ``N`` bars
  before the window instead, ``warmup=0`` none (the window alone, exactly
  ``velox.research`` of its bars).
* **Stitching.** Each out-of-sample backtest starts flat with the previous one's final equity
  as its cash (the first with ``initial_cash``); a position open at a window's end is valued at
  its last close and not carried into the next window (the next fold's strategy decides
  afresh, paying charges to re-enter). The stitched curve is the windows' equity curves one
  after another, so it compounds; :attr:`WalkForwardReport.stats` are ``summary_stats`` of that
  curve and of every window's trades.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from velox.errors import ConfigError
from velox.strategy import Strategy

if TYPE_CHECKING:
    import holoviews as hv
    from distributed import Client

    from velox.backtest.optimize import _Job
    from velox.backtest.research import ResearchResult

__all__ = ["walk_forward", "WalkForwardReport", "Fold", "fold_windows"]

log = logging.getLogger(__name__)

Span = int | str | pd.Timedelta | pd.DateOffset


# -- the windows --------------------------------------------------------------------------------


def _span(value: object, name: str) -> int | pd.DateOffset:
    if isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} must be a number of bars or a span such as '90D'")
    if isinstance(value, (int, np.integer)):
        if value < 1:
            raise ConfigError(f"{name}={value} bars must be ≥ 1")
        return int(value)
    try:
        offset = pd.tseries.frequencies.to_offset(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name}={value!r} is neither a number of bars (252) nor a calendar span "
            "('365D', '90D', pd.DateOffset(months=6))"
        ) from None
    if pd.Timestamp("2020-01-01") + offset <= pd.Timestamp("2020-01-01"):
        raise ConfigError(f"{name}={value!r} must be a positive span")
    return offset


def fold_windows(
    index: pd.DatetimeIndex,
    train: Span,
    test: Span,
    *,
    step: Span | None = None,
    anchored: bool = False,
) -> list[tuple[int, int, int, int]]:
    """Return each fold's (in-sample start, in-sample stop, out-of-sample start, stop) rows.

    Rows of ``index`` (bar start times), stops exclusive; see the module documentation for the
    conventions. Raises :class:`~velox.errors.ConfigError` when no fold fits.

    Examples
    --------
    >>> idx = pd.date_range("2024-01-01", periods=10, freq="D", tz="Asia/Kolkata")
    >>> fold_windows(idx, train=4, test=3)
    [(0, 4, 4, 7), (3, 7, 7, 10)]
    >>> fold_windows(idx, train=4, test=3, anchored=True)
    [(0, 4, 4, 7), (0, 7, 7, 10)]
    """
    n = len(index)
    tr, te = _span(train, "train"), _span(test, "test")
    st = te if step is None else _span(step, "step")
    kinds = {isinstance(x, int) for x in (tr, te, st)}
    if len(kinds) > 1:
        raise ConfigError(
            f"train={train!r}, test={test!r}, step={step!r} mix bar counts and calendar spans: "
            "give all as bars (252, 63) or all as spans ('365D', '90D')"
        )
    out: list[tuple[int, int, int, int]] = []
    if isinstance(tr, int):
        if st < te:  # type: ignore[operator]
            raise ConfigError(
                f"step={st} < test={te}: out-of-sample windows would overlap; use step ≥ test"
            )
        k = 0
        while True:
            a = 0 if anchored else k * st  # type: ignore[operator]
            b = (tr + k * st) if anchored else a + tr  # type: ignore[operator]
            if b >= n:
                break
            out.append((a, b, b, min(b + te, n)))  # type: ignore[operator]
            k += 1
    else:
        times = index
        first = times[0]
        if first + st < first + te:  # type: ignore[operator]
            raise ConfigError(
                f"step={step!r} is shorter than test={test!r}: out-of-sample windows would "
                "overlap; use step ≥ test"
            )
        k = 0
        while True:
            start = first if anchored else first + k * st  # type: ignore[operator]
            stop = (first + tr + k * st) if anchored else start + tr  # type: ignore[operator]
            a, b = (int(times.searchsorted(t, "left")) for t in (start, stop))
            if b >= n:
                break
            c = int(times.searchsorted(stop + te, "left"))  # type: ignore[operator]
            if b > a and c > b:
                out.append((a, b, b, c))
            k += 1
    if not out:
        raise ConfigError(
            f"{n} bars ({index[0]} → {index[-1]}) hold no fold of train={train!r} followed by "
            f"test={test!r}: shorten the windows or give more bars"
        )
    short = [f for f in out if f[1] - f[0] < 2]
    if short:
        raise ConfigError(
            f"train={train!r} gives an in-sample window of {short[0][1] - short[0][0]} bar(s); "
            "make it longer"
        )
    return out


# -- the report ---------------------------------------------------------------------------------


@dataclass(eq=False)
class Fold:
    """One fold: its windows (IST bar start times, ends inclusive), the in-sample sweep's best
    parameters and statistics, and the out-of-sample backtest of those parameters."""

    number: int
    in_sample_start: pd.Timestamp
    in_sample_end: pd.Timestamp
    out_of_sample_start: pd.Timestamp
    out_of_sample_end: pd.Timestamp
    rows: tuple[int, int, int, int]
    best_params: dict[str, object]
    in_sample_stats: dict[str, float]
    out_of_sample_stats: dict[str, float]
    out_of_sample_initial_cash: float
    result: ResearchResult = field(repr=False)
    in_sample_table: pd.DataFrame = field(repr=False)


@dataclass(eq=False)
class WalkForwardReport:
    """The result of :func:`walk_forward`: folds, stitched out-of-sample equity, stability.

    Attributes
    ----------
    folds
        One :class:`Fold` per window pair, in time order.
    params, metric
        The swept parameters and the statistic that chose each fold's best combination.
    """

    strategy: Strategy
    folds: list[Fold]
    params: list[str]
    metric: str
    anchored: bool
    train: object
    test: object
    step: object
    warmup: object
    initial_cash: float
    _cache: dict[str, object] = field(default_factory=dict, repr=False)

    @property
    def table(self) -> pd.DataFrame:
        """Return one row per fold: windows, best parameters, in- and out-of-sample metric,
        out-of-sample return, drawdown and trades."""
        rows = []
        for f in self.folds:
            rows.append(
                {
                    "fold": f.number,
                    "in_sample_start": f.in_sample_start,
                    "in_sample_end": f.in_sample_end,
                    "out_of_sample_start": f.out_of_sample_start,
                    "out_of_sample_end": f.out_of_sample_end,
                    **f.best_params,
                    f"in_sample_{self.metric}": f.in_sample_stats[self.metric],
                    f"out_of_sample_{self.metric}": f.out_of_sample_stats[self.metric],
                    "out_of_sample_return": f.out_of_sample_stats["total_return"],
                    "out_of_sample_max_drawdown": f.out_of_sample_stats["max_drawdown"],
                    "out_of_sample_trades": f.out_of_sample_stats["trades"],
                }
            )
        return pd.DataFrame(rows).set_index("fold")

    @property
    def equity(self) -> pd.Series:
        """Return the stitched out-of-sample equity (rupees) at every close event, IST times."""
        cached = self._cache.get("equity")
        if cached is None:
            ns, values = self._curve()
            index = pd.DatetimeIndex(pd.to_datetime(ns, utc=True)).tz_convert("Asia/Kolkata")
            cached = self._cache["equity"] = pd.Series(values, index=index, name="equity")
        return cached  # type: ignore[return-value]

    def _curve(self) -> tuple[np.ndarray, np.ndarray]:
        ns = np.concatenate([f.result.universe.close_event_ns() for f in self.folds])
        values = np.concatenate([f.result.equity_values_array for f in self.folds])
        return ns, values

    @property
    def stats(self) -> dict[str, float]:
        """Return ``summary_stats`` of the stitched out-of-sample curve and every window's
        trades (the walk-forward's honest figures)."""
        cached = self._cache.get("stats")
        if cached is None:
            from velox.engine.result import summary_stats

            ns, values = self._curve()
            trades = [t for f in self.folds for t in f.result.trade_list]
            charges = 0.0
            for f in self.folds:
                for fill in f.result.fill_list:
                    charges += fill.charges
            cached = self._cache["stats"] = summary_stats(
                ns, values, self.initial_cash, trades, charges
            )
        return cached  # type: ignore[return-value]

    @property
    def parameters(self) -> pd.DataFrame:
        """Return the best parameters of each fold (folds × parameters)."""
        return pd.DataFrame(
            [f.best_params for f in self.folds],
            index=pd.Index([f.number for f in self.folds], name="fold"),
        )

    @property
    def stability(self) -> pd.DataFrame:
        """Return how stable each parameter's best value was across folds.

        Per parameter: ``mean``, ``std``, ``min``, ``max`` (numeric parameters), ``distinct``
        values, ``changes`` from one fold to the next, the ``most_common`` value and the
        ``share`` of folds that chose it. Unstable parameters (many changes, a small share)
        mean the in-sample optimum is mostly noise.
        """
        params = self.parameters
        rows = {}
        for name in params.columns:
            col = params[name]
            numeric = pd.api.types.is_numeric_dtype(col)
            counts = col.value_counts(sort=True)
            rows[name] = {
                "mean": float(col.mean()) if numeric else np.nan,
                "std": float(col.std(ddof=0)) if numeric else np.nan,
                "min": col.min() if numeric else np.nan,
                "max": col.max() if numeric else np.nan,
                "distinct": int(col.nunique()),
                "changes": int((col != col.shift()).iloc[1:].sum()),
                "most_common": counts.index[0],
                "share": float(counts.iloc[0] / len(col)),
            }
        return pd.DataFrame(rows).T

    def plot(self) -> hv.Layout:
        """Return the stitched out-of-sample equity with fold boundaries, and each parameter's
        best value per fold (holoviews, imported here)."""
        import holoviews as hv
        import hvplot.pandas  # noqa: F401  (registers .hvplot)

        equity = self.equity
        local = equity.set_axis(equity.index.tz_localize(None))
        if len(local) > 5000:  # a line of 5,000 points looks the same and draws fast
            local = local.iloc[:: max(1, len(local) // 5000)]
        curve = local.hvplot.line(
            title=f"{self.strategy.name}: walk-forward out-of-sample equity",
            ylabel="equity (₹)",
            responsive=True,
            height=300,
        )
        bounds = [
            hv.VLine(f.out_of_sample_start.tz_localize(None)).opts(
                color="grey", line_dash="dashed", line_width=1
            )
            for f in self.folds
        ]
        top = hv.Overlay([curve, *bounds])
        params = self.parameters.copy()
        params.index = [f.out_of_sample_start.tz_localize(None) for f in self.folds]
        steps = [
            hv.Curve((params.index, params[n]), "out-of-sample start", n, label=n).opts(
                interpolation="steps-post", responsive=True, height=180, title=f"best {n} per fold"
            )
            * hv.Scatter((params.index, params[n]), "out-of-sample start", n)
            for n in params.columns
            if pd.api.types.is_numeric_dtype(params[n])
        ]
        return hv.Layout([top, *steps]).cols(1)

    def __repr__(self) -> str:
        s = self.stats
        kind = "anchored" if self.anchored else "rolling"
        return (
            f"WalkForwardReport({self.strategy.name}, {len(self.folds)} {kind} folds, train="
            f"{self.train!r}, test={self.test!r}; out-of-sample return {s['total_return']:.2%}, "
            f"sharpe {s['sharpe']:.2f}, max drawdown {s['max_drawdown']:.2%})"
        )

    def _repr_html_(self) -> str:
        import html

        table = self.table.to_html(float_format=lambda v: f"{v:,.4g}", border=0)
        stability = self.stability.to_html(float_format=lambda v: f"{v:,.4g}", border=0)
        return (
            f"<div><b>WalkForwardReport</b> <code>{html.escape(repr(self))}</code>"
            f"<br>folds:{table}parameter stability:{stability}</div>"
        )


# -- running ------------------------------------------------------------------------------------


def _cut(
    frames: Mapping[str, pd.DataFrame], start: pd.Timestamp | None, stop: pd.Timestamp | None
) -> dict[str, pd.DataFrame]:
    """Return each frame's bars with start ≤ time < stop (None: unbounded), non-empty ones."""
    out = {}
    for iid, frame in frames.items():
        keep = np.ones(len(frame), np.bool_)
        if start is not None:
            keep &= frame.index >= start
        if stop is not None:
            keep &= frame.index < stop
        if keep.any():
            out[iid] = frame[keep]
    return out


def _stop(index: pd.DatetimeIndex, row: int) -> pd.Timestamp | None:
    return index[row] if row < len(index) else None


@dataclass(eq=False)
class _Plan:
    """What each fold's in-sample sweep needs (picklable: folds may run on Dask)."""

    job: _Job
    strategy0: Strategy
    swept: dict[str, list[object]]
    combos: list[dict[str, object]]
    metric: str
    maximize: bool
    index: pd.DatetimeIndex

    def __getstate__(self) -> dict[str, object]:
        from velox.backtest.optimize import _by_value

        return _by_value(self.__dict__, self.job.strategy_class)

    def __setstate__(self, state: dict[str, object]) -> None:
        from velox.backtest.optimize import _from_value

        self.__dict__.update(_from_value(state))


def _in_sample(
    plan: _Plan,
    rows: tuple[int, int, int, int],
    *,
    progress: bool = False,
    scheduler: object = "in-process",
) -> tuple[dict[str, object], dict[str, float], pd.DataFrame]:
    """Return the in-sample sweep's best parameters, their statistics and the whole table."""
    from velox.backtest.optimize import _Job, _sweep

    a, b, _, _ = rows
    frames = _cut(plan.job.frames, plan.index[a], _stop(plan.index, b))
    job = _Job(plan.job.strategy_class, plan.job.base, frames, plan.job.options)
    result = _sweep(
        job,
        plan.strategy0,
        plan.swept,
        plan.combos,
        plan.metric,
        plan.maximize,
        progress=progress,
        scheduler=scheduler,
        workers=None,
    )  # type: ignore[arg-type]
    return result.best_params, result.best_stats, result.stats


def _out_of_sample(
    plan: _Plan,
    rows: tuple[int, int, int, int],
    params: Mapping[str, object],
    cash: float,
    warmup: str | int,
) -> ResearchResult:
    """Return the backtest of ``params`` on the fold's out-of-sample window, signals warmed up
    as ``warmup`` says, starting flat with ``cash``."""
    from velox.backtest import ResearchResult, prepare, strategy_weights

    _, _, c, d = rows
    start, stop = plan.index[c], _stop(plan.index, d)
    strategy = plan.job.strategy(params)
    options = {**plan.job.options, "initial_cash": cash}
    universe = prepare(strategy, _cut(plan.job.frames, start, stop), **options)
    if warmup == 0:
        weights = strategy_weights(strategy, universe)
    else:
        first = 0 if warmup == "history" else max(0, c - int(warmup))
        history = prepare(strategy, _cut(plan.job.frames, plan.index[first], stop), **options)
        weights = strategy_weights(strategy, history)[history.index >= start]
    fills, orders, equity = universe.run(weights, strategy.capital)
    return ResearchResult(strategy, universe, weights, fills, orders, equity)


def walk_forward(
    strategy_or_path: Strategy | type[Strategy] | str | Path,
    bars_or_symbols: pd.DataFrame | Mapping[str, pd.DataFrame] | str | Sequence[str] | None = None,
    timeframe: str | None = None,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    *,
    train: Span,
    test: Span,
    step: Span | None = None,
    anchored: bool = False,
    metric: str = "sharpe",
    maximize: bool | None = None,
    constraint: Callable[[dict[str, object]], bool] | str | None = None,
    method: str = "grid",
    n_iter: int | None = None,
    seed: int | None = None,
    warmup: str | int = "history",
    progress: bool = True,
    scheduler: str | Client | None = None,
    **grid: Any,
) -> WalkForwardReport:
    """Return a walk-forward optimisation of a strategy: rolling or anchored folds, each
    optimised in-sample by :func:`velox.optimize` and traded out-of-sample.

    See the module documentation for the window, warm-up and stitching conventions.

    Parameters
    ----------
    strategy_or_path, bars_or_symbols, timeframe, start, end
        As for :func:`velox.optimize`.
    train, test, step
        The in-sample and out-of-sample window lengths and the distance between folds
        (default ``test``): whole numbers of bars, or calendar spans (``"365D"``, ``"90D"``).
    anchored
        Every in-sample window starts at the first bar (and grows), instead of rolling.
    metric, maximize, constraint, method, n_iter, seed, **grid
        The in-sample sweep, as for :func:`velox.optimize` (run options such as
        ``initial_cash`` or ``cost_model`` are taken by name too).
    warmup
        ``"history"``: out-of-sample signals see every earlier bar; ``N``: the ``N`` bars
        before the window; ``0``: none.
    progress
        Show progress bars.
    scheduler
        ``None``/``"in-process"``/``"processes"``: folds one after another here, each fold's
        sweep as :func:`velox.optimize` runs it (``None``: on every core when it pays);
        a Dask scheduler (``"local"``, ``"tcp://…"``, a ``distributed.Client``, or the
        ``VELOX_DASK_SCHEDULER`` setting): the folds' in-sample sweeps are Dask tasks.
        The out-of-sample backtests run here, in order (each starts from the previous
        one's equity).

    Examples
    --------
    >>> import velox
    >>> wf = velox.walk_forward("strategies/sma_cross.py", df, train=500, test=125,
    ...                         fast=range(5, 30, 5), slow=range(20, 100, 10),
    ...                         constraint="fast < slow")                 # doctest: +SKIP
    >>> wf.table, wf.stability, wf.stats["sharpe"]                        # doctest: +SKIP
    >>> wf.plot()                                                         # doctest: +SKIP
    """
    from velox.backtest import prepare
    from velox.backtest.distributed import IN_PROCESS, run_tasks
    from velox.backtest.optimize import (
        LOWER_IS_BETTER,
        METRICS,
        PROCESSES,
        _job,
        _swept,
        combinations,
    )
    from velox.backtest.research import RESEARCH_OPTIONS

    if warmup != "history" and (
        isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0
    ):
        raise ConfigError(
            f"warmup={warmup!r} must be 'history', a number of bars ≥ 0, or 0 for none"
        )
    options = {k: grid.pop(k) for k in list(grid) if k in RESEARCH_OPTIONS}
    if metric not in METRICS:
        raise ConfigError(
            f"metric={metric!r} is not a statistic; choose one of {', '.join(METRICS)}"
        )
    swept, fixed = _swept(grid)
    if not swept:
        raise ConfigError(
            "velox.walk_forward got no parameter to sweep: give ranges or lists of values, "
            "e.g. fast=range(5, 50, 5)"
        )
    job, strategy0 = _job(
        strategy_or_path, bars_or_symbols, timeframe, start, end, swept, fixed, options
    )
    combos = combinations(swept, constraint, method=method, n_iter=n_iter, seed=seed)
    if not combos:
        raise ConfigError(f"the constraint {constraint!r} leaves no combination to optimise")
    for combo in combos:
        job.strategy(combo)
    universe = prepare(job.strategy({}), job.frames, **job.options)
    windows = fold_windows(universe.index, train, test, step=step, anchored=anchored)
    higher = metric not in LOWER_IS_BETTER if maximize is None else bool(maximize)
    plan = _Plan(job, strategy0, swept, combos, metric, higher, universe.index)
    if scheduler is None:
        from velox.config import get_settings

        scheduler = get_settings().dask_scheduler
    if scheduler is None or scheduler in (IN_PROCESS, PROCESSES):
        inner = None if scheduler is None else scheduler
        in_samples = [
            _in_sample(plan, w, progress=False, scheduler=inner)
            for w in _progress(windows, progress)
        ]
    else:
        in_samples = run_tasks(
            partial(_in_sample, plan),
            windows,
            progress=progress,
            scheduler=scheduler,
            names=[f"fold {k}" for k in range(len(windows))],
        )
    cash = float(universe.initial_cash)
    folds = []
    index = universe.index
    for k, (rows, (params, is_stats, table)) in enumerate(zip(windows, in_samples, strict=True)):
        if not cash > 0:
            log.warning(
                "the out-of-sample equity is gone (₹%.2f) after fold %d: the %d later folds are "
                "not traded",
                cash,
                k - 1,
                len(windows) - k,
            )
            break
        result = _out_of_sample(plan, rows, params, cash, warmup)
        a, b, c, d = rows
        folds.append(
            Fold(
                number=k,
                in_sample_start=index[a],
                in_sample_end=index[b - 1],
                out_of_sample_start=index[c],
                out_of_sample_end=index[d - 1],
                rows=rows,
                best_params=params,
                in_sample_stats=is_stats,
                out_of_sample_stats=result.stats,
                out_of_sample_initial_cash=cash,
                result=result,
                in_sample_table=table,
            )
        )
        cash = result.final_equity
    return WalkForwardReport(
        strategy=strategy0,
        folds=folds,
        params=list(swept),
        metric=metric,
        anchored=anchored,
        train=train,
        test=test,
        step=step if step is not None else test,
        warmup=warmup,
        initial_cash=float(universe.initial_cash),
    )


def _progress(windows: list[tuple[int, int, int, int]], show: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(windows, desc="walk-forward folds", unit="fold", disable=not show)
