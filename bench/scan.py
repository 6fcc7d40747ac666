"""Benchmark the scanner: 6 presets over the 45 bundled daily stocks (2017–2022, real NSE bars).

The universe is every ``*_1d_2017_2022.csv.gz`` file of ``data/bars``: the 44 NIFTY-50 stocks
of the ``nifty50`` universe plus HDFC (≈1,280 sessions each, 57,000 bars in all). The presets
are ``rsi_oversold``, ``52w_high``, ``volume_spike``, ``gap_up``, ``supertrend_flip`` and
``ma_cross`` (50/200), each at its defaults on each stock's last bar (``at=None``), plus one
custom condition (``rsi_14 < 30 and close > sma_200``) for comparison.

* **from memory**: the bars read once from the files into ``{instrument id: DataFrame}`` and
  handed to ``velox.scan(..., bars=...)``: the scanner's own cost (grid check, indicators over
  each stock's whole history, the condition, the ranking).
* **from the store** (``--store``, default on): the same files imported into a scratch
  embedded PostgreSQL store, then ``velox.scan(..., store=...)``, which reads each stock's bars
  from it (one query per stock) — what a scheduled morning scan costs.

Each figure is the best of ``--repeat`` runs after a warm-up scan of every preset (numba
kernels compiled or loaded from their on-disk cache once per process). Instruments/s is the
universe size over the wall time of one scan.

Run: ``python bench/scan.py [--repeat 5] [--no-store]``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ("rsi_oversold", "52w_high", "volume_spike", "gap_up", "supertrend_flip", "ma_cross")
CUSTOM = "rsi_14 < 30 and close > sma_200"


def _files() -> dict[str, Path]:
    return {
        f"NSE:{path.name.split('_1d_')[0]}": path
        for path in sorted((ROOT / "data" / "bars").glob("*_1d_2017_2022.csv.gz"))
    }


def _best(repeat: int, fn) -> tuple[float, object]:  # noqa: ANN001
    best, out = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def _table(title: str, universe: list[str], repeat: int, **source: object) -> float:
    import velox

    print(f"\n{title}: {len(universe)} instruments, best of {repeat}")
    print("| scan | matches | wall time | instruments/s |\n|---|---:|---:|---:|")
    total = 0.0
    for condition in (*PRESETS, CUSTOM):
        seconds, result = _best(
            repeat,
            lambda c=condition: velox.scan(c, universe, progress=False, **source),
        )
        if condition in PRESETS:
            total += seconds
        print(f"| `{condition}` | {len(result)} | {seconds * 1e3:.1f} ms | "
              f"{len(universe) / seconds:,.0f} |")  # fmt: skip
    scans = len(PRESETS) * len(universe)
    print(f"| **6 presets** | | **{total * 1e3:.0f} ms** | **{scans / total:,.0f}** "
          "(instrument-scans/s) |")  # fmt: skip
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-store", action="store_true", help="Skip the store-backed run.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("velox.data").setLevel(logging.ERROR)  # the bundled files' known gaps

    import velox
    from velox.data import read_bar_file, validate_bars

    files = _files()
    started = time.perf_counter()
    bars = {
        iid: validate_bars(read_bar_file(path), timeframe="1d", source=path.name)[0]
        for iid, path in files.items()
    }
    read = time.perf_counter() - started
    rows = sum(len(frame) for frame in bars.values())
    print(f"read {len(bars)} files ({rows:,} daily bars) in {read:.2f} s")
    universe = sorted(bars)
    started = time.perf_counter()
    for condition in (*PRESETS, CUSTOM):
        velox.scan(condition, universe, bars=bars, progress=False)
    warm = time.perf_counter() - started
    print(f"warm-up (numba kernels compiled or loaded from cache): {warm:.2f} s")

    _table("from memory (bars=)", universe, args.repeat, bars=bars)

    if args.no_store:
        return
    from velox.data import import_bars
    from velox.store import Store, embedded_url, stop_embedded

    root = Path(tempfile.mkdtemp(prefix="vx-bench-scan-"))
    try:
        store = Store(embedded_url(root / "store"), backend="embedded")
        started = time.perf_counter()
        for iid, path in files.items():
            import_bars(path, iid, "1d", store=store)
        print(f"\nimported the {len(files)} files into a scratch store in "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        _table("from the store (store=)", universe, args.repeat, store=store)
        read_only, _ = _best(args.repeat, lambda: [store.read_bars(i, "1d") for i in universe])
        print(f"(of which reading the {len(universe)} stocks' bars: {read_only * 1e3:.0f} ms)")
        store.close()
    finally:
        stop_embedded(root / "store")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
