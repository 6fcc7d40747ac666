"""``velox.walk_forward``: folds that never overlap, out-of-sample backtests equal to
``velox.research`` of the window (with and without warm-up history), stitched equity."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import cloudpickle
import numpy as np
import pandas as pd
import pytest

import velox
from velox import config
from velox.backtest.walkforward import WalkForwardReport, fold_windows, walk_forward
from velox.errors import ConfigError
from velox.strategy import load_strategy

ROOT = Path(__file__).resolve().parents[2]
SMA = str(ROOT / "strategies" / "sma_cross.py")
SmaCross = load_strategy(SMA)
GRID = {"fast": range(5, 30, 5), "slow": range(20, 100, 20), "constraint": "fast < slow"}

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def reliance() -> dict[str, pd.DataFrame]:
    from velox.data import read_bar_file, validate_bars

    name = "RELIANCE_1d_2017_2022.csv.gz"
    frame, _ = validate_bars(
        read_bar_file(ROOT / "data" / "bars" / name), timeframe="1d", source=name
    )
    return {"NSE:RELIANCE": frame}


@pytest.fixture(autouse=True)
def _no_scheduler_setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("VELOX_DASK_SCHEDULER", raising=False)
    config.reset_settings()
    yield
    config.reset_settings()


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k]
        for k in a
    )


@pytest.fixture(scope="module")
def rolling(reliance: dict[str, pd.DataFrame]) -> WalkForwardReport:
    return walk_forward(
        SMA, reliance, train=400, test=150, progress=False, scheduler="in-process", **GRID
    )


# -- the windows --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("train", "test", "step", "anchored"),
    [
        (400, 150, None, False),
        (400, 150, None, True),
        (300, 100, 130, False),
        ("540D", "180D", None, False),
        ("365D", "90D", None, True),
        ("365D", "90D", "120D", False),
    ],
)
def test_folds_never_overlap_and_out_of_sample_windows_tile(
    reliance: dict[str, pd.DataFrame], train: object, test: object, step: object, anchored: bool
) -> None:
    index = reliance["NSE:RELIANCE"].index
    folds = fold_windows(index, train, test, step=step, anchored=anchored)
    assert len(folds) >= 3
    for a, b, c, d in folds:
        assert a < b == c < d <= len(index)  # in-sample right before out-of-sample, disjoint
        if anchored:
            assert a == 0
    for (_, _, _, d0), (_, _, c1, _) in zip(folds, folds[1:], strict=False):
        if step is None:
            assert c1 == d0  # out-of-sample windows tile the bars: no gap, no overlap
        else:
            assert c1 >= d0  # a longer step leaves gaps, never overlaps
    if step is None:
        assert folds[-1][3] == len(index)  # up to the last bar
    if isinstance(train, int) and not anchored:
        assert all(b - a == train for a, b, _, _ in folds)
    if isinstance(train, str) and not anchored:
        span, every = pd.Timedelta(train), pd.Timedelta(step or test)
        for k, (a, b, _, _) in enumerate(folds):  # window k: [first + k × step, … + train)
            start = index[0] + k * every
            assert index[a] >= start and (a == 0 or index[a - 1] < start)
            assert index[b - 1] < start + span <= index[b]


def test_anchored_report_folds_all_start_at_the_first_bar(
    reliance: dict[str, pd.DataFrame],
) -> None:
    report = walk_forward(
        SMA,
        reliance,
        train="365D",
        test="180D",
        anchored=True,
        progress=False,
        scheduler="in-process",
        **GRID,
    )
    first = reliance["NSE:RELIANCE"].index[0]
    assert all(f.in_sample_start == first for f in report.folds)
    ends = [f.in_sample_end for f in report.folds]
    assert ends == sorted(ends) and len(set(ends)) == len(ends)


def test_bad_windows_are_refused(reliance: dict[str, pd.DataFrame]) -> None:
    index = reliance["NSE:RELIANCE"].index
    with pytest.raises(ConfigError, match="overlap"):
        fold_windows(index, 300, 100, step=50)
    with pytest.raises(ConfigError, match="mix bar counts and calendar spans"):
        fold_windows(index, 300, "90D")
    with pytest.raises(ConfigError, match="hold no fold"):
        fold_windows(index, 5000, 100)
    with pytest.raises(ConfigError, match="neither a number of bars"):
        fold_windows(index, "a year", "90D")
    with pytest.raises(ConfigError, match="warmup="):
        walk_forward(SMA, reliance, train=400, test=150, warmup="some", **GRID)


# -- out of sample = velox.research of the window --------------------------------------------------


class WithHistory(SmaCross):  # type: ignore[misc, valid-type]
    """SmaCross whose signals see the whole history up to the last bar they are given."""

    history: ClassVar[pd.DataFrame]

    def signals(self, bars: pd.DataFrame) -> pd.Series:
        seen = self.history[self.history.index <= bars.index[-1]]
        return SmaCross.signals(self, seen).reindex(bars.index)


def test_out_of_sample_stats_equal_research_of_the_window_with_warm_up_history(
    rolling: WalkForwardReport, reliance: dict[str, pd.DataFrame]
) -> None:
    frame = reliance["NSE:RELIANCE"]
    WithHistory.history = frame
    for fold in rolling.folds:
        window = frame[
            (frame.index >= fold.out_of_sample_start) & (frame.index <= fold.out_of_sample_end)
        ]
        alone = velox.research(
            WithHistory,
            {"NSE:RELIANCE": window},
            initial_cash=fold.out_of_sample_initial_cash,
            **fold.best_params,
        )
        assert same(alone.stats, fold.out_of_sample_stats)
        # warm on the first out-of-sample bar; nothing traded before the window
        assert not np.isnan(fold.result.weights[0, 0])
        assert (fold.result.fills["ts"] >= fold.out_of_sample_start).all()
        # the in-sample figures are velox.optimize's (velox.research of the in-sample bars)
        in_sample = frame[
            (frame.index >= fold.in_sample_start) & (frame.index <= fold.in_sample_end)
        ]
        assert same(
            velox.research(SMA, {"NSE:RELIANCE": in_sample}, **fold.best_params).stats,
            fold.in_sample_stats,
        )


def test_without_warm_up_a_fold_is_exactly_research_of_the_window(
    reliance: dict[str, pd.DataFrame],
) -> None:
    frame = reliance["NSE:RELIANCE"]
    report = walk_forward(
        SMA, reliance, train=400, test=150, warmup=0, progress=False, scheduler="in-process", **GRID
    )
    for fold in report.folds:
        window = frame[
            (frame.index >= fold.out_of_sample_start) & (frame.index <= fold.out_of_sample_end)
        ]
        alone = velox.research(
            SMA,
            {"NSE:RELIANCE": window},
            initial_cash=fold.out_of_sample_initial_cash,
            **fold.best_params,
        )
        assert same(alone.stats, fold.out_of_sample_stats)
        assert np.isnan(fold.result.weights[0, 0])  # the SMA warms up inside the window


def test_stitched_equity_compounds_fold_after_fold(rolling: WalkForwardReport) -> None:
    folds = rolling.folds
    assert folds[0].out_of_sample_initial_cash == 1_000_000.0
    for prev, nxt in zip(folds, folds[1:], strict=False):
        assert nxt.out_of_sample_initial_cash == prev.result.final_equity
    equity = rolling.equity
    assert equity.index.is_monotonic_increasing and equity.index.is_unique
    assert len(equity) == sum(len(f.result.equity_values_array) for f in folds)
    assert equity.iloc[-1] == folds[-1].result.final_equity == rolling.stats["final_equity"]
    assert rolling.stats["trades"] == sum(f.out_of_sample_stats["trades"] for f in folds)
    assert rolling.stats["charges"] == pytest.approx(
        sum(f.out_of_sample_stats["charges"] for f in folds), rel=1e-12
    )


def test_report_tables_plot_and_html(rolling: WalkForwardReport) -> None:
    import holoviews as hv

    table = rolling.table
    assert list(table.index) == list(range(len(rolling.folds)))
    assert {"fast", "slow", "in_sample_sharpe", "out_of_sample_sharpe"} <= set(table.columns)
    stability = rolling.stability
    assert list(stability.index) == ["fast", "slow"]
    params = rolling.parameters
    assert stability.loc["fast", "changes"] == int((params["fast"].diff().fillna(0) != 0).sum())
    assert stability.loc["slow", "min"] == params["slow"].min()
    assert isinstance(rolling.plot(), hv.Layout)
    html = rolling._repr_html_()
    assert "WalkForwardReport" in html and "parameter stability" in html


def test_a_universe_walks_forward_on_its_union_of_bar_times() -> None:
    from velox.data import read_bar_file, validate_bars

    frames = {}
    for iid in ("NSE:INFY", "NSE:TCS", "NSE:SBIN"):
        name = f"{iid.split(':')[1]}_1d_2017_2022.csv.gz"
        frames[iid], _ = validate_bars(read_bar_file(ROOT / "data" / "bars" / name),
                                       timeframe="1d", source=name)  # fmt: skip
    report = walk_forward(SMA, frames, train="540D", test="180D", progress=True,
                          scheduler="in-process", weight=0.3, **GRID)  # fmt: skip
    assert len(report.folds) >= 4
    for fold in report.folds:
        assert fold.result.universe.instrument_ids == ("NSE:INFY", "NSE:SBIN", "NSE:TCS")
        assert fold.best_params.keys() == {"fast", "slow"}
    assert report.equity.index.is_monotonic_increasing


def test_folds_on_dask_give_the_in_process_report(
    rolling: WalkForwardReport, reliance: dict[str, pd.DataFrame]
) -> None:
    from distributed import Client, LocalCluster

    from velox.backtest import distributed as dist

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs=dist.LOOPBACK_SCHEDULER,
        ) as cluster,
        Client(cluster) as client,
    ):
        on_dask = walk_forward(
            SMA, reliance, train=400, test=150, progress=False, scheduler=client, **GRID
        )
    pd.testing.assert_frame_equal(on_dask.table, rolling.table)
    assert same(on_dask.stats, rolling.stats)
