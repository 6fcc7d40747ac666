"""Real NSE data for the indicator tests (the shared comparison is in ``indicator_checks``).

Daily NIFTY 50 stocks (with volume) and 1-minute NIFTY / BANKNIFTY index bars (no volume), both
read-only in the shared market data
(``velox.testing.shared_market_data``) (see each folder's PROVENANCE.md). The 1-minute
files are cut to their first 50,000 bars to keep the suite fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from velox.testing import market_file

DAILY = ("daily_nse_nifty50_stocks_2017_2022", "clean")
INTRADAY = ("intraday_1min_nifty_banknifty_2021_2022", "clean")
DAILY_SYMBOLS = ("RELIANCE", "INFY", "HDFCBANK", "TATAMOTORS", "ADANIPORTS")
INTRADAY_BARS = 50_000


def _load(path: Path, rows: int | None = None) -> pd.DataFrame:
    frame = pd.read_csv(path, index_col="timestamp", nrows=rows)
    frame.index = pd.to_datetime(frame.index).tz_convert("Asia/Kolkata")
    return frame.astype(np.float64)


@pytest.fixture(scope="session")
def daily() -> dict[str, pd.DataFrame]:
    """Return daily OHLCV frames for a few NIFTY 50 stocks, 2017–2022."""
    return {s: _load(market_file(*DAILY, f"{s}_daily.csv.gz")) for s in DAILY_SYMBOLS}


@pytest.fixture(scope="session")
def intraday() -> dict[str, pd.DataFrame]:
    """Return the first 50k 1-minute bars of NIFTY and BANKNIFTY (volume is always 0)."""
    return {
        s: _load(market_file(*INTRADAY, f"{s}_1min.csv.gz"), INTRADAY_BARS)
        for s in ("NIFTY", "BANKNIFTY")
    }
