"""``VELOX_MIS_SQUARE_OFF`` acts: a replay's simulator squares MIS positions off at that time."""

from __future__ import annotations

from datetime import time

import pandas as pd
import pytest

from velox.calendar import IST
from velox.config import reset_settings
from velox.strategy import Strategy

DAY = "2025-05-19"


class HoldIntraday(Strategy):
    """Buy 10 MIS on the day's first bar and never sell: only the square-off closes it."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"
    product = "MIS"

    def on_bar(self, ctx, bar):  # noqa: ANN001, ANN201
        if ctx.position() == 0 and not ctx.open_orders():
            ctx.buy(10)


def _square_off(reliance_5m: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, setting: str | None):
    from velox.modes import replay

    if setting is None:
        monkeypatch.delenv("VELOX_MIS_SQUARE_OFF", raising=False)
    else:
        monkeypatch.setenv("VELOX_MIS_SQUARE_OFF", setting)
    reset_settings()
    try:
        day = reliance_5m.loc[DAY]
        result = replay(HoldIntraday(), bars={("NSE:RELIANCE", "5m"): day})
    finally:
        reset_settings()
    (exit_order,) = [o for o in result.order_list if o.tag == "squareoff"]
    (exit_fill,) = [f for f in result.fill_list if f.client_id == exit_order.client_id]
    return exit_order, exit_fill, result


@pytest.mark.parametrize(("setting", "expected"), [("15:00", time(15, 0)), (None, time(15, 15))])
def test_replay_squares_off_at_the_configured_time(
    reliance_5m: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, setting: str | None, expected: time
) -> None:
    order, fill, result = _square_off(reliance_5m, monkeypatch, setting)
    assert order.created_at.astimezone(IST).time() == expected
    filled_at = fill.ts.astimezone(IST)
    # at market: the first price at or after the square-off, within the next 5-minute bar
    assert expected <= filled_at.time() < time(expected.hour, expected.minute + 5)
    assert fill.qty == 10 and result.stats["open_trades"] == 0


def test_sim_config_default_follows_the_setting_and_refuses_times_outside_the_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from velox.brokers.sim import SimConfig
    from velox.errors import ConfigError

    monkeypatch.setenv("VELOX_MIS_SQUARE_OFF", "14:45")
    reset_settings()
    try:
        assert SimConfig().square_off_time == time(14, 45)
    finally:
        reset_settings()
    for outside in (time(9, 15), time(15, 30), time(16, 0), time(8, 0)):
        with pytest.raises(ConfigError, match="square_off_time=.*session open 09:15"):
            SimConfig(square_off_time=outside)
