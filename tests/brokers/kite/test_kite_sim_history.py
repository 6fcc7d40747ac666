"""Historical candles the Kite simulator serves come from the store (real PostgreSQL)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from kite_sim_support import BARS, DAY
from kiteconnect import KiteConnect

from velox.brokers.kite.simulator import KiteSimulator

if TYPE_CHECKING:
    from velox.store import Store


def test_historical_candles_are_the_stored_bars(store: Store) -> None:
    from velox.data import import_bars

    import_bars(BARS / "RELIANCE_5m_2025.csv", "NSE:RELIANCE", "5m", store=store)
    stored = store.read_bars("NSE:RELIANCE", "5m", DAY, DAY)
    fifteen = store.read_bars("NSE:RELIANCE", "15m", DAY, DAY)  # resampled by the store
    with KiteSimulator(store=store, rate_limits=False) as sim:
        kite = KiteConnect("demo", root=sim.url)
        kite.set_access_token(kite.generate_session("rt", "secret")["access_token"])
        day = datetime.strptime(DAY, "%Y-%m-%d")
        candles = kite.historical_data(738561, day, day.replace(hour=23, minute=59), "5minute")
        assert len(candles) == len(stored) == 75
        for candle, (ts, bar) in zip(candles, stored.iterrows(), strict=True):
            assert candle["date"] == ts.to_pydatetime()
            assert [candle[k] for k in ("open", "high", "low", "close", "volume")] == [
                bar.open, bar.high, bar.low, bar.close, int(bar.volume)]  # fmt: skip
        morning = kite.historical_data(738561, f"{DAY} 09:15:00", f"{DAY} 09:45:00", "15minute")
        assert [c["close"] for c in morning] == fifteen["close"].iloc[:3].tolist()
        with_oi = kite.historical_data(738561, f"{DAY} 09:15:00", f"{DAY} 09:15:00", "5minute",
                                       oi=True)  # fmt: skip
        assert with_oi[0]["oi"] == 0 and with_oi[0]["open"] == stored["open"].iloc[0]


def test_velox_sim_kite_replays_stored_bars(store: Store, tmp_path) -> None:  # noqa: ANN001
    import os
    import re
    import signal
    import subprocess
    import sys

    from kite_sim_support import ROOT

    from velox.data import import_bars

    import_bars(BARS / "RELIANCE_5m_2025.csv", "NSE:RELIANCE", "5m", store=store)
    closes = set(store.read_bars("NSE:RELIANCE", "5m", DAY, DAY)["close"].tolist())
    env = dict(os.environ, VELOX_DATABASE_URL=store.url, VELOX_DATA_DIR=str(tmp_path),
               PYTHONPATH=str(ROOT))  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "velox.cli", "sim", "kite", "--port", "0", "--bars",
         "NSE:RELIANCE@5m", "--start", DAY, "--end", DAY, "--speed", "3000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"REST (http://127\.0\.0\.1:\d+)", line)
        assert url, (line, process.stderr.read() if process.poll() is not None else "")
        kite = KiteConnect("demo", root=url.group(1))
        kite.set_access_token(kite.generate_session("rt", "secret")["access_token"])
        import time

        from kiteconnect.exceptions import NetworkException

        while True:  # wait for the replay to print (not a timed assertion)
            try:
                ohlc = kite.ohlc("NSE:RELIANCE")["NSE:RELIANCE"]
            except NetworkException:  # 429: the quote API allows one request a second
                ohlc = {"last_price": 0}
            if ohlc["last_price"]:
                break
            time.sleep(0.2)
        assert ohlc["ohlc"]["open"] == store.read_bars("NSE:RELIANCE", "5m", DAY, DAY)[
            "open"].iloc[0]  # fmt: skip
        candles = kite.historical_data(738561, DAY, DAY, "day")
        assert len(candles) == 1 and candles[0]["close"] in closes
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
