"""Fixtures for the engine tests: real NSE bars from ``data/bars`` and the bundled master."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from velox.types import Instrument

BARS = Path(__file__).resolve().parents[2] / "data" / "bars"


def read_bars(name: str, timeframe: str) -> pd.DataFrame:
    """Return a bundled bar file, validated as ``velox data import`` would."""
    from velox.data import read_bar_file, validate_bars

    bars, _ = validate_bars(read_bar_file(BARS / name), timeframe=timeframe, source=name)
    return bars


@pytest.fixture(scope="session")
def master() -> Callable[[str], Instrument]:
    """Return the bundled instrument master's lookup."""
    from velox.modes import default_instruments

    return default_instruments()


@pytest.fixture(scope="session")
def reliance_1d() -> pd.DataFrame:
    """Return NSE:RELIANCE daily bars 2017–2022 (real)."""
    return read_bars("RELIANCE_1d_2017_2022.csv.gz", "1d")


@pytest.fixture(scope="session")
def reliance_5m() -> pd.DataFrame:
    """Return NSE:RELIANCE 5-minute bars from 2025 (real)."""
    return read_bars("RELIANCE_5m_2025.csv", "5m")
