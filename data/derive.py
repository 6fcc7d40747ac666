"""Rebuild the bundled bar files in ``data/bars/`` from ``../shared/data/market``.

Run once by a maintainer (``python data/derive.py``); the outputs are committed so ``make run``
works without ``../shared``. What each output is, and how it was derived, is in
``data/PROVENANCE.md``. Derivations are deliberately minimal:

* 1-minute NIFTY/BANKNIFTY: the vendor labels bars by their END minute (09:16 … 15:30) and adds a
  pre-open print (09:08) and post-close prints (15:31–15:33). Velox labels bars by START, so each
  label moves back one minute, and only bars inside a trading session are kept: 09:15–15:30 on a
  normal day, plus the special sessions present in the data (2021-02-24 resumed 15:45–17:00 after
  the NSE outage; Muhurat 2021-11-04 18:15–19:15).
* Every other file is copied byte for byte (its labels are already bar starts / session dates).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "market"
OUT = HERE / "bars"

#: Extra session windows (IST, bar-start inclusive, end exclusive) present in the 1-minute data.
SPECIAL_WINDOWS = {
    "2021-02-24": [("15:45", "17:00")],
    "2021-11-04": [("18:15", "19:15")],
}

_DAILY_INDEX = "daily_index_nifty50_indiavix_yfinance_2024_2026/clean"
COPIES = {
    f"{_DAILY_INDEX}/NIFTY50_daily.csv": "NIFTY_1d_2024_2026.csv",
    f"{_DAILY_INDEX}/INDIAVIX_daily.csv": "INDIAVIX_1d_2025_2026.csv",
    "intraday_5min_60min_yfinance_2025/clean/RELIANCE_5min.csv": "RELIANCE_5m_2025.csv",
    "intraday_5min_60min_yfinance_2025/clean/NIFTY50_5min.csv": "NIFTY_5m_2025.csv",
    "intraday_5min_60min_yfinance_2025/clean/BANKNIFTY_5min.csv": "BANKNIFTY_5m_2025.csv",
}


def _in_session(ts: pd.DatetimeIndex) -> pd.Series:
    minutes = pd.Series(ts.hour * 60 + ts.minute, index=ts)
    keep = (minutes >= 9 * 60 + 15) & (minutes < 15 * 60 + 30)
    dates = pd.Series(ts.strftime("%Y-%m-%d"), index=ts)
    for day, windows in SPECIAL_WINDOWS.items():
        on_day = dates == day
        for start, end in windows:
            h0, m0 = map(int, start.split(":"))
            h1, m1 = map(int, end.split(":"))
            keep |= on_day & (minutes >= h0 * 60 + m0) & (minutes < h1 * 60 + m1)
    return keep


def derive_one_minute(symbol: str) -> None:
    src = SHARED / "intraday_1min_nifty_banknifty_2021_2022" / "clean" / f"{symbol}_1min.csv.gz"
    frame = pd.read_csv(src)
    ts = pd.to_datetime(frame["timestamp"]).dt.tz_convert("Asia/Kolkata") - pd.Timedelta(minutes=1)
    frame["timestamp"] = ts
    frame = frame[_in_session(pd.DatetimeIndex(ts)).to_numpy()]
    frame["timestamp"] = frame["timestamp"].map(lambda t: t.isoformat())
    out = OUT / f"{symbol}_1m_2021_2022.csv.gz"
    # mtime=0 keeps the bytes (and so the import checksum) identical across re-derivations.
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
        fh.write(frame.to_csv(index=False).encode())


def write_manifest() -> None:
    """List every bundled file with the instrument id and timeframe it is imported as."""
    rows = []
    for path in sorted(OUT.glob("*.csv*")):
        if path.name == "MANIFEST.csv":
            continue
        symbol, timeframe = path.name.split("_")[:2]
        rows.append({"file": path.name, "instrument_id": f"NSE:{symbol}", "timeframe": timeframe})
    pd.DataFrame(rows).to_csv(OUT / "MANIFEST.csv", index=False)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for symbol in ("NIFTY", "BANKNIFTY"):
        derive_one_minute(symbol)
    for src, dst in COPIES.items():
        shutil.copyfile(SHARED / src, OUT / dst)
    daily = SHARED / "daily_nse_nifty50_stocks_2017_2022" / "clean"
    for path in sorted(daily.glob("*_daily.csv.gz")):
        symbol = path.name.removesuffix("_daily.csv.gz")
        shutil.copyfile(path, OUT / f"{symbol}_1d_2017_2022.csv.gz")
    write_manifest()


if __name__ == "__main__":
    main()
