"""The result of an engine run: trades, orders, fills, equity curve and summary statistics.

A :class:`RunResult` is built for notebooks: :attr:`~RunResult.trades`, :attr:`~RunResult.orders`,
:attr:`~RunResult.fills` and :attr:`~RunResult.equity` are pandas objects with IST times (built on
first access and cached), ``_repr_html_`` shows a compact summary and :meth:`~RunResult.plot`
draws price with entries and exits, equity and drawdown. The engine's raw records stay available
unchanged (``trade_list``, ``order_list``, ``fill_list``, ``equity_ns``, ``equity_values``), so
storing and reloading a result can be bit-exact.

Trades are rebuilt from fills (positions come from fills): a trade opens when a strategy's
position in an instrument and product leaves zero and closes when it returns to zero; a fill that
reverses the position closes one trade and opens the next with the remainder. ``side`` is the
entry side; ``pnl`` is gross, ``charges`` are the trade's share of its fills' charges and
``net_pnl = pnl - charges``.

Statistics conventions (:func:`summary_stats`): returns and drawdowns are fractions of equity (a
drawdown is positive, measured from the running peak of the sampled equity curve, starting at
the initial cash); daily figures use the end-of-day equity (the last sample of each IST date,
preceded by the initial cash) and a year of 252 sessions; no risk-free rate.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from velox.calendar import IST, IST_NAME
from velox.errors import ConfigError
from velox.types import Fill, Order

if TYPE_CHECKING:
    import holoviews as hv
    import numpy as np
    import pandas as pd

    from velox.engine.core import Engine

__all__ = [
    "Trade", "RunResult", "trades_from_fills", "summary_stats", "summary_stats_arrays",
    "build_result", "result_from_records",
]  # fmt: skip

_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_IST = _EPOCH_UTC.astimezone(IST)
_MAX_CURVE_POINTS = 5000
_DAY_NS = 86_400_000_000_000
_IST_OFFSET_NS = 19_800_000_000_000
_SESSIONS_PER_YEAR = 252
#: The exit time of a trade still open at the end, for the exposure figure.
_OPEN = 2**62
_T = TypeVar("_T")

#: Column order of :attr:`RunResult.trades`.
TRADE_COLUMNS = (
    "entry_time", "exit_time", "instrument_id", "side", "qty", "entry_price", "exit_price", "pnl",
    "charges", "net_pnl", "strategy", "product",
)  # fmt: skip
#: Column order of :attr:`RunResult.orders` (every :class:`velox.types.Order` field).
ORDER_COLUMNS = (
    "client_id", "strategy", "instrument_id", "side", "qty", "order_type", "product",
    "limit_price", "trigger_price", "status", "filled_qty", "average_price", "status_message",
    "created_at", "validity", "tag", "broker_order_id",
)  # fmt: skip
#: Column order of :attr:`RunResult.fills` (every :class:`velox.types.Fill` field).
FILL_COLUMNS = (
    "ts", "fill_id", "client_id", "strategy", "instrument_id", "side", "qty", "price", "charges",
    "product", "broker_order_id",
)  # fmt: skip


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
    """Return the summary statistics of a run from its sampled equity curve and trades.

    Parameters
    ----------
    equity_ns, equity
        The equity curve: UTC epoch-ns sample times (ascending; the engine samples after every
        bar close) and the account equity in rupees at each.
    initial_cash
        Equity before the first sample.
    trades
        Round trips (:func:`trades_from_fills`); only closed ones count in the trade figures.
    charges
        Total charges paid (brokerage, taxes, fees) over every fill.

    Returns
    -------
    dict
        ``initial_cash``, ``final_equity`` (last sample, else the initial cash);
        ``total_return`` = final / initial − 1;
        ``cagr`` = (final / initial) ^ (252 / sessions) − 1, *sessions* being the IST dates with
        an equity sample (−1 when equity ended at or below zero, NaN without samples);
        ``max_drawdown`` = largest (peak − equity) / peak over the curve preceded by the
        initial cash (a positive fraction);
        ``sharpe`` = √252 × mean / standard deviation (ddof 1) of the daily returns of the
        end-of-day equity (preceded by the initial cash), NaN with fewer than two returns or no
        variation;
        ``sortino`` = √252 × mean daily return / downside deviation, the downside deviation being
        √(mean(min(r, 0)²)) over all daily returns (target 0), NaN with fewer than two returns or
        no losing day;
        ``calmar`` = cagr / max_drawdown (NaN without a drawdown);
        ``trades`` closed round trips, ``open_trades`` still open at the end;
        ``win_rate`` = closed trades with net P&L > 0 / closed trades;
        ``profit_factor`` = sum of net P&L of winning closed trades / |sum over losing ones|
        (inf with winners and no loser, NaN with neither);
        ``avg_trade`` = mean net P&L of a closed trade, rupees;
        ``expectancy`` = mean net return of a closed trade as a fraction of its entry value
        (net P&L / (qty × entry price)): what a trade earns per rupee committed;
        ``exposure`` = fraction of equity samples taken while at least one trade was open (a
        sample at time t counts when entry time ≤ t < exit time, open trades to the end; NaN
        without samples);
        ``charges`` = the charges paid. Trade figures are NaN without closed trades.

    Examples
    --------
    >>> ns = [1_711_944_000_000_000_000 + k * 86_400_000_000_000 for k in range(3)]
    >>> stats = summary_stats(ns, [101_000.0, 99_990.0, 102_000.0], 100_000.0, [], 0.0)
    >>> round(stats["total_return"], 4), round(stats["max_drawdown"], 4)
    (0.02, 0.01)
    """
    import numpy as np

    closed = [t for t in trades if t.closed]
    return summary_stats_arrays(
        equity_ns,
        equity,
        initial_cash,
        np.array([t.net_pnl for t in closed], dtype=np.float64),
        np.array([t.qty * t.entry_price for t in closed], dtype=np.float64),
        np.array([_ns(t.entry_time) for t in trades], dtype=np.int64),
        np.array(
            [_ns(t.exit_time) if t.exit_time is not None else _OPEN for t in trades], dtype=np.int64
        ),  # fmt: skip
        charges,
    )


def summary_stats_arrays(
    equity_ns: Sequence[int] | np.ndarray,
    equity: Sequence[float] | np.ndarray,
    initial_cash: float,
    net_pnl: np.ndarray,
    committed: np.ndarray,
    entry_ns: np.ndarray,
    exit_ns: np.ndarray,
    charges: float,
) -> dict[str, float | int]:
    """Return :func:`summary_stats` from arrays of the trades instead of Trade records.

    The one implementation of the statistics (:func:`summary_stats` calls it), for callers that
    rebuild trades without objects (a parameter sweep's compiled trade pass).

    Parameters
    ----------
    net_pnl, committed
        Per *closed* trade, in opening order: ``Trade.net_pnl`` and ``qty × entry_price``.
    entry_ns, exit_ns
        Per trade, closed or open, in opening order: entry and exit times as UTC epoch ns of
        the fills' microsecond timestamps (``2**62`` for a trade still open at the end).
    equity_ns, equity, initial_cash, charges
        As for :func:`summary_stats`.
    """
    import numpy as np

    values = np.asarray(equity, dtype=np.float64)
    stamps = np.asarray(equity_ns, dtype=np.int64)
    final = float(values[-1]) if len(values) else initial_cash
    nan = math.nan
    max_dd = _max_drawdown(values, initial_cash) if len(values) else 0.0
    returns = _daily_returns(stamps, values, initial_cash)
    sharpe = sortino = nan
    if len(returns) >= 2:
        mean, std = float(np.mean(returns)), float(np.std(returns, ddof=1))
        if std > 0:
            sharpe = mean / std * math.sqrt(_SESSIONS_PER_YEAR)
        downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
        if downside > 0:
            sortino = mean / downside * math.sqrt(_SESSIONS_PER_YEAR)
    if not len(returns):
        cagr = nan
    elif final <= 0:
        cagr = -1.0
    else:
        cagr = (final / initial_cash) ** (_SESSIONS_PER_YEAR / len(returns)) - 1.0
    calmar = cagr / max_dd if max_dd > 0 else nan
    net = np.asarray(net_pnl, dtype=np.float64)
    committed = np.asarray(committed, dtype=np.float64)
    closed = len(net)
    gross_win, gross_loss = float(net[net > 0].sum()), float(-net[net < 0].sum())
    no_loss = math.inf if gross_win > 0 else nan
    profit_factor = gross_win / gross_loss if gross_loss > 0 else no_loss
    return {
        "initial_cash": initial_cash,
        "final_equity": final,
        "total_return": final / initial_cash - 1.0,
        "cagr": cagr,
        "max_drawdown": max_dd,
        "sharpe": sharpe,
        "sortino": sortino,
        "calmar": calmar,
        "trades": closed,
        "open_trades": len(entry_ns) - closed,
        "win_rate": int(np.sum(net > 0)) / closed if closed else nan,
        "profit_factor": profit_factor if closed else nan,
        "avg_trade": float(np.mean(net)) if closed else nan,
        "expectancy": float(np.mean(net / committed)) if closed else nan,
        "exposure": _exposure(
            stamps, np.asarray(entry_ns, np.int64), np.asarray(exit_ns, np.int64)
        ),
        "charges": charges,
    }


#: Block of equity samples the drawdown is computed over at a time (stays in the CPU cache).
_BLOCK = 1 << 16


def _max_drawdown(values: np.ndarray, initial_cash: float) -> float:
    """Return max((peak − equity) / peak) over the curve preceded by the initial cash.

    Block by block with the running peak carried over: the same values as
    ``np.maximum.accumulate`` over the whole curve, without million-sample temporaries (a
    sweep computes this once per combination).
    """
    import numpy as np

    if len(values) > _BLOCK:  # a long curve (a 1-minute backtest): one compiled pass
        from velox.engine._kernels import max_drawdown

        return float(max_drawdown(np.ascontiguousarray(values, np.float64), float(initial_cash)))
    peak, worst = float(initial_cash), 0.0  # the initial sample's own drawdown is 0
    for start in range(0, len(values), _BLOCK):
        block = values[start : start + _BLOCK]
        running = np.maximum.accumulate(block)
        np.maximum(running, peak, out=running)
        block_worst = float(np.max((running - block) / running))
        if block_worst != block_worst:
            return math.nan  # a NaN sample: as np.max over the whole curve says
        worst = max(worst, block_worst)
        peak = float(running[-1])
    return worst


#: The last sample of each IST date of the equity times last asked for (a sweep asks with the
#: same times for every combination): (times, their rows, (length, first, last) to notice an
#: array changed in place).
_DAY_ENDS: list[tuple[np.ndarray, np.ndarray, tuple[int, int, int]]] = []


def _day_ends(stamps: np.ndarray) -> np.ndarray:
    import numpy as np

    if _DAY_ENDS:
        seen, ends, shape = _DAY_ENDS[0]
        if seen is stamps and shape == (len(stamps), int(stamps[0]), int(stamps[-1])):
            return ends
    days = (stamps + _IST_OFFSET_NS) // _DAY_NS
    rows = np.flatnonzero(np.r_[days[1:] != days[:-1], True])
    _DAY_ENDS[:] = [(stamps, rows, (len(stamps), int(stamps[0]), int(stamps[-1])))]
    return rows


def _daily_returns(stamps: np.ndarray, values: np.ndarray, initial_cash: float) -> np.ndarray:
    import numpy as np

    if not len(values):
        return np.empty(0)
    daily = np.concatenate([[initial_cash], values[_day_ends(stamps)]])
    return np.diff(daily) / daily[:-1]


def _exposure(stamps: np.ndarray, entries: np.ndarray, exits: np.ndarray) -> float:
    """Return the fraction of samples at t with some trade's entry ≤ t < exit.

    Counted as the length of the union of each trade's run of samples (no per-sample array):
    a whole number over the sample count, as the mean of the per-sample flags would be.
    """
    import numpy as np

    if not len(stamps):
        return math.nan
    if not len(entries):
        return 0.0
    first = np.searchsorted(stamps, entries, "left")
    stop = np.maximum(np.searchsorted(stamps, exits, "left"), first)
    order = np.argsort(first, kind="stable")
    first, stop = first[order], stop[order]
    reach = np.maximum.accumulate(stop)
    opens = np.r_[True, first[1:] > reach[:-1]]  # a run that does not touch the ones before
    ends = np.r_[np.flatnonzero(opens)[1:] - 1, len(first) - 1]
    covered = int(np.sum(reach[ends] - first[opens]))
    return covered / len(stamps)


def _ns(ts: datetime) -> int:
    return (ts - _EPOCH_UTC) // timedelta(microseconds=1) * 1000


@dataclass(slots=True, eq=False)
class RunResult:
    """Everything a run produced, as DataFrames for notebooks and as JSON for reports.

    Attributes
    ----------
    mode, run_id
        ``"replay"``/``"paper"``/``"live"`` and the run's id (the prefix of its client ids).
    strategies
        One dict per strategy: name, class, params, instruments, timeframe, error.
    stats
        :func:`summary_stats` of the run.
    trade_list, order_list, fill_list
        The raw records: :class:`Trade` round trips, every :class:`velox.types.Order` in its
        final state (creation order) and every :class:`velox.types.Fill` (booking order).
    equity_ns, equity_values
        The sampled equity curve exactly as the engine recorded it (UTC epoch ns, rupees).
    risk_events, alerts
        Risk events and alerts (:class:`velox.engine.journal.Alert`) as JSON-ready dicts.
    bars
        The replayed bars by (instrument id, timeframe), for :meth:`plot` (empty for paper
        and live runs: pass ``bars=`` to :meth:`plot`).

    Examples
    --------
    >>> import velox
    >>> res = velox.replay("strategies/sma_cross.py", symbols="NSE:RELIANCE", timeframe="1d",
    ...                    fast=10, slow=30)                               # doctest: +SKIP
    >>> res.trades[["entry_time", "side", "qty", "net_pnl"]].head()         # doctest: +SKIP
    >>> res.stats["sharpe"], res.equity.iloc[-1]                            # doctest: +SKIP
    >>> res.plot()                                                          # doctest: +SKIP
    """

    mode: str
    run_id: str
    strategies: list[dict[str, object]]
    stats: dict[str, float | int]
    trade_list: list[Trade] = field(default_factory=list)
    order_list: list[Order] = field(default_factory=list)
    fill_list: list[Fill] = field(default_factory=list)
    equity_ns: list[int] = field(default_factory=list)
    equity_values: list[float] = field(default_factory=list)
    risk_events: list[dict[str, str]] = field(default_factory=list)
    alerts: list[dict[str, object]] = field(default_factory=list)
    bars: Mapping[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    _cache: dict[str, object] = field(default_factory=dict, init=False)

    def __repr__(self) -> str:
        names = ", ".join(str(s["name"]) for s in self.strategies)
        ret = self.stats.get("total_return", math.nan)
        return (
            f"RunResult(mode={self.mode!r}, run_id={self.run_id!r}, strategies=[{names}], "
            f"trades={len(self.trade_list)}, orders={len(self.order_list)}, "
            f"fills={len(self.fill_list)}, total_return={_fmt(ret, pct=True)})"
        )

    # -- DataFrames (built on first access, then cached) ------------------------------------

    @property
    def trades(self) -> pd.DataFrame:
        """Return the round trips, one row each, in the order they opened.

        Columns: ``entry_time``, ``exit_time`` (IST; NaT while open), ``instrument_id``,
        ``side`` (the entry side: BUY long, SELL short), ``qty``, ``entry_price``,
        ``exit_price`` (average prices; NaN while open), ``pnl`` (gross), ``charges``,
        ``net_pnl``, ``strategy``, ``product``.
        """
        return self._frame("trades", self._build_trades)

    @property
    def orders(self) -> pd.DataFrame:
        """Return every order of the run in its final state, in creation order.

        Columns are the :class:`velox.types.Order` fields (enums as their text, ``created_at``
        in IST, missing prices NaN), led by ``client_id``.
        """
        return self._frame("orders", self._build_orders)

    @property
    def fills(self) -> pd.DataFrame:
        """Return every fill of the run, in booking order (``ts`` in IST, enums as text)."""
        return self._frame("fills", self._build_fills)

    @property
    def equity(self) -> pd.Series:
        """Return the sampled account equity in rupees, indexed by IST sample time.

        The values are the engine's floats unchanged (``equity_values``); the index has the
        engine's nanoseconds (``equity_ns``).
        """
        return self._frame("equity", self._build_equity)

    @property
    def drawdown(self) -> pd.Series:
        """Return the drawdown at each equity sample: (running peak − equity) / running peak.

        The peak starts at the initial cash, so ``drawdown.max() == stats["max_drawdown"]``.
        """
        return self._frame("drawdown", self._build_drawdown)

    def _frame(self, name: str, build: Callable[[], _T]) -> _T:
        if name not in self._cache:
            self._cache[name] = build()
        return self._cache[name]  # type: ignore[return-value]

    def _build_trades(self) -> pd.DataFrame:
        import pandas as pd

        rows = self.trade_list
        frame = pd.DataFrame(
            {
                "entry_time": _ist([t.entry_time for t in rows]),
                "exit_time": _ist([t.exit_time for t in rows]),
                "instrument_id": pd.Series([t.instrument_id for t in rows], dtype=object),
                "side": pd.Series([t.side for t in rows], dtype=object),
                "qty": pd.Series([t.qty for t in rows], dtype="int64"),
                "entry_price": pd.Series([t.entry_price for t in rows], dtype="float64"),
                "exit_price": pd.Series(
                    [math.nan if t.exit_price is None else t.exit_price for t in rows],
                    dtype="float64",
                ),
                "pnl": pd.Series([t.pnl for t in rows], dtype="float64"),
                "charges": pd.Series([t.charges for t in rows], dtype="float64"),
                "net_pnl": pd.Series([t.net_pnl for t in rows], dtype="float64"),
                "strategy": pd.Series([t.strategy for t in rows], dtype=object),
                "product": pd.Series([t.product for t in rows], dtype=object),
            }
        )
        return frame[list(TRADE_COLUMNS)]

    def _build_orders(self) -> pd.DataFrame:
        return _records(self.order_list, ORDER_COLUMNS, times=("created_at",),
                        floats=("limit_price", "trigger_price", "average_price"),
                        ints=("qty", "filled_qty"))  # fmt: skip

    def _build_fills(self) -> pd.DataFrame:
        return _records(self.fill_list, FILL_COLUMNS, times=("ts",),
                        floats=("price", "charges"), ints=("qty",))  # fmt: skip

    def _build_equity(self) -> pd.Series:
        import numpy as np
        import pandas as pd

        index = pd.DatetimeIndex(
            pd.to_datetime(np.asarray(self.equity_ns, dtype=np.int64), utc=True), name="time"
        ).tz_convert(IST_NAME)
        return pd.Series(np.asarray(self.equity_values, dtype=np.float64), index, name="equity")

    def _build_drawdown(self) -> pd.Series:
        import numpy as np

        equity = self.equity
        initial = float(self.stats.get("initial_cash", equity.iloc[0] if len(equity) else 0.0))
        peak = np.maximum.accumulate(np.r_[initial, equity.to_numpy()])[1:]
        return ((peak - equity) / peak).rename("drawdown")

    # -- reports -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, object]:
        """Return the JSON-ready report (a long curve is reduced to end-of-day points)."""
        points = list(zip(self.equity_ns, self.equity_values, strict=True))
        if len(points) > _MAX_CURVE_POINTS:
            by_day: dict[int, tuple[int, float]] = {}
            for ns, v in points:
                by_day[(ns + _IST_OFFSET_NS) // _DAY_NS] = (ns, v)
            points = list(by_day.values())
        return {
            "mode": self.mode,
            "run_id": self.run_id,
            "strategies": self.strategies,
            "stats": {k: _json_number(v) for k, v in self.stats.items()},
            "orders": len(self.order_list),
            "trades": [t.to_dict() for t in self.trade_list],
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

    def _repr_html_(self) -> str:
        """Return a compact HTML summary for Jupyter: run, strategies, key stats, last trades."""
        esc = html.escape
        parts = [
            "<div class='velox-run'>",
            f"<b>RunResult</b> {esc(self.mode)} run <code>{esc(self.run_id)}</code>: "
            f"{len(self.trade_list)} trades, {len(self.order_list)} orders, "
            f"{len(self.fill_list)} fills",
            "<ul style='margin:0.3em 0'>",
        ]
        for s in self.strategies:
            params = ", ".join(f"{k}={v!r}" for k, v in dict(s["params"]).items())  # type: ignore[call-overload]
            state = f" <b>stopped: {esc(str(s['error']))}</b>" if s.get("error") else ""
            instruments = ", ".join(map(str, s["instruments"]))  # type: ignore[call-overload]
            parts.append(
                f"<li>{esc(str(s['name']))}({esc(params)}) on {esc(instruments)} "
                f"{esc(str(s['timeframe']))}{state}</li>"
            )
        parts.append("</ul>")
        cells = "".join(
            f"<tr><th style='text-align:left'>{esc(label)}</th>"
            f"<td style='text-align:right'>{_fmt(self.stats.get(key, math.nan), pct)}</td></tr>"
            for key, label, pct in _KEY_STATS
            if key in self.stats
        )
        parts.append(f"<table>{cells}</table>")
        if self.risk_events:
            parts.append(f"<p>{len(self.risk_events)} risk events</p>")
        if self.trade_list:
            last = self.trades.tail(5)[
                ["entry_time", "exit_time", "instrument_id", "side", "qty", "entry_price",
                 "exit_price", "net_pnl"]
            ]  # fmt: skip
            parts.append(f"<p>last {len(last)} of {len(self.trade_list)} trades</p>")
            parts.append(last.to_html(index=False, float_format=lambda v: f"{v:,.2f}", na_rep=""))
        parts.append("</div>")
        return "\n".join(parts)

    # -- plots -------------------------------------------------------------------------------

    def plot(
        self,
        bars: pd.DataFrame | Mapping[str, pd.DataFrame] | Mapping[tuple[str, str], pd.DataFrame]
        | None = None,
    ) -> hv.Layout:  # fmt: skip
        """Return a holoviews layout: price with entries and exits per instrument, equity, drawdown.

        One price panel per traded (or replayed) instrument that has bars (its close, with ▲ long
        entries, ▼ short entries and × exits at their fill prices), then the equity curve, then
        the drawdown (as a negative fraction), one column on a shared time axis in IST wall time.
        holoviews (with its bokeh backend) is imported here, not with velox.

        Parameters
        ----------
        bars
            Bars to draw prices from instead of the replayed ones (:attr:`bars`): a DataFrame
            for a one-instrument run, or a mapping by instrument id or (instrument id,
            timeframe). Needed for paper and live results, which keep no bars.

        Examples
        --------
        >>> res.plot()                                     # doctest: +SKIP
        >>> hv.render(res.plot(), backend="bokeh")          # doctest: +SKIP
        """
        import holoviews as hv

        if "bokeh" not in hv.Store.loaded_backends():
            hv.extension("bokeh", logo=False)
        panels = []
        trades = self.trades
        for iid, frame in self._price_frames(bars).items():
            time_ = _wall(frame.index)
            price = hv.Curve((time_, frame["close"].to_numpy()), "time", "price", label="close")
            mine = trades[trades["instrument_id"] == iid]
            overlay = price.opts(color="#555555", line_width=1)
            for side, marker, color, label in (
                ("BUY", "triangle", "green", "long entry"),
                ("SELL", "inverted_triangle", "red", "short entry"),
            ):
                entries = mine[mine["side"] == side]
                points = hv.Scatter(
                    (_wall(entries["entry_time"]), entries["entry_price"].to_numpy()),
                    "time", "price", label=label,
                )  # fmt: skip
                overlay = overlay * points.opts(marker=marker, color=color, size=9)
            done = mine[mine["exit_time"].notna()]
            exits = hv.Scatter(
                (_wall(done["exit_time"]), done["exit_price"].to_numpy()), "time", "price",
                label="exit",
            )  # fmt: skip
            overlay = overlay * exits.opts(marker="x", color="black", size=9)
            panels.append(overlay.opts(title=iid, responsive=True, height=300,
                                       legend_position="top_left"))  # fmt: skip
        equity = self.equity
        panels.append(
            hv.Curve((_wall(equity.index), equity.to_numpy()), "time", "equity", label="equity")
            .opts(title="equity (₹)", responsive=True, height=220, color="#1f77b4")
        )  # fmt: skip
        drawdown = self.drawdown
        panels.append(
            hv.Area((_wall(drawdown.index), -drawdown.to_numpy()), "time", "drawdown")
            .opts(title="drawdown", responsive=True, height=160, color="#d62728", alpha=0.5)
        )  # fmt: skip
        return hv.Layout(panels).cols(1)

    def _price_frames(
        self,
        bars: pd.DataFrame | Mapping[str, pd.DataFrame] | Mapping[tuple[str, str], pd.DataFrame]
        | None,
    ) -> dict[str, pd.DataFrame]:  # fmt: skip
        import pandas as pd

        traded = list(dict.fromkeys(t.instrument_id for t in self.trade_list))
        listed = [str(i) for s in self.strategies for i in s["instruments"]]  # type: ignore[attr-defined]
        instruments = list(dict.fromkeys([*traded, *listed]))
        if bars is None:
            bars = self.bars
        if isinstance(bars, pd.DataFrame):
            if len(instruments) != 1:
                raise ConfigError(
                    f"plot(bars=DataFrame) is ambiguous for a run on {', '.join(instruments)}; "
                    "pass a mapping {instrument_id: DataFrame}"
                )
            return {instruments[0]: bars}
        main = {str(i): str(s["timeframe"]) for s in self.strategies for i in s["instruments"]}  # type: ignore[attr-defined]
        by_instrument: dict[str, pd.DataFrame] = {}
        for key, frame in bars.items():
            iid, tf = key if isinstance(key, tuple) else (key, main.get(key))
            if iid not in by_instrument or tf == main.get(iid):
                by_instrument[iid] = frame
        return {iid: by_instrument[iid] for iid in instruments if iid in by_instrument}


_KEY_STATS = (
    ("final_equity", "final equity (₹)", False),
    ("total_return", "total return", True),
    ("cagr", "CAGR", True),
    ("max_drawdown", "max drawdown", True),
    ("sharpe", "Sharpe", False),
    ("sortino", "Sortino", False),
    ("calmar", "Calmar", False),
    ("trades", "closed trades", False),
    ("win_rate", "win rate", True),
    ("profit_factor", "profit factor", False),
    ("avg_trade", "average trade, net (₹)", False),
    ("expectancy", "expectancy (per ₹ committed)", True),
    ("exposure", "exposure", True),
    ("charges", "charges paid (₹)", False),
)


def _fmt(value: object, pct: bool = False) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:.2%}" if pct else f"{value:,.2f}"
    return str(value)


def _ist(times: Sequence[datetime | None]) -> pd.Series:
    import pandas as pd

    index = pd.to_datetime(pd.Series(times, dtype=object), utc=True)
    return index.dt.tz_convert(IST_NAME).astype(f"datetime64[ns, {IST_NAME}]")


def _wall(times: pd.DatetimeIndex | pd.Series) -> np.ndarray:
    """Return IST wall-clock times without a zone (bokeh shows those as they are)."""
    import pandas as pd

    index = pd.DatetimeIndex(times)
    if index.tz is not None:
        index = index.tz_convert(IST_NAME).tz_localize(None)
    return index.to_numpy()


def _records(
    rows: Sequence[Order] | Sequence[Fill],
    columns: Sequence[str],
    *,
    times: Sequence[str],
    floats: Sequence[str],
    ints: Sequence[str],
) -> pd.DataFrame:
    import pandas as pd

    data: dict[str, object] = {}
    for name in columns:
        values = [getattr(row, name) for row in rows]
        if name in times:
            data[name] = _ist(values)
        elif name in floats:
            data[name] = pd.Series([math.nan if v is None else v for v in values], dtype="float64")
        elif name in ints:
            data[name] = pd.Series(values, dtype="int64")
        else:
            data[name] = pd.Series(
                [v._value_ if hasattr(v, "_value_") else v for v in values], dtype=object
            )
    return pd.DataFrame(data, columns=list(columns))


def _at(ns: int) -> datetime:
    return _EPOCH_IST + timedelta(microseconds=ns // 1000)


def _json_number(value: float | int) -> float | int | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_result(engine: Engine) -> RunResult:
    """Return the :class:`RunResult` of a finished (or running) engine."""
    from velox.feeds.bar_replay import BarReplay

    feed = engine.feed
    return result_from_records(
        mode=engine.mode,
        run_id=engine.run_id,
        strategies=engine.strategy_records(),
        initial_cash=engine.initial_cash,
        orders=list(engine.oms.orders.values()),
        fills=list(engine.oms.fills),
        equity_ns=list(engine.equity_ns),
        equity_values=list(engine.equity_values),
        risk_events=[{**e.to_dict(), "mode": engine.mode} for e in engine.risk_events],
        alerts=[a.to_dict() for a in engine.alerts],
        bars=dict(feed.frames()) if isinstance(feed, BarReplay) else {},
    )


def result_from_records(
    *,
    mode: str,
    run_id: str,
    strategies: list[dict[str, object]],
    initial_cash: float,
    orders: list[Order],
    fills: list[Fill],
    equity_ns: list[int],
    equity_values: list[float],
    risk_events: list[dict[str, str]] = (),  # type: ignore[assignment]
    alerts: list[dict[str, object]] = (),  # type: ignore[assignment]
    bars: Mapping[tuple[str, str], pd.DataFrame] | None = None,
) -> RunResult:
    """Return the :class:`RunResult` of a run's records: trades and statistics are derived
    from the fills and the equity curve, so a run rebuilt from the store (``velox.load_run``)
    equals the one that was recorded."""
    trades = trades_from_fills(fills)
    charges = 0.0
    for fill in fills:  # in booking order, as the OMS's account book summed them
        charges += fill.charges
    stats = summary_stats(equity_ns, equity_values, initial_cash, trades, charges)
    return RunResult(
        mode=mode,
        run_id=run_id,
        strategies=strategies,
        stats=stats,
        trade_list=trades,
        order_list=orders,
        fill_list=fills,
        equity_ns=equity_ns,
        equity_values=equity_values,
        risk_events=list(risk_events),
        alerts=list(alerts),
        bars=dict(bars or {}),
    )
