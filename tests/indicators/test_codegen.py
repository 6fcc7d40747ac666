"""The generated numba runners are in sync with their template."""

from __future__ import annotations

from velox.indicators import _codegen


def test_runners_file_is_regenerated() -> None:
    assert _codegen.TARGET.read_text() == _codegen.render(), (
        "velox/indicators/_runners.py is stale: run `python -m velox.indicators._codegen`"
    )
