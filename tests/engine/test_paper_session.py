"""``velox.start_paper``: a paper run on a thread, watched through the store as it trades and
killed from the notebook."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from tests.engine.conftest import DAY
from velox.errors import ConfigError
from velox.strategy import Context, Strategy
from velox.types import Bar


class BuysTwice(Strategy):
    """Buys 10 shares on its 3rd bar and 5 more on its 20th (CNC: no square-off)."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"

    def on_start(self, ctx: Context) -> None:
        self.n = 0

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        self.n += 1
        if self.n in (3, 20):
            ctx.buy(10 if self.n == 3 else 5)


@pytest.mark.postgres
def test_positions_update_while_the_session_runs_and_match_its_result(
    store, reliance_in_store: pd.DataFrame, tmp_path: Path, store_settings: None
) -> None:
    import velox

    with pytest.raises(ConfigError, match="speed"):
        velox.start_paper(BuysTwice(), run_id="NB0", speed=float("nan"), store=store)
    session = velox.start_paper(
        BuysTwice(), run_id="NB1", speed=2000, start=DAY, end=DAY, store=store,
        socket_path=tmp_path / "nb.sock",
    )  # fmt: skip
    seen: list[int] = []
    deadline = time.monotonic() + 120
    while session.running and time.monotonic() < deadline and 15 not in seen:
        pos = session.positions()
        if not pos.empty:
            seen.append(int(pos.loc[pos["strategy"] == "BuysTwice", "qty"].sum()))
        time.sleep(0.1)
    assert 10 in seen and seen[-1] == 15  # watched growing while it ran: 10, then 15
    assert session.running
    session.kill(reason="drill")  # flatten and stop trading, through the command table
    result = session.wait(60)
    assert [e["kind"] for e in result.risk_events].count("kill") == 1
    final = session.positions()
    assert int(final.loc[final["strategy"] == "BuysTwice", "qty"].sum()) == 0  # flattened
    assert len(session.fills()) == len(result.fill_list) == 3  # two buys, the kill's sale
    equity = session.equity()
    assert len(equity) > 10 and equity.index.tz is not None
    assert abs(equity.iloc[-1] - result.equity.iloc[-1]) < 1e-6
