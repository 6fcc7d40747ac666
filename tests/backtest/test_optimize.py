"""``velox.optimize``: every combination is ``velox.research`` with those parameters, found fast.

References: ``velox.research`` run alone per combination (its ``stats`` are built from Fill and
Trade objects by ``trades_from_fills`` and ``summary_stats``), a brute-force product of the
grid, and a count of the indicator computations actually made.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

import velox
from velox import config
from velox.backtest import distributed as dist
from velox.backtest import optimize as opt_module
from velox.backtest.optimize import METRICS, OptimizeResult, combinations, optimize
from velox.errors import ConfigError
from velox.strategy import Product, Strategy, load_strategy

ROOT = Path(__file__).resolve().parents[2]
SMA = str(ROOT / "strategies" / "sma_cross.py")
SmaCross = load_strategy(SMA)

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _bars(name: str, timeframe: str) -> pd.DataFrame:
    from velox.data import read_bar_file, validate_bars

    frame, _ = validate_bars(
        read_bar_file(ROOT / "data" / "bars" / name), timeframe=timeframe, source=name
    )
    return frame


@pytest.fixture(scope="module")
def reliance_1d() -> pd.DataFrame:
    return _bars("RELIANCE_1d_2017_2022.csv.gz", "1d")


@pytest.fixture(scope="module")
def reliance_5m() -> pd.DataFrame:
    return _bars("RELIANCE_5m_2025.csv", "5m")


@pytest.fixture(autouse=True)
def _no_scheduler_setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("VELOX_DASK_SCHEDULER", raising=False)
    config.reset_settings()
    yield
    config.reset_settings()


class MisCross(Strategy):
    """Intraday long/short cross (MIS): reversals in one fill, square-offs, slippage."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"
    product = Product.MIS
    fast: int = 5
    slow: int = 20
    weight: float = 1.0

    def signals(self, bars: pd.DataFrame) -> pd.Series:
        from velox.indicators import sma

        close = bars["close"].to_numpy(np.float64)
        fast, slow = sma(close, self.fast), sma(close, self.slow)
        out = np.where(fast > slow, self.weight, -self.weight)
        out[np.isnan(slow)] = np.nan
        return pd.Series(out, index=bars.index)


class Basket(Strategy):
    """Three stocks, ``weight`` each while their fast SMA is above the slow one: one cash pool."""

    instruments = ("NSE:INFY", "NSE:TCS", "NSE:SBIN")
    timeframe = "1d"
    fast: int = 10
    slow: int = 40
    weight: float = 0.3

    def signals(self, bars: pd.DataFrame) -> pd.Series:
        from velox.indicators import sma

        close = bars["close"].to_numpy(np.float64)
        fast, slow = sma(close, self.fast), sma(close, self.slow)
        out = np.where(fast > slow, self.weight, 0.0)
        out[np.isnan(slow)] = np.nan
        return pd.Series(out, index=bars.index)


def same(a: dict, b: dict) -> bool:
    """Equal dicts, NaN equal to NaN (bit-equal floats otherwise)."""
    if a.keys() != b.keys():
        return False
    return all(
        (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k]
        for k in a
    )


def row_stats(result: OptimizeResult, **params: object) -> dict:
    frame = result.stats
    mask = np.logical_and.reduce([frame[k] == v for k, v in params.items()])
    (pos,) = np.flatnonzero(mask)
    return {k: opt_module._plain(frame[k].iloc[pos]) for k in METRICS}


# -- every combination is velox.research ---------------------------------------------------------


def test_the_best_combination_rerun_alone_gives_the_same_stats(reliance_1d: pd.DataFrame) -> None:
    result = optimize(
        SMA,
        {"NSE:RELIANCE": reliance_1d},
        fast=range(5, 30, 5),
        slow=range(20, 80, 10),
        constraint="fast < slow",
        progress=False,
        scheduler="in-process",
    )
    best = result.best_params
    alone = velox.research(SMA, {"NSE:RELIANCE": reliance_1d}, **best)
    assert same(alone.stats, result.best_stats)
    assert same(result.best.stats, alone.stats)
    assert result.best_stats["sharpe"] == result.stats["sharpe"].max()
    assert result.best.trades.equals(alone.trades)
    # a few other combinations too
    for fast, slow in [(5, 20), (10, 30), (25, 70)]:
        other = velox.research(SMA, {"NSE:RELIANCE": reliance_1d}, fast=fast, slow=slow)
        assert same(other.stats, row_stats(result, fast=fast, slow=slow))


def test_sweep_stats_equal_research_for_reversals_square_offs_and_universes(
    reliance_5m: pd.DataFrame,
) -> None:
    from velox.costs import TickSlippage

    mis = optimize(
        MisCross,
        reliance_5m,
        fast=[3, 5, 8],
        slow=[12, 20],
        slippage=TickSlippage(1),
        progress=False,
        scheduler="in-process",
    )
    for fast, slow in itertools.product([3, 5, 8], [12, 20]):
        alone = velox.research(
            MisCross, reliance_5m, fast=fast, slow=slow, slippage=TickSlippage(1)
        )
        assert alone.stats["trades"] > 10
        assert same(alone.stats, row_stats(mis, fast=fast, slow=slow))
    frames = {
        iid: _bars(f"{iid.split(':')[1]}_1d_2017_2022.csv.gz", "1d") for iid in Basket.instruments
    }
    basket = optimize(
        Basket, frames, fast=[5, 10], slow=[30, 60], progress=False, scheduler="in-process"
    )
    for fast, slow in itertools.product([5, 10], [30, 60]):
        alone = velox.research(Basket, frames, fast=fast, slow=slow)
        assert same(alone.stats, row_stats(basket, fast=fast, slow=slow))


def test_a_cross_sectional_rotation_sweep_equals_research() -> None:
    rotation = load_strategy(str(ROOT / "strategies" / "momentum_rotation.py"))
    frames = {iid: _bars(f"{iid.split(':')[1]}_1d_2017_2022.csv.gz", "1d")
              for iid in rotation.instruments[:12]}  # fmt: skip
    result = optimize(rotation, frames, window=[63, 126], top=[2, 4], progress=False,
                      scheduler="in-process")  # fmt: skip
    assert len(result) == 4
    for window, top in itertools.product([63, 126], [2, 4]):
        alone = velox.research(rotation, frames, window=window, top=top)
        assert alone.stats["trades"] >= 1 and len(alone.fill_records) >= 4
        assert same(alone.stats, row_stats(result, window=window, top=top))


# -- the grid ----------------------------------------------------------------------------------


def test_the_grid_covers_exactly_the_constrained_combinations(reliance_1d: pd.DataFrame) -> None:
    fast, slow = range(2, 40, 4), range(10, 60, 7)
    expected = [(f, s) for f in fast for s in slow if f < s and (s - f) % 3 != 0]
    by_function = optimize(
        SMA,
        {"NSE:RELIANCE": reliance_1d},
        fast=fast,
        slow=slow,
        constraint=lambda p: p["fast"] < p["slow"] and (p["slow"] - p["fast"]) % 3 != 0,
        progress=False,
        scheduler="in-process",
    )
    by_text = combinations(
        {"fast": list(fast), "slow": list(slow)}, "fast < slow and (slow - fast) % 3 != 0"
    )
    got = list(zip(by_function.stats["fast"], by_function.stats["slow"], strict=True))
    assert got == expected  # grid order, each once
    assert [(c["fast"], c["slow"]) for c in by_text] == expected
    assert list(by_function.stats.columns[:2]) == ["fast", "slow"]
    assert set(METRICS) <= set(by_function.stats.columns)


def test_random_search_is_reproducible_and_a_subset_of_the_grid(reliance_1d: pd.DataFrame) -> None:
    grid = {"fast": list(range(2, 50)), "slow": list(range(10, 200, 2))}
    full = {tuple(c.values()) for c in combinations(grid, "fast < slow")}
    a = combinations(grid, "fast < slow", method="random", n_iter=40, seed=7)
    b = combinations(grid, "fast < slow", method="random", n_iter=40, seed=7)
    c = combinations(grid, "fast < slow", method="random", n_iter=40, seed=8)
    assert a == b and a != c
    picked = [tuple(x.values()) for x in a]
    assert len(set(picked)) == 40 and set(picked) <= full
    # the big-grid path (drawn without enumerating) too
    huge = {"fast": list(range(1, 3000)), "slow": list(range(1, 3000)), "weight": [0.5, 0.9]}
    d = combinations(huge, "fast < slow", method="random", n_iter=25, seed=1)
    assert d == combinations(huge, "fast < slow", method="random", n_iter=25, seed=1)
    assert len({tuple(x.values()) for x in d}) == 25 and all(x["fast"] < x["slow"] for x in d)
    result = optimize(
        SMA,
        {"NSE:RELIANCE": reliance_1d},
        fast=range(5, 30, 5),
        slow=range(20, 80, 10),
        constraint="fast < slow",
        method="random",
        n_iter=6,
        seed=3,
        progress=False,
        scheduler="in-process",
    )
    again = optimize(
        SMA,
        {"NSE:RELIANCE": reliance_1d},
        fast=range(5, 30, 5),
        slow=range(20, 80, 10),
        constraint="fast < slow",
        method="random",
        n_iter=6,
        seed=3,
        progress=False,
        scheduler="in-process",
    )
    assert len(result) == 6
    pd.testing.assert_frame_equal(result.stats, again.stats)


def test_memo_computes_each_distinct_indicator_once_per_sweep(
    reliance_1d: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from velox.indicators import _batch

    calls: list[tuple] = []
    real = _batch.compute

    def counting(spec, arrays, kwargs, *args):  # noqa: ANN001, ANN202
        calls.append((spec.name, tuple(sorted(kwargs.items()))))
        return real(spec, arrays, kwargs, *args)

    monkeypatch.setattr(_batch, "compute", counting)
    monkeypatch.setattr(opt_module, "MAX_CHUNK", 2)  # many chunks: the memo must span them
    swept = {"fast": list(range(5, 30, 5)), "slow": list(range(20, 80, 10))}
    combos = combinations(swept, "fast < slow")
    assert len(opt_module._chunks(combos, swept, workers=1)) > 10
    kwargs = dict(**swept, constraint="fast < slow", progress=False, scheduler="in-process")
    result = optimize(SMA, {"NSE:RELIANCE": reliance_1d}, **kwargs)
    windows = {w for c in combos for w in (c["fast"], c["slow"])}
    assert sorted(calls) == sorted(("sma", (("window", w),)) for w in windows)  # once each
    assert not opt_module._MEMOS  # the sweep's cache is released with it
    result.best  # noqa: B018  (re-run alone: its own two SMAs)
    assert len(calls) == len(windows) + 2
    # the same statistics as without any sharing (every result dropped at once)
    monkeypatch.setattr(opt_module, "MEMO_BYTES", 0)
    calls.clear()
    unshared = optimize(SMA, {"NSE:RELIANCE": reliance_1d}, **kwargs)
    assert len(calls) == 2 * len(combos)
    pd.testing.assert_frame_equal(result.stats, unshared.stats)


# -- where it runs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs=dist.LOOPBACK_SCHEDULER,
        ) as cluster,
        Client(cluster) as opened,
    ):
        yield opened


def test_dask_and_forked_processes_give_the_in_process_result(
    reliance_1d: pd.DataFrame, dask_client: Client
) -> None:
    kwargs = dict(
        fast=range(5, 30, 5), slow=range(20, 80, 10), constraint="fast < slow", progress=False
    )
    here = optimize(SMA, {"NSE:RELIANCE": reliance_1d}, scheduler="in-process", **kwargs)
    on_dask = optimize(SMA, {"NSE:RELIANCE": reliance_1d}, scheduler=dask_client, **kwargs)
    forked = optimize(
        SMA, {"NSE:RELIANCE": reliance_1d}, scheduler="processes", workers=2, **kwargs
    )
    pd.testing.assert_frame_equal(here.stats, on_dask.stats)
    pd.testing.assert_frame_equal(here.stats, forked.stats)
    assert here.best_params == on_dask.best_params == forked.best_params


def test_the_scheduler_setting_sends_sweeps_and_folds_to_that_cluster(
    reliance_1d: pd.DataFrame, dask_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``VELOX_DASK_SCHEDULER`` names an existing cluster: without ``scheduler=``, a sweep's
    chunks and a walk-forward's folds run there (the scheduler's task stream sees them), the
    results equal the in-process ones, and the cluster is left running."""
    from distributed import get_task_stream

    from velox.backtest.walkforward import walk_forward

    frames = {"NSE:RELIANCE": reliance_1d}
    grid = dict(fast=range(5, 30, 5), slow=range(20, 80, 10), constraint="fast < slow")
    here = optimize(SMA, frames, scheduler="in-process", progress=False, **grid)
    folds_here = walk_forward(SMA, frames, train=400, test=150, scheduler="in-process",
                              progress=False, **grid)  # fmt: skip
    monkeypatch.setenv("VELOX_DASK_SCHEDULER", dask_client.cluster.scheduler_address)
    config.reset_settings()
    with get_task_stream(dask_client) as sweep_tasks:
        there = optimize(SMA, frames, progress=False, **grid)
    assert any("_run_chunk" in t["key"] for t in sweep_tasks.data), sweep_tasks.data
    pd.testing.assert_frame_equal(here.stats, there.stats)
    assert here.best_params == there.best_params
    with get_task_stream(dask_client) as fold_tasks:
        folds_there = walk_forward(SMA, frames, train=400, test=150, progress=False, **grid)
    assert len({t["key"] for t in fold_tasks.data if "_in_sample" in t["key"]}) == len(
        folds_here.folds
    ), fold_tasks.data
    pd.testing.assert_frame_equal(folds_here.table, folds_there.table)
    assert same(folds_here.stats, folds_there.stats)
    assert dask_client.submit(abs, -3).result() == 3  # the cluster is still there


class Boom(Strategy):
    """Fails for one combination: the sweep must stop with that error, wherever it ran."""

    instruments = ("NSE:RELIANCE",)
    fast: int = 5
    slow: int = 30

    def signals(self, bars: pd.DataFrame) -> pd.Series:
        if self.fast == 15 and self.slow == 60:
            raise ValueError("planted failure at fast=15, slow=60")
        return pd.Series(0.5, index=bars.index)


@pytest.mark.parametrize("scheduler", ["processes", "in-process"])
def test_a_failing_combination_stops_the_sweep_with_its_error(
    reliance_1d: pd.DataFrame, scheduler: str
) -> None:
    with pytest.raises(ValueError, match="planted failure at fast=15, slow=60"):
        optimize(Boom, reliance_1d, fast=range(5, 30, 5), slow=range(20, 80, 10),
                 progress=False, scheduler=scheduler, workers=2)  # fmt: skip


# -- refusals and display -------------------------------------------------------------------------


def test_bad_grids_are_refused_naming_the_problem(reliance_1d: pd.DataFrame) -> None:
    bars = {"NSE:RELIANCE": reliance_1d}

    def refused(match: str, **kwargs: object) -> None:
        with pytest.raises(ConfigError, match=match):
            optimize(SMA, bars, progress=False, scheduler="in-process", **kwargs)

    refused(r"fast= is empty", fast=range(10, 5), slow=[30])
    refused(r"no parameter 'fastt'; did you mean 'fast'", fastt=[5, 10], slow=[30])
    refused(
        r"metric='sharp' is not a statistic.*did you mean 'sharpe'",
        fast=[5],
        slow=[30],
        metric="sharp",
    )
    refused(r"leaves no combination", fast=[50, 60], slow=[10, 20], constraint="fast < slow")
    refused(
        r"not an expression of the swept parameters", fast=[5], slow=[30], constraint="fats < slow"
    )
    refused(r"needs n_iter=", fast=[5, 10], slow=[30], method="random")
    refused(r"not a search method", fast=[5, 10], slow=[30], method="bayes")
    refused(r"no parameter to sweep", fast=5, slow=30)
    refused(r"fast.*>= 1", fast=[0, 5], slow=[30])


def test_result_table_best_heatmap_and_html(reliance_1d: pd.DataFrame) -> None:
    import holoviews as hv

    result = optimize(
        SMA,
        {"NSE:RELIANCE": reliance_1d},
        fast=range(5, 30, 5),
        slow=range(20, 80, 10),
        constraint="fast < slow",
        metric="total_return",
        progress=False,
        scheduler="in-process",
    )
    assert result.best_params == {
        k: int(v) for k, v in result.ranked.iloc[0][["fast", "slow"]].items()
    }
    assert isinstance(result.heatmap("fast", "slow", "sharpe"), hv.HeatMap)
    html = result._repr_html_()
    assert "OptimizeResult" in html and "top 10" in html
    assert "best total_return" in repr(result)
    low = optimize(
        SMA,
        {"NSE:RELIANCE": reliance_1d},
        fast=[5, 10],
        slow=[30, 40],
        metric="max_drawdown",
        progress=False,
        scheduler="in-process",
    )
    assert low.best_stats["max_drawdown"] == low.stats["max_drawdown"].min()
