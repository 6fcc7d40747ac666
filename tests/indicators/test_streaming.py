"""Streaming ≡ batch: every indicator, bar by bar with random forming-candle previews between.

The batch functions are checked against TA-Lib elsewhere; here the streaming objects must give
the batch result at every closed bar bit for bit (both run the same step; the batch loop runs its
steady-state specialisation past the warm-up, streaming never does), previews must leave the
state untouched, pickling mid-stream must not change the outcome, and ``from_history`` must land
in the same state as bar-by-bar updates.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from indicator_checks import assert_matches

import velox.indicators as vi
from velox.indicators import streaming as st

# name -> (streaming factory, batch function of an OHLCV frame)
CASES: dict[str, tuple[Callable[[], st.StreamingIndicator], Callable[[pd.DataFrame], object]]] = {
    "sma": (lambda: st.SMA(10), lambda d: vi.sma(d.close, 10)),
    "ema": (lambda: st.EMA(10), lambda d: vi.ema(d.close, 10)),
    "wma": (lambda: st.WMA(10), lambda d: vi.wma(d.close, 10)),
    "dema": (lambda: st.DEMA(10), lambda d: vi.dema(d.close, 10)),
    "tema": (lambda: st.TEMA(10), lambda d: vi.tema(d.close, 10)),
    "rsi": (lambda: st.RSI(), lambda d: vi.rsi(d.close)),
    "macd": (lambda: st.MACD(), lambda d: vi.macd(d.close)),
    "bbands": (lambda: st.BBands(), lambda d: vi.bbands(d.close)),
    "roc": (lambda: st.ROC(), lambda d: vi.roc(d.close)),
    "stochrsi": (lambda: st.StochRSI(), lambda d: vi.stochrsi(d.close)),
    "atr": (lambda: st.ATR(), lambda d: vi.atr(d.high, d.low, d.close)),
    "natr": (lambda: st.NATR(), lambda d: vi.natr(d.high, d.low, d.close)),
    "adx": (lambda: st.ADX(), lambda d: vi.adx(d.high, d.low, d.close)),
    "cci": (lambda: st.CCI(), lambda d: vi.cci(d.high, d.low, d.close)),
    "willr": (lambda: st.WillR(), lambda d: vi.willr(d.high, d.low, d.close)),
    "stoch": (lambda: st.Stoch(), lambda d: vi.stoch(d.high, d.low, d.close)),
    "mfi": (lambda: st.MFI(), lambda d: vi.mfi(d.high, d.low, d.close, d.volume)),
    "obv": (lambda: st.OBV(), lambda d: vi.obv(d.close, d.volume)),
    "psar": (lambda: st.PSAR(), lambda d: vi.psar(d.high, d.low)),
    "supertrend": (lambda: st.Supertrend(), lambda d: vi.supertrend(d.high, d.low, d.close)),
    "vwap": (lambda: st.VWAP(), lambda d: vi.vwap(d.high, d.low, d.close, d.volume)),
    "donchian": (lambda: st.Donchian(), lambda d: vi.donchian(d.high, d.low)),
    "keltner": (lambda: st.Keltner(), lambda d: vi.keltner(d.high, d.low, d.close)),
    "heikin_ashi": (
        lambda: st.HeikinAshi(),
        lambda d: vi.heikin_ashi(d.open, d.high, d.low, d.close),
    ),
    "ichimoku": (lambda: st.Ichimoku(), lambda d: vi.ichimoku(d.high, d.low)),
    "pivots": (lambda: st.Pivots(), lambda d: vi.pivots(d.high, d.low, d.close)),
    "camarilla": (
        lambda: st.Pivots("camarilla"),
        lambda d: vi.pivots(d.high, d.low, d.close, "camarilla"),
    ),
}


def _bars(frame: pd.DataFrame) -> list[SimpleNamespace]:
    return [
        SimpleNamespace(open=o, high=h, low=lo, close=c, volume=v, ts=ts)
        for ts, o, h, lo, c, v in zip(
            frame.index, frame.open, frame.high, frame.low, frame.close, frame.volume, strict=True
        )
    ]


def _forming(bar: SimpleNamespace, rng: np.random.Generator) -> SimpleNamespace:
    """Return a plausible forming candle for ``bar``'s period (a prefix of its trades)."""
    close = bar.low + (bar.high - bar.low) * rng.uniform()
    high = max(bar.open, close) + (bar.high - max(bar.open, close)) * rng.uniform()
    low = min(bar.open, close) - (min(bar.open, close) - bar.low) * rng.uniform()
    return SimpleNamespace(
        open=bar.open, high=high, low=low, close=close, volume=bar.volume * rng.uniform(), ts=bar.ts
    )


def _as_matrix(result: object) -> np.ndarray:
    if isinstance(result, tuple):
        return np.column_stack([np.asarray(x, dtype=float) for x in result])
    return np.asarray(result, dtype=float).reshape(-1, 1)


def _stream(obj: st.StreamingIndicator, bars: list[SimpleNamespace], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    single = obj._spec.inputs == ("close",)
    rows = []
    for k, bar in enumerate(bars):
        for _ in range(int(rng.integers(0, 4))):
            forming = _forming(bar, rng)
            obj.preview(forming.close if single else forming)
        if k == len(bars) // 2:
            obj = pickle.loads(pickle.dumps(obj))  # an engine restart mid-stream
        value = obj.update(bar.close if single else bar)
        rows.append(value if isinstance(value, tuple) else (value,))
    return np.array(rows, dtype=float)


@pytest.fixture(scope="module")
def samples(
    daily: dict[str, pd.DataFrame], intraday: dict[str, pd.DataFrame]
) -> list[pd.DataFrame]:
    """Return a daily stock (with volume) and 3,000 one-minute NIFTY bars (several sessions)."""
    return [daily["RELIANCE"].iloc[:600], intraday["NIFTY"].iloc[:3000]]


@pytest.mark.parametrize("name", sorted(CASES))
def test_streaming_with_previews_equals_batch(name: str, samples: list[pd.DataFrame]) -> None:
    factory, batch = CASES[name]
    for frame in samples:
        if name in ("vwap", "mfi", "obv") and frame.volume.eq(0).all():
            continue  # index data has no volume
        expected = _as_matrix(batch(frame))
        got = _stream(factory(), _bars(frame), seed=len(frame))
        np.testing.assert_array_equal(got, expected)  # one step, so the same bits


@pytest.mark.parametrize("name", sorted(CASES))
def test_preview_is_the_update_value_and_changes_nothing(
    name: str, samples: list[pd.DataFrame]
) -> None:
    factory, _ = CASES[name]
    frame = samples[0].iloc[:120]
    obj = factory()
    single = obj._spec.inputs == ("close",)
    for bar in _bars(frame):
        x = bar.close if single else bar
        before = (obj._state.copy(), obj._ring.copy())
        previewed = obj.preview(x)
        np.testing.assert_array_equal(obj._state, before[0])
        np.testing.assert_array_equal(obj._ring, before[1])
        committed = obj.update(x)
        np.testing.assert_array_equal(np.array(previewed, float), np.array(committed, float))


@pytest.mark.parametrize("name", sorted(CASES))
def test_from_history_then_updates_equals_batch(name: str, samples: list[pd.DataFrame]) -> None:
    factory, batch = CASES[name]
    frame = samples[0]
    template = factory()
    single = template._spec.inputs == ("close",)
    seeded = type(template).from_history(
        frame.close.iloc[:400] if single else frame.iloc[:400], **template._params
    )
    tail = [seeded.update(b.close if single else b) for b in _bars(frame.iloc[400:])]
    got = np.array([v if isinstance(v, tuple) else (v,) for v in tail], dtype=float)
    assert_matches(got, _as_matrix(batch(frame))[400:])


def test_streaming_accepts_velox_bar() -> None:
    from velox.types import Bar

    ts = pd.Timestamp("2024-04-01 09:15", tz="Asia/Kolkata").to_pydatetime()
    bar = Bar("NSE:INFY", "1m", ts, 100.0, 102.0, 99.0, 101.0, 1000.0)
    assert st.VWAP().update(bar) == pytest.approx((102.0 + 99.0 + 101.0) / 3)
    assert np.isnan(st.ATR(window=1).update(bar))


def test_streaming_rejects_nan_and_bad_parameters() -> None:
    ema = st.EMA(3)
    with pytest.raises(ValueError, match="NaN"):
        ema.update(float("nan"))
    with pytest.raises(ValueError, match="window must be >= 1"):
        st.RSI(window=0)
    with pytest.raises(ValueError, match="tz-aware timestamp"):
        st.VWAP().update(SimpleNamespace(open=1, high=1, low=1, close=1, volume=1, ts=None))
    with pytest.raises(ValueError, match="lacks column"):
        st.ATR.from_history(pd.DataFrame({"close": [1.0, 2.0]}))


def test_session_indicators_reject_bars_from_an_earlier_session() -> None:
    day2 = pd.Timestamp("2024-04-02 09:15", tz="Asia/Kolkata").to_pydatetime()
    day1 = pd.Timestamp("2024-04-01 15:29", tz="Asia/Kolkata").to_pydatetime()
    for obj in (st.VWAP(), st.Pivots()):
        obj.update(SimpleNamespace(open=1, high=2, low=1, close=2, volume=5, ts=day2))
        with pytest.raises(ValueError, match="earlier session"):
            obj.preview(SimpleNamespace(open=1, high=2, low=1, close=2, volume=5, ts=day1))


def test_a_snapshot_with_another_layout_is_refused() -> None:
    # The kernels read state and ring without bounds checks: a pickle whose arrays do not have
    # this version's shapes (e.g. saved by an older Velox) must fail loudly, not read past them.
    ema = st.EMA(5)
    data = ema.__getstate__()
    data["state"] = np.append(data["state"], 0.0)
    with pytest.raises(ValueError, match="another layout"):
        st.EMA.__new__(st.EMA).__setstate__(data)
    bank = st.IndicatorBank(symbols=2)
    old = {"params": bank.__getstate__()["params"], "state": np.zeros((2, 34))}
    with pytest.raises(ValueError, match="another layout"):
        st.IndicatorBank.__new__(st.IndicatorBank).__setstate__(old)
