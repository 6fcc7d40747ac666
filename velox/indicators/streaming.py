"""Streaming indicators: O(1) per bar, with a forming-candle ``preview`` that changes nothing.

Each class wraps the same numba step as the batch function of the same name, so streaming over a
series gives exactly the batch result (the tests check it on real NSE data, with random previews
in between). The model for live use::

    ema = EMA(window=20).from_history(closes)   # or EMA.from_history(closes, window=20)
    on every tick:   value = ema.preview(forming_close)   # the forming candle; state unchanged
    on candle close: value = ema.update(final_close)      # commit the closed bar

Single-input indicators take a float; multi-input ones take a :class:`velox.types.Bar` (or any
object with ``open``/``high``/``low``/``close``/``volume`` attributes; VWAP and pivots also read
``ts``, a tz-aware datetime). Objects are small (a few numpy arrays) and picklable, so an engine
can snapshot and restore them. NaN input raises ``ValueError``.

For many symbols updated on every tick, :class:`IndicatorBank` keeps EMA + RSI + ATR + Supertrend
for N symbols in one contiguous array and does one numba call per tick.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import datetime
from typing import ClassVar, Protocol, Self

import numpy as np
from numba import njit

from velox.calendar import IST_OFFSET_NS, TIMEFRAMES
from velox.indicators._kernels import atr_step, ema_step, rsi_step, supertrend_step
from velox.indicators._spec import (
    _DAY_NS,
    FIELDS,
    SPECS,
    CamarillaPivots,
    Spec,
    _is_datetime_index,
    check_increasing,
    init_state,
    read_only,
    session_keys,
)

#: Where session-anchored steps keep the current session key in their state.
_SESSION_SLOT = {"vwap": 0, "pivots": 1}


class BarLike(Protocol):
    """Anything with OHLCV attributes, e.g. :class:`velox.types.Bar`."""

    open: float
    high: float
    low: float
    close: float
    volume: float


class _ClassOrInstanceMethod(classmethod):  # type: ignore[type-arg]
    """A classmethod that, called on an instance, passes the instance's parameters.

    A plain classmethod called on an instance is handed the class alone, so
    ``EMA(window=20).from_history(closes)`` silently built an ``EMA(window=30)``. On the class it
    behaves as a classmethod (parameters as keywords); on an instance it calls the function with
    the instance's class and parameters, and refuses further parameters (which would be ambiguous).
    """

    def __get__(self, obj: object, owner: type | None = None) -> Callable[..., object]:
        if obj is None:
            return super().__get__(obj, owner)
        func = self.__func__

        @functools.wraps(func)
        def bound(data: object, **params: object) -> object:
            if params:
                given = ", ".join(f"{k}={v!r}" for k, v in params.items())
                raise TypeError(
                    f"{obj!r}.from_history() got {given}: on an instance it uses the instance's "
                    f"parameters; call {type(obj).__name__}.from_history(data, {given}) to choose "
                    "others"
                )
            return func(type(obj), data, **obj._params)  # type: ignore[attr-defined]

        del bound.__wrapped__  # its signature is (data, **params): no ``cls``
        return bound


class StreamingIndicator:
    """Base class: holds the step's state and applies it one bar at a time.

    Subclasses only name their :class:`~velox.indicators._spec.Spec` and parameters.
    """

    _spec: ClassVar[Spec]
    __slots__ = ("_params", "_state", "_ring", "_out", "_result", "_stream")

    def __init__(self, **params: object) -> None:
        self._params = params
        self._state, self._ring = init_state(self._spec, params)
        self._out = np.empty(self._spec.n_outputs)
        self._result = self._spec.result
        # looked up once: a per-call attribute chain is a large share of a sub-µs update
        self._stream = self._spec.stream
        if self._spec.name == "pivots" and params.get("method") == "camarilla":
            self._result = CamarillaPivots

    def __getstate__(self) -> dict[str, object]:
        return {"params": self._params, "state": self._state, "ring": self._ring}

    def __setstate__(self, data: dict[str, object]) -> None:
        self.__init__(**data["params"])  # type: ignore[misc, arg-type]
        state = np.array(data["state"], dtype=np.float64)
        ring = np.array(data["ring"], dtype=np.float64)
        # the kernels index these without bounds checks: refuse a layout from another version
        _check_snapshot(type(self).__name__, (state, ring), (self._state, self._ring))
        self._state, self._ring = state, ring

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args})"

    @_ClassOrInstanceMethod
    def from_history(cls, data: object, **params: object) -> Self:
        """Return an indicator whose state has consumed ``data`` through the batch path.

        ``data`` is a DataFrame with lower-case ``open``/``high``/``low``/``close``/``volume``
        columns (those the indicator reads; VWAP/pivots also need a DatetimeIndex), or, for
        single-input indicators, a Series or 1-D array of closes. One numba call, no Python loop.

        Call it on the class with the parameters as keywords, or on an instance to use that
        instance's parameters (a new indicator is returned; the instance is left as it was).

        Examples
        --------
        >>> EMA.from_history([1.0, 2.0, 3.0], window=2)
        EMA(window=2)
        >>> EMA(window=2).from_history([1.0, 2.0, 3.0]).update(4.0)  # EMA(2) of 1, 2, 3, 4
        3.5
        """
        obj = cls(**params)
        obj._consume(data)
        return obj

    def _consume(self, data: object) -> None:
        spec = self._spec
        columns, index = _columns(spec, data)
        rows = len(columns[spec.inputs[0]])
        if _is_datetime_index(index):
            check_increasing(index.asi8)
        if spec.sessions and index is None and spec.name == "vwap":
            raise ValueError("VWAP.from_history needs a DataFrame with a DatetimeIndex")
        keys = (
            session_keys(index, rows)
            if spec.sessions and index is not None
            else (np.arange(rows, dtype=np.float64) if spec.sessions else np.zeros(rows))
        )
        some = columns[spec.inputs[0]]
        ins = [columns.get(f, some) for f in FIELDS]
        out = np.empty((spec.n_outputs, rows))
        bad = spec.run_batch(self._state, self._ring, (*ins, keys), 0, out)
        if bad >= 0:
            raise ValueError(
                f"{type(self).__name__}.from_history: NaN input at row {bad}; fill or drop it first"
            )

    def _apply(self, values: tuple[float, ...], t: float, commit: bool) -> object:
        o, h, l, c, v = values  # noqa: E741
        if (o + h + l + c + v) != (o + h + l + c + v):
            raise ValueError(f"{type(self).__name__}: NaN input {values}; pass finite prices")
        self._stream(self._state, self._ring, o, h, l, c, v, t, commit, self._out)
        return self._value()

    def _value(self) -> object:
        if self._result is None:
            return self._out.item(0)
        return self._result(*self._out.tolist()[: len(self._result._fields)])


class _SingleInput(StreamingIndicator):
    __slots__ = ("_stream1",)

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._stream1 = self._spec.stream1

    # update/preview written out (no _apply tuple): an on_bar strategy calls them every bar
    def update(self, value: float) -> float | tuple[float, ...]:
        """Commit a closed bar's ``value`` and return the indicator (NaN during warm-up)."""
        v = float(value)
        if v != v:
            raise ValueError(f"{type(self).__name__}: NaN input {value}; pass finite prices")
        self._stream1(self._state, self._ring, v, True, self._out)
        return self._value()  # type: ignore[return-value]

    def preview(self, value: float) -> float | tuple[float, ...]:
        """Return the indicator if the forming bar closed at ``value`` now; state is unchanged."""
        v = float(value)
        if v != v:
            raise ValueError(f"{type(self).__name__}: NaN input {value}; pass finite prices")
        self._stream1(self._state, self._ring, v, False, self._out)
        return self._value()  # type: ignore[return-value]


class _BarInput(StreamingIndicator):
    __slots__ = ()

    def _values(self, bar: BarLike) -> tuple[float, ...]:
        return (
            float(bar.open),
            float(bar.high),
            float(bar.low),
            float(bar.close),
            float(getattr(bar, "volume", 0.0)),
        )

    def _key(self, bar: BarLike, ts: datetime | None) -> float:
        if not self._spec.sessions:
            return 0.0
        stamp = ts if ts is not None else getattr(bar, "ts", None)
        if stamp is None or stamp.tzinfo is None:
            raise ValueError(
                f"{type(self).__name__} needs a tz-aware timestamp: pass a Bar or ts=..."
            )
        ns = round(stamp.timestamp() * 1_000_000) * 1000
        key = float((ns + IST_OFFSET_NS) // _DAY_NS)
        current = self._state[_SESSION_SLOT[self._spec.name]]
        if key < current:  # NaN (no session yet) compares False
            raise ValueError(
                f"{type(self).__name__}: bar at {stamp} belongs to an earlier session than the "
                "last one seen; feed bars in time order"
            )
        return key

    def update(self, bar: BarLike, ts: datetime | None = None) -> float | tuple[float, ...]:
        """Commit the closed ``bar`` and return the indicator (NaN during warm-up)."""
        return self._apply(self._values(bar), self._key(bar, ts), True)  # type: ignore[return-value]

    def preview(self, bar: BarLike, ts: datetime | None = None) -> float | tuple[float, ...]:
        """Return the indicator for the forming ``bar`` as it stands; state is unchanged."""
        return self._apply(self._values(bar), self._key(bar, ts), False)  # type: ignore[return-value]


def _check_snapshot(owner: str, got: tuple[np.ndarray, ...], fresh: tuple[np.ndarray, ...]) -> None:
    """Raise ``ValueError`` unless a restored snapshot has the arrays' current shapes."""
    if any(a.shape != b.shape for a, b in zip(got, fresh, strict=True)):
        raise ValueError(
            f"{owner}: the pickled state has another layout (saved by another Velox version); "
            "rebuild the indicator, e.g. with from_history() or seed()"
        )


def _columns(spec: Spec, data: object) -> tuple[dict[str, np.ndarray], object]:
    """Return the input columns ``spec`` reads from ``data`` and its index (or None)."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        missing = [f for f in spec.inputs if f not in data.columns]
        if missing:
            raise ValueError(
                f"{spec.name}: history lacks column(s) {missing}; "
                f"expected lower-case {', '.join(spec.inputs)}"
            )
        cols = {f: data[f].to_numpy(dtype=np.float64, na_value=np.nan) for f in spec.inputs}
        return cols, data.index
    if spec.inputs != ("close",):
        raise ValueError(f"{spec.name}: history must be a DataFrame with {', '.join(spec.inputs)}")
    index = data.index if isinstance(data, pd.Series) else None
    values = np.asarray(data, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{spec.name}: history must be 1-D, got shape {values.shape}")
    return {"close": np.ascontiguousarray(values)}, index


class SMA(_SingleInput):
    """Simple moving average, streaming; see :func:`velox.indicators.sma`.

    Examples
    --------
    >>> s = SMA(window=2)
    >>> s.update(1.0), s.preview(5.0), s.update(3.0)
    (nan, 3.0, 2.0)
    """

    _spec = SPECS["sma"]
    # The step runs in plain Python on Python floats and a list ring: an SMA's step is two
    # additions and a division, less than numba's dispatch of the array arguments (≈0.2 µs
    # against ≈0.45 µs per update; an on_bar strategy pays it every bar). The operations are
    # those of ``_kernels._sma_core`` in the same order, so values stay bit-identical to the
    # batch ``sma`` (tests/indicators check it). The numpy state is synced only where it is
    # read: ``from_history`` (the batch kernel) and pickling.
    __slots__ = ("_n", "_n1", "_acc", "_j", "_buf", "_mask")

    def __init__(self, window: int = 30) -> None:
        super().__init__(window=window)
        self._load()

    def _load(self) -> None:
        """Take the Python step's state from the numpy state (after batch or unpickling)."""
        self._n = float(self._state[0])
        self._n1 = int(self._state[0]) - 1
        self._acc = float(self._state[1])
        self._j = int(self._state[2])
        self._buf = self._ring[0].tolist()
        self._mask = len(self._buf) - 1

    def _save(self) -> None:
        """Write the Python step's state back to the numpy state."""
        self._state[1], self._state[2] = self._acc, self._j
        self._ring[0] = self._buf

    def __getstate__(self) -> dict[str, object]:
        self._save()
        return super().__getstate__()

    def __setstate__(self, data: dict[str, object]) -> None:
        super().__setstate__(data)
        self._load()

    def _consume(self, data: object) -> None:
        self._save()
        super()._consume(data)
        self._load()

    def update(self, value: float) -> float:
        """Commit a closed bar's ``value`` and return the SMA (NaN during warm-up)."""
        v = float(value)
        if v != v:
            raise ValueError(f"SMA: NaN input {value}; pass finite prices")
        j = self._j
        s = self._acc + v
        buf = self._buf
        buf[j & self._mask] = v  # written before the oldest is read (window 1: x itself)
        self._j = j + 1
        if j < self._n1:
            self._acc = s
            return math.nan
        self._acc = s - buf[(j - self._n1) & self._mask]
        return s / self._n

    def preview(self, value: float) -> float:
        """Return the SMA if the forming bar closed at ``value`` now; state is unchanged."""
        v = float(value)
        if v != v:
            raise ValueError(f"SMA: NaN input {value}; pass finite prices")
        return math.nan if self._j < self._n1 else (self._acc + v) / self._n


class EMA(_SingleInput):
    """Exponential moving average (TA-Lib seeding), streaming; see :func:`velox.indicators.ema`.

    Examples
    --------
    >>> e = EMA(window=2)
    >>> [e.update(x) for x in (1.0, 2.0, 3.0)]
    [nan, 1.5, 2.5]
    """

    _spec = SPECS["ema"]
    __slots__ = ()

    def __init__(self, window: int = 30) -> None:
        super().__init__(window=window)


class WMA(_SingleInput):
    """Weighted moving average, streaming; see :func:`velox.indicators.wma`.

    Examples
    --------
    >>> w = WMA(window=2)
    >>> w.update(1.0), w.update(4.0)
    (nan, 3.0)
    """

    _spec = SPECS["wma"]
    __slots__ = ()

    def __init__(self, window: int = 30) -> None:
        super().__init__(window=window)


class DEMA(_SingleInput):
    """Double EMA, streaming; see :func:`velox.indicators.dema`.

    Examples
    --------
    >>> d = DEMA(window=2)
    >>> [d.update(x) for x in (1.0, 2.0, 3.0)][-1]
    3.0
    """

    _spec = SPECS["dema"]
    __slots__ = ()

    def __init__(self, window: int = 30) -> None:
        super().__init__(window=window)


class TEMA(_SingleInput):
    """Triple EMA, streaming; see :func:`velox.indicators.tema`.

    Examples
    --------
    >>> t = TEMA(window=2)
    >>> [t.update(x) for x in (1.0, 2.0, 3.0, 4.0)][-1]
    4.0
    """

    _spec = SPECS["tema"]
    __slots__ = ()

    def __init__(self, window: int = 30) -> None:
        super().__init__(window=window)


class RSI(_SingleInput):
    """Wilder RSI (TA-Lib seeding), streaming; see :func:`velox.indicators.rsi`.

    Examples
    --------
    >>> r = RSI(window=2)
    >>> [r.update(x) for x in (1.0, 2.0, 1.0)][-1], r.preview(2.0)
    (50.0, 75.0)
    """

    _spec = SPECS["rsi"]
    __slots__ = ()

    def __init__(self, window: int = 14) -> None:
        super().__init__(window=window)


class MACD(_SingleInput):
    """MACD line/signal/histogram (TA-Lib seeding), streaming; see :func:`velox.indicators.macd`.

    Returns a :class:`~velox.indicators.MACDLines`.

    Examples
    --------
    >>> m = MACD(fast_window=2, slow_window=3, signal_window=2)
    >>> [m.update(x) for x in (1.0, 2.0, 3.0, 4.0)][-1].macd
    0.5
    """

    _spec = SPECS["macd"]
    __slots__ = ()

    def __init__(self, fast_window: int = 12, slow_window: int = 26, signal_window: int = 9):
        super().__init__(
            fast_window=fast_window, slow_window=slow_window, signal_window=signal_window
        )


class BBands(_SingleInput):
    """Bollinger Bands, streaming; see :func:`velox.indicators.bbands`.

    Examples
    --------
    >>> b = BBands(window=2, upper_std=1.0, lower_std=1.0)
    >>> b.update(1.0).middle, b.update(3.0).upper
    (nan, 3.0)
    """

    _spec = SPECS["bbands"]
    __slots__ = ()

    def __init__(self, window: int = 20, upper_std: float = 2.0, lower_std: float = 2.0):
        super().__init__(window=window, upper_std=upper_std, lower_std=lower_std)


class ROC(_SingleInput):
    """Rate of change in percent, streaming; see :func:`velox.indicators.roc`.

    Examples
    --------
    >>> r = ROC(window=1)
    >>> r.update(100.0), round(r.preview(110.0), 9)
    (nan, 10.0)
    """

    _spec = SPECS["roc"]
    __slots__ = ()

    def __init__(self, window: int = 10) -> None:
        super().__init__(window=window)


class StochRSI(_SingleInput):
    """Stochastic RSI, streaming; see :func:`velox.indicators.stochrsi`.

    Examples
    --------
    >>> s = StochRSI(window=2, k_window=2, d_window=1)
    >>> [s.update(x) for x in (1.0, 2.0, 1.0, 2.0)][-1].k
    100.0
    """

    _spec = SPECS["stochrsi"]
    __slots__ = ()

    def __init__(self, window: int = 14, k_window: int = 5, d_window: int = 3) -> None:
        super().__init__(window=window, k_window=k_window, d_window=d_window)


class ATR(_BarInput):
    """Average true range (TA-Lib seeding), streaming; see :func:`velox.indicators.atr`.

    Examples
    --------
    >>> from types import SimpleNamespace as B
    >>> a = ATR(window=1)
    >>> a.update(B(open=10, high=11, low=9, close=10, volume=0))
    nan
    >>> a.preview(B(open=10, high=13, low=10, close=12, volume=0))
    3.0
    """

    _spec = SPECS["atr"]
    __slots__ = ()

    def __init__(self, window: int = 14) -> None:
        super().__init__(window=window)


class NATR(_BarInput):
    """ATR as a percentage of the close, streaming; see :func:`velox.indicators.natr`.

    Examples
    --------
    >>> from types import SimpleNamespace as B
    >>> n = NATR(window=1)
    >>> n.update(B(open=10, high=11, low=9, close=10, volume=0))
    nan
    >>> n.update(B(open=10, high=11, low=9, close=10, volume=0))
    20.0
    """

    _spec = SPECS["natr"]
    __slots__ = ()

    def __init__(self, window: int = 14) -> None:
        super().__init__(window=window)


class ADX(_BarInput):
    """Average directional index, streaming; see :func:`velox.indicators.adx`.

    Examples
    --------
    >>> ADX(window=14)
    ADX(window=14)
    """

    _spec = SPECS["adx"]
    __slots__ = ()

    def __init__(self, window: int = 14) -> None:
        super().__init__(window=window)


class CCI(_BarInput):
    """Commodity channel index, streaming; see :func:`velox.indicators.cci`.

    Examples
    --------
    >>> CCI(window=20)
    CCI(window=20)
    """

    _spec = SPECS["cci"]
    __slots__ = ()

    def __init__(self, window: int = 14) -> None:
        super().__init__(window=window)


class WillR(_BarInput):
    """Williams %R, streaming; see :func:`velox.indicators.willr`.

    Examples
    --------
    >>> WillR(window=14)
    WillR(window=14)
    """

    _spec = SPECS["willr"]
    __slots__ = ()

    def __init__(self, window: int = 14) -> None:
        super().__init__(window=window)


class Stoch(_BarInput):
    """Slow stochastic %K/%D, streaming; see :func:`velox.indicators.stoch`.

    Examples
    --------
    >>> Stoch()
    Stoch(k_window=5, k_smooth=3, d_window=3)
    """

    _spec = SPECS["stoch"]
    __slots__ = ()

    def __init__(self, k_window: int = 5, k_smooth: int = 3, d_window: int = 3) -> None:
        super().__init__(k_window=k_window, k_smooth=k_smooth, d_window=d_window)


class MFI(_BarInput):
    """Money flow index, streaming; see :func:`velox.indicators.mfi`.

    Examples
    --------
    >>> MFI(window=14)
    MFI(window=14)
    """

    _spec = SPECS["mfi"]
    __slots__ = ()

    def __init__(self, window: int = 14) -> None:
        super().__init__(window=window)


class OBV(_BarInput):
    """On-balance volume, streaming; see :func:`velox.indicators.obv`.

    Examples
    --------
    >>> from types import SimpleNamespace as B
    >>> o = OBV()
    >>> o.update(B(open=1, high=1, low=1, close=10, volume=100))
    100.0
    >>> o.preview(B(open=1, high=1, low=1, close=11, volume=50))
    150.0
    """

    _spec = SPECS["obv"]
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()


class PSAR(_BarInput):
    """Parabolic SAR (TA-Lib's), streaming; see :func:`velox.indicators.psar`.

    Examples
    --------
    >>> PSAR()
    PSAR(acceleration=0.02, maximum=0.2)
    """

    _spec = SPECS["psar"]
    __slots__ = ()

    def __init__(self, acceleration: float = 0.02, maximum: float = 0.2) -> None:
        super().__init__(acceleration=acceleration, maximum=maximum)


class Supertrend(_BarInput):
    """Supertrend line and direction, streaming; see :func:`velox.indicators.supertrend`.

    Examples
    --------
    >>> Supertrend()
    Supertrend(window=10, multiplier=3.0)
    """

    _spec = SPECS["supertrend"]
    __slots__ = ()

    def __init__(self, window: int = 10, multiplier: float = 3.0) -> None:
        super().__init__(window=window, multiplier=multiplier)


class VWAP(_BarInput):
    """Session-anchored VWAP, streaming; resets on the first bar of a new IST date.

    See :func:`velox.indicators.vwap`. Reads ``bar.ts`` (or ``ts=``) to find the session.

    Examples
    --------
    >>> from datetime import datetime
    >>> from types import SimpleNamespace as B
    >>> from velox.calendar import IST
    >>> v = VWAP()
    >>> ts = datetime(2024, 4, 1, 9, 15, tzinfo=IST)
    >>> v.update(B(open=1, high=100, low=100, close=100, volume=1, ts=ts))
    100.0
    >>> v.preview(B(open=1, high=103, low=103, close=103, volume=2, ts=ts))
    102.0
    """

    _spec = SPECS["vwap"]
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()


class Donchian(_BarInput):
    """Donchian channel, streaming; see :func:`velox.indicators.donchian`.

    Examples
    --------
    >>> Donchian(window=20)
    Donchian(window=20)
    """

    _spec = SPECS["donchian"]
    __slots__ = ()

    def __init__(self, window: int = 20) -> None:
        super().__init__(window=window)


class Keltner(_BarInput):
    """Keltner channels, streaming; see :func:`velox.indicators.keltner`.

    Examples
    --------
    >>> Keltner()
    Keltner(window=20, atr_window=10, multiplier=2.0)
    """

    _spec = SPECS["keltner"]
    __slots__ = ()

    def __init__(self, window: int = 20, atr_window: int = 10, multiplier: float = 2.0) -> None:
        super().__init__(window=window, atr_window=atr_window, multiplier=multiplier)


class HeikinAshi(_BarInput):
    """Heikin-Ashi candles, streaming; see :func:`velox.indicators.heikin_ashi`.

    Examples
    --------
    >>> from types import SimpleNamespace as B
    >>> HeikinAshi().update(B(open=10, high=13, low=9, close=12, volume=0))
    Candles(open=11.0, high=13.0, low=9.0, close=11.0)
    """

    _spec = SPECS["heikin_ashi"]
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()


class Ichimoku(_BarInput):
    """Ichimoku lines (causally aligned spans), streaming; see :func:`velox.indicators.ichimoku`.

    Examples
    --------
    >>> Ichimoku()
    Ichimoku(tenkan_window=9, kijun_window=26, senkou_window=52, displacement=26)
    """

    _spec = SPECS["ichimoku"]
    __slots__ = ()

    def __init__(
        self,
        tenkan_window: int = 9,
        kijun_window: int = 26,
        senkou_window: int = 52,
        displacement: int = 26,
    ) -> None:
        super().__init__(
            tenkan_window=tenkan_window,
            kijun_window=kijun_window,
            senkou_window=senkou_window,
            displacement=displacement,
        )


class Pivots(_BarInput):
    """Classic or Camarilla pivots from the previous IST session, streaming.

    See :func:`velox.indicators.pivots`. Reads ``bar.ts`` (or ``ts=``) to find the session.

    Examples
    --------
    >>> Pivots(method="camarilla")
    Pivots(method='camarilla')
    """

    _spec = SPECS["pivots"]
    __slots__ = ()

    def __init__(self, method: str = "classic") -> None:
        super().__init__(method=method)


# ---------------------------------------------------------------- the fused multi-symbol bank

#: Output columns of :class:`IndicatorBank`.
BANK_COLUMNS = ("ema", "rsi", "atr", "supertrend", "direction")
# Row layout: the ema, rsi, atr and supertrend states (each followed by its count of committed
# bars), the forming candle (flag, o, h, l, c), the latest outputs, the forming candle's [start,
# end) in UTC epoch ns (int64 bits, read through an int64 view of the array) and the candle length
# in ns. One array, so that a tick is one numba call with a single array argument (each array
# argument costs the call ~40 ns of type dispatch).
_E, _R, _A, _S, _F, _O, _EDGE, _LENGTH, _WIDTH = 0, 5, 10, 15, 24, 29, 34, 36, 37
_NO_CANDLE = np.iinfo(np.int64).min
_MINUTE_NS = 60_000_000_000
_OPEN_NS = (9 * 60 + 15) * _MINUTE_NS


@njit(cache=True, error_model="numpy", inline="always")
def _bank_bar(state, i, o, h, l, c, commit):  # noqa: E741
    """Apply the four steps to symbol ``i``'s bar (commit or preview) and write its outputs.

    ``state`` is indexed element by element (``state[i, k]``): a row or slice view would be a new
    reference-counted array object on every tick, which cost more than the four steps.
    """
    # `state` stands in for the ring argument: none of these four steps has a rolling window.
    # Each state is followed by its count of committed bars, the step's position argument.
    e_st, e = ema_step(
        (state[i, _E], state[i, _E + 1], state[i, _E + 2], state[i, _E + 3]),
        state, np.int64(state[i, _R - 1]), o, h, l, c, 0.0, 0.0, commit, False,
    )  # fmt: skip
    r_st, r = rsi_step(
        (state[i, _R], state[i, _R + 1], state[i, _R + 2], state[i, _R + 3]),
        state, np.int64(state[i, _A - 1]), o, h, l, c, 0.0, 0.0, commit, False,
    )  # fmt: skip
    a_st, a = atr_step(
        (state[i, _A], state[i, _A + 1], state[i, _A + 2], state[i, _A + 3]),
        state, np.int64(state[i, _S - 1]), o, h, l, c, 0.0, 0.0, commit, False,
    )  # fmt: skip
    s_st, st = supertrend_step(
        (state[i, _S], state[i, _S + 1], state[i, _S + 2], state[i, _S + 3],
         state[i, _S + 4], state[i, _S + 5], state[i, _S + 6], state[i, _S + 7]),
        state, np.int64(state[i, _F - 1]), o, h, l, c, 0.0, 0.0, commit, False,
    )  # fmt: skip
    if commit:
        for j in range(4):
            state[i, _E + j] = e_st[j]
            state[i, _R + j] = r_st[j]
            state[i, _A + j] = a_st[j]
        for j in range(8):
            state[i, _S + j] = s_st[j]
        state[i, _R - 1] += 1.0
        state[i, _A - 1] += 1.0
        state[i, _S - 1] += 1.0
        state[i, _F - 1] += 1.0
    state[i, _O] = e[0]
    state[i, _O + 1] = r[0]
    state[i, _O + 2] = a[0]
    state[i, _O + 3] = st[0]
    state[i, _O + 4] = st[1]


@njit(cache=True, error_model="numpy", inline="always")
def _bank_tick(state, i, price, ts_ns):
    """Fold one trade into symbol ``i``'s forming candle; commit the previous candle on rollover.

    The row keeps the forming candle's [start, end) in UTC epoch ns, so the common case (a tick
    inside the current candle) costs two comparisons instead of the bucket divisions. Returns
    0, or an error code: 1 bad symbol index, 2 NaN price, 3 tick older than the candle.
    """
    if i < 0 or i >= state.shape[0]:
        return 1
    if price != price:
        return 2
    edges = state.view(np.int64)
    if ts_ns >= edges[i, _EDGE + 1]:
        length_ns = np.int64(state[i, _LENGTH])
        ist = ts_ns + IST_OFFSET_NS
        day = (ist // _DAY_NS) * _DAY_NS
        start = day + _OPEN_NS + ((ist - day - _OPEN_NS) // length_ns) * length_ns
        if state[i, _F] == 1.0:
            o, h, l, c = state[i, _F + 1], state[i, _F + 2], state[i, _F + 3], state[i, _F + 4]  # noqa: E741
            _bank_bar(state, i, o, h, l, c, True)
        edges[i, _EDGE] = start - IST_OFFSET_NS
        edges[i, _EDGE + 1] = start - IST_OFFSET_NS + length_ns
        state[i, _F] = 1.0
        state[i, _F + 1] = price
        state[i, _F + 2] = price
        state[i, _F + 3] = price
        state[i, _F + 4] = price
    elif ts_ns < edges[i, _EDGE]:
        return 3
    else:
        if price > state[i, _F + 2]:
            state[i, _F + 2] = price
        if price < state[i, _F + 3]:
            state[i, _F + 3] = price
        state[i, _F + 4] = price
    o, h, l, c = state[i, _F + 1], state[i, _F + 2], state[i, _F + 3], state[i, _F + 4]  # noqa: E741
    _bank_bar(state, i, o, h, l, c, False)
    return 0


@njit(cache=True, error_model="numpy")
def _bank_replay(state, symbols, prices, ts_ns, record):
    """Run :func:`_bank_tick` over arrays; return -1 or the first failing tick's position."""
    keep = record.shape[0] == prices.shape[0]
    for k in range(prices.shape[0]):
        i = symbols[k]
        code = _bank_tick(state, i, prices[k], ts_ns[k])
        if code != 0:
            return k
        if keep:
            for j in range(5):
                record[k, j] = state[i, _O + j]
    return -1


@njit(cache=True, error_model="numpy")
def _bank_check_bar(state, i, o, h, l, c, commit):  # noqa: E741
    if i < 0 or i >= state.shape[0]:
        return 1
    if (o + h + l + c) != (o + h + l + c):
        return 2
    _bank_bar(state, i, o, h, l, c, commit)
    return 0


_ERRORS = {
    1: "symbol index out of range",
    2: "NaN price",
    3: "tick older than the symbol's forming candle (ticks must arrive in time order)",
}


class IndicatorBank:
    """Return EMA, RSI, ATR and Supertrend for N symbols, fused, updated on every tick.

    All state lives in one ``(N, 37)`` float64 array (per symbol: the four indicators' states, the
    forming candle, its time edges and the latest values), and each tick is one numba call
    that folds the trade into the symbol's forming candle, commits the previous
    candle when a new bucket starts (session-aligned like
    :func:`velox.calendar.bucket_start_ns`) and previews all four indicators on the forming
    candle.
    :attr:`values` (N × 5: ``ema, rsi, atr, supertrend, direction``) always holds each symbol's
    latest values. The steps are the very ones behind :func:`velox.indicators.ema` & co., so a
    bank fed every tick ends with the batch values of the closed candles.

    Parameters
    ----------
    symbols
        Number of symbols; ticks name a symbol by its position ``0 … symbols − 1``.
    timeframe
        Candle length, one of :data:`velox.calendar.TIMEFRAMES` except ``"1d"``.
    ema_window, rsi_window, atr_window, supertrend_window, multiplier
        Indicator parameters.

    Examples
    --------
    >>> import pandas as pd
    >>> bank = IndicatorBank(symbols=2, ema_window=2)
    >>> t0 = pd.Timestamp("2024-04-01 09:15", tz="Asia/Kolkata").value
    >>> bank.on_tick(0, 100.0, t0)
    >>> bank.on_tick(0, 102.0, t0 + 60_000_000_000)  # 09:16: the 09:15 candle closes
    >>> float(bank.values[0, 0])  # EMA(2) preview over closes 100 and 102
    101.0
    """

    __slots__ = ("_state", "_params")

    def __init__(
        self,
        symbols: int,
        timeframe: str = "1m",
        ema_window: int = 20,
        rsi_window: int = 14,
        atr_window: int = 14,
        supertrend_window: int = 10,
        multiplier: float = 3.0,
    ) -> None:
        if int(symbols) < 1:
            raise ValueError(f"symbols must be >= 1, got {symbols}")
        minutes = TIMEFRAMES.get(timeframe, 0)
        if not minutes:
            raise ValueError(f"timeframe {timeframe!r} is not an intraday timeframe; use 1m…1h")
        self._params = {
            "symbols": int(symbols),
            "timeframe": timeframe,
            "ema_window": ema_window,
            "rsi_window": rsi_window,
            "atr_window": atr_window,
            "supertrend_window": supertrend_window,
            "multiplier": multiplier,
        }
        self._state = np.tile(self._initial_row(), (int(symbols), 1))

    def _initial_row(self) -> np.ndarray:
        p = self._params
        row = np.concatenate(
            [
                init_state(SPECS["ema"], {"window": p["ema_window"]})[0],
                init_state(SPECS["rsi"], {"window": p["rsi_window"]})[0],
                init_state(SPECS["atr"], {"window": p["atr_window"]})[0],
                init_state(
                    SPECS["supertrend"],
                    {"window": p["supertrend_window"], "multiplier": p["multiplier"]},
                )[0],
                [0.0, 0.0, 0.0, 0.0, 0.0],  # has-forming-candle flag, o, h, l, c
                [math.nan] * len(BANK_COLUMNS),  # latest outputs
                [0.0, 0.0],  # forming candle's start and end (int64 bits)
                [float(TIMEFRAMES[p["timeframe"]] * _MINUTE_NS)],  # candle length, ns
            ]
        )
        row[_EDGE:_LENGTH].view(np.int64)[:] = _NO_CANDLE
        return row

    def __getstate__(self) -> dict[str, object]:
        return {"params": self._params, "state": self._state}

    def __setstate__(self, data: dict[str, object]) -> None:
        self.__init__(**data["params"])  # type: ignore[misc, arg-type]
        state = np.array(data["state"], dtype=np.float64)
        _check_snapshot("IndicatorBank", (state,), (self._state,))
        self._state = state

    @property
    def values(self) -> np.ndarray:
        """Return the latest ``(N, 5)`` values: ema, rsi, atr, supertrend, direction (a view)."""
        return self._state[:, _O : _O + len(BANK_COLUMNS)]

    def on_tick(self, symbol: int, price: float, ts_ns: int) -> None:
        """Fold a trade at ``price`` (UTC epoch ns ``ts_ns``) into ``symbol``'s forming candle.

        Updates :attr:`values` for that symbol; commits the previous candle first if the tick
        starts a new one.
        """
        code = _bank_tick(self._state, symbol, price, ts_ns)
        if code:
            raise ValueError(f"IndicatorBank.on_tick(symbol={symbol}): {_ERRORS[code]}")

    def seed(self, symbol: int, history: object) -> None:
        """Warm ``symbol`` up from closed candles, one batch-runner call per indicator.

        ``history`` is a DataFrame with ``high``/``low``/``close`` columns, oldest first, all
        closed. The symbol's state is replaced (seed before its first tick) and :attr:`values`
        shows the last candle's values. A NaN raises ``ValueError``.
        """
        if not 0 <= int(symbol) < self._state.shape[0]:
            raise ValueError(f"IndicatorBank.seed: {_ERRORS[1]} ({symbol})")
        cols, _ = _columns(SPECS["atr"], history)
        h, lo, c = cols["high"], cols["low"], cols["close"]
        zeros = np.zeros_like(c)
        out = np.full((2, max(c.shape[0], 1)), np.nan)
        row = self._initial_row()
        values: list[float] = []
        parts = (
            ("ema", _E, _R, 1),
            ("rsi", _R, _A, 1),
            ("atr", _A, _S, 1),
            ("supertrend", _S, _F, 2),
        )
        for name, first, last, width in parts:
            view = row[first:last]  # the runner leaves its final state in this view
            inputs = (c, h, lo, c, zeros, zeros)
            bad = SPECS[name].run_batch(view, out[:1, :1], inputs, 0, out)
            if bad >= 0:
                raise ValueError(f"IndicatorBank.seed: NaN input at row {bad}; fill or drop it")
            values.extend(out[:width, -1].tolist())
        row[_O : _O + len(BANK_COLUMNS)] = values
        self._state[symbol] = row  # no forming candle: the next tick starts one

    def update(self, symbol: int, open: float, high: float, low: float, close: float) -> None:  # noqa: A002
        """Commit a closed candle for ``symbol`` (when candles come from elsewhere)."""
        code = _bank_check_bar(self._state, symbol, open, high, low, close, True)
        if code:
            raise ValueError(f"IndicatorBank.update(symbol={symbol}): {_ERRORS[code]}")

    def preview(self, symbol: int, open: float, high: float, low: float, close: float) -> None:  # noqa: A002
        """Preview a forming candle for ``symbol``; only :attr:`values` changes."""
        code = _bank_check_bar(self._state, symbol, open, high, low, close, False)
        if code:
            raise ValueError(f"IndicatorBank.preview(symbol={symbol}): {_ERRORS[code]}")

    def replay(
        self, symbols: np.ndarray, prices: np.ndarray, ts_ns: np.ndarray, record: bool = False
    ) -> np.ndarray | None:
        """Feed a whole array of ticks in one call (backtests, warm restarts).

        Returns, if ``record``, the ``(ticks, 5)`` values after each tick.
        """
        sym, px, ts = (
            read_only(np.ascontiguousarray(x, dtype=t))
            for x, t in ((symbols, np.int64), (prices, np.float64), (ts_ns, np.int64))
        )  # read-only views whatever the caller passes: one compiled replay kernel
        if not (sym.shape == px.shape == ts.shape):
            raise ValueError("symbols, prices and ts_ns must have the same length")
        rec = np.empty((px.shape[0] if record else 0, len(BANK_COLUMNS)))
        bad = _bank_replay(self._state, sym, px, ts, rec)
        if bad >= 0:
            code = _bank_tick(self._state, sym[bad], px[bad], ts[bad])
            raise ValueError(f"IndicatorBank.replay: tick {bad}: {_ERRORS.get(code, 'invalid')}")
        return rec if record else None


__all__ = [
    "ADX",
    "ATR",
    "BANK_COLUMNS",
    "CCI",
    "DEMA",
    "EMA",
    "MACD",
    "MFI",
    "NATR",
    "OBV",
    "PSAR",
    "ROC",
    "RSI",
    "SMA",
    "TEMA",
    "VWAP",
    "WMA",
    "BBands",
    "BarLike",
    "Donchian",
    "HeikinAshi",
    "Ichimoku",
    "IndicatorBank",
    "Keltner",
    "Pivots",
    "StochRSI",
    "Stoch",
    "StreamingIndicator",
    "Supertrend",
    "WillR",
]
