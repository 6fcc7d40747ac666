"""The result of an engine run: trades, equity curve, risk events and summary statistics.

Trades are rebuilt from fills (positions come from fills): a trade opens when a strategy's
position in an instrument and product leaves zero and closes when it returns to zero; a fill that
reverses the position closes one trade and opens the next with the remainder.

Statistics conventions: ``total_return`` and ``max_drawdown`` are fractions of equity (a
drawdown is positive, measured from the running peak of the sampled equity curve); ``sharpe`` is
the annualised (√252) mean over standard deviation of daily returns of the end-of-day equity,
without a risk-free rate (NaN with fewer than two days or no variation); ``win_rate`` counts
closed trades whose P&L net of their charges is positive.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from velox.calendar import IST
from velox.types import Fill

if TYPE_CHECKING:
    from velox.engine.core import Engine

__all__ = ["Trade", "RunResult", "trades_from_fills", "summary_stats", "build_result"]

_EPOCH_IST = datetime(1970, 1, 1, tzinfo=UTC).astimezone(IST)
_MAX_CURVE_POINTS = 5000


@dataclass(slots=True)
class Trade:
    """One round trip of a strategy in an instrument (``side`` is the entry side)."""

    strategy: str
    instrument_id: str
    product: str
    side: str
    qty: int
    entry_time: datetime
    entry_price: float
    exit_time: datetime | None = None
    exit_price: float | None = None
    pnl: float = 0.0
    charges: float = 0.0

    @property
    def closed(self) -> bool:
        return self.exit_time is not None

    @property
    def net_pnl(self) -> float:
        return self.pnl - self.charges

    def to_dict(self) -> dict[str, object]:
        """Return the trade as JSON-ready values (times in ISO 8601, IST)."""
        out = asdict(self)
        out["entry_time"] = self.entry_time.astimezone(IST).isoformat()
        out["exit_time"] = self.exit_time.astimezone(IST).isoformat() if self.exit_time else None
        out["net_pnl"] = self.net_pnl
        return out


@dataclass(slots=True)
class _Open:
    trade: Trade
    qty: int  # signed open quantity
    entry_value: float
    exit_qty: int = 0
    exit_value: float = 0.0


def trades_from_fills(fills: Sequence[Fill]) -> list[Trade]:
    """Return round-trip trades built from fills, in the order they opened.

    Examples
    --------
    >>> from datetime import datetime
    >>> t = datetime(2024, 4, 1, 10, 0, tzinfo=IST)
    >>> fills = [Fill("a", "c1", "NSE:SBIN", "BUY", 10, 100.0, t, charges=1.0),
    ...          Fill("b", "c2", "NSE:SBIN", "SELL", 10, 110.0, t, charges=1.0)]
    >>> [(x.side, x.qty, x.exit_price, x.pnl, x.charges) for x in trades_from_fills(fills)]
    [('BUY', 10, 110.0, 100.0, 2.0)]
    """
    open_: dict[tuple[str, str, str], _Open] = {}
    trades: list[Trade] = []
    for fill in fills:
        # ``member._value_`` is ``member.value`` without the enum property (once per fill)
        product, side = fill.product._value_, fill.side._value_
        sign = 1 if side == "BUY" else -1
        key = (fill.strategy, fill.instrument_id, product)
        signed = sign * fill.qty
        current = open_.get(key)
        remaining = fill.qty
        charge_rate = fill.charges / fill.qty
        if current is not None and (current.qty > 0) != (signed > 0):
            closing = min(abs(current.qty), remaining)
            t = current.trade
            t.charges += charge_rate * closing
            current.exit_qty += closing
            current.exit_value += closing * fill.price
            entry_avg = current.entry_value / t.qty
            t.pnl += closing * (fill.price - entry_avg) * (1 if current.qty > 0 else -1)
            current.qty += closing if current.qty < 0 else -closing
            remaining -= closing
            if current.qty == 0:
                t.exit_time = fill.ts
                t.exit_price = current.exit_value / current.exit_qty
                del open_[key]
                current = None
        if remaining:
            if current is None:
                trade = Trade(
                    fill.strategy,
                    fill.instrument_id,
                    product,
                    side,
                    remaining,  # qty
                    fill.ts,  # entry_time
                    fill.price,  # entry_price
                    None,  # exit_time
                    None,  # exit_price
                    0.0,  # pnl
                    charge_rate * remaining,  # charges
                )
                trades.append(trade)
                open_[key] = _Open(trade, sign * remaining, remaining * fill.price)
            else:  # adding to the open trade
                t = current.trade
                current.entry_value += remaining * fill.price
                t.qty += remaining
                t.entry_price = current.entry_value / t.qty
                t.charges += charge_rate * remaining
                current.qty += sign * remaining
    return trades


def summary_stats(
    equity_ns: Sequence[int],
    equity: Sequence[float],
    initial_cash: float,
    trades: Sequence[Trade],
    charges: float,
) -> dict[str, float | int]:
    """Return total return, max drawdown, Sharpe, trade count, win rate and charges."""
    import numpy as np

    values = np.asarray(equity, dtype=np.float64)
    final = float(values[-1]) if len(values) else initial_cash
    if len(values):
        curve = np.concatenate([[initial_cash], values])
        peak = np.maximum.accumulate(curve)
        max_dd = float(np.max((peak - curve) / peak))
    else:
        max_dd = 0.0
    sharpe = math.nan
    if len(values):
        days = (np.asarray(equity_ns, dtype=np.int64) + 19_800_000_000_000) // 86_400_000_000_000
        last_of_day = np.r_[days[1:] != days[:-1], True]
        daily = np.concatenate([[initial_cash], values[last_of_day]])
        returns = np.diff(daily) / daily[:-1]
        if len(returns) >= 2 and float(np.std(returns, ddof=1)) > 0:
            sharpe = float(np.mean(returns) / np.std(returns, ddof=1) * math.sqrt(252))
    closed = [t for t in trades if t.closed]
    wins = sum(1 for t in closed if t.net_pnl > 0)
    return {
        "initial_cash": initial_cash,
        "final_equity": final,
        "total_return": final / initial_cash - 1.0,
        "max_drawdown": max_dd,
        "sharpe": sharpe,
        "trades": len(closed),
        "open_trades": len(trades) - len(closed),
        "win_rate": wins / len(closed) if closed else math.nan,
        "charges": charges,
    }


@dataclass(slots=True)
class RunResult:
    """Everything a run produced; :meth:`to_json` writes the report the CLI saves."""

    mode: str
    run_id: str
    strategies: list[dict[str, object]]
    stats: dict[str, float | int]
    trades: list[Trade]
    equity_ns: list[int]
    equity: list[float]
    risk_events: list[dict[str, str]]
    alerts: list[str]
    orders: int
    fills: list[Fill] = field(repr=False, default_factory=list)

    def equity_curve(self) -> list[tuple[datetime, float]]:
        """Return the sampled equity curve as (IST time, rupees) pairs."""
        return [(_at(ns), v) for ns, v in zip(self.equity_ns, self.equity, strict=True)]

    def to_dict(self) -> dict[str, object]:
        """Return the JSON-ready report (a long curve is reduced to end-of-day points)."""
        points = list(zip(self.equity_ns, self.equity, strict=True))
        if len(points) > _MAX_CURVE_POINTS:
            by_day: dict[int, tuple[int, float]] = {}
            for ns, v in points:
                by_day[(ns + 19_800_000_000_000) // 86_400_000_000_000] = (ns, v)
            points = list(by_day.values())
        return {
            "mode": self.mode,
            "run_id": self.run_id,
            "strategies": self.strategies,
            "stats": {k: _json_number(v) for k, v in self.stats.items()},
            "orders": self.orders,
            "trades": [t.to_dict() for t in self.trades],
            "equity_curve": [[_at(ns).isoformat(), v] for ns, v in points],
            "risk_events": self.risk_events,
            "alerts": self.alerts,
        }

    def to_json(self, path: Path | str | None = None) -> str:
        """Return the report as JSON text, also writing it to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text)
        return text


def _at(ns: int) -> datetime:
    return _EPOCH_IST + timedelta(microseconds=ns // 1000)


def _json_number(value: float | int) -> float | int | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_result(engine: Engine) -> RunResult:
    """Return the :class:`RunResult` of a finished (or running) engine."""
    fills = list(engine.oms.fills)
    trades = trades_from_fills(fills)
    acct = engine.oms.account
    stats = summary_stats(
        engine.equity_ns, engine.equity_values, engine.initial_cash, trades, acct.charges
    )
    strategies = [
        {
            "name": r.strategy.name,
            "class": type(r.strategy).__name__,
            "params": {k: _plain(v) for k, v in r.strategy.params().items()},
            "instruments": list(r.strategy.instruments),
            "timeframe": r.strategy.timeframe,
            "error": r.error,
        }
        for r in engine._runners
    ]
    return RunResult(
        mode=engine.mode,
        run_id=engine.run_id,
        strategies=strategies,
        stats=stats,
        trades=trades,
        equity_ns=list(engine.equity_ns),
        equity=list(engine.equity_values),
        risk_events=[{**e.to_dict(), "mode": engine.mode} for e in engine.risk_events],
        alerts=list(engine.alerts),
        orders=len(engine.oms.orders),
        fills=fills,
    )


def _plain(value: object) -> object:
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return str(value)
