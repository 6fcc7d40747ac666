"""Research on top of the engine: vectorised backtests, sweeps, walk-forward, Monte Carlo.

This package is research (vectorbt lands here) and depends on Core; the run result it shares
with the engine lives in :mod:`velox.engine.result`.
"""

from velox.engine.result import RunResult, Trade, summary_stats, trades_from_fills

__all__ = ["RunResult", "Trade", "summary_stats", "trades_from_fills"]
