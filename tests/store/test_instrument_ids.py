"""Malformed instrument ids are refused at every store entry point, the store unchanged."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from velox.errors import ValidationError
from velox.instruments import load_bundled_master
from velox.store import Store

ROOT = Path(__file__).resolve().parents[2]
BAD = ["NSE:RELIANCE ", "NSE:RELI\nANCE", "NSE:A:B:C", "NSE:🚀", "NSE:" + "X" * 2800]


def _counts(store: Store) -> tuple[int, ...]:
    with store.connect() as conn:
        return tuple(
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("bars", "bar_series", "tick_series", "instruments", "imports", "commands")
        )


def _bars() -> pd.DataFrame:
    idx = pd.DatetimeIndex(["2024-04-01 09:15"], tz="Asia/Kolkata")
    return pd.DataFrame({"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0]}, index=idx)


@pytest.mark.parametrize("bad", BAD, ids=["trailing space", "newline", "A:B:C", "emoji", "2.8KB"])
def test_every_store_entry_point_refuses_a_bad_id(store: Store, bad: str) -> None:
    from velox.data import import_bars

    store.write_bars("NSE:RELIANCE", "1d", _bars())
    before = _counts(store)
    table = load_bundled_master().table.head(3).copy()
    table.loc[table.index[0], "id"] = bad
    ticks = pd.DataFrame({"price": [1.0]}, index=_bars().index)
    attempts = {
        "write_bars": lambda: store.write_bars(bad, "1d", _bars()),
        "write_bars_many": lambda: store.write_bars_many({bad: _bars()}, "1d"),
        "write_ticks": lambda: store.write_ticks(bad, ticks),
        "write_instruments": lambda: store.write_instruments(table),
        "import_bars": lambda: import_bars(
            ROOT / "data/bars/RELIANCE_5m_2025.csv", bad, "5m", store=store
        ),
        "order command": lambda: store.issue_command(
            "order", issued_by="test", args={"instrument_id": bad, "side": "BUY", "qty": 1}
        ),
    }
    for name, attempt in attempts.items():
        with pytest.raises(ValidationError, match="instrument id") as info:
            attempt()
        assert "\n" not in str(info.value) and len(str(info.value)) < 400, name
    assert _counts(store) == before


def test_strategy_subscriptions_and_risk_lists_refuse_a_bad_id() -> None:
    from velox.errors import ConfigError
    from velox.risk import RiskLimits
    from velox.strategy import load_strategy

    sma = load_strategy(str(ROOT / "strategies/sma_cross.py"))
    with pytest.raises(ValidationError, match=r"SmaCross.instruments: instrument id 'NSE:SBIN '"):
        sma(instruments=("NSE:SBIN ",))
    with pytest.raises(ConfigError, match="allowed_instruments: instrument id 'NSE:A:B'"):
        RiskLimits(allowed_instruments=["NSE:SBIN", "NSE:A:B"])
