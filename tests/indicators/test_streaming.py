"""Streaming ≡ batch: every indicator, bar by bar with random forming-candle previews between.

The batch functions are checked against TA-Lib elsewhere; here the streaming objects must give
the batch result at every closed bar bit for bit (both run the same step; the batch loop runs its
steady-state specialisation past the warm-up, streaming never does), previews must leave the
state untouched, pickling mid-stream must not change the outcome, and ``from_history`` must land
in the same state as bar-by-bar updates.
"""

from __future__ import annotations

import inspect
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
        before = pickle.dumps(obj)  # the whole state, whichever form the step keeps it in
        previewed = obj.preview(x)
        assert pickle.dumps(obj) == before
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


@pytest.mark.parametrize("window", [1, 2, 7, 8, 16, 64])
def test_python_stepped_sma_equals_talib_at_every_window(
    window: int, samples: list[pd.DataFrame]
) -> None:
    """SMA steps in plain Python (not the numba step): bit-equal to TA-Lib's running sum at
    windows around the ring's power-of-two widths, with previews, a pickle mid-stream and a
    ``from_history`` start."""
    import talib

    closes = samples[1].close.iloc[:1500]
    expected = talib.SMA(closes.to_numpy(), window)
    got = _stream(st.SMA(window), _bars(samples[1].iloc[:1500]), seed=window)[:, 0]
    np.testing.assert_array_equal(got, expected)
    seeded = st.SMA.from_history(closes.iloc[:700], window=window)
    tail = [seeded.update(x) for x in closes.iloc[700:]]
    np.testing.assert_array_equal(tail, expected[700:])


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


# ------------------------------------------------ from_history on an instance uses its parameters


def _concrete_classes() -> list[type[st.StreamingIndicator]]:
    found, todo = [], list(st.StreamingIndicator.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if not cls.__name__.startswith("_"):
            found.append(cls)
    return sorted(found, key=lambda c: c.__name__)


def _off_default(cls: type[st.StreamingIndicator]) -> st.StreamingIndicator:
    """Return ``cls`` built with every parameter moved off its default (still valid)."""
    params: dict[str, object] = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name == "self":
            continue
        if isinstance(p.default, str):
            params[name] = "camarilla" if p.default == "classic" else p.default
        elif isinstance(p.default, int):
            params[name] = p.default + 3
        else:
            params[name] = p.default * 1.5
    return cls(**params)


def test_every_streaming_class_is_covered() -> None:
    # A new streaming class is picked up by the parametrised test below; this guards the walk.
    names = {c.__name__ for c in _concrete_classes()}
    assert {"EMA", "MACD", "Supertrend", "Ichimoku", "Pivots", "VWAP"} <= names
    assert len(names) == 26


@pytest.mark.parametrize("cls", _concrete_classes(), ids=lambda c: c.__name__)
def test_from_history_on_an_instance_keeps_its_parameters(
    cls: type[st.StreamingIndicator], samples: list[pd.DataFrame]
) -> None:
    frame = samples[0].iloc[:300]
    obj = _off_default(cls)
    fresh_state = (obj._state.copy(), obj._ring.copy())
    history = frame.close if obj._spec.inputs == ("close",) else frame
    seeded = obj.from_history(history)
    assert type(seeded) is cls and seeded is not obj
    assert seeded._params == obj._params and repr(seeded) == repr(obj)
    if obj._params:
        assert repr(seeded) != repr(cls())  # the parameters really are not the defaults
    # the same state as the classmethod given those parameters as keywords
    by_class = cls.from_history(history, **obj._params)
    np.testing.assert_array_equal(seeded._state, by_class._state)
    np.testing.assert_array_equal(seeded._ring, by_class._ring)
    # and the instance itself is left as it was
    np.testing.assert_array_equal(obj._state, fresh_state[0])
    np.testing.assert_array_equal(obj._ring, fresh_state[1])


@pytest.mark.parametrize(
    ("make", "batch"),
    [
        (lambda: st.EMA(window=20), lambda d: vi.ema(d.close, 20)),
        (lambda: st.RSI(window=7), lambda d: vi.rsi(d.close, 7)),
        (lambda: st.MACD(5, 13, 4), lambda d: vi.macd(d.close, 5, 13, 4)),
        (lambda: st.BBands(15, 1.5, 2.5), lambda d: vi.bbands(d.close, 15, 1.5, 2.5)),
        (lambda: st.ATR(window=5), lambda d: vi.atr(d.high, d.low, d.close, 5)),
        (
            lambda: st.Supertrend(window=7, multiplier=2.0),
            lambda d: vi.supertrend(d.high, d.low, d.close, 7, 2.0),
        ),
        (
            lambda: st.Ichimoku(5, 12, 20, 6),
            lambda d: vi.ichimoku(d.high, d.low, 5, 12, 20, 6),
        ),
    ],
    ids=["ema", "rsi", "macd", "bbands", "atr", "supertrend", "ichimoku"],
)
def test_instance_from_history_then_updates_equals_batch_with_its_parameters(
    make: Callable[[], st.StreamingIndicator],
    batch: Callable[[pd.DataFrame], object],
    samples: list[pd.DataFrame],
) -> None:
    # EMA(window=20).from_history(closes) used to come back as EMA(window=30): checked here
    # against the batch function called with the instance's parameters.
    frame = samples[0]
    template = make()
    single = template._spec.inputs == ("close",)
    seeded = template.from_history(frame.close.iloc[:300] if single else frame.iloc[:300])
    tail = [seeded.update(b.close if single else b) for b in _bars(frame.iloc[300:])]
    got = np.array([v if isinstance(v, tuple) else (v,) for v in tail], dtype=float)
    assert_matches(got, _as_matrix(batch(frame))[300:])


def test_from_history_on_an_instance_refuses_parameters() -> None:
    with pytest.raises(TypeError) as info:
        st.EMA(window=20).from_history([1.0, 2.0, 3.0], window=5)
    message = str(info.value)
    assert "EMA(window=20)" in message and "window=5" in message
    assert "EMA.from_history(data, window=5)" in message
