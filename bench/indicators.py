"""Benchmark Velox indicators against TA-Lib, pandas, vectorbt and talipp in one run.

1. **Batch.** Every indicator on ``--bars`` bars (default 1,000,000) of a seeded random-walk
   OHLCV series (prices on the 0.05 tick grid). Velox, TA-Lib, a straightforward pandas
   version where one exists, vectorbt's built-in indicator where it has one, and talipp on
   ``--talipp-bars`` (default 20,000) extrapolated linearly to ``--bars`` (said so in the table).
   Each timing is the best of ``--repeat`` runs after a warm-up call, Velox and TA-Lib calls
   interleaved so that both see the same load; ratios are against TA-Lib (or against Velox
   where TA-Lib lacks the indicator).
2. **JIT compile.** First call of every batch function in a fresh process with an empty numba
   cache (cold compile), and again in a second process with that cache (``cache=True`` load).
3. **Streaming live path.** EMA(20) + RSI(14) + ATR(14) + Supertrend(10, 3) for 100 symbols,
   updated on every tick of the symbols' forming 1-minute candles (about 30 ticks per candle).
   Velox ``IndicatorBank.on_tick`` (one numba call per tick, per-tick latency measured with
   ``perf_counter_ns``), talipp (``update`` the forming bar, ``add`` a new one), a naive
   recompute of the last 500 bars on every tick (TA-Lib EMA/RSI/ATR + Velox's batch Supertrend,
   TA-Lib having none), and a plain-Python O(1) implementation of the same four recurrences.
4. **Replay path.** ``IndicatorBank.replay`` over ``--replay-ticks`` ticks in one call.

Run: ``python bench/indicators.py [--bars 1000000] [--repeat 5] [--ticks 300000]``.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import talib

import velox.indicators as vi
from velox.indicators.streaming import IndicatorBank

MINUTE_NS = 60_000_000_000


def make_bars(n: int, seed: int = 42) -> dict[str, np.ndarray]:
    """Return a seeded random-walk OHLCV series on the 0.05 tick grid."""
    rng = np.random.default_rng(seed)
    close = np.round((10_000 + np.cumsum(rng.normal(0, 2.0, n))) / 0.05) * 0.05
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) + np.round(rng.exponential(1.5, n) / 0.05) * 0.05
    low = np.minimum(open_, close) - np.round(rng.exponential(1.5, n) / 0.05) * 0.05
    volume = rng.integers(100, 100_000, n).astype(np.float64)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def best(func: Callable[[], object], repeat: int) -> float:
    """Return the best wall time of ``repeat`` calls after one warm-up call."""
    return best_of_each([func], repeat)[0]


def best_of_each(funcs: list[Callable[[], object]], repeat: int) -> list[float]:
    """Return each function's best wall time of ``repeat`` calls, the calls interleaved.

    Interleaving (a, b, a, b, …) puts both sides of a ratio under the same load, which matters on
    a machine shared with other jobs: a burst then slows both instead of one.
    """
    for func in funcs:
        func()
    times: list[list[float]] = [[] for _ in funcs]
    for _ in range(repeat):
        for func, spent in zip(funcs, times, strict=True):
            start = time.perf_counter()
            func()
            spent.append(time.perf_counter() - start)
    return [min(spent) for spent in times]


# ---------------------------------------------------------------- pandas reference versions


def pd_rsi(c: pd.Series, n: int) -> pd.Series:
    d = c.diff()
    up = d.clip(lower=0).ewm(alpha=1 / n, adjust=False).mean()
    dn = (-d.clip(upper=0)).ewm(alpha=1 / n, adjust=False).mean()
    return 100 - 100 / (1 + up / dn)


def pd_atr(h: pd.Series, lo: pd.Series, c: pd.Series, n: int) -> pd.Series:
    pc = c.shift()
    tr = pd.concat([h - lo, (h - pc).abs(), (lo - pc).abs()], axis=1).max(axis=1)
    return tr.ewm(alpha=1 / n, adjust=False).mean()


def pandas_cases(d: dict[str, pd.Series]) -> dict[str, Callable[[], object]]:
    h, lo, c, v = d["high"], d["low"], d["close"], d["volume"]
    tp = (h + lo + c) / 3
    day = pd.Series(np.arange(len(c)) // 375)
    return {
        "sma": lambda: c.rolling(30).mean(),
        "ema": lambda: c.ewm(span=30, adjust=False).mean(),
        "wma": lambda: c.rolling(30).apply(lambda w: np.dot(w, np.arange(1, 31)) / 465, raw=True),
        "dema": lambda: (
            2 * c.ewm(span=30, adjust=False).mean()
            - c.ewm(span=30, adjust=False).mean().ewm(span=30, adjust=False).mean()
        ),
        "rsi": lambda: pd_rsi(c, 14),
        "macd": lambda: c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean(),
        "bbands": lambda: (c.rolling(20).mean(), c.rolling(20).std(ddof=0)),
        "roc": lambda: c.pct_change(10) * 100,
        "atr": lambda: pd_atr(h, lo, c, 14),
        "natr": lambda: pd_atr(h, lo, c, 14) / c * 100,
        "willr": lambda: (
            -100 * (h.rolling(14).max() - c) / (h.rolling(14).max() - lo.rolling(14).min())
        ),
        "stoch": lambda: (
            (100 * (c - lo.rolling(5).min()) / (h.rolling(5).max() - lo.rolling(5).min()))
            .rolling(3)
            .mean()
            .rolling(3)
            .mean()
        ),
        "cci": lambda: (
            (tp - tp.rolling(14).mean())
            / (0.015 * tp.rolling(14).apply(lambda w: np.abs(w - w.mean()).mean(), raw=True))
        ),
        "obv": lambda: (np.sign(c.diff()).fillna(0) * v).cumsum(),
        "mfi": lambda: tp,  # replaced below by a proper version
        "vwap": lambda: (tp * v).groupby(day).cumsum() / v.groupby(day).cumsum(),
        "donchian": lambda: (h.rolling(20).max(), lo.rolling(20).min()),
        "keltner": lambda: c.ewm(span=20, adjust=False).mean() + 2 * pd_atr(h, lo, c, 10),
        "ichimoku": lambda: (
            (h.rolling(9).max() + lo.rolling(9).min()) / 2,
            (h.rolling(26).max() + lo.rolling(26).min()) / 2,
            ((h.rolling(52).max() + lo.rolling(52).min()) / 2).shift(26),
        ),
        "pivots": lambda: ((h + lo + c) / 3).shift(),
    }


def pd_mfi(d: dict[str, pd.Series], n: int = 14) -> pd.Series:
    tp = (d["high"] + d["low"] + d["close"]) / 3
    flow = tp * d["volume"]
    diff = tp.diff()
    pos = flow.where(diff > 0, 0.0).rolling(n).sum()
    neg = flow.where(diff < 0, 0.0).rolling(n).sum()
    return 100 * pos / (pos + neg)


# ---------------------------------------------------------------- batch table


def velox_cases(b: dict[str, np.ndarray]) -> dict[str, Callable[[], object]]:
    o, h, lo, c, v = b["open"], b["high"], b["low"], b["close"], b["volume"]
    i = np.arange(len(c))
    open_ns = pd.Timestamp("2020-01-01 09:15", tz="Asia/Kolkata").value
    ts = open_ns + (i // 375) * 86_400_000_000_000 + (i % 375) * MINUTE_NS  # 375 bars a session
    return {
        "sma": lambda: vi.sma(c, 30),
        "ema": lambda: vi.ema(c, 30),
        "wma": lambda: vi.wma(c, 30),
        "dema": lambda: vi.dema(c, 30),
        "tema": lambda: vi.tema(c, 30),
        "rsi": lambda: vi.rsi(c, 14),
        "macd": lambda: vi.macd(c),
        "bbands": lambda: vi.bbands(c, 20),
        "roc": lambda: vi.roc(c, 10),
        "stochrsi": lambda: vi.stochrsi(c),
        "atr": lambda: vi.atr(h, lo, c, 14),
        "natr": lambda: vi.natr(h, lo, c, 14),
        "adx": lambda: vi.adx(h, lo, c, 14),
        "cci": lambda: vi.cci(h, lo, c, 14),
        "willr": lambda: vi.willr(h, lo, c, 14),
        "stoch": lambda: vi.stoch(h, lo, c),
        "mfi": lambda: vi.mfi(h, lo, c, v, 14),
        "obv": lambda: vi.obv(c, v),
        "psar": lambda: vi.psar(h, lo),
        "supertrend": lambda: vi.supertrend(h, lo, c, 10, 3.0),
        "vwap": lambda: vi.vwap(h, lo, c, v, timestamps=ts),
        "donchian": lambda: vi.donchian(h, lo, 20),
        "keltner": lambda: vi.keltner(h, lo, c),
        "heikin_ashi": lambda: vi.heikin_ashi(o, h, lo, c),
        "ichimoku": lambda: vi.ichimoku(h, lo),
        "pivots": lambda: vi.pivots(h, lo, c),
    }


def talib_cases(b: dict[str, np.ndarray]) -> dict[str, Callable[[], object]]:
    h, lo, c, v = b["high"], b["low"], b["close"], b["volume"]
    return {
        "sma": lambda: talib.SMA(c, 30),
        "ema": lambda: talib.EMA(c, 30),
        "wma": lambda: talib.WMA(c, 30),
        "dema": lambda: talib.DEMA(c, 30),
        "tema": lambda: talib.TEMA(c, 30),
        "rsi": lambda: talib.RSI(c, 14),
        "macd": lambda: talib.MACD(c),
        "bbands": lambda: talib.BBANDS(c, 20),
        "roc": lambda: talib.ROC(c, 10),
        "stochrsi": lambda: talib.STOCHRSI(c),
        "atr": lambda: talib.ATR(h, lo, c, 14),
        "natr": lambda: talib.NATR(h, lo, c, 14),
        "adx": lambda: talib.ADX(h, lo, c, 14),
        "cci": lambda: talib.CCI(h, lo, c, 14),
        "willr": lambda: talib.WILLR(h, lo, c, 14),
        "stoch": lambda: talib.STOCH(h, lo, c),
        "mfi": lambda: talib.MFI(h, lo, c, v, 14),
        "obv": lambda: talib.OBV(c, v),
        "psar": lambda: talib.SAR(h, lo),
    }


def vectorbt_cases(b: dict[str, np.ndarray]) -> dict[str, Callable[[], object]]:
    import vectorbt as vbt

    h, lo, c, v = (pd.Series(b[k]) for k in ("high", "low", "close", "volume"))
    return {
        "sma": lambda: vbt.MA.run(c, 30).ma,
        "ema": lambda: vbt.MA.run(c, 30, ewm=True).ma,
        "rsi": lambda: vbt.RSI.run(c, 14).rsi,
        "macd": lambda: vbt.MACD.run(c).macd,
        "bbands": lambda: vbt.BBANDS.run(c, 20).upper,
        "atr": lambda: vbt.ATR.run(h, lo, c, 14).atr,
        "stoch": lambda: vbt.STOCH.run(h, lo, c, 5, 3).percent_d,
        "obv": lambda: vbt.OBV.run(c, v).obv,
    }


def talipp_run(name: str, b: dict[str, np.ndarray], n: int) -> float | None:
    """Return talipp's time to consume ``n`` bars of ``name`` (None if talipp lacks it)."""
    from talipp import indicators as tp
    from talipp.ohlcv import OHLCV

    close = b["close"][:n].tolist()
    bars = [
        OHLCV(o, h, lo, c, v)
        for o, h, lo, c, v in zip(
            *(b[k][:n].tolist() for k in ("open", "high", "low", "close", "volume")), strict=True
        )
    ]
    factories: dict[str, tuple[Callable[[], object], bool]] = {
        "sma": (lambda: tp.SMA(30), False),
        "ema": (lambda: tp.EMA(30), False),
        "wma": (lambda: tp.WMA(30), False),
        "dema": (lambda: tp.DEMA(30), False),
        "tema": (lambda: tp.TEMA(30), False),
        "rsi": (lambda: tp.RSI(14), False),
        "macd": (lambda: tp.MACD(12, 26, 9), False),
        "bbands": (lambda: tp.BB(20, 2.0), False),
        "roc": (lambda: tp.ROC(10), False),
        "stochrsi": (lambda: tp.StochRSI(14, 14, 5, 3), False),
        "atr": (lambda: tp.ATR(14), True),
        "natr": (lambda: tp.NATR(14), True),
        "adx": (lambda: tp.ADX(14, 14), True),
        "cci": (lambda: tp.CCI(14), True),
        "willr": (lambda: tp.Williams(14), True),
        "stoch": (lambda: tp.Stoch(5, 3), True),
        "obv": (lambda: tp.OBV(), True),
        "psar": (lambda: tp.ParabolicSAR(0.02, 0.02, 0.2), True),
        "supertrend": (lambda: tp.SuperTrend(10, 3), True),
        "vwap": (lambda: tp.VWAP(), True),
        "donchian": (lambda: tp.DonchianChannels(20), True),
        "keltner": (lambda: tp.KeltnerChannels(20, 10, 2, 2), True),
        "ichimoku": (lambda: tp.Ichimoku(26, 9, 52, 26, 26), True),
    }
    if name not in factories:
        return None
    factory, ohlc = factories[name]
    values = bars if ohlc else close
    start = time.perf_counter()
    ind = factory()
    for x in values:
        ind.add(x)
    return time.perf_counter() - start


def bench_batch(args: argparse.Namespace) -> list[dict[str, object]]:
    bars = make_bars(args.bars)
    series = {k: pd.Series(v) for k, v in bars.items()}
    ours, theirs = velox_cases(bars), talib_cases(bars)
    pandas_ = pandas_cases(series)
    pandas_["mfi"] = lambda: pd_mfi(series)
    vbt_ = vectorbt_cases(bars)
    rows = []
    for name, func in ours.items():
        if name in theirs:
            t_velox, t_talib = best_of_each([func, theirs[name]], args.repeat)
        else:
            t_velox, t_talib = best(func, args.repeat), None
        t_pandas = best(pandas_[name], 1) if name in pandas_ else None
        t_vbt = best(vbt_[name], 1) if name in vbt_ else None
        t_talipp = talipp_run(name, bars, args.talipp_bars)
        if t_talipp is not None:
            t_talipp *= args.bars / args.talipp_bars
        rows.append(
            {
                "indicator": name,
                "velox": t_velox,
                "talib": t_talib,
                "pandas": t_pandas,
                "vectorbt": t_vbt,
                "talipp": t_talipp,
            }
        )
        print_row(rows[-1], args.bars)
    return rows


def ns(t: float | None, n: int) -> str:
    return "—" if t is None else f"{t * 1e9 / n:,.1f}"


def ratio(t: float | None, base: float | None) -> str:
    return "—" if t is None or base is None else f"{t / base:,.2f}×"


def print_row(r: dict[str, object], n: int) -> None:
    base = r["talib"] or r["velox"]
    print(
        f"| {r['indicator']} | {ns(r['velox'], n)} | {ns(r['talib'], n)} | "
        f"{ratio(r['velox'], r['talib'])} | {ns(r['pandas'], n)} ({ratio(r['pandas'], base)}) | "
        f"{ns(r['vectorbt'], n)} ({ratio(r['vectorbt'], base)}) | "
        f"{ns(r['talipp'], n)} ({ratio(r['talipp'], base)}) |",
        flush=True,
    )


# ---------------------------------------------------------------- JIT compile time

_COMPILE_SNIPPET = """
import time, numpy as np
t0 = time.perf_counter()
import velox.indicators as vi
from velox.indicators.streaming import IndicatorBank
t_import = time.perf_counter() - t0
x = np.linspace(100, 110, 200); h = x + 1; l = x - 1; v = np.ones(200)
ts = np.arange(200) * 60_000_000_000 + 1_700_000_000_000_000_000
calls = {
 'sma': lambda: vi.sma(x), 'ema': lambda: vi.ema(x), 'wma': lambda: vi.wma(x),
 'dema': lambda: vi.dema(x), 'tema': lambda: vi.tema(x), 'rsi': lambda: vi.rsi(x),
 'macd': lambda: vi.macd(x), 'bbands': lambda: vi.bbands(x), 'roc': lambda: vi.roc(x),
 'stochrsi': lambda: vi.stochrsi(x), 'atr': lambda: vi.atr(h, l, x),
 'natr': lambda: vi.natr(h, l, x),
 'adx': lambda: vi.adx(h, l, x), 'cci': lambda: vi.cci(h, l, x), 'willr': lambda: vi.willr(h, l, x),
 'stoch': lambda: vi.stoch(h, l, x), 'mfi': lambda: vi.mfi(h, l, x, v), 'obv': lambda: vi.obv(x, v),
 'psar': lambda: vi.psar(h, l), 'supertrend': lambda: vi.supertrend(h, l, x),
 'vwap': lambda: vi.vwap(h, l, x, v, timestamps=ts), 'donchian': lambda: vi.donchian(h, l),
 'keltner': lambda: vi.keltner(h, l, x), 'heikin_ashi': lambda: vi.heikin_ashi(x, h, l, x),
 'ichimoku': lambda: vi.ichimoku(h, l), 'pivots': lambda: vi.pivots(h, l, x),
 'bank': lambda: IndicatorBank(2).on_tick(0, 1.0, 1_700_000_000_000_000_000),
}
total = 0.0
worst = ('', 0.0)
for name, f in calls.items():
    t = time.perf_counter(); f(); dt = time.perf_counter() - t
    total += dt
    worst = max(worst, (name, dt), key=lambda p: p[1])
print(f"{t_import:.3f} {total:.3f} {worst[0]} {worst[1]:.3f}")
"""


def bench_compile() -> tuple[list[float], list[float], str]:
    """Return (import, all first calls) seconds for a cold and a warm numba cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = []
        for _ in range(2):
            res = subprocess.run(
                [sys.executable, "-c", _COMPILE_SNIPPET],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            out.append(res.stdout.split())
    cold, warm = out
    return (
        [float(cold[0]), float(cold[1])],
        [float(warm[0]), float(warm[1])],
        f"{cold[2]} {cold[3]} s",
    )


# ---------------------------------------------------------------- streaming


def make_ticks(symbols: int, ticks: int, per_candle: int, seed: int = 7) -> tuple[np.ndarray, ...]:
    """Return (symbol, price, ts_ns) for ticks spread over the symbols' forming 1m candles."""
    rng = np.random.default_rng(seed)
    minutes = max(1, ticks // (symbols * per_candle))
    start = pd.Timestamp("2024-04-01 09:15", tz="Asia/Kolkata").value
    ts = start + np.sort(rng.integers(0, minutes * MINUTE_NS, ticks))
    sym = rng.integers(0, symbols, ticks)
    steps = rng.normal(0, 0.5, ticks)
    level = 1000 + 100 * np.arange(symbols)
    price = np.empty(ticks)
    walk = level.astype(float)
    for k in range(ticks):  # per-symbol random walk, on the tick grid
        walk[sym[k]] += steps[k]
        price[k] = round(walk[sym[k]] / 0.05) * 0.05
    return sym, price, ts


class PlainState:
    """The four recurrences for one symbol, written in plain Python (O(1) per tick)."""

    __slots__ = ("ecnt", "eacc", "ema", "pc", "rcnt", "gain", "loss", "acnt", "aacc", "atr",
                 "scnt", "sacc", "satr", "fu", "fl", "dir", "bucket",
                 "o", "h", "l", "c")  # fmt: skip

    def __init__(self) -> None:
        self.ecnt = self.rcnt = self.acnt = self.scnt = 0
        self.eacc = self.gain = self.loss = self.aacc = self.sacc = 0.0
        self.ema = self.atr = self.satr = self.pc = self.fu = self.fl = math.nan
        self.dir = 0.0
        self.bucket = -1
        self.o = self.h = self.l = self.c = 0.0

    def step(self, o: float, h: float, lo: float, c: float, commit: bool) -> tuple[float, ...]:
        ecnt, eacc, ema = self.ecnt, self.eacc, self.ema
        if ecnt < 20:
            eacc += c
            ecnt += 1
            ema = eacc / 20 if ecnt == 20 else math.nan
        else:
            ema = (c - ema) * (2 / 21) + ema
        rcnt, gain, loss, pc = self.rcnt, self.gain, self.loss, self.pc
        rsi = math.nan
        if rcnt > 0:
            d = c - pc
            if rcnt <= 14:
                gain, loss = (gain + d, loss) if d >= 0 else (gain, loss - d)
                if rcnt == 14:
                    gain, loss = gain / 14, loss / 14
            else:
                gain, loss = gain * 13, loss * 13
                gain, loss = (gain + d, loss) if d >= 0 else (gain, loss - d)
                gain, loss = gain / 14, loss / 14
            if rcnt >= 14:
                rsi = 100 * gain / (gain + loss) if gain + loss else 0.0
        acnt, aacc, atr = self.acnt, self.aacc, self.atr
        scnt, sacc, satr = self.scnt, self.sacc, self.satr
        if acnt > 0:
            tr = max(h - lo, abs(h - pc), abs(lo - pc))
            if acnt < 14:
                aacc += tr
            elif acnt == 14:
                atr = (aacc + tr) / 14
            else:
                atr = (atr * 13 + tr) / 14
            if scnt < 10:
                sacc += tr
            elif scnt == 10:
                satr = (sacc + tr) / 10
            else:
                satr = (satr * 9 + tr) / 10
        fu, fl, direction = self.fu, self.fl, self.dir
        line = math.nan
        if satr == satr:
            mid = (h + lo) / 2
            bu, bl = mid + 3 * satr, mid - 3 * satr
            if fu != fu:
                fu, fl, direction = bu, bl, -1.0
            else:
                fu = bu if (bu < fu or pc > fu) else fu
                fl = bl if (bl > fl or pc < fl) else fl
                if direction == -1.0:
                    direction = 1.0 if c > fu else -1.0
                else:
                    direction = -1.0 if c < fl else 1.0
            line = fl if direction == 1.0 else fu
        if commit:
            self.ecnt, self.eacc, self.ema = ecnt, eacc, ema
            self.rcnt, self.gain, self.loss, self.pc = rcnt + 1, gain, loss, c
            self.acnt, self.aacc, self.atr = acnt + 1, aacc, atr
            self.scnt, self.sacc, self.satr = scnt + 1, sacc, satr
            self.fu, self.fl, self.dir = fu, fl, direction
        return ema, rsi, atr, line, direction

    def on_tick(self, price: float, ts_ns: int) -> tuple[float, ...]:
        bucket = ts_ns // MINUTE_NS
        if bucket != self.bucket:
            if self.bucket >= 0:
                self.step(self.o, self.h, self.l, self.c, True)
            self.bucket = bucket
            self.o = self.h = self.l = self.c = price
        else:
            self.h = max(self.h, price)
            self.l = min(self.l, price)
            self.c = price
        return self.step(self.o, self.h, self.l, self.c, False)


def stream_plain(sym: list[int], price: list[float], ts: list[int], symbols: int) -> float:
    states = [PlainState() for _ in range(symbols)]
    start = time.perf_counter()
    for s, p, t in zip(sym, price, ts, strict=True):
        states[s].on_tick(p, t)
    return time.perf_counter() - start


def stream_talipp(sym: list[int], price: list[float], ts: list[int], symbols: int) -> float:
    from talipp import indicators as tp
    from talipp.ohlcv import OHLCV

    inds = [(tp.EMA(20), tp.RSI(14), tp.ATR(14), tp.SuperTrend(10, 3)) for _ in range(symbols)]
    candle: list[list[float] | None] = [None] * symbols
    bucket = [-1] * symbols
    start = time.perf_counter()
    for s, p, t in zip(sym, price, ts, strict=True):
        b = t // MINUTE_NS
        ema, rsi, atr, st = inds[s]
        if b != bucket[s]:
            bucket[s] = b
            candle[s] = [p, p, p, p]
            bar = OHLCV(p, p, p, p, 0.0)
            ema.add(p)
            rsi.add(p)
            atr.add(bar)
            st.add(bar)
        else:
            c = candle[s]
            c[1] = max(c[1], p)
            c[2] = min(c[2], p)
            c[3] = p
            bar = OHLCV(c[0], c[1], c[2], p, 0.0)
            ema.update(p)
            rsi.update(p)
            atr.update(bar)
            st.update(bar)
    return time.perf_counter() - start


def stream_recompute(sym: list[int], price: list[float], ts: list[int], symbols: int) -> float:
    window = 500
    hist = [{k: np.empty(0) for k in ("h", "l", "c")} for _ in range(symbols)]
    rng = np.random.default_rng(3)
    for s in range(symbols):  # a 500-bar history so every recompute is full length
        c = 1000 + 100 * s + np.cumsum(rng.normal(0, 1, window))
        hist[s] = {"h": c + 1, "l": c - 1, "c": c}
    bucket = [-1] * symbols
    start = time.perf_counter()
    for s, p, t in zip(sym, price, ts, strict=True):
        b = t // MINUTE_NS
        arr = hist[s]
        if b != bucket[s]:
            bucket[s] = b
            for k in ("h", "l", "c"):
                arr[k] = np.roll(arr[k], -1)
                arr[k][-1] = p
        else:
            arr["h"][-1] = max(arr["h"][-1], p)
            arr["l"][-1] = min(arr["l"][-1], p)
            arr["c"][-1] = p
        h, lo, c = arr["h"], arr["l"], arr["c"]
        talib.EMA(c, 20)
        talib.RSI(c, 14)
        talib.ATR(h, lo, c, 14)
        vi.supertrend(h, lo, c, 10, 3.0)
    return time.perf_counter() - start


def stream_velox(
    sym: np.ndarray, price: np.ndarray, ts: np.ndarray, symbols: int
) -> tuple[float, np.ndarray]:
    bank = IndicatorBank(symbols)
    bank.on_tick(0, float(price[0]), int(ts[0]))  # compile / cache load outside the timing
    bank = IndicatorBank(symbols)
    on_tick = bank.on_tick
    sl, pl, tl = sym.tolist(), price.tolist(), ts.tolist()
    start = time.perf_counter()
    for s, p, t in zip(sl, pl, tl, strict=True):
        on_tick(s, p, t)
    total = time.perf_counter() - start
    # per-tick latency on a second pass (the timer itself costs ~60-100 ns per tick)
    bank = IndicatorBank(symbols)
    on_tick = bank.on_tick
    clock = time.perf_counter_ns
    lat = np.empty(len(sl))
    for k, (s, p, t) in enumerate(zip(sl, pl, tl, strict=True)):
        t0 = clock()
        on_tick(s, p, t)
        lat[k] = clock() - t0
    return total, lat


def bench_stream(args: argparse.Namespace) -> dict[str, object]:
    symbols = 100
    sym, price, ts = make_ticks(symbols, args.ticks, 30)
    sl, pl, tl = sym.tolist(), price.tolist(), ts.tolist()
    t_velox, lat = stream_velox(sym, price, ts, symbols)
    n_slow = min(args.ticks, args.slow_ticks)
    t_plain = stream_plain(sl, pl, tl, symbols)
    t_talipp = stream_talipp(sl[:n_slow], pl[:n_slow], tl[:n_slow], symbols)
    n_naive = min(n_slow, 20_000)
    t_naive = stream_recompute(sl[:n_naive], pl[:n_naive], tl[:n_naive], symbols)
    rates = {
        "velox": args.ticks / t_velox,
        "plain_python": args.ticks / t_plain,
        "talipp": n_slow / t_talipp,
        "naive_recompute": n_naive / t_naive,
    }
    # replay path
    rsym, rprice, rts = make_ticks(symbols, args.replay_ticks, 30, seed=11)
    bank = IndicatorBank(symbols)
    bank.replay(rsym[:10], rprice[:10], rts[:10])
    bank = IndicatorBank(symbols)
    start = time.perf_counter()
    bank.replay(rsym, rprice, rts)
    rates["replay"] = args.replay_ticks / (time.perf_counter() - start)
    return {"rates": rates, "lat": lat, "n_slow": n_slow, "n_naive": n_naive}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--talipp-bars", type=int, default=20_000)
    parser.add_argument("--ticks", type=int, default=300_000)
    parser.add_argument("--slow-ticks", type=int, default=30_000)
    parser.add_argument("--replay-ticks", type=int, default=5_000_000)
    parser.add_argument("--skip-batch", action="store_true")
    args = parser.parse_args()

    print(f"numpy {np.__version__}, pandas {pd.__version__}, TA-Lib {talib.__version__}")
    cold, warm, worst = bench_compile()
    print(
        f"\nJIT: import velox.indicators {cold[0]:.2f} s; first call of all 26 batch functions "
        f"+ bank: {cold[1]:.1f} s with an empty numba cache (slowest: {worst}), "
        f"{warm[1]:.2f} s from the cache (import {warm[0]:.2f} s)"
    )
    if not args.skip_batch:
        print(
            f"\nBatch, {args.bars:,} bars, ns/bar (ratio vs TA-Lib; vs Velox where TA-Lib lacks it)"
        )
        print(f"talipp on {args.talipp_bars:,} bars, extrapolated linearly")
        print("| indicator | Velox | TA-Lib | Velox/TA-Lib | pandas | vectorbt | talipp |")
        print("|---|---|---|---|---|---|---|")
        bench_batch(args)
    out = bench_stream(args)
    r = out["rates"]
    lat = out["lat"]
    print("\nStreaming: EMA+RSI+ATR+Supertrend, 100 symbols, forming 1m candles (~30 ticks each)")
    print("| path | ticks/s | Velox ratio |")
    print("|---|---|---|")
    for key, label in [
        ("velox", f"Velox IndicatorBank.on_tick ({args.ticks:,} ticks)"),
        ("plain_python", "plain-Python O(1) loop"),
        ("talipp", f"talipp update/add ({out['n_slow']:,} ticks)"),
        ("naive_recompute", f"naive recompute of last 500 bars ({out['n_naive']:,} ticks)"),
    ]:
        print(f"| {label} | {r[key]:,.0f} | {r['velox'] / r[key]:,.1f}× |")
    print(
        f"| Velox IndicatorBank.replay ({args.replay_ticks:,} ticks, one call) "
        f"| {r['replay']:,.0f} | — |"
    )
    print(
        "\nPer-tick latency (on_tick incl. Python call, timer overhead included): "
        f"p50 {np.percentile(lat, 50):.0f} ns, p99 {np.percentile(lat, 99):.0f} ns, "
        f"p99.9 {np.percentile(lat, 99.9):.0f} ns, max {lat.max() / 1000:.0f} µs"
    )


if __name__ == "__main__":
    main()
