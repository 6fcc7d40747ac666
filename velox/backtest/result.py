"""The result of a vectorised backtest: the engine's frames and statistics, and vectorbt's.

:class:`ResearchResult` holds the kernel's records (fills, orders, equity at every close) and
builds from them, on first access, what :class:`velox.engine.result.RunResult` holds — with the
same functions (``trades_from_fills``, ``summary_stats``, ``result_from_records``), so research
and replay numbers come from one code path — and the vectorbt ``Portfolio`` of the same orders.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from velox.backtest.universe import Universe
from velox.calendar import IST_NAME
from velox.strategy import Strategy
from velox.types import Fill, Order, OrderStatus, Side

if TYPE_CHECKING:
    import holoviews as hv

    from velox.engine.result import RunResult, Trade

__all__ = ["ResearchResult"]

log = logging.getLogger(__name__)

_STATUS = (OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.OPEN)
_REASONS = (
    "",
    "Insufficient funds (research: the simulator's RMS check)",
    "Insufficient holdings to sell in CNC (short selling in delivery is not allowed)",
    "MIS orders are blocked after the square-off time",
    "max_orders_per_second: the risk engine's order throttle refused it",
)

#: Keywords of :func:`research` that configure the run rather than the strategy.


@dataclass(eq=False)
class ResearchResult:
    """The result of :func:`research`: the engine's DataFrames and statistics, and vectorbt.

    :attr:`stats`, :attr:`trades`, :attr:`orders`, :attr:`fills`, :attr:`equity` and
    :attr:`drawdown` are those of :class:`velox.engine.result.RunResult` (the same columns,
    built by the same functions from the same kind of records), made on first access so a
    plain backtest pays only for the compiled simulation. :attr:`portfolio` is the vectorbt
    ``Portfolio`` of the same orders (fill prices, exact charges as fixed fees), built when
    first asked for. :attr:`final_equity` and :attr:`charges` come straight from the kernel.

    Examples
    --------
    >>> import velox
    >>> res = velox.research("strategies/sma_cross.py", "NSE:RELIANCE", timeframe="1d",
    ...                      fast=10, slow=30)                         # doctest: +SKIP
    >>> res.stats["sharpe"], res.trades.head()                         # doctest: +SKIP
    >>> res.portfolio.stats()                                          # doctest: +SKIP
    >>> res.plot()                                                     # doctest: +SKIP
    """

    strategy: Strategy
    universe: Universe
    weights: np.ndarray
    fill_records: np.ndarray
    order_records: np.ndarray
    equity_values_array: np.ndarray
    run_id: str = "research"
    _cache: dict[str, object] = field(default_factory=dict, repr=False)

    # -- figures straight from the kernel ---------------------------------------------------

    @property
    def final_equity(self) -> float:
        """Return the account equity at the last close (rupees)."""
        values = self.equity_values_array
        return float(values[-1]) if len(values) else self.universe.initial_cash

    @property
    def charges(self) -> float:
        """Return the charges paid over every fill (rupees, summed in fill order)."""
        total = 0.0
        for value in self.fill_records[:, 6].tolist():
            total += value
        return total

    # -- the engine's result ------------------------------------------------------------------

    @property
    def run_result(self) -> RunResult:
        """Return the equivalent :class:`~velox.engine.result.RunResult` (built once)."""
        cached = self._cache.get("run")
        if cached is None:
            cached = self._build_run()
            self._cache["run"] = cached
        return cached  # type: ignore[return-value]

    def _build_run(self) -> RunResult:
        from velox.engine.core import strategy_record
        from velox.engine.result import result_from_records

        u = self.universe
        fills = self._fill_objects()
        orders = self._orders(fills)
        record = {**strategy_record(self.strategy), "error": None}
        stamps = u.close_event_ns()
        return result_from_records(
            mode="research", run_id=self.run_id, strategies=[record],
            initial_cash=u.initial_cash, orders=orders, fills=fills,
            equity_ns=stamps.tolist(), equity_values=self.equity_values_array.tolist(),
            bars={(iid, u.timeframe): u.frames[iid] for iid in u.instrument_ids},
        )  # fmt: skip

    def _fill_times(self) -> np.ndarray:
        u = self.universe
        rec = self.fill_records
        out = np.empty(len(rec), np.int64)
        cols = rec[:, 2].astype(np.int64)
        rows = rec[:, 0].astype(np.int64)
        ticks = rec[:, 1].astype(np.int64)
        for j, iid in enumerate(u.instrument_ids):
            mine = np.flatnonzero(cols == j)
            if len(mine):
                times = u.tick_times(iid, rows[mine])
                out[mine] = times[np.arange(len(mine)), ticks[mine]]
        return out

    def _fill_objects(self) -> list[Fill]:
        cached = self._cache.get("fills")
        if cached is None:
            cached = self._cache["fills"] = self._fills()
        return cached  # type: ignore[return-value]

    def _fills(self) -> list[Fill]:
        from velox.engine._time import dt as ist_datetime

        u = self.universe
        rec = self.fill_records
        times = self._fill_times().tolist()
        product = u.product
        out = []
        name = self.strategy.name
        for k, (row, _q, col, side, qty, price, charges, *_rest, oid) in enumerate(rec.tolist()):
            del row
            ts = ist_datetime(times[k])
            out.append(
                Fill(
                    fill_id=f"VEC{int(oid) + 1:09d}-{int(qty)}",
                    client_id=self._client_id(int(oid)),
                    instrument_id=u.instrument_ids[int(col)],
                    side=Side.BUY if side > 0 else Side.SELL,
                    qty=int(qty),
                    price=price,
                    ts=ts,
                    product=product,
                    broker_order_id=f"VEC{int(oid) + 1:09d}",
                    charges=charges,
                    strategy=name,
                )
            )
        return out

    def _client_id(self, oid: int) -> str:
        if self.order_records[oid, 6]:
            return f"SQUAREOFF-{oid + 1}"
        return f"{self.run_id}-{oid + 1}"

    def _orders(self, fills: list[Fill]) -> list[Order]:
        from velox.engine._time import dt as ist_datetime

        u = self.universe
        by_order = {f.broker_order_id: f for f in fills}
        stamps = None
        out = []
        for oid, (row, col, side, qty, status, reason, squareoff, _fr) in enumerate(
            self.order_records.tolist()
        ):
            broker_id = f"VEC{oid + 1:09d}"
            fill = by_order.get(broker_id)
            if fill is not None:
                created = fill.ts
            else:
                if stamps is None:
                    stamps = u.close_event_ns()
                created = ist_datetime(int(stamps[int(row)]))
            st = _STATUS[int(status)]
            out.append(
                Order(
                    client_id=self._client_id(oid),
                    instrument_id=u.instrument_ids[int(col)],
                    side=Side.BUY if side > 0 else Side.SELL,
                    qty=int(qty),
                    product=u.product,
                    tag="squareoff" if squareoff else self._client_id(oid),
                    strategy=self.strategy.name,
                    status=st,
                    broker_order_id=broker_id,
                    filled_qty=int(qty) if fill is not None else 0,
                    average_price=fill.price if fill is not None else 0.0,
                    status_message=_REASONS[int(reason)],
                    created_at=created,
                )
            )
        return out

    @property
    def stats(self) -> dict[str, float | int]:
        """Return :func:`velox.engine.result.summary_stats` of the run (as ``RunResult.stats``).

        Computed from the fills' trades and the equity curve without building the DataFrames
        (the same function on the same values as :attr:`run_result`'s).
        """
        run = self._cache.get("run")
        if run is not None:
            return run.stats  # type: ignore[attr-defined]
        cached = self._cache.get("stats")
        if cached is None:
            from velox.engine.result import summary_stats

            charges = 0.0
            for fill in self._fill_objects():  # in booking order, as result_from_records sums
                charges += fill.charges
            cached = self._cache["stats"] = summary_stats(
                self.universe.close_event_ns(), self.equity_values_array,
                self.universe.initial_cash, self.trade_list, charges,
            )  # fmt: skip
        return cached  # type: ignore[return-value]

    @property
    def trades(self) -> pd.DataFrame:
        """Return the round trips (``RunResult.trades`` columns)."""
        return self.run_result.trades

    @property
    def orders(self) -> pd.DataFrame:
        """Return every order (``RunResult.orders`` columns); refused ones say why."""
        return self.run_result.orders

    @property
    def fills(self) -> pd.DataFrame:
        """Return every fill with its exact charges (``RunResult.fills`` columns)."""
        return self.run_result.fills

    @property
    def equity(self) -> pd.Series:
        """Return the account equity sampled at every close event, as the engine samples it."""
        return self.run_result.equity

    @property
    def drawdown(self) -> pd.Series:
        """Return the drawdown at every equity sample (a positive fraction)."""
        return self.run_result.drawdown

    @property
    def trade_list(self) -> list[Trade]:
        """Return the :class:`~velox.engine.result.Trade` records (``trades_from_fills``)."""
        run = self._cache.get("run")
        if run is not None:
            return run.trade_list  # type: ignore[attr-defined]
        cached = self._cache.get("trades")
        if cached is None:
            from velox.engine.result import trades_from_fills

            cached = self._cache["trades"] = trades_from_fills(self._fill_objects())
        return cached  # type: ignore[return-value]

    @property
    def fill_list(self) -> list[Fill]:
        """Return the :class:`~velox.types.Fill` records."""
        return self._fill_objects()

    @property
    def order_list(self) -> list[Order]:
        """Return the :class:`~velox.types.Order` records (refused ones say why)."""
        return self.run_result.order_list

    @property
    def equity_ns(self) -> list[int]:
        """Return the equity curve's sample times (UTC epoch ns), as ``RunResult.equity_ns``."""
        return self.run_result.equity_ns

    @property
    def equity_values(self) -> list[float]:
        """Return the equity curve's values (rupees), as ``RunResult.equity_values``."""
        return self.run_result.equity_values

    def to_dict(self) -> dict[str, object]:
        """Return the JSON-ready report of :meth:`velox.engine.result.RunResult.to_dict`."""
        return self.run_result.to_dict()

    def to_json(self, path: str | None = None) -> str:
        """Return the report as JSON text, also writing it to ``path`` when given."""
        return self.run_result.to_json(path)

    def charge_breakdown(self) -> pd.DataFrame:
        """Return each fill's charges split as a contract note splits them (unrounded)."""
        from velox.backtest._kernel import FILL_FIELDS

        frame = pd.DataFrame(self.fill_records, columns=list(FILL_FIELDS))
        out = frame[["brokerage", "stt", "exchange", "sebi", "stamp", "gst", "charges"]]
        out.index = pd.DatetimeIndex(
            pd.to_datetime(self._fill_times(), utc=True), name="ts"
        ).tz_convert(IST_NAME)
        return out.rename(columns={"charges": "total"})

    def monthly_returns(self) -> pd.DataFrame:
        """Return month-end to month-end returns of the equity curve (years × months)."""
        equity = self.equity
        if not len(equity):
            return pd.DataFrame()
        local = equity.tz_convert(IST_NAME).tz_localize(None)
        month_end = local.resample("ME").last().dropna()
        start = pd.Series([self.universe.initial_cash])
        returns = pd.concat([start, month_end.reset_index(drop=True)]).pct_change().iloc[1:]
        returns.index = month_end.index
        table = pd.DataFrame(
            {"year": returns.index.year, "month": returns.index.month, "return": returns.values}
        )
        return table.pivot(index="year", columns="month", values="return")

    # -- vectorbt -----------------------------------------------------------------------------

    @property
    def portfolio(self) -> Any:
        """Return the vectorbt ``Portfolio`` of this backtest's orders (built once).

        ``Portfolio.from_orders`` with each fill's signed quantity at its bar, its fill price
        and its exact charges as ``fixed_fees``, the initial cash, one cash pool for all
        instruments, closes forward-filled for valuation, indexed by IST wall-clock bar start
        (no zone: vectorbt is far slower on a tz-aware index). vectorbt refuses a buy it cannot pay
        for in full (it shrinks it), where the simulator lets charges take cash below zero;
        a warning says when that changed the portfolio's value.
        """
        cached = self._cache.get("portfolio")
        if cached is None:
            cached = self._build_portfolio()
            self._cache["portfolio"] = cached
        return cached

    def _build_portfolio(self) -> Any:
        import vectorbt as vbt

        u = self.universe
        n, m = u.opens.shape
        size = np.full((n, m), np.nan)
        price = np.full((n, m), np.nan)
        fees = np.zeros((n, m))
        rec = self.fill_records
        rows, cols = rec[:, 0].astype(np.int64), rec[:, 2].astype(np.int64)
        signed = rec[:, 3] * rec[:, 4]
        value = np.zeros((n, m))
        net = np.zeros((n, m))
        np.add.at(net, (rows, cols), signed)
        np.add.at(value, (rows, cols), signed * rec[:, 5])
        np.add.at(fees, (rows, cols), rec[:, 6])
        hit = np.zeros((n, m), np.bool_)
        hit[rows, cols] = True
        size[hit] = net[hit]
        with np.errstate(invalid="ignore", divide="ignore"):
            price[hit] = value[hit] / net[hit]
        if (hit & (net == 0)).any():
            log.warning("fills that net to zero within one bar are left out of the portfolio")
        # IST wall-clock times without a zone: vectorbt is ~100× slower on a tz-aware index
        wall = u.index.tz_convert(IST_NAME).tz_localize(None)
        close = pd.DataFrame(u.closes, index=wall, columns=list(u.instrument_ids)).ffill()
        frame = pd.DataFrame
        portfolio = vbt.Portfolio.from_orders(
            close, frame(size, wall, close.columns), price=frame(price, wall, close.columns),
            fixed_fees=frame(fees, wall, close.columns), init_cash=u.initial_cash,
            cash_sharing=True, group_by=True if m > 1 else None, freq=_freq(u.timeframe),
        )  # fmt: skip
        final = float(np.asarray(portfolio.value()).reshape(n, -1)[-1].sum())
        if not math.isclose(final, self.final_equity, rel_tol=1e-9, abs_tol=1e-6):
            log.warning(
                "the vectorbt portfolio ends at %.2f, the backtest at %.2f: vectorbt shrank a "
                "buy that cash (after charges) could not pay in full",
                final, self.final_equity,
            )  # fmt: skip
        return portfolio

    # -- display ------------------------------------------------------------------------------

    def __repr__(self) -> str:
        u = self.universe
        return (
            f"ResearchResult({self.strategy.name} on {', '.join(u.instrument_ids)} "
            f"{u.timeframe}, {len(u.index):,} bars, {len(self.fill_records):,} fills, "
            f"final equity {self.final_equity:,.2f})"
        )

    def _repr_html_(self) -> str:
        """Return the engine result's HTML summary, titled as a vectorised backtest."""
        body = self.run_result._repr_html_()
        return body.replace("<b>RunResult</b> research run", "<b>ResearchResult</b> vectorised run")

    def plot(self) -> hv.Layout:
        """Return price with entries and exits per instrument, equity, drawdown and a heatmap
        of monthly returns (holoviews / hvplot, imported here)."""
        import holoviews as hv
        import hvplot.pandas  # noqa: F401  (registers .hvplot)

        layout = self.run_result.plot()
        table = self.monthly_returns()
        if table.empty:
            return layout
        long = table.stack().rename("return").reset_index()
        long["month"] = long["month"].astype(int)
        heat = long.hvplot.heatmap(
            x="month", y="year", C="return", cmap="RdYlGn", title="monthly returns",
            height=220, responsive=True, colorbar=True,
        )  # fmt: skip
        return hv.Layout([*layout, heat]).cols(1)


def _freq(timeframe: str) -> str:
    from velox.calendar import timeframe_minutes

    minutes = timeframe_minutes(timeframe)
    return "1D" if minutes is None else f"{minutes}min"
