"""A strategy composed in the no-code builder paper-trades unchanged (issue 12): the file the
form saves runs through ``velox.paper`` (simulator process, tick loop, store-recorded run) and
makes the same decisions as ``velox.replay`` of the same file on the same stored bars: the
same bars, sides and quantities. Prices differ within the bar: a replay fills at the bar's
open, paper at the simulator's first synthetic tick after the order arrives from the engine
process (the bar's open is the tick that closed the previous candle)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.engine.conftest import DAY
from velox.builder import Group, Indicator, Rule, Size, StrategyModel, save
from velox.strategy import load_strategy


def ema_cross_model() -> StrategyModel:
    """EMA(3) crossing EMA(8) on 5-minute bars, intraday (MIS), 10 shares."""
    fast, slow = Indicator("ema", {"window": 3}), Indicator("ema", {"window": 8})
    return StrategyModel(
        "EmaCrossIntraday",
        timeframe="5m",
        product="MIS",
        long_entry=Group("and", (Rule(fast, "crosses above", slow),)),
        long_exit=Group("and", (Rule(fast, "crosses below", slow),)),
        size=Size("lots", 10),
    )


@pytest.mark.postgres
def test_a_builder_strategy_paper_trades_as_it_replays(
    store, reliance_in_store: pd.DataFrame, tmp_path: Path, store_settings: None
) -> None:
    import velox
    from velox.modes import paper

    path = save(ema_cross_model(), directory=tmp_path / "strategies")
    cls = load_strategy(str(path))

    replayed = velox.replay(str(path), bars=reliance_in_store)
    # paced at 4000x (a 5-minute bar in 75 ms of wall time): an engine process slowed by a
    # loaded machine still answers each bar before the simulator's next (at 20000x, under a
    # load of ten on two cores, it did not, and its fills moved to later bars)
    traded = paper(cls(), run_id="B1", speed=4000, start=DAY, end=DAY, store=store,
                   socket_path=tmp_path / "b.sock")  # fmt: skip

    def fills(result: velox.RunResult) -> pd.DataFrame:
        # the bar each fill is in: paper fills at its first synthetic tick, a replay at its open
        frame = result.fills[["ts", "instrument_id", "side", "qty"]].copy()
        frame["ts"] = frame["ts"].dt.floor("5min")
        return frame.reset_index(drop=True)

    assert len(replayed.fills) >= 4  # the crosses of a real session: it did trade
    paper_fills = fills(traded)
    pd.testing.assert_frame_equal(paper_fills, fills(replayed))
    bars = reliance_in_store.loc[paper_fills["ts"]]
    prices = traded.fills["price"].to_numpy()
    assert ((bars["low"].to_numpy() <= prices) & (prices <= bars["high"].to_numpy())).all()
    assert traded.fills["qty"].abs().max() == 10
    recorded = velox.runs(mode="paper")
    assert recorded.set_index("run_id").loc["B1", "status"] == "finished"
