"""What the builder's buttons do, shared by the ipywidgets form and the Panel page.

No UI imports: each function takes a :class:`~velox.builder.model.StrategyModel` (or a folder)
and returns data, so both front ends stay thin and the behaviour is tested once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from velox.builder.codegen import build, is_generated

if TYPE_CHECKING:
    import pandas as pd

    from velox.builder.model import StrategyModel
    from velox.engine import RunResult

__all__ = ["backtest", "builder_files", "bundled_bars", "summary"]


def builder_files(directory: str | Path) -> list[str]:
    """Return the builder-generated ``*.py`` files in ``directory``, sorted (none if absent)."""
    folder = Path(directory)
    files = []
    if folder.is_dir():
        for path in sorted(folder.glob("*.py")):
            try:
                if is_generated(path.read_text(encoding="utf-8", errors="replace")):
                    files.append(str(path))
            except OSError:
                continue
    return files


def bundled_bars(model: StrategyModel) -> dict[str, pd.DataFrame] | None:
    """Return the bundled ``data/bars/<SYMBOL>_<timeframe>_*.csv*`` file of every instrument
    (validated as ``velox data import`` does), or None if one is missing."""
    from velox.config import get_settings
    from velox.data import read_bar_file, validate_bars

    repo = Path(__file__).resolve().parents[2] / "data" / "bars"
    folders = [get_settings().data_dir / "bars", repo]
    frames = {}
    for iid in model.instruments:
        symbol = iid.split(":", 1)[1]
        found = [
            f
            for folder in folders
            if folder.is_dir()
            for f in sorted(folder.glob(f"{symbol}_{model.timeframe}_*.csv*"))
        ]
        if not found:
            return None
        frame, _ = validate_bars(read_bar_file(found[0]), timeframe=model.timeframe,
                                 source=found[0].name)  # fmt: skip
        frames[iid] = frame
    return frames


def backtest(
    model: StrategyModel, bars: pd.DataFrame | dict[str, pd.DataFrame] | None = None
) -> RunResult:
    """Return ``velox.replay`` of the model's strategy on ``bars``, else the bundled bars of its
    instruments, else the store's.

    Examples
    --------
    >>> from velox.builder.actions import backtest
    >>> backtest(model).stats["total_return"]       # doctest: +SKIP
    """
    import velox

    cls = build(model)
    frames = bars if bars is not None else bundled_bars(model)
    return velox.replay(cls, bars=frames) if frames is not None else velox.replay(cls)


def summary(model: StrategyModel, result: RunResult) -> str:
    """Return a one-line summary of a backtest for a status line."""
    total = result.stats.get("total_return", float("nan"))
    return f"{model.name}: {len(result.trades)} trades, total return {total:.2%}"
