"""Helpers shared by Velox's tests and benchmarks.

The project's real market data (read-only, with PROVENANCE.md per folder) lives in
``shared/data/market`` beside the repository checkout — where CI puts it — unless
``$MARKET_DATA_DIR`` points elsewhere. (Not a ``VELOX_*`` variable: those are settings, and
unknown settings are errors.)
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
_CANDIDATES = (_REPO.parent / "shared" / "data" / "market", Path("/work/shared/data/market"))


def shared_market_data() -> Path:
    """Return the folder holding the shared real market data sets."""
    override = os.environ.get("MARKET_DATA_DIR")
    if override:
        return Path(override)
    return next((c for c in _CANDIDATES if c.exists()), _CANDIDATES[0])


def market_file(*parts: str) -> Path:
    """Return a path inside the shared market data, for a test that needs it.

    A missing file skips the test on a developer machine without the data and fails it under
    ``CI=true``, where a real-data test must never silently disappear.
    """
    import pytest

    path = shared_market_data().joinpath(*parts)
    if not path.exists():
        message = f"real market data {path} is missing (set MARKET_DATA_DIR)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
