"""Monte Carlo of a backtest, checked against independent computations: every permutation of a
few trades enumerated, the analytic mean of a bootstrap, drawdowns recomputed by a plain loop."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import velox
from velox.backtest import montecarlo
from velox.backtest.montecarlo import MonteCarloReport, monte_carlo
from velox.errors import ConfigError, ValidationError

ROOT = Path(__file__).resolve().parents[2]
SMA = str(ROOT / "strategies" / "sma_cross.py")


@dataclass
class FakeResult:
    """The three attributes monte_carlo reads, as any result (RunResult, research) has them."""

    trades: pd.DataFrame
    equity: pd.Series
    stats: dict[str, float | int] = field(default_factory=dict)


def _result(
    pnl: list[float],
    charges: list[float] | None = None,
    initial_cash: float = 1000.0,
    equity: list[float] | None = None,
) -> FakeResult:
    days = pd.date_range("2024-01-01", periods=max(len(pnl), len(equity or [])), freq="D",
                         tz="Asia/Kolkata")  # fmt: skip
    charges = charges or [0.0] * len(pnl)
    trades = pd.DataFrame(
        {
            "entry_time": days[: len(pnl)],
            "exit_time": days[: len(pnl)],
            "instrument_id": "NSE:SBIN",
            "side": "BUY",
            "qty": 1,
            "entry_price": 100.0,
            "exit_price": 100.0,
            "pnl": np.asarray(pnl, dtype=float),
            "charges": np.asarray(charges, dtype=float),
        }
    )
    if equity is None:
        equity = list(initial_cash + np.cumsum(np.asarray(pnl) - np.asarray(charges)))
    curve = pd.Series(equity, index=days[: len(equity)], name="equity")
    return FakeResult(trades, curve, {"initial_cash": initial_cash})


def _max_drawdown(path: list[float]) -> tuple[float, float]:
    """Return (largest fractional drawdown, largest drawdown in rupees) by a plain loop."""
    peak, worst, worst_amount = path[0], 0.0, 0.0
    for value in path:
        peak = max(peak, value)
        worst = max(worst, (peak - value) / peak)
        worst_amount = max(worst_amount, peak - value)
    return worst, worst_amount


# -- reshuffle -------------------------------------------------------------------------------------


def test_reshuffle_samples_exactly_the_drawdowns_of_all_permutations() -> None:
    pnl = [300.0, -500.0, 200.0, -400.0, 600.0, -100.0]  # whole rupees: sums are exact
    exact = Counter()
    for order in itertools.permutations(pnl):
        exact[_max_drawdown(list(1000.0 + np.r_[0.0, np.cumsum(order)]))[0]] += 1
    total = math.factorial(len(pnl))
    n = 60_000
    mc = monte_carlo(_result(pnl), n=n, seed=3)
    # final equity does not depend on the order: the same in every simulation
    assert (mc.simulations["final_equity"] == 1100.0).all()
    assert np.allclose(mc.simulations["total_return"], 0.1)
    sampled = Counter(mc.simulations["max_drawdown"].round(12))
    assert set(sampled) == {round(v, 12) for v in exact}  # every permutation's value, no other
    for value, count in exact.items():
        p = count / total
        assert abs(sampled[round(value, 12)] / n - p) < 5 * math.sqrt(p * (1 - p) / n)
    # the observed sequence is the trades' own order
    assert mc.observed["max_drawdown"] == pytest.approx(_max_drawdown(
        list(1000.0 + np.r_[0.0, np.cumsum(pnl)]))[0])  # fmt: skip
    assert mc.observed["final_equity"] == 1100.0


def test_reshuffle_uses_net_pnl_of_closed_trades_in_exit_order() -> None:
    result = _result([100.0, -50.0, 30.0, 999.0], charges=[10.0, 5.0, 3.0, 1.0])
    trades = result.trades
    trades.loc[3, "exit_time"] = pd.NaT  # still open: left out
    trades.loc[0, "exit_time"] = trades.loc[2, "exit_time"] + pd.Timedelta(hours=1)  # exits last
    mc = monte_carlo(result, n=50, seed=1)
    assert mc.steps == "trade" and len(mc.observed_path) == 4
    assert mc.observed_path.tolist() == pytest.approx([1000.0, 945.0, 972.0, 1062.0])
    assert (mc.simulations["final_equity"] - 1062.0).abs().max() < 1e-9
    # initial_cash= moves the start, not the rupee P&L
    assert monte_carlo(result, n=5, seed=1, initial_cash=10_000.0).observed["final_equity"] == (
        pytest.approx(10_062.0)
    )


def test_each_simulation_row_matches_its_path_recomputed_by_a_loop() -> None:
    rng = np.random.default_rng(0)
    pnl = list(rng.normal(50, 400, size=40).round(2))
    for method in ("reshuffle", "bootstrap"):
        mc = monte_carlo(_result(pnl, initial_cash=5000.0), n=300, seed=11, method=method)
        assert mc.paths.shape == (41, 300)
        for column in mc.paths.columns[:50]:
            path = mc.paths[column].tolist()
            assert path[0] == pytest.approx(5000.0)
            worst, amount = _max_drawdown(path)
            row = mc.simulations.loc[column]
            assert row["final_equity"] == pytest.approx(path[-1], rel=1e-12)
            assert row["max_drawdown"] == pytest.approx(worst, rel=1e-12)
            assert row["max_drawdown_amount"] == pytest.approx(amount, rel=1e-9)
        if method == "reshuffle":  # every path is a permutation of the same steps
            steps = np.sort(np.diff(mc.paths.to_numpy(), axis=0), axis=0)
            assert np.allclose(steps, np.sort(pnl)[:, None])


# -- bootstrap -------------------------------------------------------------------------------------


def _daily_equity(returns: np.ndarray, initial: float) -> list[float]:
    return list(initial * np.cumprod(1.0 + returns))


def test_bootstrap_mean_final_equity_converges_to_the_analytic_expectation() -> None:
    returns = np.array([0.02, -0.015, 0.01, -0.03, 0.025, 0.005, -0.01, 0.012])
    result = _result([10.0], equity=_daily_equity(returns, 1000.0))
    n = 40_000
    mc = monte_carlo(result, n=n, method="bootstrap", seed=5)
    # independent draws: E[prod(1 + r*)] = prod E[1 + r*] = (1 + mean r) ^ k
    expected = 1000.0 * (1.0 + returns.mean()) ** len(returns)
    finals = mc.simulations["final_equity"]
    assert abs(finals.mean() - expected) < 4 * finals.std() / math.sqrt(n)
    assert mc.observed["final_equity"] == pytest.approx(1000.0 * np.prod(1.0 + returns))
    # initial_cash= scales the paths; the returns stay the result's own
    scaled = monte_carlo(result, n=n, method="bootstrap", seed=5, initial_cash=2000.0)
    assert np.allclose(scaled.simulations["final_equity"], 2 * finals)
    assert np.allclose(scaled.simulations["max_drawdown"], mc.simulations["max_drawdown"])


def test_a_block_as_long_as_the_series_rotates_it_and_keeps_its_final_equity() -> None:
    returns = np.array([0.02, -0.015, 0.01, -0.03, 0.025, 0.005])
    result = _result([10.0], equity=_daily_equity(returns, 1000.0))
    mc = monte_carlo(result, n=500, method="bootstrap", block_size=len(returns), seed=2)
    assert np.allclose(mc.simulations["final_equity"], mc.observed["final_equity"], rtol=1e-12)
    rotations = {
        round(_max_drawdown(list(1000.0 * np.r_[1.0, np.cumprod(1 + np.roll(returns, -s))]))[0], 12)
        for s in range(len(returns))
    }
    assert set(mc.simulations["max_drawdown"].round(12)) == rotations
    # blocks of 2: each path is made of consecutive (circular) pairs of the original days
    mc2 = monte_carlo(result, n=50, method="bootstrap", block_size=2, seed=2)
    daily = mc2.paths.to_numpy()[1:] / mc2.paths.to_numpy()[:-1] - 1.0
    for path in daily.T:
        picks = [int(np.argmin(np.abs(returns - r))) for r in path]
        assert all(picks[i + 1] == (picks[i] + 1) % len(returns) for i in range(0, 5, 2))


def test_a_bootstrap_horizon_sets_the_path_length_and_the_expectation() -> None:
    returns = np.array([0.02, -0.015, 0.01, -0.03, 0.025, 0.005, -0.01, 0.012])
    result = _result([10.0], equity=_daily_equity(returns, 1000.0))
    n, horizon = 40_000, 20
    mc = monte_carlo(result, n=n, method="bootstrap", horizon=horizon, seed=8)
    assert mc.paths.shape == (horizon + 1, montecarlo.PATHS_KEPT)
    assert len(mc.observed_path) == len(returns) + 1  # the result's own path, unchanged
    expected = 1000.0 * (1.0 + returns.mean()) ** horizon
    finals = mc.simulations["final_equity"]
    assert abs(finals.mean() - expected) < 4 * finals.std() / math.sqrt(n)
    blocks = monte_carlo(result, n=20, method="bootstrap", horizon=7, block_size=3, seed=8)
    assert blocks.paths.shape[0] == 8
    assert len(blocks.plot()) == 3
    with pytest.raises(ValidationError, match="horizon= is for method='bootstrap'"):
        monte_carlo(result, horizon=5)
    with pytest.raises(ValidationError, match="horizon=0 must be a whole number of sessions"):
        monte_carlo(result, method="bootstrap", horizon=0)


def test_bootstrap_reads_end_of_day_equity_like_summary_stats() -> None:
    index = pd.DatetimeIndex(
        ["2024-01-01 10:00", "2024-01-01 15:00", "2024-01-02 11:00", "2024-01-03 12:00"],
        tz="Asia/Kolkata",
    )
    result = _result([1.0])
    result.equity = pd.Series([1010.0, 990.0, 1089.0, 980.1], index=index)
    mc = monte_carlo(result, n=10, method="bootstrap", seed=0)
    assert mc.observed_path.tolist() == pytest.approx([1000.0, 990.0, 1089.0, 980.1])
    assert mc.steps == "session"


# -- seeds, chunks, figures ------------------------------------------------------------------------


def test_a_seed_reproduces_the_report_whatever_the_chunk_size(monkeypatch) -> None:
    pnl = list(np.random.default_rng(1).normal(0, 100, size=30))
    result = _result(pnl, equity=_daily_equity(np.random.default_rng(2).normal(0, 0.01, 60), 1e3))
    for method in ("reshuffle", "bootstrap"):
        first = monte_carlo(result, n=700, method=method, seed=42)
        again = monte_carlo(result, n=700, method=method, seed=42)
        pd.testing.assert_frame_equal(first.simulations, again.simulations)
        other = monte_carlo(result, n=700, method=method, seed=43)
        assert not first.simulations["max_drawdown"].equals(other.simulations["max_drawdown"])
        monkeypatch.setattr(montecarlo, "CHUNK_BYTES", 5000)  # a few rows per chunk
        chunked = monte_carlo(result, n=700, method=method, seed=42)
        monkeypatch.undo()
        pd.testing.assert_frame_equal(first.simulations, chunked.simulations)
        pd.testing.assert_frame_equal(first.paths, chunked.paths)
    unseeded = monte_carlo(result, n=100, method="bootstrap")
    replayed = monte_carlo(result, n=100, method="bootstrap", seed=unseeded.seed)
    pd.testing.assert_frame_equal(unseeded.simulations, replayed.simulations)


def test_quantiles_and_probabilities_match_direct_counts() -> None:
    returns = np.random.default_rng(9).normal(0.0, 0.02, 120)
    mc = monte_carlo(_result([1.0], equity=_daily_equity(returns, 1e5), initial_cash=1e5),
                     n=3000, method="bootstrap", seed=4)  # fmt: skip
    finals = mc.simulations["final_equity"].to_numpy()
    table = mc.quantiles([0.05, 0.5, 0.95])
    assert table.index.tolist() == [0.05, 0.5, 0.95]
    assert table.loc[0.5, "final_equity"] == pytest.approx(np.quantile(finals, 0.5))
    assert list(table.columns) == list(montecarlo.COLUMNS)
    assert mc.probability_of_loss() == pytest.approx(np.mean(finals < 1e5))
    assert mc.probability_of_loss(0.1) == pytest.approx(np.mean(finals < 0.9e5))
    assert mc.probability_of_loss(amount=5000) == pytest.approx(np.mean(1e5 - finals > 5000))
    assert mc.probability_of_loss(1.0) == 0.0
    dd = mc.simulations["max_drawdown"].to_numpy()
    assert mc.probability_of_drawdown(0.2) == pytest.approx(np.mean(dd > 0.2))
    with pytest.raises(ValidationError, match="not both"):
        mc.probability_of_loss(0.1, amount=100)
    with pytest.raises(ValidationError, match="fraction=-0.1 must be a finite number"):
        mc.probability_of_loss(-0.1)
    with pytest.raises(ValidationError, match="quantiles"):
        mc.quantiles([1.5])


def test_paths_kept_are_bounded() -> None:
    mc = monte_carlo(_result([5.0, -3.0, 2.0]), n=2000, seed=0)
    assert mc.paths.shape == (4, montecarlo.PATHS_KEPT)
    assert len(mc.simulations) == 2000 and mc.simulations.index.name == "simulation"


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -5, 2.5, True, "100"])
def test_n_must_be_a_positive_whole_number(n: object) -> None:
    with pytest.raises(ValidationError, match=r"n=.* must be a whole number of simulations ≥ 1"):
        monte_carlo(_result([1.0, 2.0]), n=n)  # type: ignore[arg-type]


def test_bad_input_is_one_clear_error() -> None:
    good = _result([1.0, -2.0, 3.0])
    with pytest.raises(ConfigError, match="method='reshufle'.*did you mean 'reshuffle'"):
        monte_carlo(good, method="reshufle")  # type: ignore[arg-type]
    no_trades = _result([], equity=[1000.0, 1001.0])
    with pytest.raises(ValidationError, match="needs closed trades, but the result has none"):
        monte_carlo(no_trades)
    only_open = _result([1.0])
    only_open.trades["exit_time"] = pd.NaT
    with pytest.raises(ValidationError, match=r"has none \(1 still open\).*bootstrap"):
        monte_carlo(only_open)
    with pytest.raises(
        ValidationError, match=r"with .trades, .equity and .stats .*object has no .stats"
    ):
        monte_carlo(object())  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="at least two daily returns"):
        monte_carlo(_result([1.0]), method="bootstrap")
    with pytest.raises(ValidationError, match="block_size=9 is longer than the 3 daily"):
        monte_carlo(good, method="bootstrap", block_size=9)
    with pytest.raises(ValidationError, match="block_size= is for method='bootstrap'"):
        monte_carlo(good, block_size=2)
    with pytest.raises(ValidationError, match="block_size=0"):
        monte_carlo(good, method="bootstrap", block_size=0)
    with pytest.raises(ValidationError, match="initial_cash=0 must be a finite number > 0"):
        monte_carlo(good, initial_cash=0)
    with pytest.raises(ValidationError, match="seed=-1"):
        monte_carlo(good, seed=-1)
    no_cash = _result([1.0, 2.0])
    no_cash.stats = {}
    with pytest.raises(ValidationError, match="no 'initial_cash'; pass initial_cash="):
        monte_carlo(no_cash)
    nan = _result([1.0, math.nan])
    with pytest.raises(ValidationError, match="NaN"):
        monte_carlo(nan)


# -- on a real replay ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replayed() -> velox.RunResult:
    from velox.data import read_bar_file, validate_bars

    name = "RELIANCE_1d_2017_2022.csv.gz"
    frame, _ = validate_bars(read_bar_file(ROOT / "data" / "bars" / name), timeframe="1d",
                             source=name)  # fmt: skip
    return velox.replay(SMA, symbols="NSE:RELIANCE", timeframe="1d", bars=frame, fast=10, slow=30)


def test_monte_carlo_of_a_replay_plots_and_shows_html(replayed: velox.RunResult) -> None:
    import holoviews as hv

    assert velox.monte_carlo is monte_carlo
    shuffled = velox.monte_carlo(replayed, n=500, seed=1)
    assert isinstance(shuffled, MonteCarloReport)
    # the observed trade sequence ends where the run ended (no open trade at the end)
    assert shuffled.observed["final_equity"] == pytest.approx(replayed.stats["final_equity"])
    boot = velox.monte_carlo(replayed, n=500, method="bootstrap", block_size=5, seed=1)
    # one equity sample a day: the observed daily path has the run's own drawdown
    assert boot.observed["max_drawdown"] == pytest.approx(replayed.stats["max_drawdown"])
    assert boot.observed["final_equity"] == pytest.approx(replayed.stats["final_equity"])
    for report in (shuffled, boot):
        layout = report.plot()
        assert len(layout) == 3
        hv.render(layout, backend="bokeh")
        page = report._repr_html_()
        assert "MonteCarloReport" in page and "observed" in page and "95%" in page
        assert "seed=1" in repr(report)
    assert "blocks of 5 days" in boot._repr_html_()


def test_import_velox_does_not_import_dask_or_hvplot() -> None:
    code = (
        "import sys, velox; velox.monte_carlo; import velox.backtest.distributed; "
        "print(','.join(m for m in ('dask', 'distributed', 'hvplot', 'holoviews') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)  # fmt: skip
    assert out.stdout.strip() == ""


def test_the_docs_python_runs_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/research-montecarlo-dask.md: every python block, in order, in one namespace."""
    import re

    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("VELOX_DASK_SCHEDULER", raising=False)
    velox.config.reset_settings()
    text = (ROOT / "docs" / "research-montecarlo-dask.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 3
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "research-montecarlo-dask.md", "exec"), namespace)  # noqa: S102
    assert isinstance(namespace["mc"], MonteCarloReport)
    assert namespace["boot"].block_size == 5  # type: ignore[attr-defined]
    stats = namespace["stats"]
    assert isinstance(stats, list) and len(stats) == 4 and all("sharpe" in s for s in stats)
    assert namespace["first"] == list(range(20, 0, -1))
    assert namespace["second"] == list(range(40, 20, -1))
