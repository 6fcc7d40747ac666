"""Performance analytics of recorded runs and accounts: what investor reports, notebooks and the
trader console show.

Plain functions on pandas Series (any equity curve works) and one entry point over the store:

>>> from velox.analytics import Performance
>>> perf = Performance.of_account(store, "ZX1234", start="2025-01-01")   # doctest: +SKIP
>>> perf.stats()["sharpe"], perf.benchmark()["beta"]                     # doctest: +SKIP
>>> perf.monthly_table()                                                 # doctest: +SKIP

Conventions (docs/analytics.md has each formula):

- **Days** are IST session dates; a curve's daily value is its last sample of the day.
- **Returns** are time-weighted: a run that starts brings its initial cash as a flow, so an
  account's daily return is Σ(Eᵢ,t − Eᵢ,t−1) / ΣEᵢ,t−1 over its runs, with Eᵢ,t−1 the run's
  initial cash on its first day; the account's equity is ΣEᵢ,t (each run's last value carried
  forward after it ends).
- **Annualisation** by 252 sessions; the risk-free rate is 0 (stated, not hidden in alpha).
- **Drawdowns** are fractions ≤ 0 (−0.12 is 12 % below the peak); ``stats()["max_drawdown"]``
  keeps :func:`velox.engine.result.summary_stats`' positive fraction.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from velox.calendar import IST_NAME
from velox.errors import ValidationError

if TYPE_CHECKING:
    from velox.store import Store
    from velox.types import Instrument

YEAR = 252
#: The benchmark of :meth:`Performance.benchmark` (bundled: NIFTY 50 spot, data/PROVENANCE.md).
BENCHMARK = "NSE:NIFTY"
CHARGE_KINDS = ("brokerage", "stt", "exchange", "sebi", "stamp", "gst")

# -- curves and returns ---------------------------------------------------------------------------


def daily_equity(equity: pd.Series) -> pd.Series:
    """The last value of each IST day, indexed by the day (00:00 IST, like daily bars)."""
    if equity.empty:
        return equity.astype("float64")
    local = equity.tz_convert(IST_NAME) if equity.index.tz is not None else equity
    days = local.groupby(local.index.normalize()).last()
    days.index.name = "date"
    return days.astype("float64")


def daily_returns(equity: pd.Series, initial: float | None = None) -> pd.Series:
    """Day-on-day returns of an equity curve; the first day's is against ``initial`` if given."""
    days = daily_equity(equity)
    if initial is None:
        return days.pct_change().iloc[1:]
    previous = days.shift(1)
    if len(previous):
        previous.iloc[0] = initial
    return days / previous - 1.0


def combine(curves: Sequence[pd.Series], initials: Sequence[float]) -> tuple[pd.Series, pd.Series]:
    """Combine runs into one account: (daily equity, time-weighted daily returns).

    Each run's daily equity is carried forward after its last day; before its first day it is
    absent (neither equity nor flow). See the module docstring for the return formula.
    """
    pairs = [(daily_equity(c), float(i)) for c, i in zip(curves, initials, strict=True)]
    pairs = [(d, i) for d, i in pairs if not d.empty]
    if not pairs:
        empty = pd.Series(dtype="float64", index=pd.DatetimeIndex([], tz=IST_NAME, name="date"))
        return empty, empty
    grid = pairs[0][0].index
    for d, _ in pairs[1:]:
        grid = grid.union(d.index)
    frame = pd.concat([d.reindex(grid).ffill() for d, _ in pairs], axis=1, ignore_index=True)
    before = frame.shift(1)
    for col, (d, initial) in enumerate(pairs):
        before.iloc[grid.get_loc(d.index[0]), col] = initial
    gain = (frame - before).sum(axis=1, min_count=1)
    base = before.sum(axis=1, min_count=1)
    equity = frame.sum(axis=1, min_count=1)
    equity.name = "equity"
    returns = (gain / base).rename("return")
    return equity, returns


def growth(returns: pd.Series) -> pd.Series:
    """Value of 1 rupee invested at the start: the cumulative product of (1 + return)."""
    return (1.0 + returns).cumprod()


def drawdown(curve: pd.Series) -> pd.Series:
    """Fraction below the running peak (≤ 0): curve / cummax − 1."""
    return curve / curve.cummax() - 1.0


def drawdown_periods(curve: pd.Series, top: int | None = 5) -> pd.DataFrame:
    """The drawdowns of a curve, deepest first: peak, trough, recovery dates, depth, durations.

    A period starts at a peak (the last value at the running maximum before the curve falls),
    reaches its trough (its lowest value) and ends at recovery, the first value back at or above
    the peak (NaT while not recovered). ``days`` counts calendar days peak → recovery (or to the
    curve's end while not recovered), ``recovery_days`` trough → recovery.
    """
    columns = ["peak", "trough", "recovery", "depth", "days", "recovery_days", "recovered"]
    rows = []
    values = curve.to_numpy(dtype="float64")
    index = curve.index
    peak_i = 0
    i = 1
    n = len(values)
    while i < n:
        if values[i] >= values[peak_i]:
            peak_i = i
            i += 1
            continue
        trough_i = i
        j = i
        while j < n and values[j] < values[peak_i]:
            if values[j] < values[trough_i]:
                trough_i = j
            j += 1
        recovered = j < n
        end = index[j] if recovered else index[-1]
        rows.append({
            "peak": index[peak_i], "trough": index[trough_i],
            "recovery": index[j] if recovered else pd.NaT,
            "depth": values[trough_i] / values[peak_i] - 1.0,
            "days": (end - index[peak_i]).days,
            "recovery_days": (index[j] - index[trough_i]).days if recovered else np.nan,
            "recovered": recovered,
        })  # fmt: skip
        peak_i = j
        i = j + 1
    frame = pd.DataFrame(rows, columns=columns).sort_values("depth", kind="stable")
    frame = frame.reset_index(drop=True)
    return frame if top is None else frame.head(top)


def period_returns(returns: pd.Series, freq: str) -> pd.Series:
    """Compounded returns per period: ``"D"`` (as given), ``"M"`` months, ``"Y"`` years."""
    if freq == "D":
        return returns
    rule = {"M": "ME", "Y": "YE"}.get(freq)
    if rule is None:
        raise ValidationError(f"freq={freq!r} must be 'D', 'M' or 'Y'")
    local = returns.tz_localize(None) if returns.index.tz is not None else returns
    out = (1.0 + local).resample(rule).prod(min_count=1) - 1.0
    return out.dropna()


def monthly_table(returns: pd.Series) -> pd.DataFrame:
    """Monthly returns as years × months (1-12) with the compounded ``year`` column."""
    months = period_returns(returns, "M")
    table = pd.DataFrame({"year": months.index.year, "month": months.index.month,
                          "return": months.to_numpy()})  # fmt: skip
    grid = table.pivot(index="year", columns="month", values="return")
    grid = grid.reindex(columns=range(1, 13))
    yearly = period_returns(returns, "Y")
    grid["year"] = pd.Series(yearly.to_numpy(), index=yearly.index.year)
    grid.columns.name = None
    return grid


def rolling_volatility(returns: pd.Series, window: int = 63) -> pd.Series:
    """Annualised volatility of the last ``window`` daily returns: √252 × std (ddof 1)."""
    return returns.rolling(window).std(ddof=1) * math.sqrt(YEAR)


def rolling_sharpe(returns: pd.Series, window: int = 63) -> pd.Series:
    """Annualised Sharpe of the last ``window`` daily returns: √252 × mean / std (rf = 0)."""
    roll = returns.rolling(window)
    return roll.mean() / roll.std(ddof=1) * math.sqrt(YEAR)


def benchmark_stats(returns: pd.Series, bench: pd.Series) -> dict[str, float]:
    """Beta, alpha, tracking error, information ratio and correlation against a benchmark.

    On the days both have a return: beta = cov(r, b) / var(b) (ddof 1); alpha (annualised,
    Jensen's with rf = 0) = 252 × (mean r − beta × mean b); tracking error = √252 × std(r − b);
    information ratio = 252 × mean(r − b) / tracking error; ``days`` is how many were compared.
    """
    both = pd.concat([returns.rename("r"), bench.rename("b")], axis=1, join="inner").dropna()
    out = dict.fromkeys(("beta", "alpha", "tracking_error", "information_ratio",
                         "correlation"), math.nan)  # fmt: skip
    out["days"] = float(len(both))
    if len(both) < 2:
        return out
    r, b = both["r"].to_numpy(), both["b"].to_numpy()
    var_b = np.var(b, ddof=1)
    if var_b > 0:
        out["beta"] = float(np.cov(r, b, ddof=1)[0, 1] / var_b)
        out["alpha"] = float(YEAR * (r.mean() - out["beta"] * b.mean()))
        if np.std(r, ddof=1) > 0:
            out["correlation"] = float(np.corrcoef(r, b)[0, 1])
    active = r - b
    te = float(np.std(active, ddof=1) * math.sqrt(YEAR))
    out["tracking_error"] = te
    if te > 0:
        out["information_ratio"] = float(YEAR * active.mean() / te)
    return out


def turnover(fills: pd.DataFrame, equity: pd.Series) -> float:
    """Annualised turnover: traded value (Σ qty × price) / mean daily equity × 252 / sessions."""
    days = daily_equity(equity)
    if fills.empty or days.empty or days.mean() <= 0:
        return 0.0
    traded = float((fills["qty"].abs() * fills["price"]).sum())
    return traded / float(days.mean()) * YEAR / len(days)


def charges_by_kind(
    fills: pd.DataFrame, instrument: Callable[[str], Instrument], broker: str = "zerodha"
) -> pd.Series:
    """Charges paid by contract-note item, recomputed from each fill with velox.costs.

    Per order, brokerage is capped over its fills as the simulator caps it. ``total`` is the sum
    of the items; compare it with the recorded ``fills["charges"].sum()`` (equal when the run
    used ``broker``'s plan).
    """
    from velox.costs import CostModel
    from velox.types import Product, Side

    model = CostModel(broker)
    totals = dict.fromkeys(CHARGE_KINDS, 0.0)
    brokerage_so_far: dict[str, float] = {}
    for row in fills.itertuples(index=False):
        so_far = brokerage_so_far.get(row.client_id, 0.0)
        part = model.fill_charges(
            instrument(row.instrument_id), Product(row.product), Side(row.side), int(row.qty),
            float(row.price), pd.Timestamp(row.ts).tz_convert(IST_NAME).date(),
            order_brokerage_so_far=so_far,
        )  # fmt: skip
        brokerage_so_far[row.client_id] = so_far + part.brokerage
        for kind in CHARGE_KINDS:
            totals[kind] += getattr(part, kind)
    out = pd.Series(totals, name="charges")
    out["total"] = math.fsum(out[list(CHARGE_KINDS)])
    return out


def holdings(positions: pd.DataFrame, prices: dict[str, float], equity: float) -> pd.DataFrame:
    """Open positions valued at ``prices`` with their weight of ``equity``, and the cash line.

    ``positions`` is :meth:`velox.store.Store.run_positions` (or several runs' concatenated);
    only the account rows (strategy ``''``) count, so a position held by two strategies is not
    counted twice. Cash = equity − Σ value; weights sum to 1.
    """
    rows = positions[(positions["strategy"] == "") & (positions["qty"] != 0)]
    frame = (
        rows.groupby("instrument_id", as_index=False)["qty"].sum()
        if len(rows) else pd.DataFrame({"instrument_id": [], "qty": []})
    )  # fmt: skip
    frame["price"] = [float(prices.get(iid, math.nan)) for iid in frame["instrument_id"]]
    frame["value"] = frame["qty"] * frame["price"]
    cash = equity - float(frame["value"].sum())
    frame = pd.concat(
        [frame, pd.DataFrame([{"instrument_id": "cash", "qty": 0, "price": 1.0, "value": cash}])],
        ignore_index=True,
    )
    frame["weight"] = frame["value"] / equity if equity else math.nan
    return frame


# -- over the store -------------------------------------------------------------------------------


@dataclass
class Performance:
    """The performance of some recorded runs (one run, or an account's runs) from the store."""

    store: Store = field(repr=False)
    run_ids: tuple[str, ...]
    runs: pd.DataFrame = field(repr=False)
    equity: pd.Series = field(repr=False)
    returns: pd.Series = field(repr=False)
    fills: pd.DataFrame = field(repr=False)
    positions: pd.DataFrame = field(repr=False)
    label: str = ""

    @classmethod
    def of_run(cls, store: Store, run_id: str) -> Performance:
        """One run (an unknown id is the store's error listing recent runs)."""
        return cls.of_runs(store, [run_id], label=run_id)

    @classmethod
    def of_account(
        cls, store: Store, account: str, *, start: object = None, end: object = None
    ) -> Performance:
        """Every run of ``account`` (paper, live and replays recorded under it), combined."""
        runs = store.runs(account=account)
        if runs.empty:
            raise ValidationError(f"account {account!r} has no recorded run")
        perf = cls.of_runs(store, list(runs["run_id"]), label=account)
        return perf.between(start, end)

    @classmethod
    def of_runs(cls, store: Store, run_ids: Sequence[str], *, label: str = "") -> Performance:
        """Runs combined as one account (see :func:`combine`)."""
        records = [store.run(r) for r in run_ids]
        curves = [store.run_equity(r)["equity"] for r in run_ids]
        equity, returns = combine(curves, [float(r["initial_cash"]) for r in records])
        fills = [store.run_fills(r).assign(run_id=r) for r in run_ids]
        positions = [store.run_positions(r).assign(run_id=r) for r in run_ids]
        return cls(
            store=store, run_ids=tuple(run_ids), runs=pd.DataFrame(records),
            equity=equity, returns=returns,
            fills=pd.concat(fills, ignore_index=True) if fills else pd.DataFrame(),
            positions=pd.concat(positions, ignore_index=True) if positions else pd.DataFrame(),
            label=label or ",".join(run_ids),
        )  # fmt: skip

    def between(self, start: object = None, end: object = None) -> Performance:
        """The same runs limited to IST dates ``start``..``end`` (inclusive; None = open)."""
        if start is None and end is None:
            return self
        lo = pd.Timestamp(start, tz=IST_NAME) if start is not None else None
        hi = pd.Timestamp(end, tz=IST_NAME) if end is not None else None

        def cut(index: pd.DatetimeIndex) -> np.ndarray:
            keep = np.ones(len(index), dtype=bool)
            if lo is not None:
                keep &= index >= lo
            if hi is not None:
                keep &= index < hi + pd.Timedelta(days=1)
            return keep

        ts = pd.DatetimeIndex(pd.to_datetime(self.fills["ts"])) if len(self.fills) else None
        return Performance(
            store=self.store, run_ids=self.run_ids, runs=self.runs,
            equity=self.equity[cut(self.equity.index)],
            returns=self.returns[cut(self.returns.index)],
            fills=self.fills[cut(ts)] if ts is not None else self.fills,
            positions=self.positions, label=self.label,
        )  # fmt: skip

    # -- figures ----------------------------------------------------------------------------

    @property
    def initial(self) -> float:
        """Equity before the first day of the window (what the first return is measured on)."""
        if self.equity.empty:
            return float(self.runs["initial_cash"].sum()) if len(self.runs) else math.nan
        return float(self.equity.iloc[0] / (1.0 + self.returns.iloc[0]))

    def growth(self) -> pd.Series:
        """Time-weighted growth of ₹1 (flows removed), daily."""
        return growth(self.returns)

    def drawdown(self) -> pd.Series:
        """Drawdown of the time-weighted growth (a flow is not a gain or a loss)."""
        return drawdown(self.growth())

    def drawdown_periods(self, top: int | None = 5) -> pd.DataFrame:
        return drawdown_periods(self.growth(), top)

    def period_returns(self, freq: str) -> pd.Series:
        return period_returns(self.returns, freq)

    def monthly_table(self) -> pd.DataFrame:
        return monthly_table(self.returns)

    def rolling_sharpe(self, window: int = 63) -> pd.Series:
        return rolling_sharpe(self.returns, window)

    def rolling_volatility(self, window: int = 63) -> pd.Series:
        return rolling_volatility(self.returns, window)

    def turnover(self) -> float:
        return turnover(self.fills, self.equity)

    def charges_by_kind(self, broker: str = "zerodha") -> pd.Series:
        from velox.modes import default_instruments

        return charges_by_kind(self.fills, default_instruments(), broker)

    def prices(self) -> dict[str, float]:
        """Last known price of each instrument: the runs' live quotes, else their last fill."""
        out: dict[str, float] = {}
        if len(self.fills):
            last = self.fills.sort_values("ts").groupby("instrument_id")["price"].last()
            out.update({k: float(v) for k, v in last.items()})
        for run_id in self.run_ids:
            quotes = self.store.run_quotes(run_id)
            out.update({k: float(v) for k, v in zip(quotes["instrument_id"], quotes["ltp"],
                                                    strict=True)})  # fmt: skip
        return out

    def holdings(self) -> pd.DataFrame:
        final = float(self.equity.iloc[-1]) if len(self.equity) else 0.0
        return holdings(self.positions, self.prices(), final)

    def benchmark_returns(self, instrument_id: str = BENCHMARK) -> pd.Series:
        """Daily close-to-close returns of the benchmark from the store (the bundled files of it
        imported first): each day's close from daily bars, else the last intraday bar's."""
        from velox.data import bundled_files, ensure_bundled

        if self.returns.empty:
            return pd.Series(dtype="float64")
        first = self.returns.index[0] - pd.Timedelta(days=10)
        bundled = {tf for _, iid, tf in bundled_files() if iid == instrument_id}
        closes = pd.Series(dtype="float64")
        for timeframe in ("1d", "5m", "1m"):  # the coarsest first: finer ones only for gaps
            if (
                not closes.empty
                and closes.index[0] <= first
                and closes.index[-1] >= self.returns.index[-1]
            ):
                break
            if timeframe in bundled:
                quiet = logging.getLogger("velox.data")  # the bundled files' gap notes: known
                level = quiet.level
                quiet.setLevel(logging.ERROR)
                try:
                    ensure_bundled(instrument_id, timeframe, store=self.store)
                finally:
                    quiet.setLevel(level)
            bars = self.store.read_bars(instrument_id, timeframe, start=first)
            if len(bars):
                close = bars["close"].groupby(bars.index.tz_convert(IST_NAME).normalize()).last()
                closes = close if closes.empty else closes.combine_first(close)
        return closes.sort_index().pct_change().dropna()

    def benchmark(self, instrument_id: str = BENCHMARK) -> dict[str, float]:
        return benchmark_stats(self.returns, self.benchmark_returns(instrument_id))

    def stats(self) -> dict[str, float | int]:
        """The standard table (velox.engine.result.summary_stats) of the combined curve, plus
        turnover; trade figures from every run's fills."""
        from velox.engine.result import summary_stats, trades_from_fills

        fills = [f for r in self.run_ids for f in self.store.fills_of_run(r)]
        if len(self.fills) < sum(1 for _ in fills):  # a window: keep its fills only
            keep = set(self.fills["fill_id"])
            fills = [f for f in fills if f.fill_id in keep]
        curve = self.growth() * self.initial
        ns = curve.index.tz_convert("UTC").as_unit("ns").asi8 if len(curve) else []
        charges = float(self.fills["charges"].sum()) if len(self.fills) else 0.0
        out = summary_stats(list(ns), curve.tolist(), self.initial, trades_from_fills(fills),
                            charges)  # fmt: skip
        out["turnover"] = self.turnover()
        return out

    def sharpe_window(self) -> int:
        """63 sessions (a quarter), or 21 (a month) for a history shorter than two quarters."""
        return 63 if len(self.returns) >= 126 else 21

    def plots(self) -> dict[str, Any]:
        """Holoviews figures: growth, drawdown, monthly heatmap, rolling Sharpe, allocation."""
        import holoviews as hv
        import holoviews.plotting.bokeh  # noqa: F401  (options need a backend; prints nothing)

        g = self.growth().tz_localize(None)
        dd = self.drawdown().tz_localize(None) * 100
        window = self.sharpe_window()
        sharpe = self.rolling_sharpe(window).dropna().tz_localize(None)
        months = period_returns(self.returns, "M")
        heat = [(str(ts.year), ts.strftime("%b"), 100 * v) for ts, v in months.items()]
        held = self.holdings()
        opts = {"responsive": True, "height": 260, "tools": ["hover"]}
        return {
            "growth": hv.Curve((g.index, g.to_numpy()), "date", "growth of ₹1").opts(
                title=f"{self.label}: growth of ₹1", **opts),
            "drawdown": hv.Area((dd.index, dd.to_numpy()), "date", "drawdown %").opts(
                title="drawdown", color="#b91c1c", alpha=0.5, **opts),
            "monthly": hv.HeatMap(heat, ["year", "month"], "return %").opts(
                title="monthly returns %", cmap="RdYlGn", colorbar=True, **opts),
            "rolling_sharpe": hv.Curve((sharpe.index, sharpe.to_numpy()), "date",
                                       f"rolling Sharpe ({window} d)").opts(title="rolling Sharpe",
                                                                      **opts),
            "allocation": hv.Bars(list(zip(held["instrument_id"], 100 * held["weight"],
                                           strict=True)), "holding", "weight %").opts(
                title="allocation", **opts),
        }  # fmt: skip
