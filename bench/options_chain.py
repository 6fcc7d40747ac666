"""Benchmark a traded option chain from PostgreSQL: velox.options.chain vs the loop a user writes.

Data: the real NIFTY 5-minute bars of 2025-05-20 (``data/bars/NIFTY_5m_2025.csv``) in a
throwaway embedded PostgreSQL, and 5-minute bars for every NIFTY 2025-05-29 option the
bundled instrument master lists (204 contracts, 102 strikes), DERIVED from those index bars
(Black-76 at a skewed volatility, on the 0.05 tick): no real option prices exist in the shared
data. The chain is asked for at 11:00 IST.

* **velox** — ``chain("NIFTY", as_of, expiry=…, timeframe="5m", store=store, strikes=None,
  source="bars")``: listed strikes, stored closes, implied volatility and Greeks, labels.
* **loop** — what a user writes without it: for each listed contract ``store.read_bars``, the
  last bar that had ended, then vollib's Black-76 implied volatility and analytical Greeks
  per row (vollib is what ``pip install`` finds for Black-76 IV).

Both must give the same prices and implied volatilities (checked). Best of ``--repeat``.

Run: ``python bench/options_chain.py [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from velox.data import import_bars
from velox.instruments import load_bundled_master
from velox.options import black76_price, chain
from velox.store import Store, embedded_url, stop_embedded

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from vollib.black.greeks import analytical as vollib_greeks
    from vollib.black.implied_volatility import implied_volatility as vollib_iv

ROOT = Path(__file__).resolve().parent.parent
NIFTY_5M = ROOT / "data" / "bars" / "NIFTY_5m_2025.csv"
AS_OF = pd.Timestamp("2025-05-20 11:00", tz="Asia/Kolkata")
EXPIRY_CLOSE = pd.Timestamp("2025-05-29 15:30", tz="Asia/Kolkata")
RATE, TICK, YEAR = 0.065, 0.05, 365 * 86_400.0


def load(store: Store) -> pd.DataFrame:
    """Store the index bars and derived option bars; return the listed contracts."""
    import_bars(NIFTY_5M, "NSE:NIFTY", "5m", store=store)
    nifty = store.read_bars("NSE:NIFTY", "5m", start="2025-05-20", end="2025-05-20 15:25+05:30")
    t = ((EXPIRY_CLOSE - (nifty.index + pd.Timedelta(minutes=5))).total_seconds() / YEAR).values
    forward = nifty["close"].to_numpy() * np.exp(RATE * t)
    listed = load_bundled_master().options("NIFTY", "2025-05-29")
    for row in listed.itertuples():
        sigma = 0.15 - 0.4 * math.log(row.strike / 24_950.0)
        price = black76_price(forward, row.strike, t, RATE, max(sigma, 0.05), row.kind)
        close = np.maximum(np.round(price / TICK) * TICK, TICK).round(2)
        bars = pd.DataFrame({"open": close, "high": close, "low": close, "close": close,
                             "volume": 0.0}, index=nifty.index)  # fmt: skip
        store.write_bars(row.id, "5m", bars)
    return listed


def velox_chain(store: Store) -> pd.DataFrame:
    return chain("NIFTY", AS_OF, expiry="2025-05-29", timeframe="5m", store=store,
                 strikes=None, source="bars")  # fmt: skip


def user_loop(store: Store, listed: pd.DataFrame) -> pd.DataFrame:
    """One contract at a time: read, take the last ended bar, vollib IV and Greeks."""
    spot_bars = store.read_bars("NSE:NIFTY", "5m", start="2025-05-20", end=AS_OF)
    spot = spot_bars["close"][spot_bars.index + pd.Timedelta(minutes=5) <= AS_OF].iloc[-1]
    t = (EXPIRY_CLOSE - AS_OF).total_seconds() / YEAR
    forward = spot * math.exp(RATE * t)
    rows = []
    for contract in listed.itertuples():
        bars = store.read_bars(contract.id, "5m", start="2025-05-20", end=AS_OF)
        ended = bars[bars.index + pd.Timedelta(minutes=5) <= AS_OF]
        if ended.empty:
            continue
        price = float(ended["close"].iloc[-1])
        flag = "c" if contract.kind == "CE" else "p"
        try:
            sigma = vollib_iv(price, forward, contract.strike, RATE, t, flag)
        except Exception:  # noqa: BLE001 - vollib raises its own classes below intrinsic
            sigma = math.nan
        row = {"instrument_id": contract.id, "price": price, "sigma": sigma}
        for name in ("delta", "gamma", "vega", "theta"):
            greek = getattr(vollib_greeks, name)
            row[name] = (
                math.nan if math.isnan(sigma) else greek(flag, forward, contract.strike, t, RATE,
                                                         sigma)
            )  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def best(fn, repeat: int) -> tuple[float, object]:  # noqa: ANN001
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vx-bench-chain-"))
    try:
        store = Store(embedded_url(root / "store"), backend="embedded")
        listed = load(store)
        velox_chain(store)  # warm-up: master, scipy, connections
        velox_s, ours = best(lambda: velox_chain(store), args.repeat)
        loop_s, theirs = best(lambda: user_loop(store, listed), args.repeat)
        merged = ours.merge(theirs, on="instrument_id", suffixes=("", "_loop"))
        assert len(merged) == len(ours) == len(theirs) == len(listed), (len(ours), len(theirs))
        assert (merged["price"] == merged["price_loop"]).all()
        fits = merged["sigma"].notna() & merged["sigma_loop"].notna()
        iv_gap = float((merged.loc[fits, "sigma"] - merged.loc[fits, "sigma_loop"]).abs().max())
        print(f"traded chain of {len(listed)} listed contracts from PostgreSQL at {AS_OF}:")
        print(f"  velox chain(source='bars'): {velox_s * 1e3:8.1f} ms")
        print(f"  read + vollib loop:         {loop_s * 1e3:8.1f} ms")
        print(f"  speed-up: {loop_s / velox_s:.1f}x; largest IV difference {iv_gap:.1e}; "
              f"{int((~fits).sum())} rows without an IV on one side")  # fmt: skip
        store.close()
    finally:
        stop_embedded(root / "store")


if __name__ == "__main__":
    main()
