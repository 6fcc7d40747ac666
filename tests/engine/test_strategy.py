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
