"""Research on top of the engine: vectorised backtests, sweeps, walk-forward, Monte Carlo.

This package is research (the only one that imports vectorbt, and only when a result's
``portfolio`` is built) and depends on Core; the run result it shares with the engine lives in
:mod:`velox.engine.result`. :mod:`velox.backtest.research` holds ``velox.research``,
``velox.parity`` and ``velox.check_lookahead``, :mod:`~velox.backtest.universe` the inputs
(``prepare``, ``Universe.run`` for sweeps), :mod:`~velox.backtest.result` the
``ResearchResult`` and :mod:`~velox.backtest._kernel` the compiled loop; their names are also
reachable from here, lazily (``velox.backtest.ResearchResult``), so importing this package
stays cheap.
"""

from typing import Any

from velox.engine.result import RunResult, Trade, summary_stats, trades_from_fills

__all__ = ["RunResult", "Trade", "summary_stats", "trades_from_fills"]

_RESEARCH = frozenset(
    {"ResearchResult", "Universe", "prepare", "panel", "strategy_weights", "parity",
     "ParityReport", "compare", "check_lookahead"}
)  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _RESEARCH:
        from velox.backtest import research as module

        return getattr(module, name)
    raise AttributeError(f"module 'velox.backtest' has no attribute {name!r}")
