"""One loop semantics: a bar replay and the tick loop that paper and live use agree.

Every example strategy runs twice on the same real bars: through the engine's bar loop (a
``BarReplay``: stored bars handed to strategies, compiled fast path) and through its tick loop
(the same synthetic ticks as a plain tick feed, candles rebuilt by ``CandleAggregator``, as a
live feed's would be). Trades, fills and the equity curve must be the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from velox.brokers.sim import SimBroker
from velox.engine import Engine
from velox.errors import DataError
from velox.feeds import BarReplay
from velox.risk import RiskEngine, RiskLimits
from velox.strategy import load_strategy
from velox.types import Instrument

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "sma_cross": ({"fast": 10, "slow": 30}, "1d"),
    "rsi_reversion": ({}, "1d"),
    "supertrend": ({}, "1d"),
    "orb_intraday": ({}, "5m"),
}


def _run(strategy, feed, master: Callable[[str], Instrument], **engine_options):  # noqa: ANN001, ANN003, ANN202
    sim = SimBroker(master, initial_cash=1_000_000)
    engine = Engine([strategy], broker=sim, feed=feed, instruments=master, **engine_options)
    result = engine.run()
    assert engine.errors == {}
    return result


def _fills(result) -> list[tuple]:  # noqa: ANN001
    return [(f.client_id, f.side, f.qty, f.price, f.ts, f.charges) for f in result.fill_list]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_bar_loop_and_tick_loop_give_the_same_trades(
    name: str,
    reliance_1d: pd.DataFrame,
    reliance_5m: pd.DataFrame,
    master: Callable[[str], Instrument],
) -> None:
    params, timeframe = EXAMPLES[name]
    cls = load_strategy(str(ROOT / "strategies" / f"{name}.py"))
    bars = reliance_1d.loc["2019":"2021"] if timeframe == "1d" else reliance_5m.iloc[:3000]
    replay = BarReplay({("NSE:RELIANCE", timeframe): bars})
    by_bars = _run(cls(**params, timeframe=timeframe), replay, master)
    by_ticks = _run(cls(**params, timeframe=timeframe), replay.ticks(), master)
    assert len(by_bars.fill_list) > 4, "the example must trade for the comparison to mean anything"
    assert _fills(by_ticks) == _fills(by_bars)
    # the tick loop samples equity at each closed candle, as the bar loop does at each close
    bar_curve = dict(zip(by_bars.equity_ns, by_bars.equity_values, strict=True))
    tick_curve = dict(zip(by_ticks.equity_ns, by_ticks.equity_values, strict=True))
    common = sorted(set(bar_curve) & set(tick_curve))
    assert len(common) >= 0.9 * len(bar_curve)
    assert [tick_curve[t] for t in common] == [bar_curve[t] for t in common]
    assert by_ticks.equity_values[-1] == by_bars.equity_values[-1]


def test_loss_guard_trips_on_the_same_tick_in_both_loops(
    reliance_5m: pd.DataFrame, master: Callable[[str], Instrument]
) -> None:
    cls = load_strategy(str(ROOT / "strategies" / "orb_intraday.py"))
    replay = BarReplay({("NSE:RELIANCE", "5m"): reliance_5m.iloc[:3000]})

    def run(feed):  # noqa: ANN001, ANN202
        risk = RiskEngine(RiskLimits(max_drawdown=600.0))
        return _run(cls(), feed, master, risk=risk)

    by_bars, by_ticks = run(replay), run(replay.ticks())
    kills = [e for e in by_bars.risk_events if e["kind"] == "kill"]
    assert kills, "the drawdown limit must trip in this window for the test to mean anything"
    assert by_ticks.risk_events == by_bars.risk_events
    assert _fills(by_ticks) == _fills(by_bars)


def test_a_subscription_without_bars_names_what_is_stored(store, reliance_1d) -> None:  # noqa: ANN001
    store.write_bars("NSE:RELIANCE", "1d", reliance_1d.iloc[:50])
    with pytest.raises(DataError, match=r"no 5m bars of NSE:RELIANCE.*stored for NSE:RELIANCE: 1d"):
        BarReplay.from_store(store, [("NSE:RELIANCE", "5m")])
    with pytest.raises(DataError, match=r"nothing is stored for NSE:NOPE.*NSE:RELIANCE"):
        BarReplay.from_store(store, [("NSE:NOPE", "1d")])
