"""The indicator registry: parameters → initial state, and the shared array/pandas driver.

One :class:`Spec` per indicator ties the numba step (via its generated runner and streaming entry
point) to the inputs it reads, its outputs and how its initial state is built from parameters.
The batch functions and the streaming classes both go through here, so a parameter is validated
and a state is laid out in exactly one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from velox.calendar import IST_OFFSET_NS
from velox.indicators import _runners

_DAY_NS = 86_400_000_000_000
FIELDS = ("open", "high", "low", "close", "volume")


class MACDLines(NamedTuple):
    """MACD line, signal line and histogram (line − signal)."""

    macd: object
    signal: object
    histogram: object


class Bands(NamedTuple):
    """An upper/middle/lower envelope (Bollinger, Donchian, Keltner)."""

    upper: object
    middle: object
    lower: object


class Oscillator(NamedTuple):
    """A %K line and its %D smoothing (stochastic, stochastic RSI)."""

    k: object
    d: object


class SupertrendLines(NamedTuple):
    """The Supertrend line and its direction (+1 up-trend: line below price; −1 down-trend)."""

    supertrend: object
    direction: object


class Candles(NamedTuple):
    """Heikin-Ashi open, high, low, close."""

    open: object
    high: object
    low: object
    close: object


class IchimokuLines(NamedTuple):
    """Ichimoku lines; the spans are already displaced, so row t holds the cloud in force at t."""

    tenkan: object
    kijun: object
    senkou_a: object
    senkou_b: object


class ClassicPivots(NamedTuple):
    """Classic floor pivots from the previous session's high, low and close."""

    pivot: object
    r1: object
    r2: object
    r3: object
    s1: object
    s2: object
    s3: object


class CamarillaPivots(NamedTuple):
    """Camarilla levels from the previous session's high, low and close."""

    r1: object
    r2: object
    r3: object
    r4: object
    s1: object
    s2: object
    s3: object
    s4: object


@dataclass(frozen=True, slots=True)
class Spec:
    """How one indicator is wired: inputs read, outputs, state layout and kernels."""

    name: str
    inputs: tuple[str, ...]
    init: Callable[..., tuple[np.ndarray, np.ndarray]]
    result: type | None = None
    sessions: bool = False
    width: int = 0  # outputs the step writes, when more than ``result`` has fields

    @property
    def run(self) -> Callable[..., int]:
        """Return the batch runner (numba)."""
        return getattr(_runners, f"run_{self.name}")

    def run_batch(
        self,
        state: np.ndarray,
        ring: np.ndarray,
        inputs: tuple[np.ndarray, ...],
        start: int,
        out: np.ndarray,
    ) -> int:
        """Run the batch runner over ``inputs`` (open, high, low, close, volume, session key).

        The inputs go in as read-only views (:func:`read_only`), so each runner compiles once
        rather than once per mix of writable and read-only inputs. Returns the runner's result.
        """
        return self.run(state, ring, *(read_only(array) for array in inputs), start, out)

    @property
    def stream(self) -> Callable[..., None]:
        """Return the single-bar streaming entry point (numba)."""
        return getattr(_runners, f"stream_{self.name}")

    @property
    def stream1(self) -> Callable[..., None]:
        """Return the single-value streaming entry point (numba), for single-input indicators."""
        return getattr(_runners, f"stream1_{self.name}")

    @property
    def n_outputs(self) -> int:
        """Return how many values the step produces per bar."""
        if self.width:
            return self.width
        return 1 if self.result is None else len(self.result._fields)


def read_only(array: np.ndarray) -> np.ndarray:
    """Return a read-only view of ``array``, so a kernel sees one array type whatever it is fed.

    numba compiles a kernel once per combination of writable and read-only array arguments
    (pandas 3 hands out read-only arrays, numpy writable ones): passing every input read-only
    keeps it to one compilation.
    """
    view = array.view()
    view.flags.writeable = False
    return view


def window(value: object, name: str = "window") -> int:
    """Return ``value`` as a positive int window length, or raise ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}; use a positive number of bars")
    return int(value)


def positive(value: object, name: str) -> float:
    """Return ``value`` as a finite float > 0, or raise ``ValueError`` naming it."""
    number = float(value)  # type: ignore[arg-type]
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def _state(
    values: list[float],
    rows: int = 1,
    window: int = 0,
    sentinels: tuple[tuple[int, float], ...] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Return a step's initial ``(state, ring)``.

    The state array is the step's tuple plus one slot for the number of committed bars (the
    ``j`` the step is called with). The ring is ``rows`` × the smallest power of two above
    ``window`` (steps address it by ``position & (width - 1)``), zero-filled except the rows in
    ``sentinels`` (the ∓inf suffix rows of the windowed max/min).
    """
    ring = np.zeros((rows, 1 << int(window).bit_length()), dtype=np.float64)
    for row, value in sentinels:
        ring[row] = value
    return np.array([*values, 0.0], dtype=np.float64), ring


def _k(n: int) -> float:
    return 2.0 / (n + 1)


def _init_sma(window_: int = 30) -> tuple[np.ndarray, np.ndarray]:
    n = window(window_)
    return _state([n, 0], 1, n)


def _init_ema(window_: int = 30) -> tuple[np.ndarray, np.ndarray]:
    n = window(window_)
    return _state([n, _k(n), 0, math.nan])


def _init_wma(window_: int = 30) -> tuple[np.ndarray, np.ndarray]:
    n = window(window_)
    return _state([n, 0, 0, 0], 1, n)


def _init_dema(window_: int = 30) -> tuple[np.ndarray, np.ndarray]:
    n = window(window_)
    return _state([n, _k(n)] + [0, math.nan] * 2)


def _init_tema(window_: int = 30) -> tuple[np.ndarray, np.ndarray]:
    n = window(window_)
    return _state([n, _k(n)] + [0, math.nan] * 3)


def _init_rsi(window_: int = 14) -> tuple[np.ndarray, np.ndarray]:
    return _state([window(window_), math.nan, 0, 0])


def _init_macd(
    fast_window: int = 12, slow_window: int = 26, signal_window: int = 9
) -> tuple[np.ndarray, np.ndarray]:
    fast = window(fast_window, "fast_window")
    slow = window(slow_window, "slow_window")
    sig = window(signal_window, "signal_window")
    if slow < fast:  # TA-Lib swaps them too
        fast, slow = slow, fast
    return _state([fast, slow, sig, _k(fast), _k(slow), _k(sig)] + [0, math.nan] * 3)


def _init_roc(window_: int = 10) -> tuple[np.ndarray, np.ndarray]:
    n = window(window_)
    return _state([n], 1, n)


def _init_cci(window_: int = 14) -> tuple[np.ndarray, np.ndarray]:
    n = window(window_)
    return _state([n], 1, n)


#: Suffix rows of a windowed max (row 2) and min (row 3) over the high (0) and low (1) rows.
_HIGH_LOW_SENTINELS = ((2, -math.inf), (3, math.inf))


def _init_extreme_window(window_: int) -> tuple[np.ndarray, np.ndarray]:
    n = window(window_)
    return _state([n, 0, -math.inf, math.inf], 4, n, _HIGH_LOW_SENTINELS)


def _init_willr(window_: int = 14) -> tuple[np.ndarray, np.ndarray]:
    return _init_extreme_window(window_)


def _init_donchian(window_: int = 20) -> tuple[np.ndarray, np.ndarray]:
    return _init_extreme_window(window_)


def _init_stoch(
    k_window: int = 5, k_smooth: int = 3, d_window: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    fk = window(k_window, "k_window")
    sk = window(k_smooth, "k_smooth")
    sd = window(d_window, "d_window")
    values = [fk, sk, sd, 0, -math.inf, math.inf, 0, 0]
    return _state(values, 6, max(fk, sk, sd), _HIGH_LOW_SENTINELS)


def _init_stochrsi(
    window_: int = 14, k_window: int = 5, d_window: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    n = window(window_)
    fk = window(k_window, "k_window")
    fd = window(d_window, "d_window")
    values = [n, math.nan, 0, 0, fk, fd, 0, -math.inf, math.inf, 0]
    return _state(values, 4, max(fk, fd), ((1, -math.inf), (2, math.inf)))


def _init_mfi(window_: int = 14) -> tuple[np.ndarray, np.ndarray]:
    n = window(window_)
    return _state([n, math.nan], 2, n)


def _init_obv() -> tuple[np.ndarray, np.ndarray]:
    return _state([math.nan, 0])


def _init_atr(window_: int = 14) -> tuple[np.ndarray, np.ndarray]:
    return _state([window(window_), math.nan, 0, math.nan])


def _init_bbands(
    window_: int = 20, upper_std: float = 2.0, lower_std: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    n = window(window_)
    return _state([n, float(upper_std), float(lower_std), 0, math.nan, 0, 0], 1, n)


def _init_adx(window_: int = 14) -> tuple[np.ndarray, np.ndarray]:
    n = window(window_)
    return _state([n] + [math.nan] * 3 + [0, 0, 0, 0, math.nan])


def _init_psar(acceleration: float = 0.02, maximum: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    acc = positive(acceleration, "acceleration")
    mx = positive(maximum, "maximum")
    acc = min(acc, mx)  # TA-Lib clamps the step to the maximum
    return _state([acc, mx, 0, 0, 0, acc, math.nan, math.nan])


def _init_supertrend(window_: int = 10, multiplier: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    n = window(window_)
    m = positive(multiplier, "multiplier")
    return _state([n, m, math.nan, 0, math.nan, math.nan, math.nan, math.nan])


def _init_vwap() -> tuple[np.ndarray, np.ndarray]:
    return _state([math.nan, 0, 0])


def _init_keltner(
    window_: int = 20, atr_window: int = 10, multiplier: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    n = window(window_)
    an = window(atr_window, "atr_window")
    m = positive(multiplier, "multiplier")
    return _state([n, _k(n), m, 0, math.nan, an, math.nan, 0, math.nan])


def _init_heikin_ashi() -> tuple[np.ndarray, np.ndarray]:
    return _state([math.nan, math.nan])


def _init_ichimoku(
    tenkan_window: int = 9, kijun_window: int = 26, senkou_window: int = 52, displacement: int = 26
) -> tuple[np.ndarray, np.ndarray]:
    nt = window(tenkan_window, "tenkan_window")
    nk = window(kijun_window, "kijun_window")
    nb = window(senkou_window, "senkou_window")
    disp = window(displacement, "displacement")
    # rows: high, low, then a suffix max and min row per window, then the raw spans
    sentinels = tuple((row, -math.inf if row % 2 == 0 else math.inf) for row in range(2, 8))
    values = [nt, nk, nb, disp, 0, 0, 0] + [-math.inf, math.inf] * 3
    return _state(values, 10, max(nt, nk, nb, disp), sentinels)


def _init_pivots(method: str = "classic") -> tuple[np.ndarray, np.ndarray]:
    codes = {"classic": 0.0, "camarilla": 1.0}
    if method not in codes:
        raise ValueError(f"unknown pivot method {method!r}; use 'classic' or 'camarilla'")
    return _state([codes[method]] + [math.nan] * 7)


SPECS: dict[str, Spec] = {
    s.name: s
    for s in [
        Spec("sma", ("close",), _init_sma),
        Spec("ema", ("close",), _init_ema),
        Spec("wma", ("close",), _init_wma),
        Spec("dema", ("close",), _init_dema),
        Spec("tema", ("close",), _init_tema),
        Spec("rsi", ("close",), _init_rsi),
        Spec("macd", ("close",), _init_macd, MACDLines),
        Spec("roc", ("close",), _init_roc),
        Spec("bbands", ("close",), _init_bbands, Bands),
        Spec("stochrsi", ("close",), _init_stochrsi, Oscillator),
        Spec("cci", ("high", "low", "close"), _init_cci),
        Spec("willr", ("high", "low", "close"), _init_willr),
        Spec("stoch", ("high", "low", "close"), _init_stoch, Oscillator),
        Spec("atr", ("high", "low", "close"), _init_atr),
        Spec("natr", ("high", "low", "close"), _init_atr),
        Spec("adx", ("high", "low", "close"), _init_adx),
        Spec("psar", ("high", "low"), _init_psar),
        Spec("mfi", ("high", "low", "close", "volume"), _init_mfi),
        Spec("obv", ("close", "volume"), _init_obv),
        Spec("supertrend", ("high", "low", "close"), _init_supertrend, SupertrendLines),
        Spec("vwap", ("high", "low", "close", "volume"), _init_vwap, sessions=True),
        Spec("donchian", ("high", "low"), _init_donchian, Bands),
        Spec("keltner", ("high", "low", "close"), _init_keltner, Bands),
        Spec("heikin_ashi", ("open", "high", "low", "close"), _init_heikin_ashi, Candles),
        Spec("ichimoku", ("high", "low"), _init_ichimoku, IchimokuLines),
        Spec("pivots", ("high", "low", "close"), _init_pivots, ClassicPivots, True, 8),
    ]
}


def init_state(spec: Spec, params: dict[str, object]) -> tuple[np.ndarray, np.ndarray]:
    """Return a fresh ``(state, ring)`` for ``spec`` from user-facing keyword parameters."""
    kwargs = {("window_" if k == "window" else k): v for k, v in params.items()}
    try:
        return spec.init(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{spec.name}: {exc}".replace("window_", "window")) from None


def session_keys(timestamps: object, n: int) -> np.ndarray:
    """Return the IST session date of each timestamp as a float (days since the epoch).

    ``timestamps`` is a tz-aware DatetimeIndex (or anything ``pandas.DatetimeIndex`` accepts) or
    int64 epoch nanoseconds (UTC). They must be strictly increasing: a duplicate or out-of-order
    timestamp would silently split or merge sessions.
    """
    if isinstance(timestamps, np.ndarray) and timestamps.dtype.kind in "iu":
        ns = timestamps.astype(np.int64)
    else:
        import pandas as pd

        index = pd.DatetimeIndex(timestamps)
        if index.tz is None:
            raise ValueError("timestamps are naive; localise them to Asia/Kolkata first")
        ns = index.tz_convert("UTC").as_unit("ns").asi8
    if ns.shape != (n,):
        raise ValueError(f"got {ns.shape[0]} timestamps for {n} rows; pass one per row")
    check_increasing(ns)
    return ((ns + IST_OFFSET_NS) // _DAY_NS).astype(np.float64)


def check_increasing(ns: np.ndarray) -> None:
    """Raise ``ValueError`` naming the first duplicate or out-of-order timestamp in ``ns``."""
    if ns.size > 1:
        steps = np.diff(ns)
        if (steps <= 0).any():
            i = int(np.argmax(steps <= 0)) + 1
            kind = "duplicate" if steps[i - 1] == 0 else "out-of-order"
            raise ValueError(
                f"{kind} timestamp at row {i}; sort the data and drop duplicates "
                "(e.g. df.sort_index(); df[~df.index.duplicated()]) first"
            )


def _as_2d(name: str, data: object) -> tuple[np.ndarray, object]:
    """Return ``data`` as a float64 (rows, columns) array and the pandas object it came from."""
    import sys

    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(data, pd.Series | pd.DataFrame):
        values = data.to_numpy(dtype=np.float64, na_value=np.nan)
        return (values.reshape(-1, 1) if values.ndim == 1 else values), data
    values = np.asarray(data, dtype=np.float64)
    if values.ndim == 1:
        return values.reshape(-1, 1), None
    if values.ndim == 2:
        return values, None
    raise ValueError(
        f"{name} must be 1-D or 2-D (rows = bars, columns = symbols), got {values.ndim}-D"
    )


def compute(
    spec: Spec,
    arrays: dict[str, object],
    params: dict[str, object],
    timestamps: object = None,
    result: type | None = None,
) -> object:
    """Run ``spec`` over the inputs and return outputs shaped and typed like the inputs.

    Leading rows where any input is NaN (a symbol that listed later) stay NaN and the warm-up
    starts at the first complete row; a NaN after that raises ``ValueError`` naming the column
    and row, because silently carrying it through a recursive indicator would poison every later
    value.
    """
    fresh = init_state(spec, params)  # validates the parameters before touching data
    values: dict[str, np.ndarray] = {}
    template = None
    one_d = False
    for field in spec.inputs:
        arr, pandas_obj = _as_2d(field, arrays[field])
        one_d = pandas_obj is None and np.ndim(arrays[field]) == 1
        if values and arr.T.shape != next(iter(values.values())).shape:
            first = next(iter(values))
            raise ValueError(
                f"{spec.name}: {field} has shape {arr.shape}, expected "
                f"{values[first].T.shape} like {first}"
            )
        if pandas_obj is not None:
            if template is None:
                template = pandas_obj
            elif not pandas_obj.index.equals(template.index):
                raise ValueError(f"{spec.name}: {field} has a different index; align inputs first")
        values[field] = np.ascontiguousarray(arr.T)  # one contiguous row per symbol
    rows = next(iter(values.values())).shape[1]
    cols = next(iter(values.values())).shape[0]
    index = getattr(template, "index", None)
    if _is_datetime_index(index) and timestamps is None:
        check_increasing(index.asi8)
    if spec.sessions:
        source = timestamps if timestamps is not None else index
        if source is None:
            if spec.name == "vwap":
                raise ValueError(
                    "vwap needs timestamps to find sessions: pass pandas data with a "
                    "DatetimeIndex or timestamps=..."
                )
            keys = np.arange(rows, dtype=np.float64)  # no timestamps: each row is a session
        else:
            keys = session_keys(source, rows)
    else:
        keys = None  # the step ignores its session argument: any input row will do
    k = spec.n_outputs
    out = np.empty((cols, k, rows))
    some = next(iter(values.values()))
    for j in range(cols):
        ins = {f: (values[f][j] if f in values else some[j]) for f in FIELDS}
        ins["time"] = some[j] if keys is None else keys
        start = _first_complete_row([values[f][j] for f in spec.inputs])
        out[j, :, :start] = np.nan
        st, ring = fresh if j == 0 else init_state(spec, params)
        inputs = tuple(ins[f] for f in (*FIELDS, "time"))
        bad = spec.run_batch(st, ring, inputs, start, out[j])
        if bad >= 0:
            where = f"column {template.columns[j]!r}" if _is_frame(template) else f"column {j}"
            raise ValueError(
                f"{spec.name}: NaN input at row {bad} ({where}) after the series started; "
                "fill or drop it first (e.g. .ffill() or .dropna())"
            )
    return _wrap(spec, out, template, one_d, result or spec.result)


def _first_complete_row(columns: list[np.ndarray]) -> int:
    """Return the first row where every input is non-NaN (``len`` if there is none)."""
    rows = columns[0].shape[0]
    if rows and all(col[0] == col[0] for col in columns):
        return 0  # the common case, without array temporaries
    probe = 1
    while True:
        upto = min(rows, probe)
        ok = np.ones(upto, dtype=bool)
        for col in columns:
            ok &= ~np.isnan(col[:upto])
        if ok.any():
            return int(np.argmax(ok))
        if upto == rows:
            return rows
        probe *= 8


def _is_datetime_index(index: object) -> bool:
    """Return True for a pandas DatetimeIndex (the only index whose order Velox checks)."""
    import sys

    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(index, pd.DatetimeIndex)


def _is_frame(obj: object) -> bool:
    return obj is not None and hasattr(obj, "columns")


def _wrap(
    spec: Spec, out: np.ndarray, template: object, one_d: bool, result: type | None
) -> object:
    """Return ``out`` (columns, outputs, rows) as arrays/Series/DataFrames like ``template``."""
    singles: list[object] = []
    for i in range(1 if result is None else len(result._fields)):
        block = out[:, i, :]
        if template is None:
            singles.append(block[0] if one_d else block.T.copy())
        elif _is_frame(template):
            frame = template
            singles.append(
                frame._constructor(block.T.copy(), index=frame.index, columns=frame.columns)
            )
        else:
            series = template
            singles.append(series._constructor(block[0], index=series.index, name=spec.name))
    if result is None:
        return singles[0]
    return result(*singles)
