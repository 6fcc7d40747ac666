"""``velox.data.ensure_bundled``: what every notebook runs first."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from velox.data import ensure_bundled
from velox.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.postgres
def test_imports_once_then_skips_and_names_what_is_missing(store) -> None:
    first = ensure_bundled(["NSE:SBIN", "NSE:INFY"], "1d", store=store)
    assert sorted(r.instrument_id for r in first) == ["NSE:INFY", "NSE:SBIN"]
    raw = pd.read_csv(ROOT / "data/bars/SBIN_1d_2017_2022.csv.gz")
    assert len(store.read_bars("NSE:SBIN", "1d")) == len(raw) > 1000
    again = ensure_bundled("NSE:SBIN", "1d", store=store)
    assert [r.skipped for r in again] == [True]
    with pytest.raises(DataError, match="NSE:NOPE"):
        ensure_bundled(["NSE:SBIN", "NSE:NOPE"], "1d", store=store)
    with pytest.raises(DataError, match="no bundled 1m bars"):
        ensure_bundled("NSE:SBIN", "1m", store=store)
    assert store.bar_summary()["instrument_id"].nunique() == 2  # nothing else was imported
