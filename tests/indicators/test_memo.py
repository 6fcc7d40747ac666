"""``velox.indicators.memo()``: each distinct indicator call computed once inside the block."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import velox.indicators as vi
from velox.indicators import _batch


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the indicators actually computed (not answered from the memo)."""
    names: list[str] = []
    real = _batch.compute

    def counting(spec, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        names.append(spec.name)
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(_batch, "compute", counting)
    return names


def _bars(n: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    close = 100 + rng.normal(0, 1, n).cumsum()
    index = pd.date_range("2024-01-01 09:15", periods=n, freq="min", tz="Asia/Kolkata")
    return pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close},
                        index=index)  # fmt: skip


def test_a_sweep_computes_each_distinct_sma_once_and_gets_the_plain_results(
    computed: list[str],
) -> None:
    bars = _bars()
    plain = {w: vi.sma(bars["close"].to_numpy(), w) for w in (5, 10, 20)}
    computed.clear()
    with vi.memo():
        for fast in (5, 10):
            for slow in (10, 20):
                close = bars["close"].to_numpy(dtype=np.float64)
                f, s = vi.sma(close, fast), vi.sma(close, slow)
                np.testing.assert_array_equal(f, plain[fast])
                np.testing.assert_array_equal(s, plain[slow])
    assert sorted(computed) == ["sma"] * 3  # windows 5, 10, 20: once each


def test_pandas_inputs_hit_and_keep_their_index(computed: list[str]) -> None:
    bars = _bars()
    with vi.memo():
        a = vi.sma(bars["close"], 10)
        b = vi.sma(bars["close"], 10)  # a new Series object over the same data
        m1, m2 = vi.macd(bars["close"]), vi.macd(bars["close"])
    assert computed == ["sma", "macd"]
    assert b.index.equals(bars.index) and isinstance(b, pd.Series)
    pd.testing.assert_series_equal(a, b)
    assert type(m2) is type(m1)
    np.testing.assert_array_equal(m1.signal.to_numpy(), m2.signal.to_numpy())


def test_results_are_private_copies_and_other_data_misses(computed: list[str]) -> None:
    x = np.arange(1.0, 50.0)
    y = x * 2
    with vi.memo():
        first = vi.sma(x, 3)
        first[:] = -1.0  # a strategy scribbling on its result
        again = vi.sma(x, 3)
        other = vi.sma(y, 3)
    np.testing.assert_array_equal(again[2:], (x[:-2] + x[1:-1] + x[2:]) / 3)
    np.testing.assert_array_equal(other[2:], 2 * again[2:])
    assert computed == ["sma", "sma"]


def test_nothing_is_kept_outside_a_block(computed: list[str]) -> None:
    x = np.arange(1.0, 50.0)
    vi.sma(x, 3)
    vi.sma(x, 3)
    with vi.memo():
        vi.sma(x, 3)
    vi.sma(x, 3)
    assert computed == ["sma"] * 4
