"""Strategy API: parameters, loading from files/modules, the look-ahead check."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from velox.errors import ConfigError, ValidationError
from velox.strategy import (
    Strategy,
    assert_no_lookahead,
    load_strategy,
    lookahead_violations,
    param,
    parse_params,
)
from velox.types import Product


class Cross(Strategy):
    instruments = ("NSE:SBIN",)
    fast: int = 10
    slow: int = 30
    weight: float = 0.5
    long_only: bool = True
    label: str = "x"


def test_parameters_are_class_attributes_and_overridable() -> None:
    assert Cross.parameters() == {
        "fast": 10,
        "slow": 30,
        "weight": 0.5,
        "long_only": True,
        "label": "x",
    }
    s = Cross(fast=5, weight=1)
    assert (s.fast, s.slow, s.weight) == (5, 30, 1.0)
    assert isinstance(s.weight, float)
    assert Cross.fast == 10  # the class default is untouched


def test_unknown_parameter_suggests_the_close_match() -> None:
    with pytest.raises(ConfigError, match=r"no parameter 'slwo'; did you mean 'slow'"):
        Cross(slwo=3)


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("fast", "ten", "not a valid int"),
        ("fast", 2.5, "not a valid int"),
        ("fast", True, "not a valid int"),
        ("weight", "abc", "not a valid float"),
        ("weight", float("nan"), "finite"),
        ("long_only", "maybe", "use true or false"),
        ("label", 3, "not a valid str"),
    ],
)
def test_bad_parameter_types_are_refused_with_the_expected_type(
    key: str, value: object, needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        Cross(**{key: value})
    assert f"Cross.{key}=" in str(info.value)


def test_cli_text_is_coerced_to_the_default_type() -> None:
    s = Cross(**parse_params(["fast=7", "weight=0.25", "long_only=false", "label=a=b"]))
    assert (s.fast, s.weight, s.long_only, s.label) == (7, 0.25, False, "a=b")
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_params(["fast"])


def test_framework_attributes_are_validated() -> None:
    with pytest.raises(ValidationError, match="timeframe"):
        Cross(timeframe="2m")
    s = Cross(instruments="NSE:TCS", product="MIS")
    assert s.instruments == ("NSE:TCS",) and s.product is Product.MIS


class Ranged(Strategy):
    fast: int = param(10, ge=1)
    weight: float = param(0.5, gt=0, le=1)
    threshold: float = param(30.0, ge=0, lt=100)


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("fast", 0, "Ranged.fast=0 is out of range: it must be >= 1 (default 10)"),
        ("fast", "-10", "Ranged.fast=-10 is out of range: it must be >= 1"),
        ("weight", "0", "Ranged.weight=0.0 is out of range: it must be > 0 and <= 1"),
        ("weight", 1.5, "Ranged.weight=1.5 is out of range: it must be > 0 and <= 1"),
        ("threshold", "100", "Ranged.threshold=100.0 is out of range: it must be >= 0 and < 100"),
        ("threshold", -0.01, "it must be >= 0 and < 100"),
    ],
)
def test_declared_ranges_refuse_values_outside_them(key: str, value: object, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        Ranged(**{key: value})
    assert needle in str(info.value)


def test_a_declared_parameter_reads_as_its_value_and_accepts_its_bounds() -> None:
    assert (Ranged.fast, Ranged.weight) == (10, 0.5)  # on the class: the default, not a Param
    s = Ranged(fast="1", weight="1", threshold="0")
    assert (s.fast, s.weight, s.threshold) == (1, 1.0, 0.0)
    assert Ranged().fast == 10 and Ranged.parameters() == {
        "fast": 10,
        "weight": 0.5,
        "threshold": 30.0,
    }
    assert Ranged.parameter_specs()["weight"].range_text == "> 0 and <= 1"


@pytest.mark.parametrize(
    ("spec", "key", "value", "needle"),
    [
        ("sma_cross.py", "fast", "0", "SmaCross.fast=0 is out of range: it must be >= 1"),
        ("sma_cross.py", "slow", "-10", "SmaCross.slow=-10 is out of range: it must be >= 1"),
        ("sma_cross.py", "weight", "2", "SmaCross.weight=2.0 is out of range"),
        ("rsi_reversion.py", "window", "0", "RsiReversion.window=0 is out of range"),
        ("rsi_reversion.py", "entry", "150", "RsiReversion.entry=150.0 is out of range"),
        ("supertrend.py", "multiplier", "0", "SupertrendFollow.multiplier=0.0 is out of range"),
        ("orb_intraday.py", "range_bars", "0", "OpeningRangeBreakout.range_bars=0 is out of"),
        ("orb_intraday.py", "exit_time", "late", "exit_time='late' is not a time"),
        ("orb_intraday.py", "timeframe", "1d", "trades intraday bars, not '1d' ones"),
    ],
)
def test_bundled_strategies_refuse_out_of_range_parameters(
    spec: str, key: str, value: str, needle: str
) -> None:
    cls = load_strategy(str(Path(__file__).resolve().parents[2] / "strategies" / spec))
    with pytest.raises(ConfigError) as info:
        cls(**{key: value})
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("product", "YOLO", "Cross.product='YOLO' is not a valid Product (default 'CNC'); "
         "valid: CNC, MIS, NRML"),
        ("product", 3, "valid: CNC, MIS, NRML"),
        ("capital", "abc", "Cross.capital='abc': capital must be a number"),
        ("capital", True, "capital must be a number"),
        ("capital", "inf", "capital must be a finite number"),
        ("capital", "-5", "Cross.capital=-5.0 is out of range: it must be > 0"),
        ("lookback", "0", "Cross.lookback=0 is out of range: it must be >= 1"),
        ("lookback", "many", "Cross.lookback='many' is not a valid int"),
        ("name", "X", "Cross: 'name' cannot be set (the engine names a strategy after its class)"),
        ("fsat", "3", "Cross has no parameter 'fsat'; did you mean 'fast'?"),
        ("slwo", "3", "did you mean 'slow'?"),
    ],
)  # fmt: skip
def test_framework_attributes_and_unknown_names_are_refused_clearly(
    key: str, value: object, needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Cross(**{key: value})
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_framework_attributes_coerce_cli_text() -> None:
    s = Cross(product="mis", capital="250000", lookback="20")
    assert (s.product, s.capital, s.lookback) == (Product.MIS, 250_000.0, 20)
    assert Cross(capital="none").capital is None
    assert Cross().name == "Cross"


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_load_strategy_from_a_file_and_by_class_name(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "two.py",
        """
        from velox.strategy import Strategy
        class A(Strategy):
            n: int = 1
        class B(Strategy):
            n: int = 2
        """,
    )
    assert load_strategy(f"{path}:B").n == 2
    with pytest.raises(ConfigError, match="several strategies"):
        load_strategy(str(path))
    with pytest.raises(ConfigError, match="did you mean 'A'"):
        load_strategy(f"{path}:AA")


def test_load_strategy_from_a_module() -> None:
    cls = load_strategy("tests.engine.test_strategy:Cross")
    assert cls.__name__ == "Cross"
    with pytest.raises(ConfigError, match="no module"):
        load_strategy("no_such_module_here:X")


def test_malformed_strategy_files_give_clear_errors(tmp_path: Path) -> None:
    bad = _write(tmp_path, "bad.py", "from velox.strategy import Strategy\nclass A(Strategy)\n")
    with pytest.raises(ConfigError, match=r"bad.py line 2: syntax error"):
        load_strategy(str(bad))
    boom = _write(tmp_path, "boom.py", "x = 1\nraise RuntimeError('kaput')\n")
    with pytest.raises(ConfigError, match=r"boom.py line 2 failed to import: RuntimeError: kaput"):
        load_strategy(str(boom))
    empty = _write(tmp_path, "empty.py", "x = 1\n")
    with pytest.raises(ConfigError, match="no subclass of velox.strategy.Strategy"):
        load_strategy(str(empty))
    with pytest.raises(ConfigError, match="does not exist"):
        load_strategy(str(tmp_path / "missing.py"))
    missing_import = _write(tmp_path, "imp.py", "x = 1\nimport no_such_module_zz\n")
    with pytest.raises(ConfigError, match=r"imp.py line 2 failed to import: ModuleNotFoundError"):
        load_strategy(str(missing_import))
    exits = _write(tmp_path, "exits.py", "import sys\nsys.exit(2)\n")
    with pytest.raises(ConfigError, match=r"exits.py line 2 failed to import: SystemExit: 2"):
        load_strategy(str(exits))
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"folder is a directory: name the .py file in it"):
        load_strategy(str(folder))
    text = _write(tmp_path, "notes.txt", "hello\n")
    with pytest.raises(ConfigError, match=r"notes.txt cannot be loaded as Python"):
        load_strategy(str(text))


def _bars(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    idx = pd.date_range("2024-01-01", periods=n, freq="D", tz="Asia/Kolkata")
    data = {"open": close, "high": close + 1, "low": close - 1, "close": close}
    return pd.DataFrame(data, index=idx)


class Causal(Strategy):
    def signals(self, bars: pd.DataFrame) -> pd.Series:
        return (bars["close"] > bars["close"].rolling(10).mean()).astype(float)


class Peeking(Strategy):
    def signals(self, bars: pd.DataFrame) -> pd.Series:
        # centred window: uses five future bars
        return (bars["close"] > bars["close"].rolling(11, center=True).mean()).astype(float)


def test_lookahead_check_passes_causal_and_catches_peeking_signals() -> None:
    bars = _bars()
    assert lookahead_violations(Causal(), bars) == []
    assert_no_lookahead(Causal(), bars)
    bad = lookahead_violations(Peeking(), bars)
    assert bad, "a centred window must be caught"
    with pytest.raises(ValidationError, match="looks ahead"):
        assert_no_lookahead(Peeking(), bars)
