"""Each public name means one thing: result NamedTuples never share a streaming class's name."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import velox.indicators as vi
from velox.indicators import streaming as st


def _result_types() -> dict[str, type]:
    return {
        name: obj
        for name in vi.__all__
        if isinstance(obj := getattr(vi, name), type) and issubclass(obj, tuple)
    }


def test_no_result_type_shares_a_name_with_a_streaming_class() -> None:
    results = _result_types()
    assert {"SupertrendLines", "IchimokuLines", "MACDLines", "Bands"} <= set(results)
    streaming = {n for n in st.__all__ if isinstance(getattr(st, n), type)}
    assert {"Supertrend", "Ichimoku", "MACD", "BBands"} <= streaming
    assert not set(results) & streaming
    # and every multi-output indicator's result (batch and streaming) is one of the public types
    for spec_result in {s.result for s in vi._spec.SPECS.values() if s.result is not None}:
        assert spec_result in results.values()


def test_supertrend_and_ichimoku_return_the_renamed_results() -> None:
    x = np.arange(40.0)
    line = vi.supertrend(x + 1, x - 1, x, 5, 2.0)
    cloud = vi.ichimoku(x + 1, x - 1, 3, 5, 8, 2)
    assert type(line) is vi.SupertrendLines and line._fields == ("supertrend", "direction")
    assert type(cloud) is vi.IchimokuLines
    assert cloud._fields == ("tenkan", "kijun", "senkou_a", "senkou_b")
    bar = SimpleNamespace(open=1.0, high=2.0, low=1.0, close=2.0, volume=0.0)
    assert type(st.Supertrend().update(bar)) is vi.SupertrendLines
    assert type(st.Ichimoku().update(bar)) is vi.IchimokuLines


@pytest.mark.parametrize(
    ("old", "new"), [("Supertrend", "SupertrendLines"), ("Ichimoku", "IchimokuLines")]
)
def test_old_result_names_point_to_the_new_ones(old: str, new: str) -> None:
    with pytest.raises(AttributeError) as info:
        getattr(vi, old)
    message = str(info.value)
    assert f"velox.indicators.{new}" in message
    assert f"velox.indicators.streaming.{old}" in message
    with pytest.raises(AttributeError, match="no attribute 'Nonesuch'"):
        vi.Nonesuch  # noqa: B018
