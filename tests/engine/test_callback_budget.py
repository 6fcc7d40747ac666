"""The ``callback_budget`` setting (``VELOX_CALLBACK_BUDGET`` / ``callback_budget`` in velox.toml,
default 5 s) is the watchdog's budget: with 0.2 s a callback busy for 0.5 s is stopped, one busy
for 0.05 s is not."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from velox.config import load_settings, reset_settings
from velox.strategy import Context, Strategy
from velox.types import Bar

ROOT = Path(__file__).resolve().parents[2]


class Busy(Strategy):
    """Busy-loops ``seconds`` in on_bar at its third bar (pure Python: interruptible)."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "1d"
    seconds = 0.5

    def on_start(self, ctx: Context) -> None:
        self.n = 0

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        self.n += 1
        if self.n == 3:
            until = time.monotonic() + self.seconds
            while time.monotonic() < until:
                pass


@pytest.mark.parametrize(("seconds", "stopped"), [(0.5, True), (0.05, False)])
def test_a_callback_over_the_configured_budget_is_stopped(
    reliance_1d: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, seconds: float, stopped: bool
) -> None:
    import velox

    monkeypatch.setenv("VELOX_CALLBACK_BUDGET", "0.2")
    reset_settings()
    try:
        bars = reliance_1d.loc["2021-01"]
        strategy = Busy(seconds=seconds)
        result = velox.replay(strategy, bars=bars)
    finally:
        reset_settings()
    (record,) = result.strategies
    if stopped:
        assert "StrategyTimeout" in record["error"] and "0.2 s budget" in record["error"]
        assert strategy.n == 3  # no bar after the overrunning one reached it
    else:
        assert record["error"] is None and strategy.n == len(bars)


def test_the_default_budget_is_five_seconds_and_documented() -> None:
    assert load_settings(env={}, config_file=None).callback_budget == 5.0
    assert "callback_budget=5.0" in (ROOT / "docs" / "engine.md").read_text()
