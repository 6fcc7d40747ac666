"""The scanner (``velox.scan``) against independent pandas/TA-Lib computations on real NSE bars.

Every expected set of instruments and every value is computed here with pandas and TA-Lib from
the bundled files, never through velox's own indicator or scanner code.
"""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

import velox
from velox.errors import DataError, ValidationError
from velox.scanner import PRESETS, evaluate, scan
from velox.universes import NIFTY50

ROOT = Path(__file__).resolve().parent.parent
BARS = ROOT / "data" / "bars"
IST = "Asia/Kolkata"

#: Scan dates: the COVID crash and rebound, quiet and trending stretches, the last bar (None).
DATES = ["2018-10-05", "2019-05-20", "2020-03-23", "2020-03-25", "2020-11-09", "2021-02-01",
         "2021-10-18", "2022-02-24", None]  # fmt: skip


def _read(name: str, timeframe: str) -> pd.DataFrame:
    from velox.data import read_bar_file, validate_bars

    frame, _ = validate_bars(read_bar_file(BARS / name), timeframe=timeframe, source=name)
    return frame


@pytest.fixture(scope="module")
def daily() -> dict[str, pd.DataFrame]:
    return {iid: _read(f"{iid[4:]}_1d_2017_2022.csv.gz", "1d") for iid in NIFTY50}


@pytest.fixture(scope="module")
def reliance_5m() -> pd.DataFrame:
    return _read("RELIANCE_5m_2025.csv", "5m")


def _upto(frame: pd.DataFrame, at: str | None) -> pd.DataFrame:
    """The bars up to ``at`` (a date: that whole IST day) by pandas' own partial-string slicing."""
    return frame if at is None else frame.loc[:at]


# -- independent references: (frame up to the bar) → the values if it matches, else None ------


def _rsi(
    frame: pd.DataFrame, below: float | None = None, above: float | None = None
) -> dict | None:
    rsi = talib.RSI(frame["close"].to_numpy(), 14)[-1]
    hit = rsi < below if below is not None else rsi > above
    return {"close": frame["close"].iloc[-1], "rsi_14": rsi} if hit else None


def _high_52w(frame: pd.DataFrame) -> dict | None:
    level = frame["high"].shift(1).rolling(252).max().iloc[-1]
    close = frame["close"].iloc[-1]
    if not close >= level:
        return None
    return {"close": close, "prev_highest_252": level, "pct_above": (close / level - 1) * 100}


def _low_52w(frame: pd.DataFrame) -> dict | None:
    level = frame["low"].shift(1).rolling(252).min().iloc[-1]
    close = frame["close"].iloc[-1]
    if not close <= level:
        return None
    return {"close": close, "prev_lowest_252": level, "pct_below": (1 - close / level) * 100}


def _volume_spike(frame: pd.DataFrame, k: float = 2.0) -> dict | None:
    average = frame["volume"].shift(1).rolling(20).mean().iloc[-1]
    volume = frame["volume"].iloc[-1]
    if not volume > k * average:
        return None
    return {"close": frame["close"].iloc[-1], "volume": volume, "prev_avg_volume_20": average,
            "volume_ratio": volume / average}  # fmt: skip


def _gap(frame: pd.DataFrame, up: bool, pct: float = 2.0) -> dict | None:
    if len(frame) < 2:
        return None
    opened, before = frame["open"].iloc[-1], frame["close"].iloc[-2]
    gap = (opened / before - 1) * 100
    hit = gap > pct if up else gap < -pct
    return {"open": opened, "prev_close": before, "gap_pct": gap} if hit else None


def _supertrend_ref(frame: pd.DataFrame, window: int, multiplier: float) -> tuple:
    """TradingView's ta.supertrend rule, in a plain loop over TA-Lib's ATR (+1 up, −1 down)."""
    h, lo, c = (frame[k].to_numpy() for k in ("high", "low", "close"))
    atr = talib.ATR(h, lo, c, window)
    n = len(c)
    line, direction = np.full(n, np.nan), np.full(n, np.nan)
    upper = lower = np.nan
    for i in range(n):
        if np.isnan(atr[i]):
            continue
        basic_upper = (h[i] + lo[i]) / 2 + multiplier * atr[i]
        basic_lower = (h[i] + lo[i]) / 2 - multiplier * atr[i]
        if np.isnan(upper):  # the first bar with an ATR: a down-trend
            upper, lower, trend = basic_upper, basic_lower, -1.0
        else:
            upper = basic_upper if basic_upper < upper or c[i - 1] > upper else upper
            lower = basic_lower if basic_lower > lower or c[i - 1] < lower else lower
            if trend == -1.0:
                trend = 1.0 if c[i] > upper else -1.0
            else:
                trend = -1.0 if c[i] < lower else 1.0
        direction[i] = trend
        line[i] = lower if trend == 1.0 else upper
    return line, direction


def _supertrend_flip(frame: pd.DataFrame, window: int = 10, multiplier: float = 3.0) -> dict | None:
    line, direction = _supertrend_ref(frame, window, multiplier)
    if len(frame) < 2 or np.isnan(direction[-2]) or direction[-1] == direction[-2]:
        return None
    close = frame["close"].iloc[-1]
    return {"close": close, "supertrend": line[-1], "direction": direction[-1],
            "distance_pct": (close / line[-1] - 1) * 100}  # fmt: skip


def _ma_cross(frame: pd.DataFrame, fast: int, slow: int, direction: str = "any") -> dict | None:
    f = talib.SMA(frame["close"].to_numpy(), fast)
    s = talib.SMA(frame["close"].to_numpy(), slow)
    if len(frame) < 2 or np.isnan(s[-2]):
        return None
    up = f[-1] > s[-1] and f[-2] <= s[-2]
    down = f[-1] < s[-1] and f[-2] >= s[-2]
    if not {"up": up, "down": down, "any": up or down}[direction]:
        return None
    return {"close": frame["close"].iloc[-1], f"sma_{fast}": f[-1], f"sma_{slow}": s[-1],
            "spread_pct": (f[-1] / s[-1] - 1) * 100}  # fmt: skip


def _compare(
    result: pd.DataFrame,
    expected: dict[str, dict],
    rank: str | None = None,
    ascending: bool = True,
) -> None:
    assert set(result.index) == set(expected), (sorted(result.index), sorted(expected))
    for iid, values in expected.items():
        for column, value in values.items():
            assert result.at[iid, column] == pytest.approx(value, rel=1e-9, abs=1e-9), (iid, column)
    if rank is not None:
        order = sorted(expected, key=lambda i: (expected[i][rank] * (1 if ascending else -1), i))
        assert list(result.index) == order


PRESET_CASES: list[tuple[str, dict, Callable[[pd.DataFrame], dict | None], str, bool]] = [
    ("rsi_oversold", {}, lambda f: _rsi(f, below=30), "rsi_14", True),
    ("rsi_overbought", {}, lambda f: _rsi(f, above=70), "rsi_14", False),
    ("52w_high", {}, _high_52w, "pct_above", False),
    ("52w_low", {}, _low_52w, "pct_below", False),
    ("volume_spike", {}, _volume_spike, "volume_ratio", False),
    ("volume_spike", {"k": 3}, lambda f: _volume_spike(f, k=3.0), "volume_ratio", False),
    ("gap_up", {}, lambda f: _gap(f, up=True), "gap_pct", False),
    ("gap_down", {"pct": 1.5}, lambda f: _gap(f, up=False, pct=1.5), "gap_pct", True),
    ("supertrend_flip", {}, _supertrend_flip, "distance_pct", False),
    ("supertrend_flip", {"window": 7, "multiplier": 2.0},
     lambda f: _supertrend_flip(f, 7, 2.0), "distance_pct", False),
    ("ma_cross", {"fast": 10, "slow": 30}, lambda f: _ma_cross(f, 10, 30), "spread_pct", False),
    ("ma_cross", {"fast": 20, "slow": 50, "direction": "down"},
     lambda f: _ma_cross(f, 20, 50, "down"), "spread_pct", True),
    ("ma_cross", {}, lambda f: _ma_cross(f, 50, 200), "spread_pct", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("preset", "params", "reference", "rank", "ascending"),
    PRESET_CASES,
    ids=[c[0] + "".join(f"-{k}{v}" for k, v in c[1].items()) for c in PRESET_CASES],
)
def test_each_daily_preset_equals_pandas_and_talib_on_the_nifty_stocks(
    daily: dict[str, pd.DataFrame],
    preset: str,
    params: dict,
    reference: Callable[[pd.DataFrame], dict | None],
    rank: str,
    ascending: bool,
) -> None:
    matched = 0
    for at in DATES:
        result = scan(preset, "nifty50", at=at, bars=daily, progress=False, **params)
        expected = {}
        for iid, frame in daily.items():
            values = reference(_upto(frame, at))
            if values is not None:
                expected[iid] = values
        _compare(result, expected, rank, ascending)
        for iid in result.index:
            assert result.at[iid, "ts"] == _upto(daily[iid], at).index[-1]
        matched += len(expected)
    assert matched > 0, "no date matched: the comparison proved nothing"


def _orb_reference(frame: pd.DataFrame, minutes: int, at: str, up: bool = True) -> dict | None:
    bars = frame.loc[:at]
    last = bars.index[-1]
    session = bars[bars.index.normalize() == last.normalize()]
    clock = session.index.hour * 60 + session.index.minute
    opening = session[(clock >= 555) & (clock < 555 + minutes)]
    if opening.empty or last.hour * 60 + last.minute < 555 + minutes:
        return None
    high, low, close = opening["high"].max(), opening["low"].min(), bars["close"].iloc[-1]
    if not (close > high if up else close < low):
        return None
    pct = (close / (high if up else low) - 1) * 100
    return {"close": close, f"orb_high_{minutes}": high, f"orb_low_{minutes}": low,
            "breakout_pct": pct}  # fmt: skip


def test_orb_equals_a_pandas_opening_range_on_reliance_5m(reliance_5m: pd.DataFrame) -> None:
    bars = {"NSE:RELIANCE": reliance_5m}
    days = sorted(set(reliance_5m.index.normalize()))
    moments = [f"{d.date()} {t}" for d in days[:: max(1, len(days) // 12)]
               for t in ("09:20", "09:30", "10:00", "11:35", "14:00", "15:25")]  # fmt: skip
    hits = {"up": 0, "down": 0}
    for at in moments:
        for minutes in (15, 30):
            for direction in ("up", "down"):
                result = scan("orb", ["NSE:RELIANCE"], timeframe="5m", at=at, bars=bars,
                              minutes=minutes, direction=direction, progress=False)  # fmt: skip
                values = _orb_reference(reliance_5m, minutes, at, up=direction == "up")
                _compare(result, {} if values is None else {"NSE:RELIANCE": values})
                hits[direction] += values is not None
    assert hits["up"] > 0 and hits["down"] > 0


def test_orb_needs_an_intraday_timeframe_and_a_whole_number_of_bars(
    daily: dict[str, pd.DataFrame], reliance_5m: pd.DataFrame
) -> None:
    with pytest.raises(ValidationError, match="intraday timeframe"):
        scan("orb", "nifty50", bars=daily)
    with pytest.raises(ValidationError, match="multiple of 5 minutes"):
        scan("orb", ["NSE:RELIANCE"], timeframe="5m", bars={"NSE:RELIANCE": reliance_5m},
             minutes=12)  # fmt: skip


# -- custom conditions ------------------------------------------------------------------------


def _talib_columns(frame: pd.DataFrame) -> pd.DataFrame:
    c, h, lo = (frame[k].to_numpy() for k in ("close", "high", "low"))
    out = pd.DataFrame(index=frame.index)
    out["close"], out["open"] = c, frame["open"].to_numpy()
    out["prev_close"] = frame["close"].shift(1).to_numpy()
    out["rsi_14"] = talib.RSI(c, 14)
    out["sma_50"], out["sma_200"] = talib.SMA(c, 50), talib.SMA(c, 200)
    out["ema_20"], out["ema_50"] = talib.EMA(c, 20), talib.EMA(c, 50)
    out["willr_14"] = talib.WILLR(h, lo, c, 14)
    out["atr_14"] = talib.ATR(h, lo, c, 14)
    out["roc_10"] = talib.ROC(c, 10)
    out["adx_14"] = talib.ADX(h, lo, c, 14)
    out["cci_20"] = talib.CCI(h, lo, c, 20)
    out["mfi_14"] = talib.MFI(h, lo, c, frame["volume"].to_numpy(), 14)
    out["prev_sma_50"] = pd.Series(out["sma_50"]).shift(1).to_numpy()
    return out


#: (condition, the same in pandas over the TA-Lib columns, the columns it names in order)
CUSTOM = [
    ("rsi_14 < 30 and close > sma_200",
     lambda d: (d.rsi_14 < 30) & (d.close > d.sma_200), ["rsi_14", "close", "sma_200"]),
    ("ema_20 > ema_50", lambda d: d.ema_20 > d.ema_50, ["ema_20", "ema_50"]),
    ("close > 1.02 * prev_close", lambda d: d.close > 1.02 * d.prev_close,
     ["close", "prev_close"]),
    ("30 < rsi_14 <= 45", lambda d: (d.rsi_14 > 30) & (d.rsi_14 <= 45), ["rsi_14"]),
    ("not (close > sma_50) or willr_14 < -90",
     lambda d: ~(d.close > d.sma_50) | (d.willr_14 < -90), ["close", "sma_50", "willr_14"]),
    ("(atr_14 / close) * 100 > 3", lambda d: d.atr_14 / d.close * 100 > 3, ["atr_14", "close"]),
    ("-roc_10 > 8", lambda d: -d.roc_10 > 8, ["roc_10"]),
    ("(adx_14 > 30) & (cci_20 > 100) | (mfi_14 < 15)",
     lambda d: ((d.adx_14 > 30) & (d.cci_20 > 100)) | (d.mfi_14 < 15),
     ["adx_14", "cci_20", "mfi_14"]),
    ("sma_50 > sma_200 and prev_sma_50 <= sma_200 - 0 + 0",
     lambda d: (d.sma_50 > d.sma_200) & (d.prev_sma_50 <= d.sma_200),
     ["sma_50", "sma_200", "prev_sma_50"]),
]  # fmt: skip


@pytest.mark.parametrize(("condition", "pandas_rule", "names"), CUSTOM, ids=[c[0] for c in CUSTOM])
def test_custom_conditions_equal_the_same_in_pandas(
    daily: dict[str, pd.DataFrame], condition: str, pandas_rule: Callable, names: list[str]
) -> None:
    columns = {iid: _talib_columns(frame) for iid, frame in daily.items()}
    matched = 0
    for at in DATES:
        result = scan(condition, "nifty50", at=at, bars=daily, progress=False)
        assert list(result.columns) == ["ts", *names]
        expected = {}
        for iid, table in columns.items():
            upto = _upto(table, at)
            row = upto.iloc[-1]
            if bool(pandas_rule(upto.iloc[[-1]]).iloc[0]) and row[names].notna().all():
                expected[iid] = {n: row[n] for n in names}
        _compare(result, expected)
        assert list(result.index) == sorted(result.index)  # no rank_by: by instrument id
        matched += len(expected)
    assert matched > 0


def test_evaluate_gives_the_verdict_on_every_bar(daily: dict[str, pd.DataFrame]) -> None:
    frame = daily["NSE:SBIN"]
    table = _talib_columns(frame)
    out = evaluate("rsi_14 < 30 and close > sma_200", frame)
    expected = (table.rsi_14 < 30) & (table.close > table.sma_200)
    assert out["match"].tolist() == expected.tolist()
    assert out["match"].sum() > 0
    np.testing.assert_allclose(out["rsi_14"], table.rsi_14, rtol=1e-9)
    # a preset too: the supertrend direction flips the reference loop finds
    flips = evaluate("supertrend_flip", frame)
    _, direction = _supertrend_ref(frame, 10, 3.0)
    changed = pd.Series(direction).diff().fillna(0).ne(0).to_numpy()
    assert flips["match"].to_numpy().tolist() == changed.tolist()
    np.testing.assert_array_equal(flips["direction"].to_numpy(), direction)


def test_rank_by_ranks_custom_conditions(daily: dict[str, pd.DataFrame]) -> None:
    result = scan("rsi_14 < 45", "nifty50", at="2020-03-23", bars=daily, rank_by="rsi_14",
                  ascending=True, progress=False)  # fmt: skip
    assert len(result) > 3
    assert result["rsi_14"].is_monotonic_increasing
    extra = scan("rsi_14 < 45", "nifty50", at="2020-03-23", bars=daily, rank_by="natr_14",
                 progress=False)  # fmt: skip
    assert list(extra.columns) == ["ts", "rsi_14", "natr_14"]
    assert extra["natr_14"].is_monotonic_decreasing
    for iid in extra.index:
        f = _upto(daily[iid], "2020-03-23")
        natr = talib.NATR(f["high"].to_numpy(), f["low"].to_numpy(), f["close"].to_numpy(), 14)
        assert extra.at[iid, "natr_14"] == pytest.approx(natr[-1], rel=1e-9)


# -- the language cannot run code --------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("__import__('os').system('touch /tmp/velox-pwned') == 0", "function calls"),
        ("close.__class__ > 0", "attribute access"),
        ("close.real > 0", "attribute access"),
        ("close[0] > 1", "subscripts"),
        ("(lambda: 1)() > 0", "function calls"),
        ("abs(close) > 1", "function calls"),
        ("[c for c in close] > 1", "comprehensions"),
        ("'a' < 'b'", "constants other than numbers"),
        ("close ** 2 > 1", "the operator Pow"),
        ("close if close else 0", "if/else"),
        ("(x := close) > 0", "assignments"),
        ("close > 1; import os", "cannot parse"),
        ("close >", "cannot parse"),
        ("rsi_14 and close > 1", "is not a comparison"),
        ("(close > 1) + 1 > 0", "is not a number"),
        ("close + 1", "is a number, not a test"),
        ("", "empty"),
    ],
)
def test_unsafe_or_malformed_conditions_are_refused(
    daily: dict[str, pd.DataFrame], condition: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the scanner must never eval/exec/compile a condition")

    import tqdm.auto  # noqa: F401  (its first import probes Jupyter with exec)

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    with pytest.raises(ValidationError, match=message):
        scan(condition, "nifty50", bars=daily, progress=False)
    assert not Path("/tmp/velox-pwned").exists()


def test_a_good_condition_is_evaluated_without_eval(
    daily: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ast

    for path in (ROOT / "velox" / "scanner").glob("*.py"):  # statically: no eval/exec/compile
        names = {n.id for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Name)}
        assert not names & {"eval", "exec", "compile", "__import__"}, path.name

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("eval/exec called")

    # and at run time, once the libraries' own lazy set-up (tqdm's locks …) is done
    scan("rsi_14 < 40", "nifty50", at="2020-03-23", bars=daily, progress=False)
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert len(scan("rsi_14 < 41", "nifty50", at="2020-03-23", bars=daily, progress=False)) > 0


@pytest.mark.parametrize(
    ("condition", "unknown", "suggestion"),
    [
        ("rsi14 < 30", "rsi14", "rsi_14"),
        ("close > smaa_200", "smaa_200", "sma_200"),
        ("closee > 10", "closee", "close"),
        ("prev_closs > 10", "prev_closs", "prev_close"),
        ("rsi_14 < 30 and ema_20 > emma_50", "emma_50", "ema_50"),
    ],
)
def test_an_unknown_column_is_named_with_a_suggestion(
    daily: dict[str, pd.DataFrame], condition: str, unknown: str, suggestion: str
) -> None:
    with pytest.raises(ValidationError) as info:
        scan(condition, "nifty50", bars=daily, progress=False)
    text = str(info.value)
    assert f"unknown column {unknown!r}" in text and f"did you mean {suggestion!r}" in text


def test_bad_presets_parameters_universes_and_at_are_refused(daily: dict[str, pd.DataFrame]):
    with pytest.raises(ValidationError, match="unknown preset 'rsi_oversld'.*'rsi_oversold'"):
        scan("rsi_oversld", "nifty50", bars=daily)
    with pytest.raises(ValidationError, match="no parameter 'windw'.*'window'"):
        scan("rsi_oversold", "nifty50", bars=daily, windw=10)
    with pytest.raises(ValidationError, match="whole number"):
        scan("rsi_oversold", "nifty50", bars=daily, window=2.5)
    with pytest.raises(ValidationError, match="one of 'any', 'up', 'down'"):
        scan("ma_cross", "nifty50", bars=daily, direction="sideways")
    with pytest.raises(ValidationError, match="fast < slow"):
        scan("ma_cross", "nifty50", bars=daily, fast=50, slow=20)
    with pytest.raises(ValidationError, match="preset parameters"):
        scan("rsi_14 < 30", "nifty50", bars=daily, window=14)
    with pytest.raises(ValidationError, match="unknown universe 'nifty5'.*'nifty50'"):
        scan("rsi_oversold", "nifty5", bars=daily)
    with pytest.raises(ValidationError, match="not a date"):
        scan("rsi_oversold", "nifty50", bars=daily, at="yesterday-ish")
    with pytest.raises(ValidationError, match="unknown timeframe"):
        scan("rsi_oversold", "nifty50", bars=daily, timeframe="2d")


# -- which bar --------------------------------------------------------------------------------


def test_at_picks_the_last_bar_at_or_before_it(
    daily: dict[str, pd.DataFrame], reliance_5m: pd.DataFrame
) -> None:
    everything = "close > 0"
    sunday = scan(everything, ["NSE:SBIN", "NSE:TCS"], at="2020-03-22", bars=daily)
    assert (sunday["ts"] == pd.Timestamp("2020-03-20", tz=IST)).all()
    monday = scan(everything, ["NSE:SBIN"], at=pd.Timestamp("2020-03-23 15:00", tz=IST), bars=daily)
    assert monday.at["NSE:SBIN", "ts"] == pd.Timestamp("2020-03-23", tz=IST)
    assert monday.at["NSE:SBIN", "close"] == daily["NSE:SBIN"].loc[:"2020-03-23", "close"].iloc[-1]
    last = scan(everything, ["NSE:SBIN"], bars=daily)
    assert last.at["NSE:SBIN", "ts"] == daily["NSE:SBIN"].index[-1]
    later = scan(everything, ["NSE:SBIN"], at="2030-01-01", bars=daily)
    assert later.at["NSE:SBIN", "ts"] == daily["NSE:SBIN"].index[-1]
    bars = {"NSE:RELIANCE": reliance_5m}
    day = reliance_5m.index[reliance_5m.index.normalize() == reliance_5m.index[500].normalize()]
    whole_day = scan(everything, ["NSE:RELIANCE"], "5m", at=str(day[0].date()), bars=bars)
    assert whole_day.at["NSE:RELIANCE", "ts"] == day[-1]
    at = day[10] + pd.Timedelta(minutes=2)  # inside the bar that starts at day[10]
    inside = scan(everything, ["NSE:RELIANCE"], "5m", at=at.tz_localize(None), bars=bars)
    assert inside.at["NSE:RELIANCE", "ts"] == day[10]
    with pytest.raises(DataError, match="no 1d bars at or before 2010-01-01"):
        scan(everything, ["NSE:SBIN"], at="2010-01-01", bars=daily)


def test_a_named_universe_skips_instruments_without_a_bar(daily: dict[str, pd.DataFrame]) -> None:
    some = {iid: daily[iid] for iid in NIFTY50[:5]}
    result = scan("close > 0", "nifty50", bars=some)
    assert list(result.index) == sorted(NIFTY50[:5])
    assert result.attrs["scanned"] == 5 and len(result.attrs["missing"]) == len(NIFTY50) - 5
    assert list(scan("close > 0", "all", bars=some).index) == sorted(some)
    empty = scan("close < 0", "nifty50", bars=daily)
    assert empty.empty and list(empty.columns) == ["ts", "close"]


def test_the_nifty50_universe_is_the_momentum_strategy_s() -> None:
    from velox.strategy import load_strategy

    rotation = load_strategy(str(ROOT / "strategies" / "momentum_rotation.py"))
    assert rotation.instruments == NIFTY50 and len(NIFTY50) == 44
    assert velox.scan is scan and set(PRESETS) >= {"rsi_oversold", "52w_high", "orb"}


# -- Dask ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_client():
    from velox.backtest.distributed import client

    with client("local", local_workers=2) as opened:
        yield opened


def test_a_large_universe_runs_on_dask_with_the_same_result(
    daily: dict[str, pd.DataFrame], dask_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import velox.backtest.distributed as distributed
    import velox.scanner as scanner

    calls = []
    real = distributed.run_tasks

    def spy(fn, tasks, **kwargs):  # noqa: ANN001, ANN003, ANN202
        tasks = list(tasks)
        calls.append(len(tasks))
        return real(fn, tasks, **{**kwargs, "scheduler": dask_client})

    monkeypatch.setattr(scanner, "DASK_THRESHOLD", 10)
    monkeypatch.setattr(distributed, "run_tasks", spy)
    for preset, at, params in (("rsi_oversold", "2020-03-23", {"threshold": 40}),
                               ("supertrend_flip", "2020-04-07", {"window": 5})):  # fmt: skip
        here = scan(preset, "nifty50", at=at, bars=daily, scheduler="in-process", **params)
        there = scan(preset, "nifty50", at=at, bars=daily, progress=False, **params)
        pd.testing.assert_frame_equal(here, there)
        assert len(there) > 0
    assert calls and calls[-1] == -(-len(NIFTY50) // scanner.CHUNK_SIZE)


# -- the store --------------------------------------------------------------------------------

STORED = ["NSE:SBIN", "NSE:TCS", "NSE:INFY", "NSE:HDFCBANK"]


def _import(store) -> None:  # noqa: ANN001
    from velox.data import import_bars

    for iid in STORED:
        import_bars(BARS / f"{iid[4:]}_1d_2017_2022.csv.gz", iid, "1d", store=store)
    import_bars(BARS / "RELIANCE_5m_2025.csv", "NSE:RELIANCE", "5m", store=store)


@pytest.mark.postgres
def test_a_store_backed_scan_equals_the_same_bars_in_memory(
    store, daily: dict[str, pd.DataFrame], reliance_5m: pd.DataFrame
) -> None:
    _import(store)
    for condition, params in (("rsi_oversold", {"threshold": 45}), ("close > sma_50", {}),
                              ("volume_spike", {"k": 1.5})):  # fmt: skip
        for at in ("2020-03-23", "2021-10-18", None):
            stored = scan(condition, STORED, at=at, store=store, progress=False, **params)
            memory = scan(condition, STORED, at=at, bars=daily, progress=False, **params)
            pd.testing.assert_frame_equal(stored, memory)
    everything = scan("close > 0", "all", store=store)
    assert list(everything.index) == sorted([*STORED, "NSE:RELIANCE"])  # 5m resamples to 1d
    # a resampled timeframe: 15m from the stored 5m, against pandas' own resampling
    fifteen = (
        reliance_5m.resample("15min", origin=pd.Timestamp("2025-01-01 09:15", tz=IST))
        .agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
        .dropna()
    )
    at = str(fifteen.index[200])
    stored = scan("close > ema_10", ["NSE:RELIANCE"], "15m", at=at, store=store, rank_by="ema_10")
    memory = scan("close > ema_10", ["NSE:RELIANCE"], "15m", at=at,
                  bars={"NSE:RELIANCE": fifteen}, rank_by="ema_10")  # fmt: skip
    pd.testing.assert_frame_equal(stored, memory, check_freq=False)
    with pytest.raises(DataError, match="NSE:WIPRO"):
        scan("close > 0", ["NSE:SBIN", "NSE:WIPRO"], store=store)


@pytest.mark.postgres
def test_a_store_backed_dask_scan_reads_on_the_workers(store, dask_client) -> None:
    _import(store)
    here = scan("rsi_14 < 50", STORED, at="2020-03-23", store=store, rank_by="rsi_14")
    there = scan("rsi_14 < 50", STORED, at="2020-03-23", store=store, rank_by="rsi_14",
                 scheduler=dask_client)  # fmt: skip
    pd.testing.assert_frame_equal(here, there)
    assert len(there) > 0


# -- the command line -----------------------------------------------------------------------------


def _cli(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VELOX_")}
    base.update({"VELOX_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}, **env)
    (tmp_path / "data").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "velox.cli", *args], capture_output=True,
                          text=True, env=base, cwd=tmp_path, timeout=120)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scan", "rsi_14 < 30 and __import__('os')"], "function calls"),
        (["scan", "rsi14 < 30", "--universe", "nifty50"], "did you mean 'rsi_14'"),
        (["scan", "rsi_oversold", "-p", "windw=3"], "no parameter 'windw'"),
        (["scan", "orb", "--timeframe", "1d"], "intraday timeframe"),
        (["scan", "rsi_oversold", "--universe", "nifty5"], "unknown universe"),
    ],
)
def test_the_cli_refuses_bad_input_in_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = _cli(args, tmp_path)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode != 0 and "Traceback" not in out.stderr + out.stdout
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr


@pytest.mark.postgres
def test_the_cli_prints_a_ranked_table_and_json(store, tmp_path: Path) -> None:
    _import(store)
    env = {"VELOX_DATABASE_URL": store.url}
    expected = scan("rsi_oversold", STORED, at="2020-03-23", store=store, threshold=45)
    assert len(expected) >= 2
    universe = ",".join(STORED)
    out = _cli(["scan", "rsi_oversold", "--universe", universe, "--at", "2020-03-23",
                "-p", "threshold=45", "--no-progress"], tmp_path, **env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert f"{len(expected)} of {len(STORED)} instruments" in lines[0]
    header = next(i for i, line in enumerate(lines) if line.startswith("instrument_id"))
    listed = [line.split()[0] for line in lines[header + 1 :]]
    assert listed == list(expected.index)
    out = _cli(["scan", "rsi_oversold", "--universe", universe, "--at", "2020-03-23",
                "-p", "threshold=45", "--json"], tmp_path, **env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    assert [r["instrument_id"] for r in records] == list(expected.index)
    assert records[0]["rsi_14"] == pytest.approx(expected["rsi_14"].iloc[0], rel=1e-12)


def test_the_cli_help_lists_every_preset_with_its_parameters() -> None:
    from click.testing import CliRunner

    from velox.cli import main

    out = CliRunner().invoke(main, ["scan", "--help"])
    assert out.exit_code == 0, out.output
    for preset in PRESETS.values():
        assert preset.signature() in out.output


def test_bars_off_the_grid_or_with_holes_are_refused_naming_the_instrument(
    daily: dict[str, pd.DataFrame], reliance_5m: pd.DataFrame
) -> None:
    with pytest.raises(DataError, match="off the 1d grid.*5m"):
        scan("rsi_oversold", bars={"NSE:RELIANCE": reliance_5m})
    holed = daily["NSE:SBIN"].copy()
    holed.iloc[100, holed.columns.get_loc("close")] = np.nan
    with pytest.raises(DataError, match="NSE:SBIN 1d: column 'rsi_14'"):
        scan("rsi_oversold", bars={"NSE:SBIN": holed})
    with pytest.raises(DataError, match="no volume"):
        scan("rsi_oversold", bars={"NSE:SBIN": daily["NSE:SBIN"].drop(columns="volume")})
    # extra columns (open interest …) are ignored
    wider = {"NSE:SBIN": daily["NSE:SBIN"].assign(oi=1.0)}
    pd.testing.assert_frame_equal(
        scan("rsi_14 < 101", bars=wider), scan("rsi_14 < 101", bars={"NSE:SBIN": daily["NSE:SBIN"]})
    )


def test_the_signature_is_the_notebook_contract() -> None:
    import inspect

    params = inspect.signature(velox.scan).parameters
    assert list(params)[:6] == ["condition_or_preset", "universe", "timeframe", "at", "store",
                                "bars"]  # fmt: skip
    assert params["timeframe"].default == "1d" and params["at"].default is None
