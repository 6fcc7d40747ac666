"""The event-driven engine runs a cross-sectional strategy over its universe exactly as
``velox.research`` does (one panel, one cash pool), and refuses it where it cannot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import velox
from velox.errors import ValidationError
from velox.strategy import Strategy, bar_panel, is_cross_sectional, load_strategy, panel_weights

ROOT = Path(__file__).resolve().parents[2]
ROTATION = ROOT / "strategies/momentum_rotation.py"


def _bars(name: str) -> pd.DataFrame:
    from velox.data import read_bar_file, validate_bars

    bars, _ = validate_bars(read_bar_file(ROOT / "data/bars" / name), timeframe="1d", source=name)
    return bars


@pytest.fixture(scope="module")
def nifty() -> dict[str, pd.DataFrame]:
    rotation = load_strategy(str(ROTATION))
    return {iid: _bars(f"{iid.split(':')[1]}_1d_2017_2022.csv.gz") for iid in rotation.instruments}


def test_the_rotation_replays_exactly_as_research_backtests_it(
    nifty: dict[str, pd.DataFrame],
) -> None:
    report = velox.parity(str(ROTATION), nifty)
    assert report.ok, report
    replay = report.replay
    assert not replay.strategies[0]["error"]
    # a real rotation: many names bought over the years, never more than five held at once
    fills = replay.fills
    assert fills["instrument_id"].nunique() > 10
    signed = np.where(fills["side"] == "BUY", 1, -1) * fills["qty"]
    held = fills.assign(q=signed).pivot_table(
        index="ts", columns="instrument_id", values="q", aggfunc="sum"
    )
    assert ((held.fillna(0).cumsum() > 0).sum(axis=1) <= 5).all()


def test_cross_sectional_is_inferred_from_a_dataframe_of_weights_and_the_flag_overrides(
    nifty: dict[str, pd.DataFrame],
) -> None:
    rotation = load_strategy(str(ROTATION))
    assert "cross_sectional" not in vars(rotation)  # the example sets no flag
    assert is_cross_sectional(rotation) and is_cross_sectional(rotation())

    class Flagged(rotation):  # type: ignore[misc, valid-type]
        cross_sectional = True

    class NotRanked(rotation):  # type: ignore[misc, valid-type]
        cross_sectional = False

    class PerInstrument(Strategy):
        def signals(self, bars: pd.DataFrame) -> pd.Series:
            return bars["close"] * 0.0

    class Unannotated(Strategy):
        def signals(self, bars):  # noqa: ANN001, ANN202
            return bars["close"] * 0.0

    class DeclaredFrame(Strategy):
        def signals(self, bars: pd.DataFrame) -> pd.DataFrame:
            return bars["close"] * 0.0

    class SeriesButFlagged(PerInstrument):
        cross_sectional = True

    assert is_cross_sectional(Flagged) and not is_cross_sectional(NotRanked)
    assert not is_cross_sectional(PerInstrument) and not is_cross_sectional(Unannotated)
    assert is_cross_sectional(DeclaredFrame) and is_cross_sectional(SeriesButFlagged)
    assert not is_cross_sectional(Strategy)
    # inferred and flagged run alike, the panel ranked across the universe: the same fills
    few = dict(list(nifty.items())[:10])
    inferred = velox.research(rotation, few, top=3)
    flagged = velox.research(Flagged, few, top=3)
    assert len(inferred.fill_list) > 10
    columns = ["ts", "instrument_id", "side", "qty", "price", "charges"]
    assert inferred.fills[columns].equals(flagged.fills[columns])
    assert inferred.equity.equals(flagged.equity)
    # the explicit False wins: signals then gets one instrument's bars, which it cannot rank
    with pytest.raises(Exception, match="axis"):
        velox.research(NotRanked, few, top=3)


class TopMomentum(Strategy):
    """The strongest 20-session momentum of three stocks, 90 % in it: weights built with
    pandas' own operations (rank, a boolean-Series row mask), whose result pandas may share
    read-only with what research reads from it."""

    instruments = ("NSE:INFY", "NSE:TCS", "NSE:SBIN")
    timeframe = "1d"

    def signals(self, bars: pd.DataFrame) -> pd.DataFrame:
        close = bars["close"]
        momentum = close / close.shift(20) - 1
        weights = (momentum.rank(axis=1, ascending=False) <= 1).astype(float) * 0.9
        weights[momentum.isna().any(axis=1)] = np.nan
        return weights


def test_a_ranking_built_with_pandas_operations_researches_as_it_replays() -> None:
    frames = {iid: _bars(f"{iid.split(':')[1]}_1d_2017_2022.csv.gz")
              for iid in TopMomentum.instruments}  # fmt: skip
    report = velox.parity(TopMomentum, frames)
    assert report.ok, report
    fills = report.research.fills
    assert fills["instrument_id"].nunique() == 3 and len(fills) > 20
    # at most one stock held at a time (a sale and the next buy fill at the same open)
    signed = np.where(fills["side"] == "BUY", 1, -1) * fills["qty"]
    held = fills.assign(q=signed).pivot_table(
        index="ts", columns="instrument_id", values="q", aggfunc="sum"
    )
    assert ((held.fillna(0).cumsum() > 0).sum(axis=1) <= 1).all()
    assert velox.check_lookahead(TopMomentum, frames) == []


def test_the_panel_is_the_union_of_bar_times_with_gaps_as_nan() -> None:
    idx = pd.date_range("2024-01-01", periods=4, freq="D", tz="Asia/Kolkata")
    a = pd.DataFrame({"open": 1.0, "high": 2.0, "low": 0.5, "close": [1, 2, 3, 4.0]}, index=idx)
    b = a.iloc[[1, 3]] * 10
    panel = bar_panel({"NSE:B": b, "NSE:A": a})
    assert list(panel["close"].columns) == ["NSE:A", "NSE:B"]  # sorted ids
    assert panel.index.equals(idx)
    np.testing.assert_array_equal(panel["close"]["NSE:B"], [np.nan, 20.0, np.nan, 40.0])
    assert "volume" not in panel.columns.get_level_values("field")


def test_bad_weights_are_refused_naming_the_problem() -> None:
    class Ranks(Strategy):
        instruments = ("NSE:A", "NSE:B")
        cross_sectional = True

    idx = pd.date_range("2024-01-01", periods=3, freq="D", tz="Asia/Kolkata")
    frame = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0}, index=idx)
    panel = bar_panel({"NSE:A": frame, "NSE:B": frame})
    s = Ranks()
    with pytest.raises(ValidationError, match="must return a DataFrame"):
        panel_weights(s, panel, pd.Series(0.5, index=idx))
    with pytest.raises(ValidationError, match="NSE:C"):
        panel_weights(s, panel, pd.DataFrame({"NSE:C": 0.1}, index=idx))
    with pytest.raises(ValidationError, match="2 rows for 3 bar times"):
        panel_weights(s, panel, pd.DataFrame({"NSE:A": 0.1}, index=idx[:2]))
    out = panel_weights(s, panel, pd.DataFrame({"NSE:B": 0.25}, index=idx))
    assert list(out.columns) == ["NSE:A", "NSE:B"] and out["NSE:A"].isna().all()


def test_a_paper_engine_refuses_a_cross_sectional_strategy_loudly(
    nifty: dict[str, pd.DataFrame],
) -> None:
    from velox.brokers.sim import SimBroker
    from velox.engine import Engine
    from velox.feeds import TickReplayFeed
    from velox.modes import default_instruments

    lookup = default_instruments()
    rotation = load_strategy(str(ROTATION))(instruments=("NSE:SBIN", "NSE:INFY"))
    idx = pd.date_range("2022-01-03 09:15:01", periods=5, freq="s", tz="Asia/Kolkata")
    ticks = {iid: pd.DataFrame({"ltp": [500.0] * 5}, index=idx) for iid in rotation.instruments}
    instruments = {iid: lookup(iid) for iid in rotation.instruments}
    engine = Engine(
        [rotation],
        broker=SimBroker(instruments, initial_cash=1e6),
        feed=TickReplayFeed(ticks),
        instruments=instruments,
        initial_cash=1e6,
        mode="paper",
        reconcile_every=None,
    )
    result = engine.run()
    error = str(result.strategies[0]["error"])
    assert "cross-sectional" in error and "paper" in error
    assert not result.fill_list
