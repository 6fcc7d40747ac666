"""Historical candles the Kite simulator serves come from the store (real PostgreSQL)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("kiteconnect")
pytest.importorskip("tornado")

from kite_sim_support import BARS, DAY  # noqa: E402
from kiteconnect import KiteConnect  # noqa: E402

from velox.brokers.kite.simulator import KiteSimulator  # noqa: E402

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
