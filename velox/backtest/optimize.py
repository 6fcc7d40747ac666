"""Parameter sweeps of a vectorisable strategy: every combination's statistics, fast.

:func:`optimize` (``velox.optimize``) backtests a strategy once per combination of parameter
values and returns an :class:`OptimizeResult`: one row of statistics per combination, the best
combination by a metric, its full :class:`~velox.backtest.ResearchResult`, a heatmap. Each
combination is exactly the backtest :func:`velox.research` runs with those parameters — the
same fills, charges and statistics (a test re-runs the best one alone) — but the sweep pays for
less of it:

* the bars are checked and the :class:`~velox.backtest.Universe` (prices, dated charge rates,
  lot and tick sizes, square-off ticks) is prepared **once** for all combinations;
* each combination's ``signals()`` runs inside :func:`velox.indicators.memo` with one cache
  per sweep and process, so an indicator call shared by several combinations (the SMA(30) of
  every ``(fast, 30)`` pair) is computed once for the whole sweep in each process that runs
  its combinations (this one, each forked worker, each Dask worker: a cache is local to a
  process), whatever the chunks; at most :data:`MEMO_BYTES` of results are kept per process;
* the compiled kernel simulates each combination and its statistics come from the kernel's
  records through a compiled trade pass (:func:`summary_stats_arrays`, the one implementation
  of the engine's statistics) — no Fill or Trade objects, no DataFrames;
* only the statistics of a combination are kept: its fills and equity curve are dropped as
  soon as its row is made, so memory stays that of one backtest per process however big the
  grid (the usual out-of-memory of a broadcast vectorbt sweep);
* the chunks run on every core (see ``scheduler=`` of :func:`optimize`).

Conventions: combinations are the Cartesian product of the swept values in the order given
(the last parameter varying fastest), filtered by ``constraint``; random search samples
``n_iter`` distinct combinations of that same constrained grid. The best combination has the
highest (``maximize=False``: lowest) finite metric, the first in grid order among equals; a NaN
metric (a Sharpe ratio without trades) never wins unless every combination has one.
"""

from __future__ import annotations

import itertools
import logging
import math
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from velox.backtest._sweepstats import sweep_stats
from velox.errors import ConfigError
from velox.strategy import Strategy

if TYPE_CHECKING:
    import holoviews as hv
    from distributed import Client

    from velox.backtest.research import ResearchResult, Universe

__all__ = ["optimize", "OptimizeResult", "combinations", "sweep_stats", "METRICS"]

log = logging.getLogger(__name__)

#: The statistics of every combination (``summary_stats``'s keys): any of them is a ``metric``.
METRICS = (
    "initial_cash", "final_equity", "total_return", "cagr", "max_drawdown", "sharpe", "sortino",
    "calmar", "trades", "open_trades", "win_rate", "profit_factor", "avg_trade", "expectancy",
    "exposure", "charges",
)  # fmt: skip
#: Metrics where lower is better: ``maximize`` defaults to False for them.
LOWER_IS_BETTER = frozenset({"max_drawdown", "charges"})
#: Largest number of combinations in one chunk (a unit of work on one core).
MAX_CHUNK = 64
#: Below this projected in-process time (seconds) a sweep does not start worker processes.
PROCESS_SECONDS = 1.0
#: ``scheduler=`` value: fork worker processes on this machine (one per core).
PROCESSES = "processes"


# -- the grid -----------------------------------------------------------------------------------


def _swept(grid: Mapping[str, object]) -> tuple[dict[str, list[object]], dict[str, object]]:
    """Split keyword values into swept ones (ranges, lists, arrays) and fixed ones (scalars)."""
    swept: dict[str, list[object]] = {}
    fixed: dict[str, object] = {}
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, (Iterable, np.ndarray)):
            fixed[name] = values
            continue
        listed = [v.item() if isinstance(v, np.generic) else v for v in values]
        if not listed:
            raise ConfigError(
                f"{name}= is empty ({values!r}): give at least one value, e.g. "
                f"{name}=range(5, 50, 5)"
            )
        swept[name] = listed
    return swept, fixed


def combinations(
    swept: Mapping[str, Sequence[object]],
    constraint: Callable[[dict[str, object]], bool] | str | None = None,
    *,
    method: str = "grid",
    n_iter: int | None = None,
    seed: int | None = None,
) -> list[dict[str, object]]:
    """Return the parameter combinations of a sweep, in order.

    ``grid``: the Cartesian product of ``swept``'s values (the last parameter varying fastest)
    that pass ``constraint``. ``random``: ``n_iter`` distinct combinations of that same
    constrained grid drawn with ``numpy.random.default_rng(seed)`` (all of them when the grid is
    smaller), in the order drawn. ``constraint`` is a function of the combination's dict or a
    pandas expression of the parameter names (``"fast < slow"``).

    Examples
    --------
    >>> combinations({"fast": [5, 10], "slow": [10, 20]}, "fast < slow")
    [{'fast': 5, 'slow': 10}, {'fast': 5, 'slow': 20}, {'fast': 10, 'slow': 20}]
    """
    names = list(swept)
    sizes = [len(swept[n]) for n in names]
    total = math.prod(sizes)
    if method == "grid":
        if n_iter is not None:
            raise ConfigError(
                "n_iter= is for method='random'; a grid search runs every combination"
            )
        return _filtered([dict(zip(names, c, strict=True)) for c in itertools.product(
            *(swept[n] for n in names))], constraint)  # fmt: skip
    if method != "random":
        raise ConfigError(f"method={method!r} is not a search method: use 'grid' or 'random'")
    if n_iter is None or isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
        raise ConfigError(
            f"method='random' needs n_iter=, a whole number of combinations ≥ 1 (got {n_iter!r})"
        )
    rng = np.random.default_rng(seed)
    if total <= max(4 * n_iter, 100_000):  # enumerate, filter, then draw without replacement
        grid = combinations(swept, constraint)
        if n_iter >= len(grid):
            return grid
        picks = rng.choice(len(grid), size=n_iter, replace=False)
        return [grid[int(i)] for i in picks]
    out: list[dict[str, object]] = []
    seen: set[int] = set()
    tries = 0
    while len(out) < n_iter and tries < 100 * n_iter:
        flat = int(rng.integers(total))
        tries += 1
        if flat in seen:
            continue
        seen.add(flat)
        combo, rest = {}, flat
        for name, size in zip(reversed(names), reversed(sizes), strict=True):
            rest, k = divmod(rest, size)
            combo[name] = swept[name][k]
        combo = {n: combo[n] for n in names}
        if _filtered([combo], constraint):
            out.append(combo)
    if len(out) < n_iter:
        raise ConfigError(
            f"random search found only {len(out)} combinations passing the constraint in "
            f"{tries} draws; loosen the constraint or lower n_iter={n_iter}"
        )
    return out


def _filtered(
    combos: list[dict[str, object]], constraint: Callable[[dict[str, object]], bool] | str | None
) -> list[dict[str, object]]:
    if constraint is None or not combos:
        return combos
    if isinstance(constraint, str):
        frame = pd.DataFrame(combos)
        try:
            keep = frame.eval(constraint)
        except Exception as exc:
            raise ConfigError(
                f"constraint={constraint!r} is not an expression of the swept parameters "
                f"({', '.join(frame.columns)}): {exc}; e.g. constraint='fast < slow'"
            ) from None
        if not isinstance(keep, pd.Series) or keep.dtype != bool:
            raise ConfigError(
                f"constraint={constraint!r} must give True or False per combination, e.g. "
                "'fast < slow'"
            )
        return [c for c, k in zip(combos, keep.tolist(), strict=True) if k]
    if not callable(constraint):
        raise ConfigError(
            "constraint= must be a function of the parameters dict (lambda p: p['fast'] < "
            f"p['slow']) or an expression string ('fast < slow'), not {type(constraint).__name__}"
        )
    return [c for c in combos if constraint(dict(c))]


def _chunks(combos: list[dict[str, object]], swept: Mapping[str, Sequence[object]],
            workers: int) -> list[list[int]]:  # fmt: skip
    """Return the combinations' positions cut into chunks that share indicators.

    Sorted by the swept parameters, the one with the fewest distinct values first (so that a
    chunk holds combinations with the same value of it: the same indicator on the same bars),
    then cut into about four chunks per worker (load balance), at most :data:`MAX_CHUNK` each.
    """
    order_names = sorted(swept, key=lambda n: len(set(map(repr, swept[n]))))
    rank = {n: {repr(v): k for k, v in enumerate(swept[n])} for n in swept}
    order = sorted(
        range(len(combos)), key=lambda i: tuple(rank[n][repr(combos[i][n])] for n in order_names)
    )
    size = max(1, min(MAX_CHUNK, math.ceil(len(combos) / (4 * max(workers, 1)))))
    return [order[k : k + size] for k in range(0, len(order), size)]


# -- running the combinations -------------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    """Everything a chunk of combinations needs, picklable (it travels to Dask workers)."""

    strategy_class: type[Strategy]
    base: dict[str, object]
    frames: dict[str, pd.DataFrame]
    options: dict[str, object]
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def strategy(self, combo: Mapping[str, object]) -> Strategy:
        return self.strategy_class(**{**self.base, **combo})

    def __getstate__(self) -> dict[str, object]:
        return _by_value(self.__dict__, self.strategy_class)

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(_from_value(state))


def _by_value(state: dict[str, object], cls: type) -> dict[str, object]:
    """Return ``state`` as one cloudpickle blob, the strategy class by value when the workers
    cannot import it (a file loaded by ``load_strategy``, a notebook): Dask tries plain pickle
    first, which would send it by a name the workers do not know."""
    import cloudpickle

    _ship_by_value(cls)
    return {"cloudpickle": cloudpickle.dumps(dict(state))}


def _from_value(state: dict[str, object]) -> dict[str, object]:
    import pickle

    return pickle.loads(state["cloudpickle"])  # type: ignore[arg-type]


#: Universes prepared in this process, by job token (a worker keeps the last few).
_UNIVERSES: dict[str, Universe] = {}
#: The indicator results of each job's sweep in this process (``velox.indicators.memo``'s
#: cache), by job token, dropped with the job's universe.
_MEMOS: dict[str, dict[tuple, tuple[tuple, object]]] = {}
#: Most bytes of indicator results one job keeps per process (oldest dropped first beyond it):
#: the 40 distinct SMAs of a 174-pair sweep on 1,000,000 bars are 320 MB.
MEMO_BYTES = 1 << 30


def _universe(job: _Job) -> Universe:
    from velox.backtest import prepare

    universe = _UNIVERSES.get(job.token)
    if universe is None:
        while len(_UNIVERSES) >= 2:
            oldest = next(iter(_UNIVERSES))
            del _UNIVERSES[oldest]
            _MEMOS.pop(oldest, None)
        universe = prepare(job.strategy({}), job.frames, **job.options)
        _UNIVERSES[job.token] = universe
    return universe


def _trim(cache: dict[tuple, tuple[tuple, object]]) -> None:
    """Drop the oldest results until the cache holds at most :data:`MEMO_BYTES` (a dropped
    indicator is computed again if asked for: the same result)."""

    def size(entry: tuple[tuple, object]) -> int:
        result = entry[1]
        parts = result if isinstance(result, tuple) else (result,)
        return sum(int(getattr(p, "nbytes", 0)) for p in parts)

    total = sum(size(e) for e in cache.values())
    while total > MEMO_BYTES and cache:
        total -= size(cache.pop(next(iter(cache))))


def _run_chunk(job: _Job, combos: Sequence[Mapping[str, object]]) -> list[dict[str, float]]:
    """Return the statistics of each combination, in order.

    The indicators of every chunk of the job run in this process share one memo: each
    distinct indicator (``sma(close, 10)``) is computed once per process for the whole sweep,
    not once per chunk.
    """
    from velox.backtest import strategy_weights
    from velox.indicators import memo

    universe = _universe(job)
    cache = _MEMOS.setdefault(job.token, {})
    rows = []
    with memo(cache):
        for combo in combos:
            strategy = job.strategy(combo)
            weights = strategy_weights(strategy, universe)
            fills, _orders, equity = universe.run(weights, strategy.capital)
            rows.append(sweep_stats(universe, fills, equity))
            del fills, _orders, equity, weights
            _trim(cache)
    return rows


#: The job and chunks a forked worker process reads (inherited from the parent at fork).
_FORKED: list[object] = []


def _forked_chunk(k: int) -> tuple[int, list[dict[str, float]]]:
    job, chunks = _FORKED
    return k, _run_chunk(job, chunks[k])  # type: ignore[index]


def _run_forked(job: _Job, chunks: list[list[dict[str, object]]], workers: int,
                done: Callable[[int, list[dict[str, float]]], None]) -> None:  # fmt: skip
    """Run the chunks on ``workers`` forked processes, which inherit the prepared universe,
    the compiled kernels and the bars from this one (nothing large is pickled).

    A chunk that raises stops the sweep with its exception (the worker's traceback chained);
    a worker that dies (out of memory, a crash in compiled code) raises
    ``BrokenProcessPool`` instead of hanging.
    """
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    _FORKED[:] = [job, chunks]
    context = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(workers, mp_context=context,
                                 initializer=_keep_freed_memory) as pool:  # fmt: skip
            futures = {pool.submit(_forked_chunk, k) for k in range(len(chunks))}
            try:
                while futures:
                    finished, futures = wait(futures, return_when=FIRST_EXCEPTION)
                    for future in finished:
                        k, rows = future.result()
                        done(k, rows)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        _FORKED.clear()


def _keep_freed_memory() -> None:
    """Tell a forked worker's glibc malloc to keep freed memory rather than hand it back.

    Every combination allocates and frees the same few million-element arrays; by default
    glibc returns them to the system and the next combination pays the page faults of fresh
    memory again (~1 ms per 8 MB). The worker is ours and short-lived, so it keeps them
    (``M_TRIM_THRESHOLD`` 1 GB, arrays up to 32 MB from the heap). Not on other C libraries.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD (glibc's largest)
    except (OSError, AttributeError):
        pass


def _ship_by_value(cls: type) -> None:
    """Make cloudpickle send a strategy loaded from a file (``load_strategy``: a module the
    workers cannot import) or defined in a notebook by value rather than by name."""
    import sys

    import cloudpickle

    module = sys.modules.get(cls.__module__)
    if module is not None and cls.__module__.startswith("velox_user_strategy_"):
        cloudpickle.register_pickle_by_value(module)  # __main__ goes by value anyway


def _can_fork(asked: bool = False) -> bool:
    """Return whether sweep workers may be forked here: on Linux by default (macOS only when
    asked for: forking there is unsafe once system frameworks have started threads), never
    from a daemonic process (a multiprocessing or Dask worker may not have children)."""
    import sys

    if multiprocessing.current_process().daemon:
        return False
    if not asked and not sys.platform.startswith("linux"):
        return False
    return "fork" in multiprocessing.get_all_start_methods()


# -- the entry point ----------------------------------------------------------------------------


def optimize(
    strategy_or_path: Strategy | type[Strategy] | str | Path,
    bars_or_symbols: pd.DataFrame | Mapping[str, pd.DataFrame] | str | Sequence[str] | None = None,
    timeframe: str | None = None,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    *,
    constraint: Callable[[dict[str, object]], bool] | str | None = None,
    metric: str = "sharpe",
    method: str = "grid",
    n_iter: int | None = None,
    seed: int | None = None,
    maximize: bool | None = None,
    progress: bool = True,
    scheduler: str | Client | None = None,
    workers: int | None = None,
    **grid: Any,
) -> OptimizeResult:
    """Return the statistics of a strategy backtested at every combination of parameter values.

    Each combination is the backtest :func:`velox.research` runs with those parameters (the
    same fills, charges and statistics), computed far faster in bulk: see the module
    documentation and ``docs/research-sweeps.md``.

    Parameters
    ----------
    strategy_or_path
        A Strategy subclass, instance (its parameters are the base the sweep overrides), file
        (``"strategies/sma_cross.py"``) or ``"module:Class"``.
    bars_or_symbols, timeframe, start, end
        As for :func:`velox.research`: a DataFrame, a mapping of instrument id → DataFrame, or
        instrument id(s) read from the store; ``start``/``end`` inclusive.
    constraint
        Keeps a combination when true: a function of its parameters dict
        (``lambda p: p["fast"] < p["slow"]``) or an expression (``"fast < slow"``).
    metric
        The statistic that ranks combinations (a key of ``ResearchResult.stats``: ``sharpe``,
        ``total_return``, ``cagr``, ``calmar``, ``max_drawdown`` …).
    method, n_iter, seed
        ``"grid"`` (every combination) or ``"random"`` (``n_iter`` distinct combinations of
        the constrained grid, reproducible with ``seed``).
    maximize
        Whether a higher metric is better; default True except for ``max_drawdown`` and
        ``charges``.
    progress
        Show a tqdm progress bar of the combinations.
    scheduler
        Where the chunks of combinations run: ``None`` (default) — in this process while the
        sweep is projected to take under :data:`PROCESS_SECONDS`, else on forked worker
        processes, one per core (on Linux; elsewhere in this process), unless
        ``VELOX_DASK_SCHEDULER`` names a Dask cluster; ``"processes"`` (forked workers
        whatever the size, on Linux and macOS); ``"in-process"``; or anything
        :func:`velox.backtest.distributed.run_tasks` takes (``"local"`` for a Dask
        LocalCluster, ``"tcp://host:port"``, a ``distributed.Client``).
    workers
        Worker processes for ``"processes"`` / a LocalCluster (default: the cores).
    **grid
        Parameters to sweep, each a range, list or array of values (``fast=range(5, 50, 5)``);
        a single value fixes a parameter. The run options of :func:`velox.research`
        (``initial_cash``, ``cost_model``, ``slippage``, ``sim_config``, ``risk_limits``,
        ``instrument_master``, ``store``) are taken by name.

    Returns
    -------
    OptimizeResult
        ``stats`` (one row per combination: the parameters, then every statistic),
        ``best_params``, ``best`` (its ResearchResult), ``heatmap()``.

    Raises
    ------
    velox.errors.ConfigError
        For an empty or unknown parameter, no combination left by the constraint, a metric
        that is not a statistic, a bad method or ``n_iter``.

    Examples
    --------
    >>> import velox
    >>> opt = velox.optimize("strategies/sma_cross.py", df, fast=range(5, 30, 5),
    ...                      slow=range(20, 100, 10), constraint="fast < slow")  # doctest: +SKIP
    >>> opt.best_params, opt.best.stats["sharpe"]                            # doctest: +SKIP
    >>> opt.stats.sort_values("sharpe").tail()                               # doctest: +SKIP
    >>> opt.heatmap("fast", "slow")                                          # doctest: +SKIP
    """
    from velox.backtest.research import RESEARCH_OPTIONS

    options = {k: grid.pop(k) for k in list(grid) if k in RESEARCH_OPTIONS}
    if metric not in METRICS:
        import difflib

        close = difflib.get_close_matches(str(metric), METRICS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"metric={metric!r} is not a statistic of a backtest; {hint}choose one of "
            f"{', '.join(METRICS)}"
        )
    swept, fixed = _swept(grid)
    if not swept:
        raise ConfigError(
            "velox.optimize got no parameter to sweep: give ranges or lists of values, e.g. "
            "fast=range(5, 50, 5), slow=range(20, 200, 10)"
        )
    job, strategy0 = _job(strategy_or_path, bars_or_symbols, timeframe, start, end, swept, fixed,
                          options)  # fmt: skip
    combos = combinations(swept, constraint, method=method, n_iter=n_iter, seed=seed)
    if not combos:
        raise ConfigError(
            f"the constraint {constraint!r} leaves no combination of "
            f"{', '.join(f'{n}={_short(v)}' for n, v in swept.items())}"
        )
    for combo in combos:  # every combination must be a valid strategy before anything runs
        job.strategy(combo)
    higher = metric not in LOWER_IS_BETTER if maximize is None else bool(maximize)
    return _sweep(job, strategy0, swept, combos, metric, higher, progress=progress,
                  scheduler=scheduler, workers=workers)  # fmt: skip


def _sweep(
    job: _Job,
    strategy0: Strategy,
    swept: Mapping[str, Sequence[object]],
    combos: list[dict[str, object]],
    metric: str,
    maximize: bool,
    *,
    progress: bool,
    scheduler: str | Client | None,
    workers: int | None,
) -> OptimizeResult:
    """Return the :class:`OptimizeResult` of checked combinations of a prepared job."""
    started = time.perf_counter()
    try:
        rows = _run(job, combos, swept, progress=progress, scheduler=scheduler, workers=workers)
    finally:
        _MEMOS.pop(job.token, None)  # the sweep's indicators: this process no longer needs them
    took = time.perf_counter() - started
    table = pd.DataFrame([{**c, **r} for c, r in zip(combos, rows, strict=True)])
    return OptimizeResult(
        strategy=strategy0, job=job, params=list(swept), metric=metric, maximize=maximize,
        stats=table, seconds=took,
    )  # fmt: skip


def _short(values: Sequence[object]) -> str:
    text = repr(list(values))
    return text if len(text) < 40 else text[:37] + "…]"


def _job(
    spec: object,
    bars_or_symbols: object,
    timeframe: str | None,
    start: object,
    end: object,
    swept: Mapping[str, Sequence[object]],
    fixed: Mapping[str, object],
    options: dict[str, object],
) -> tuple[_Job, Strategy]:
    """Return the sweep's job (strategy class, base parameters, checked frames, run options)."""
    import velox
    from velox.backtest.research import _frames

    symbols: object = None
    bars: object = None
    if isinstance(bars_or_symbols, (pd.DataFrame, Mapping)):
        bars = bars_or_symbols
        if isinstance(bars, Mapping) and not isinstance(spec, Strategy):
            symbols = tuple(dict.fromkeys(k if isinstance(k, str) else k[0] for k in bars))
    elif bars_or_symbols is not None:
        symbols = bars_or_symbols
    first = {n: v[0] for n, v in swept.items()}
    if isinstance(spec, Strategy):
        if fixed:
            raise ConfigError(
                f"velox.optimize got a {type(spec).__name__} instance and fixed values "
                f"{', '.join(f'{k}=' for k in fixed)}: set them when building it"
            )
        cls: type[Strategy] = type(spec)
        base = {k: v for k, v in vars(spec).items() if k != "name"}
        unknown = [n for n in swept if n not in cls.parameters()]
        if unknown:
            cls(**{unknown[0]: first[unknown[0]]})  # raises the did-you-mean error
        strategy0 = cls(**{**base, **first})
    else:
        strategy0 = velox._build_strategy(spec, symbols, timeframe, {**fixed, **first}, options)
        cls = type(strategy0)
        base = {**fixed, "instruments": strategy0.instruments, "timeframe": strategy0.timeframe}
    if not strategy0.vectorised:
        raise ConfigError(
            f"{strategy0.name} has no signals(): velox.optimize sweeps vectorisable strategies "
            "(override signals(bars) → target weights); sweep event-driven ones with "
            "velox.backtest.distributed.run_tasks over velox.replay"
        )
    if strategy0.timeframes:
        raise ConfigError(
            f"{strategy0.name} subscribes to extra timeframes {strategy0.timeframes}; "
            "velox.optimize runs one timeframe"
        )
    store = options.pop("store", None)
    frames = _frames(strategy0, symbols, bars, start, end, store)  # type: ignore[arg-type]
    return _Job(cls, base, frames, options), strategy0


def _run(
    job: _Job,
    combos: list[dict[str, object]],
    swept: Mapping[str, Sequence[object]],
    *,
    progress: bool,
    scheduler: str | Client | None,
    workers: int | None,
) -> list[dict[str, float]]:
    """Return every combination's statistics, in order, wherever the chunks ran."""
    from tqdm.auto import tqdm

    from velox.backtest.distributed import IN_PROCESS, _local_workers

    cores = _local_workers(workers)
    if scheduler is None:
        from velox.config import get_settings

        scheduler = get_settings().dask_scheduler
    rows: list[dict[str, float] | None] = [None] * len(combos)
    desc = f"optimize {job.strategy_class.__name__}"
    if scheduler is not None and scheduler not in (IN_PROCESS, PROCESSES):
        from velox.backtest.distributed import run_tasks

        chunks = _chunks(combos, swept, cores)
        results = run_tasks(
            partial(_run_chunk, job), [[combos[i] for i in c] for c in chunks],
            progress=progress, scheduler=scheduler, local_workers=workers,
            names=[f"combinations {c[0]}…" for c in chunks],
        )  # fmt: skip
        for chunk, part in zip(chunks, results, strict=True):
            for i, row in zip(chunk, part, strict=True):
                rows[i] = row
        return rows  # type: ignore[return-value]
    with tqdm(total=len(combos), desc=desc, unit="combo", disable=not progress) as bar:
        # in-process, chunks are units of progress (and of work for forked workers)
        chunks = _chunks(combos, swept, 1 if scheduler == IN_PROCESS else cores)
        use_processes = scheduler == PROCESSES and cores > 1
        if use_processes and not _can_fork(asked=True):
            raise ConfigError(
                "scheduler='processes' forks worker processes, which this platform (or a "
                "daemonic worker process) cannot do; use scheduler='local' (a Dask "
                "LocalCluster) or 'in-process'"
            )
        can_fork = use_processes or _can_fork()
        if (use_processes or scheduler is None) and cores > 1 and can_fork and len(combos) > 2:
            # two combinations here first: the first pays this process's warm-up (kernels
            # loaded, tick times made), which forked workers then inherit; their time decides
            head = chunks[0][:2]
            fastest = math.inf
            for i in head:
                t = time.perf_counter()
                rows[i] = _run_chunk(job, [combos[i]])[0]
                fastest = min(fastest, time.perf_counter() - t)
                bar.update()
            chunks[0] = chunks[0][len(head) :]
            if not chunks[0]:
                del chunks[0]
            if scheduler is None:
                use_processes = fastest * (len(combos) - len(head)) > PROCESS_SECONDS
        work = [[combos[i] for i in c] for c in chunks]

        def done(k: int, part: list[dict[str, float]]) -> None:
            for i, row in zip(chunks[k], part, strict=True):
                rows[i] = row
            bar.update(len(part))

        if use_processes:
            _run_forked(job, work, min(cores, len(work)), done)
        else:
            for k in range(len(work)):
                done(k, _run_chunk(job, work[k]))
    return rows  # type: ignore[return-value]


# -- the result ---------------------------------------------------------------------------------


@dataclass(eq=False)
class OptimizeResult:
    """The result of :func:`optimize`: every combination's statistics and the best one.

    Attributes
    ----------
    stats
        One row per combination, in grid (or drawn) order: the swept parameters, then every
        statistic of ``ResearchResult.stats`` (``sharpe``, ``total_return``, ``trades`` …).
    params
        The swept parameter names.
    metric, maximize
        What ranks the combinations.
    seconds
        Wall time of the sweep (preparing the universe excluded).
    """

    strategy: Strategy
    job: _Job = field(repr=False)
    params: list[str]
    metric: str
    maximize: bool
    stats: pd.DataFrame = field(repr=False)
    seconds: float = 0.0
    _best: ResearchResult | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.stats)

    @property
    def ranked(self) -> pd.DataFrame:
        """Return :attr:`stats` best first (NaN metrics last; grid order among equals)."""
        return self.stats.sort_values(
            self.metric, ascending=not self.maximize, kind="stable", na_position="last"
        )

    @property
    def best_index(self) -> int:
        """Return the row of :attr:`stats` of the best combination."""
        values = self.stats[self.metric].to_numpy(np.float64)
        finite = ~np.isnan(values)
        if not finite.any():
            log.warning("every combination has %s = NaN; the first is reported best", self.metric)
            return int(self.stats.index[0])
        pick = np.where(finite, values, -np.inf if self.maximize else np.inf)
        pos = int(np.argmax(pick) if self.maximize else np.argmin(pick))  # first among equals
        return int(self.stats.index[pos])

    @property
    def best_params(self) -> dict[str, object]:
        """Return the best combination's parameters (by :attr:`metric`)."""
        pos = self.stats.index.get_loc(self.best_index)
        return {n: _plain(self.stats[n].iloc[pos]) for n in self.params}

    @property
    def best_stats(self) -> dict[str, float]:
        """Return the best combination's statistics (its row of :attr:`stats`)."""
        pos = self.stats.index.get_loc(self.best_index)
        return {k: _plain(self.stats[k].iloc[pos]) for k in METRICS}

    @property
    def best(self) -> ResearchResult:
        """Return the best combination's full :class:`ResearchResult` (run again, once)."""
        if self._best is None:
            from velox.backtest import ResearchResult, strategy_weights

            universe = _universe(self.job)
            strategy = self.job.strategy(self.best_params)
            weights = strategy_weights(strategy, universe)
            fills, orders, equity = universe.run(weights, strategy.capital)
            self._best = ResearchResult(strategy, universe, weights, fills, orders, equity)
        return self._best

    def heatmap(self, x: str | None = None, y: str | None = None, metric: str | None = None
                ) -> hv.HeatMap:  # fmt: skip
        """Return a heatmap of ``metric`` (default the ranking metric) over two parameters.

        With more than two swept parameters each cell shows the best value over the others.
        hvplot is imported here.
        """
        import hvplot.pandas  # noqa: F401  (registers .hvplot)

        x = x or self.params[0]
        y = y or (self.params[1] if len(self.params) > 1 else None)
        metric = metric or self.metric
        for name in (x, y):
            if name is not None and name not in self.params:
                raise ConfigError(f"{name!r} is not a swept parameter ({', '.join(self.params)})")
        if y is None:
            raise ConfigError("a heatmap needs two swept parameters: heatmap(x='fast', y='slow')")
        if metric not in self.stats.columns:
            raise ConfigError(f"metric={metric!r} is not a column of the sweep's stats")
        how = "max" if (metric not in LOWER_IS_BETTER) else "min"
        cells = self.stats.groupby([x, y], as_index=False)[metric].agg(how)
        return cells.hvplot.heatmap(
            x=x, y=y, C=metric, cmap="RdYlGn" if how == "max" else "RdYlGn_r", colorbar=True,
            title=f"{self.strategy.name}: {metric} over {x} × {y}", height=360, responsive=True,
        )  # fmt: skip

    def __repr__(self) -> str:
        best = self.best_params
        value = self.stats.loc[self.best_index, self.metric]
        return (
            f"OptimizeResult({self.strategy.name}, {len(self)} combinations of "
            f"{', '.join(self.params)} in {self.seconds:.2f} s; best {self.metric} "
            f"{value:.4g} at {best})"
        )

    def _repr_html_(self) -> str:
        import html

        head = html.escape(repr(self))
        top = self.ranked.head(10)[[*self.params, *_SHOWN]].to_html(
            float_format=lambda v: f"{v:,.4g}", index=False, border=0
        )
        return f"<div><b>OptimizeResult</b> <code>{head}</code><br>top 10:{top}</div>"


_SHOWN = ("sharpe", "total_return", "cagr", "max_drawdown", "trades", "win_rate", "charges")


def _plain(value: object) -> Any:
    return value.item() if isinstance(value, np.generic) else value
