"""A paper engine killed (`kill -9`) before the MIS square-off and restarted after it books every
fill of the account it missed (the simulator's square-off, another terminal's order), each once,
reconciles cleanly, and stamps every audit row with the market's time of the event and,
separately, the wall time it was written."""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from tests.engine.conftest import DAY, PaperProcesses, holding_and_working, wait_until
from velox.brokers.sim.paper import PaperConnection, order_to_dict
from velox.calendar import IST
from velox.oms import FILL_EVENT
from velox.types import Order, Product

HOLDER = """
from velox.strategy import Strategy
from velox.types import OrderType


class MisHolder(Strategy):
    '''Buys 10 intraday (MIS) shares once, keeps a resting limit buy below, never exits.'''

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"
    product = "MIS"

    def on_bar(self, ctx, bar):
        if bar.ts.hour >= 15 or ctx.open_orders():
            return
        if ctx.position() == 0:
            ctx.buy(10)
        else:
            price = ctx.instrument().snap_price(bar.close * 0.98, "down")
            ctx.buy(5, order_type=OrderType.LIMIT, limit_price=price)
"""


def _fills(store) -> pd.DataFrame:  # noqa: ANN001
    events = store.read_order_events(run_id="P1")
    return events[events["status"] == FILL_EVENT]


@pytest.mark.postgres
@pytest.mark.slow
def test_restart_after_the_square_off_books_every_missed_fill_once(
    store, tmp_path: Path, reliance_5m: pd.DataFrame, paper_processes: PaperProcesses
) -> None:
    wall_start = datetime.now(UTC) - timedelta(seconds=1)
    local = reliance_5m.index.tz_convert(IST)
    # the afternoon of one session: 14:20-15:25, so the 15:15 square-off comes ~33 s in
    afternoon = (local.strftime("%Y-%m-%d") == DAY) & (local.strftime("%H:%M") >= "14:20")
    store.write_bars("NSE:RELIANCE", "5m", reliance_5m[afternoon])
    sock = paper_processes.socket
    holder = paper_processes.strategy(HOLDER, "holder.py")
    engine = partial(paper_processes.engine, holder, "--run", "P1", "--socket", str(sock))
    dump = tmp_path / "sim.json"
    sim = paper_processes.simulator(speed=100.0, dump=dump)  # margin for a slow engine start
    first = engine()
    # kill -9 before 15:15, with an order working
    wait_until(lambda: holding_and_working(store, "P1"), "the engine never traded", engine=first)
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL

    # while the engine is down: another terminal buys 7 MIS, then the simulator squares the
    # account off at 15:15 (one SELL of 17)
    terminal = PaperConnection(sock)
    other = Order("TERM-1", "NSE:RELIANCE", "BUY", 7, product=Product.MIS, tag="TERM-1",
                  created_at=datetime.now(IST))  # fmt: skip
    terminal.request("place", order=order_to_dict(other))
    wait_until(
        lambda: any(f["client_id"].startswith("SQUAREOFF") for f in terminal.request("fills")),
        "no square-off",
    )
    terminal.close()

    second_started = datetime.now(UTC)
    second = engine()
    out, _ = second.communicate(timeout=120)
    wall_end = datetime.now(UTC) + timedelta(seconds=1)
    assert second.returncode == 0, out
    assert "restored run P1" in out
    assert "mismatch" not in out and "halt" not in out, out
    assert sim.wait(60) == 0
    state = json.loads(dump.read_text())

    # each broker fill booked once: the first part carries its id, split parts "<id>/<k>"
    fills = _fills(store)
    payloads = fills["payload"].tolist()
    ids = [p["fill_id"] for p in payloads]
    assert len(ids) == len(set(ids))
    booked: dict[str, int] = {}
    for p in payloads:
        base = p["fill_id"].split("/")[0]
        booked[base] = booked.get(base, 0) + p["qty"]
    assert booked == {f["fill_id"]: f["qty"] for f in state["fills"]}
    origins = {f["client_id"].split("-")[0] for f in state["fills"]}
    assert origins == {"P1", "TERM", "SQUAREOFF"}

    # attributed: the square-off closes the strategy's 10 and the account's own 7
    def owners(prefix: str) -> list[tuple[str, str, int]]:
        rows = fills[fills["client_id"].str.startswith(prefix)]
        return sorted((p["strategy"], p["side"], p["qty"]) for p in rows["payload"])

    assert owners("SQUAREOFF") == [("", "SELL", 7), ("MisHolder", "SELL", 10)]
    assert owners("TERM-1") == [("", "BUY", 7)]
    assert owners("P1-") == [("MisHolder", "BUY", 10)]
    # flat everywhere: audited fills, the simulator, the recorded positions
    net = sum(p["qty"] if p["side"] == "BUY" else -p["qty"] for p in payloads)
    assert net == 0 == sum(p["qty"] for p in state["positions"])
    positions = store.run_positions("P1")
    assert positions["qty"].eq(0).all() and set(positions["strategy"]) == {"", "MisHolder"}
    # reconciled cleanly, trading not halted
    assert not store.run_risk_events("P1")["limit"].eq("reconciliation").any()
    assert store.run("P1")["status"] == "finished"

    # every audit row: market time within the replayed session, wall time within this test
    session = (pd.Timestamp(f"{DAY} 09:15", tz=IST), pd.Timestamp(f"{DAY} 15:30", tz=IST))
    events = store.read_order_events(run_id="P1")
    assert {"CANCELLED", FILL_EVENT, "FILLED"} <= set(events["status"])
    assert events["ts"].between(*session).all(), events.loc[~events["ts"].between(*session)]
    assert events["written_at"].between(wall_start, wall_end).all()
    risk = store.run_risk_events("P1")
    assert (
        risk["ts"].between(*session).all()
        and risk["written_at"].between(wall_start, wall_end).all()
    )

    # exactly the market times, not merely inside the session: each fill row carries the time
    # its fill has at the simulator, which is one of the afternoon's ticks (four per 5-minute
    # bar, at 0, ¼, ½ and ¾ of it: velox.feeds.synthesize_ticks); the fills the restarted
    # engine caught up (written after the restart) too, not the wall clock of the restart
    from velox.feeds import synthesize_ticks

    ticks, _, _ = synthesize_ticks(reliance_5m[afternoon], "5m")
    tick_times = set(pd.DatetimeIndex(pd.to_datetime(ticks, utc=True)))
    at_broker = {f["fill_id"]: pd.Timestamp(f["ts"]) for f in state["fills"]}
    restarted = second_started
    caught_up = 0
    for row in fills.itertuples():
        assert row.ts == at_broker[row.payload["fill_id"].split("/")[0]], row
        assert row.ts in tick_times, row
        caught_up += row.written_at >= restarted
    assert caught_up >= 3  # TERM-1's fill and the two parts of the square-off
    # the square-off and its fills: the first tick at or after 15:15, i.e. 15:15:00
    squared = fills[fills["client_id"].str.startswith("SQUAREOFF")]
    assert (squared["ts"] == pd.Timestamp(f"{DAY} 15:15", tz=IST)).all(), squared
    # the strategy's own entry: submitted at the close of the bar it decided on (a 5-minute
    # boundary), filled at a later tick inside the next bar
    entry = events[events["client_id"] == "P1-1"]
    (submitted,) = entry.loc[entry["status"] == "SUBMITTED", "ts"]
    filled = entry.loc[entry["status"] == FILL_EVENT, "ts"].iloc[0]
    assert submitted == submitted.floor("5min") == filled.floor("5min") < filled, entry
