"""Run results: trades from fills, the equity curve, summary statistics and the JSON report."""

from velox.backtest.result import RunResult, Trade, summary_stats, trades_from_fills

__all__ = ["RunResult", "Trade", "summary_stats", "trades_from_fills"]
