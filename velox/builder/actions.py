"""What the builder's buttons do, shared by the ipywidgets form and the Panel page.

No UI imports: each function takes a :class:`~velox.builder.model.StrategyModel` (or a folder)
and returns data, so both front ends stay thin and the behaviour is tested once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from velox.builder.codegen import build, is_generated
from velox.builder.model import Size, StrategyModel
from velox.errors import VeloxError

if TYPE_CHECKING:
    import pandas as pd

    from velox.engine import RunResult

__all__ = ["FormFields", "backtest", "builder_files", "bundled_bars", "summary"]

log = logging.getLogger(__name__)


class FormFields:
    """The widgets ↔ model mapping both forms share (ipywidgets and Panel widgets both hold
    ``.value``): a form names its widgets alike, ``_name_attr`` the name field's attribute
    (Panel keeps ``name`` for itself), and says things with ``_say``."""

    _name_attr = "name"
    groups: dict[str, Any]

    def _say(self, message: str, *, error: bool = False) -> None:
        raise NotImplementedError

    @property
    def model(self) -> StrategyModel:
        """Return the model the widgets show (not validated: :meth:`StrategyModel.validate`)."""
        f: Any = self
        kind, value = f.size_kind.value, f.size_value.value
        return StrategyModel(
            name=getattr(f, self._name_attr).value.strip(),
            description=f.description.value,
            instruments=tuple(
                p.strip().upper() for p in f.instruments.value.split(",") if p.strip()
            ),
            timeframe=f.timeframe.value,
            product=f.product.value,
            **{name: editor.group for name, editor in self.groups.items()},
            stop_loss_pct=float(f.stop.value) if f.use_stop.value else None,
            target_pct=float(f.target.value) if f.use_target.value else None,
            size=Size(kind, int(value) if kind == "lots" and float(value).is_integer() else value),
        )

    def load_model(self, model: StrategyModel) -> None:
        """Show ``model`` in the widgets."""
        f: Any = self
        getattr(f, self._name_attr).value = model.name
        f.description.value = model.description
        f.instruments.value = ", ".join(model.instruments)
        f.timeframe.value = model.timeframe
        f.product.value = model.product
        f.size_kind.value = model.size.kind
        f.size_value.value = float(model.size.value)
        f.use_stop.value = model.stop_loss_pct is not None
        if model.stop_loss_pct is not None:
            f.stop.value = model.stop_loss_pct
        f.use_target.value = model.target_pct is not None
        if model.target_pct is not None:
            f.target.value = model.target_pct
        for name, editor in self.groups.items():
            editor.set(getattr(model, name))

    def _safely(self, action: Callable[[], object]) -> None:
        try:
            action()
        except (VeloxError, FileExistsError, OSError) as exc:
            self._say(str(exc), error=True)
        except Exception as exc:  # a button must report, never raise into the front end
            log.exception("strategy builder: %s failed", getattr(action, "__name__", action))
            self._say(f"{type(exc).__name__}: {exc}", error=True)


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
