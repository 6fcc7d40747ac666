"""The examples in the indicator docstrings run and print what they claim."""

from __future__ import annotations

import doctest

import pytest

import velox.indicators._batch
import velox.indicators.streaming


@pytest.mark.parametrize("module", [velox.indicators._batch, velox.indicators.streaming])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0
