"""Input handling: pandas/numpy shapes, leading NaN, bad data and bad parameters."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import talib

import velox.indicators as vi


def _series(values: list[float], start: str = "2024-04-01 09:15") -> pd.Series:
    index = pd.date_range(start, periods=len(values), freq="1min", tz="Asia/Kolkata")
    return pd.Series(values, index=index, dtype=float)


def test_series_in_series_out_with_same_index() -> None:
    s = _series([1.0, 2.0, 3.0, 4.0])
    out = vi.ema(s, 2)
    assert isinstance(out, pd.Series) and out.index.equals(s.index)
    np.testing.assert_allclose(out.to_numpy(), [np.nan, 1.5, 2.5, 3.5])


def test_2d_array_is_one_column_per_symbol() -> None:
    rng = np.random.default_rng(3)
    block = 100 + rng.normal(size=(200, 3)).cumsum(axis=0)
    out = vi.rsi(block, 14)
    assert out.shape == block.shape
    for j in range(3):
        np.testing.assert_allclose(out[:, j], talib.RSI(block[:, j], 14), rtol=1e-12)


def test_multi_output_on_dataframe_returns_named_tuple_of_frames() -> None:
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(100 + rng.normal(size=(80, 2)).cumsum(axis=0), columns=["A", "B"])
    out = vi.macd(frame)
    assert out._fields == ("macd", "signal", "histogram")
    assert all(isinstance(x, pd.DataFrame) and list(x.columns) == ["A", "B"] for x in out)
    np.testing.assert_allclose(out.signal["B"], talib.MACD(frame["B"].to_numpy())[1], rtol=1e-12)


def test_leading_nans_start_the_warm_up_at_the_first_value() -> None:
    values = np.array([np.nan, np.nan, 1.0, 2.0, 3.0, 4.0])
    out = vi.sma(values, 2)
    np.testing.assert_array_equal(np.isnan(out), [True, True, True, False, False, False])
    np.testing.assert_allclose(out[3:], [1.5, 2.5, 3.5])


def test_symbol_listed_later_in_a_frame() -> None:
    frame = pd.DataFrame({"OLD": [1.0, 2, 3, 4, 5], "NEW": [np.nan, np.nan, 10.0, 12, 14]})
    out = vi.ema(frame, 2)
    np.testing.assert_allclose(out["OLD"], [np.nan, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(out["NEW"], [np.nan, np.nan, np.nan, 11.0, 13.0])


def test_nan_in_the_middle_raises_naming_the_row_and_column() -> None:
    with pytest.raises(ValueError, match=r"NaN input at row 2 \(column 0\)"):
        vi.ema(np.array([1.0, 2.0, np.nan, 4.0]), 2)
    frame = pd.DataFrame({"X": [1.0, 2, 3], "Y": [1.0, np.nan, 3]})
    with pytest.raises(ValueError, match="column 'Y'"):
        vi.sma(frame, 2)
    with pytest.raises(ValueError, match="NaN input at row 1"):
        vi.atr(np.array([2.0, np.nan, 2]), np.ones(3), np.ones(3), 1)


def test_streaming_nan_is_refused_and_leaves_the_state_unchanged() -> None:
    from velox.indicators.streaming import ATR, EMA

    ema = EMA(window=3)
    for value in (10.0, 11.0, 12.0):
        ema.update(value)
    before = ema.preview(13.0)
    for call in (ema.update, ema.preview):
        with pytest.raises(ValueError, match="EMA: NaN input"):
            call(float("nan"))
    assert ema.preview(13.0) == before  # nothing was committed
    # hand-worked: seeded with the mean of the first three (11), then α = 2 / (3 + 1) = 1/2
    assert ema.update(13.0) == pytest.approx(11.0 + (13.0 - 11.0) / 2)
    atr = ATR(window=2)
    atr.update(SimpleNamespace(open=1.0, high=2.0, low=1.0, close=2.0))
    with pytest.raises(ValueError, match="ATR: NaN input"):
        atr.update(SimpleNamespace(open=1.0, high=float("nan"), low=1.0, close=2.0))


def test_too_short_series_is_all_warm_up() -> None:
    np.testing.assert_array_equal(np.isnan(vi.ema(np.arange(1.0, 6.0), 10)), [True] * 5)
    assert vi.rsi(np.array([], dtype=float)).shape == (0,)
    assert np.isnan(vi.macd(np.arange(1.0, 30.0)).macd).all()


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "14"])
def test_non_positive_or_non_integer_window_raises(bad: object) -> None:
    with pytest.raises(ValueError, match="window"):
        vi.sma(np.arange(10.0), bad)  # type: ignore[arg-type]


def test_bad_float_parameters_raise() -> None:
    x = np.arange(1.0, 20.0)
    with pytest.raises(ValueError, match="multiplier"):
        vi.supertrend(x + 1, x - 1, x, 5, 0.0)
    with pytest.raises(ValueError, match="acceleration"):
        vi.psar(x + 1, x - 1, acceleration=-0.1)
    with pytest.raises(ValueError, match="pivot method"):
        vi.pivots(x + 1, x - 1, x, method="fibonacci")


def test_mismatched_inputs_raise() -> None:
    with pytest.raises(ValueError, match="shape"):
        vi.atr(np.ones(5), np.ones(4), np.ones(5))
    a = _series([1.0, 2.0, 3.0])
    b = _series([1.0, 2.0, 3.0], start="2024-04-02 09:15")
    with pytest.raises(ValueError, match="different index"):
        vi.atr(a, b, a)


def test_unsorted_or_duplicate_timestamps_raise() -> None:
    s = _series([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="out-of-order timestamp at row 2"):
        vi.ema(s.iloc[[0, 2, 1, 3]], 2)
    dup = pd.concat([s.iloc[:2], s.iloc[1:]])
    with pytest.raises(ValueError, match="duplicate timestamp at row 2"):
        vi.rsi(dup, 2)
    with pytest.raises(ValueError, match="duplicate"):
        vi.vwap(dup, dup, dup, dup)


def test_vwap_needs_timestamps() -> None:
    x = np.ones(3)
    with pytest.raises(ValueError, match="needs timestamps"):
        vi.vwap(x, x, x, x)
    naive = pd.date_range("2024-04-01 09:15", periods=3, freq="1min")
    with pytest.raises(ValueError, match="naive"):
        vi.vwap(x, x, x, x, timestamps=naive)


def test_import_does_not_compile_or_pull_vectorbt() -> None:
    import subprocess
    import sys

    code = (
        "import sys, velox, velox.indicators as vi\n"
        "from velox.indicators import _runners\n"
        "assert 'vectorbt' not in sys.modules\n"
        "assert not _runners.run_ema.signatures, 'compiled at import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_non_time_index_is_not_order_checked() -> None:
    s = pd.Series([1.0, 2.0, 3.0, 4.0], index=[30, 10, 20, 40])  # e.g. a shuffled label index
    np.testing.assert_allclose(vi.sma(s, 2).to_numpy(), [np.nan, 1.5, 2.5, 3.5])
