"""The README's quick-start Python runs as written against a real store with the bundled data."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from velox.data import import_bars

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.postgres
def test_readme_quick_start_python_runs(store, monkeypatch):
    import_bars(ROOT / "data/bars/RELIANCE_1d_2017_2022.csv.gz", "NSE:RELIANCE", "1d", store=store)
    import_bars(ROOT / "data/bars/NIFTY_1m_2021_2022.csv.gz", "NSE:NIFTY", "1m", store=store)
    monkeypatch.setattr("velox.store.open_store", lambda url=None, **_: store)
    monkeypatch.chdir(ROOT)  # the README's strategy paths are relative to the repository
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "README has no python quick-start block"
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    # the notebook API block: a replay of the stored RELIANCE bars with the SMA crossover
    res = namespace["res"]
    assert isinstance(res.trades, pd.DataFrame) and len(res.trades) >= 10
    assert res.strategies[0]["params"] == {"fast": 10, "slow": 30, "weight": 0.95}
    assert res.trades["entry_time"].iloc[0] > pd.Timestamp("2017-01-01", tz="Asia/Kolkata")
    df = namespace["df"]
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["open", "high", "low", "close", "volume"]
    assert str(df.index.tz) == "Asia/Kolkata" and df.index[0] >= pd.Timestamp(
        "2020-01-01", tz="Asia/Kolkata"
    )
    # The 15-minute call in the README resamples September 2022 from 1-minute bars:
    # 22 sessions x 25 bars (09:15 … 15:15).
    import velox

    sept = velox.bars("NSE:NIFTY", "15m", start="2022-09-01", end="2022-09-30")
    assert len(sept) == 22 * 25
