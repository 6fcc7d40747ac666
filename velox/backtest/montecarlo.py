"""Monte Carlo of a backtest: how lucky was the order of its trades, or its days?

Two resampling methods, both on any result with ``.trades``, ``.equity`` and ``.stats`` (a
:class:`velox.engine.RunResult` from :func:`velox.replay`, or a vectorised research result):

``"reshuffle"`` (trade-order reshuffle)
    Permute the sequence of the closed trades' net P&L (``pnl - charges``, rupees) and rebuild
    the equity after each trade: ``initial_cash + cumsum(permuted P&L)``. A sum does not depend
    on its order, so **final equity is the same in every simulation** (it equals the observed
    one, up to floating-point rounding of the running sum); what changes is the *path*, hence
    the **maximum drawdown**, which answers "how deep could the drawdown have been with the
    same trades in another order". The P&L is taken as
    rupees, not as returns: it assumes a trade's P&L would not change had it come earlier or
    later (true for fixed quantities; only approximate for equity-proportional sizing, whose
    P&L compounds). Open trades are left out; trades are ordered by exit time (stable) to give
    the observed sequence, overlapping trades counting one after the other.
``"bootstrap"`` (bootstrap of daily returns)
    Resample the daily returns of the equity curve with replacement and compound them from
    ``initial_cash``: both final equity and drawdown vary. Daily returns follow
    :func:`velox.engine.result.summary_stats`: end-of-day equity (the last sample of each IST
    date) preceded by the result's initial cash. ``block_size=b`` > 1 draws circular blocks of
    ``b`` consecutive days instead of single days (a block bootstrap keeps the short-range
    dependence of returns, e.g. volatility clusters); each simulated path has as many days as
    the original, or ``horizon`` days (``horizon=252``: one year ahead).

Drawdowns follow the engine's convention: (running peak − equity) / running peak, the peak
starting at the initial cash, a positive fraction; ``max_drawdown_amount`` is the largest
peak − equity in rupees. Paths are built in chunks of simulations as ``(rows, steps)`` numpy
matrices, at most :data:`CHUNK_BYTES` at a time, so memory stays bounded for any ``n``; the
random stream is consumed row by row, so a seed gives the same simulations whatever the chunk
size.
"""

from __future__ import annotations

import difflib
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from velox.errors import ConfigError, ValidationError

if TYPE_CHECKING:
    import holoviews as hv
    import numpy as np
    import pandas as pd

__all__ = ["MonteCarloReport", "monte_carlo", "METHODS", "CHUNK_BYTES"]

#: The resampling methods of :func:`monte_carlo`.
METHODS = ("reshuffle", "bootstrap")
#: Upper bound, in bytes, of the working matrices of one chunk of simulations.
CHUNK_BYTES = 64 * 2**20
#: At most this many simulated paths are kept in :attr:`MonteCarloReport.paths` (for the fan).
PATHS_KEPT = 500
#: ... and at most this many bytes of them.
PATHS_BYTES = 32 * 2**20
#: Quantiles of :meth:`MonteCarloReport.quantiles` by default.
DEFAULT_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
#: Columns of :attr:`MonteCarloReport.simulations`.
COLUMNS = ("final_equity", "total_return", "max_drawdown", "max_drawdown_amount")


class BacktestResult(Protocol):
    """What :func:`monte_carlo` reads from a result (``RunResult``, a research result …)."""

    @property
    def trades(self) -> pd.DataFrame: ...

    @property
    def equity(self) -> pd.Series: ...

    @property
    def stats(self) -> dict[str, float | int]: ...


@dataclass(frozen=True, eq=False)
class MonteCarloReport:
    """The outcome of :func:`monte_carlo`: one row per simulation, and what was observed.

    Attributes
    ----------
    method
        ``"reshuffle"`` or ``"bootstrap"``.
    n
        Number of simulations.
    seed
        The seed that reproduces this report (drawn from fresh entropy when none was given).
    initial_cash
        Equity every simulated path starts from.
    block_size
        Days per block of a bootstrap (1 = independent days); ``None`` for a reshuffle.
    steps
        What one step of a path is: ``"trade"`` (reshuffle) or ``"session"`` (bootstrap).
    simulations
        One row per simulation, index ``simulation``: ``final_equity``, ``total_return``
        (fraction), ``max_drawdown`` (positive fraction), ``max_drawdown_amount`` (rupees).
    observed
        The same figures for the original sequence (trades in exit order, or the actual days),
        computed the same way, so they compare like with like. A reshuffle's drawdown is over
        equity after each closed trade, so it may differ from ``result.stats["max_drawdown"]``
        (measured on the mark-to-market curve).
    paths
        Equity of the first simulated paths (columns, at most :data:`PATHS_KEPT`), one row per
        step from 0 (the initial cash) to the last; drawn by :meth:`plot` as a fan.
    observed_path
        The original sequence's equity, one row per step (as long as :attr:`paths` unless a
        bootstrap was given another ``horizon``).
    """

    method: str
    n: int
    seed: int
    initial_cash: float
    block_size: int | None
    steps: str
    simulations: pd.DataFrame = field(repr=False)
    observed: dict[str, float] = field(repr=False)
    paths: pd.DataFrame = field(repr=False)
    observed_path: pd.Series = field(repr=False)

    def __repr__(self) -> str:
        median = self.simulations["max_drawdown"].median()
        return (
            f"MonteCarloReport(method={self.method!r}, n={self.n}, seed={self.seed}, "
            f"median max_drawdown={median:.2%}, P(loss)={self.probability_of_loss():.2%})"
        )

    def quantiles(self, q: Sequence[float] = DEFAULT_QUANTILES) -> pd.DataFrame:
        """Return the quantiles of every simulated figure: index ``quantile``, one column each.

        Quantiles interpolate linearly between simulations (pandas' default).

        Examples
        --------
        >>> mc.quantiles()                                   # doctest: +SKIP
        >>> mc.quantiles([0.05, 0.95])["max_drawdown"]       # doctest: +SKIP
        """
        qs = [float(v) for v in q]
        if not qs or not all(0.0 <= v <= 1.0 for v in qs):
            raise ValidationError(f"quantiles q={list(q)!r} must be fractions in [0, 1]")
        table = self.simulations.quantile(qs)
        table.index.name = "quantile"
        return table

    def probability_of_loss(
        self, fraction: float | None = None, *, amount: float | None = None
    ) -> float:
        """Return the share of simulations whose final equity lost more than a threshold.

        Give the loss as a ``fraction`` of the initial cash (``0.1``: lost more than 10 %) or
        as an ``amount`` in rupees; with neither, the probability of ending below the initial
        cash. "More than" is strict: a simulation that loses exactly the threshold does not
        count. For a reshuffle every simulation ends at the observed final equity, so this is
        0 or 1; use :meth:`probability_of_drawdown` for the path risk.

        Examples
        --------
        >>> mc.probability_of_loss()              # P(final equity < initial cash)  # doctest: +SKIP
        >>> mc.probability_of_loss(0.2)           # P(lose more than 20 %)          # doctest: +SKIP
        >>> mc.probability_of_loss(amount=50_000) # P(lose more than ₹50,000)       # doctest: +SKIP
        """
        if fraction is not None and amount is not None:
            raise ValidationError(
                "probability_of_loss takes a fraction or an amount=, not both: "
                "probability_of_loss(0.1) or probability_of_loss(amount=100_000)"
            )
        if amount is not None:
            threshold = _finite(amount, "amount", minimum=0.0)
        else:
            share = 0.0 if fraction is None else _finite(fraction, "fraction", minimum=0.0)
            threshold = share * self.initial_cash
        lost = self.initial_cash - self.simulations["final_equity"].to_numpy()
        return float((lost > threshold).mean())

    def probability_of_drawdown(self, fraction: float) -> float:
        """Return the share of simulations whose maximum drawdown exceeded ``fraction``.

        Examples
        --------
        >>> mc.probability_of_drawdown(0.3)       # P(max drawdown > 30 %)          # doctest: +SKIP
        """
        limit = _finite(fraction, "fraction", minimum=0.0)
        return float((self.simulations["max_drawdown"].to_numpy() > limit).mean())

    def _repr_html_(self) -> str:
        """Return an HTML summary for Jupyter: method, observed figures, quantile table."""
        esc = html.escape
        what = (
            "trade-order reshuffle of closed trades' net P&L"
            if self.method == "reshuffle"
            else "bootstrap of daily returns"
            + (f" in blocks of {self.block_size} days" if (self.block_size or 1) > 1 else "")
        )
        table = self.quantiles([0.05, 0.25, 0.5, 0.75, 0.95])
        table.loc["observed"] = [self.observed[c] for c in table.columns]
        shown = table.copy().astype(object)
        for column in shown.columns:
            pct = column in ("total_return", "max_drawdown")
            shown[column] = [f"{v:.2%}" if pct else f"{v:,.2f}" for v in table[column]]
        shown.index = [i if isinstance(i, str) else f"{i:.0%}" for i in table.index]
        return "\n".join(
            [
                "<div class='velox-montecarlo'>",
                f"<b>MonteCarloReport</b>: {esc(what)}, {self.n:,} simulations "
                f"(seed {self.seed}), initial cash ₹{self.initial_cash:,.2f}",
                f"<p>P(final equity &lt; initial cash) = {self.probability_of_loss():.2%}; "
                f"P(max drawdown &gt; observed {self.observed['max_drawdown']:.2%}) = "
                f"{self.probability_of_drawdown(self.observed['max_drawdown']):.2%}</p>",
                shown.to_html(),
                "</div>",
            ]
        )

    def plot(self, bins: int = 50) -> hv.Layout:
        """Return a holoviews layout: histograms of final equity and of maximum drawdown (the
        observed value as a vertical line), and a fan of the kept equity paths (5–95 % and
        25–75 % bands of :attr:`paths` by step, their median, and the observed path).

        holoviews (with its bokeh backend) is imported here, not with velox. A reshuffle's
        final-equity histogram is a single bar: every order ends at the same equity.

        Examples
        --------
        >>> mc = velox.monte_carlo(res, n=2000, seed=1)      # doctest: +SKIP
        >>> mc.plot()                                        # doctest: +SKIP
        """
        import holoviews as hv
        import numpy as np

        if "bokeh" not in hv.Store.loaded_backends():
            hv.extension("bokeh", logo=False)
        panels = []
        for column, label in (
            ("final_equity", "final equity (₹)"),
            ("max_drawdown", "max drawdown"),
        ):
            values = self.simulations[column].to_numpy()
            low, high = float(values.min()), float(values.max())
            count = bins
            if high - low <= 1e-9 * max(1.0, abs(low)):  # a reshuffle's final equity: one bar
                pad = max(abs(low) * 1e-3, 1e-6)
                low, high, count = low - pad, high + pad, 1
            counts, edges = np.histogram(values, bins=count, range=(low, high))
            histogram = hv.Histogram((edges, counts), kdims=[label], vdims=["simulations"])
            line = hv.VLine(self.observed[column], kdims=[label, "simulations"]).opts(
                color="black", line_dash="dashed"
            )
            panels.append((histogram.opts(color="#1f77b4", alpha=0.7) * line).opts(
                title=f"{label}: {self.n:,} simulations (dashed: observed)",
                responsive=True, height=240,
            ))  # fmt: skip
        step = self.paths.index.to_numpy()
        matrix = self.paths.to_numpy()
        bands = np.quantile(matrix, [0.05, 0.25, 0.5, 0.75, 0.95], axis=1)
        fan = (
            hv.Area((step, bands[0], bands[4]), self.steps, ["equity", "equity_high"],
                    label="5–95 %").opts(color="#1f77b4", alpha=0.2, line_alpha=0)
            * hv.Area((step, bands[1], bands[3]), self.steps, ["equity", "equity_high"],
                      label="25–75 %").opts(color="#1f77b4", alpha=0.35, line_alpha=0)
            * hv.Curve((step, bands[2]), self.steps, "equity", label="median")
            .opts(color="#1f77b4")
            * hv.Curve((self.observed_path.index.to_numpy(), self.observed_path.to_numpy()),
                       self.steps, "equity",
                       label="observed").opts(color="black", line_width=2)
        )  # fmt: skip
        panels.append(
            fan.opts(
                title=f"equity by {self.steps} ({matrix.shape[1]} of {self.n:,} paths)",
                responsive=True, height=300, legend_position="top_left",
            )
        )  # fmt: skip
        # histograms and fan have unrelated axes (VLine would link their "x" otherwise)
        return hv.Layout(panels).cols(1).opts(shared_axes=False)


def monte_carlo(
    result: BacktestResult,
    n: int = 1000,
    method: Literal["reshuffle", "bootstrap"] = "reshuffle",
    seed: int | None = None,
    initial_cash: float | None = None,
    block_size: int = 1,
    horizon: int | None = None,
) -> MonteCarloReport:
    """Return a Monte Carlo report of a backtest: ``n`` resampled equity paths and the
    distribution of their final equity and maximum drawdown.

    Parameters
    ----------
    result
        A backtest result with ``.trades`` (closed trades' ``pnl`` and ``charges``, and
        ``exit_time``), ``.equity`` (account equity, IST index) and ``.stats``
        (``initial_cash``): a :class:`velox.engine.RunResult` from :func:`velox.replay`, or a
        research result.
    n
        Number of simulations (≥ 1).
    method
        ``"reshuffle"``: permute the order of the closed trades' net P&L (final equity is the
        same in every simulation, the drawdown is not); ``"bootstrap"``: resample daily returns
        with replacement. See the module documentation for the conventions.
    seed
        Seed of numpy's default generator (PCG64): the same seed gives the same report. Without
        one, fresh entropy is drawn and recorded in :attr:`MonteCarloReport.seed`.
    initial_cash
        Equity the paths start from; default ``result.stats["initial_cash"]``. A bootstrap
        applies the result's own daily returns to it; a reshuffle adds the same rupee P&L.
    block_size
        Bootstrap only: days per circular block (1, the default, draws independent days).
    horizon
        Bootstrap only: sessions per simulated path (default: as many as the result has), e.g.
        ``252`` for "the next year"; ``observed`` stays the result's own path.

    Raises
    ------
    velox.errors.ValidationError
        For ``n`` < 1, a bad seed, initial cash or block size, a result without closed trades
        (reshuffle) or with fewer than two daily returns (bootstrap), or non-finite P&L.
    velox.errors.ConfigError
        For an unknown method (with a suggestion).

    Examples
    --------
    >>> import velox
    >>> res = velox.replay("strategies/sma_cross.py", symbols="NSE:RELIANCE", timeframe="1d",
    ...                    bars=df, fast=10, slow=30)                    # doctest: +SKIP
    >>> mc = velox.monte_carlo(res, n=5000, seed=7)                      # doctest: +SKIP
    >>> mc.quantiles()["max_drawdown"]                                   # doctest: +SKIP
    >>> boot = velox.monte_carlo(res, n=5000, method="bootstrap", block_size=5, seed=7)
    ...                                                                  # doctest: +SKIP
    >>> boot.probability_of_loss(0.1)    # P(losing more than 10 %)      # doctest: +SKIP
    >>> boot.plot()                                                      # doctest: +SKIP
    """
    import numpy as np

    if method not in METHODS:
        hint = difflib.get_close_matches(str(method), METHODS, n=1)
        raise ConfigError(
            f"monte_carlo method={method!r} is not one of {', '.join(METHODS)}"
            + (f"; did you mean {hint[0]!r}?" if hint else "")
        )
    n = _whole(n, "n", 1, "of simulations ")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy)  # recorded, so the report is reproducible
    seed = _whole(seed, "seed", 0)
    block_size = _whole(block_size, "block_size", 1)
    horizon = None if horizon is None else _whole(horizon, "horizon", 1, "of sessions ")
    if method == "reshuffle" and block_size != 1:
        raise ValidationError(
            "monte_carlo block_size= is for method='bootstrap' (blocks of days); a reshuffle "
            "permutes single trades"
        )
    if method == "reshuffle" and horizon is not None:
        raise ValidationError(
            "monte_carlo horizon= is for method='bootstrap' (sessions per path); a reshuffle "
            "always has the result's own trades"
        )
    stats = _attribute(result, "stats")
    own_cash = stats.get("initial_cash") if hasattr(stats, "get") else None
    if initial_cash is None:
        if own_cash is None:
            raise ValidationError(
                "monte_carlo: the result's stats have no 'initial_cash'; pass initial_cash="
            )
        initial_cash = own_cash
    start = _finite(initial_cash, "initial_cash", minimum=0.0, strict=True)
    rng = np.random.default_rng(seed)
    if method == "reshuffle":
        steps_of = _closed_net_pnl(result)
        observed = start + np.concatenate([[0.0], np.cumsum(steps_of)])
        width = len(observed)
        simulate = _reshuffle(steps_of, start)
        steps = "trade"
        block: int | None = None
    else:
        returns = _daily_returns(result, own_cash if own_cash is not None else start)
        if block_size > len(returns):
            raise ValidationError(
                f"monte_carlo block_size={block_size} is longer than the {len(returns)} daily "
                "returns of the result; use at most that many"
            )
        observed = start * np.concatenate([[1.0], np.cumprod(1.0 + returns)])
        width = (len(returns) if horizon is None else horizon) + 1
        simulate = _bootstrap(returns, start, block_size, width - 1)
        steps = "session"
        block = block_size
    rows = max(1, CHUNK_BYTES // (3 * 8 * width))  # draws, curve and running peak
    kept = min(n, PATHS_KEPT, max(1, PATHS_BYTES // (8 * width)))
    figures = np.empty((n, len(COLUMNS)))
    paths = np.empty((kept, width))
    done = 0
    while done < n:
        size = min(rows, n - done)
        curve = simulate(rng, size)
        figures[done : done + size] = _figures(curve, start)
        if done < kept:
            paths[done : min(kept, done + size)] = curve[: kept - done]
        done += size
    import pandas as pd

    simulations = pd.DataFrame(figures, columns=list(COLUMNS))
    simulations.index.name = "simulation"
    fact = _figures(observed[None, :], start)[0]
    frame = pd.DataFrame(paths.T)
    frame.index.name = steps
    frame.columns.name = "simulation"
    return MonteCarloReport(
        method=method,
        n=n,
        seed=seed,
        initial_cash=start,
        block_size=block,
        steps=steps,
        simulations=simulations,
        observed=dict(zip(COLUMNS, map(float, fact), strict=True)),
        paths=frame,
        observed_path=pd.Series(
            observed, index=pd.RangeIndex(len(observed), name=steps), name="observed"
        ),  # fmt: skip
    )


# ---- the simulations -------------------------------------------------------------------------

#: Build ``rows`` simulated equity paths (a ``(rows, steps + 1)`` matrix) from the generator.
_Simulate = Callable[["np.random.Generator", int], "np.ndarray"]


def _reshuffle(pnl: np.ndarray, start: float) -> _Simulate:
    import numpy as np

    def simulate(rng: np.random.Generator, rows: int) -> np.ndarray:
        shuffled = rng.permuted(np.broadcast_to(pnl, (rows, len(pnl))), axis=1)
        curve = np.empty((rows, len(pnl) + 1))
        curve[:, 0] = start
        np.cumsum(shuffled, axis=1, out=curve[:, 1:])
        curve[:, 1:] += start
        return curve

    return simulate


def _bootstrap(returns: np.ndarray, start: float, block: int, length: int) -> _Simulate:
    import numpy as np

    k = len(returns)
    blocks = -(-length // block)
    offsets = np.arange(block)

    def simulate(rng: np.random.Generator, rows: int) -> np.ndarray:
        if block == 1:
            picks = rng.integers(0, k, size=(rows, length))
        else:  # circular blocks: every day is equally likely at every position
            starts = rng.integers(0, k, size=(rows, blocks))
            picks = ((starts[:, :, None] + offsets) % k).reshape(rows, blocks * block)[:, :length]
        curve = np.empty((rows, length + 1))
        curve[:, 0] = 1.0
        np.cumprod(1.0 + returns[picks], axis=1, out=curve[:, 1:])
        curve *= start
        return curve

    return simulate


def _figures(curve: np.ndarray, start: float) -> np.ndarray:
    """Return (final equity, total return, max drawdown, max drawdown amount) per row."""
    import numpy as np

    peak = np.maximum.accumulate(curve, axis=1)
    fall = peak - curve
    out = np.empty((len(curve), len(COLUMNS)))
    out[:, 0] = curve[:, -1]
    out[:, 1] = curve[:, -1] / start - 1.0
    out[:, 2] = (fall / peak).max(axis=1)
    out[:, 3] = fall.max(axis=1)
    return out


# ---- reading the result ----------------------------------------------------------------------


def _attribute(result: object, name: str) -> object:
    try:
        return getattr(result, name)
    except AttributeError:
        raise ValidationError(
            f"monte_carlo needs a backtest result with .trades, .equity and .stats (what "
            f"velox.replay returns); {type(result).__name__} has no .{name}"
        ) from None


def _closed_net_pnl(result: BacktestResult) -> np.ndarray:
    """Return the closed trades' net P&L in exit order (the observed sequence)."""
    import numpy as np
    import pandas as pd

    trades = _attribute(result, "trades")
    if not isinstance(trades, pd.DataFrame):
        raise ValidationError(f"result.trades must be a DataFrame, not {type(trades).__name__}")
    missing = [c for c in ("exit_time", "pnl", "charges") if c not in trades.columns]
    if missing:
        raise ValidationError(
            f"result.trades has no column {', '.join(missing)}: monte_carlo reshuffles each "
            "closed trade's pnl - charges in exit_time order"
        )
    closed = trades[trades["exit_time"].notna()]
    if closed.empty:
        opened = len(trades)
        raise ValidationError(
            "monte_carlo(method='reshuffle') needs closed trades, but the result has none"
            + (f" ({opened} still open)" if opened else "")
            + "; run over a longer period, or use method='bootstrap' (daily returns)"
        )
    closed = closed.sort_values("exit_time", kind="stable")
    pnl = closed["pnl"].to_numpy(dtype=np.float64) - closed["charges"].to_numpy(np.float64)
    if not np.isfinite(pnl).all():
        raise ValidationError("result.trades has a NaN or infinite pnl/charges in a closed trade")
    return pnl


def _daily_returns(result: BacktestResult, initial_cash: float) -> np.ndarray:
    """Return daily returns of end-of-day equity preceded by the initial cash."""
    import numpy as np
    import pandas as pd

    from velox.calendar import IST_NAME

    equity = _attribute(result, "equity")
    if not isinstance(equity, pd.Series) or not isinstance(equity.index, pd.DatetimeIndex):
        raise ValidationError(
            "result.equity must be a Series of account equity indexed by time (IST)"
        )
    index = equity.index if equity.index.tz is not None else equity.index.tz_localize(IST_NAME)
    days = index.tz_convert(IST_NAME).normalize()
    values = equity.to_numpy(dtype=np.float64)
    last = np.r_[days[1:] != days[:-1], True] if len(values) else np.empty(0, dtype=bool)
    daily = np.concatenate([[float(initial_cash)], values[last]])
    if len(daily) < 3:
        raise ValidationError(
            f"monte_carlo(method='bootstrap') needs at least two daily returns; the result's "
            f"equity covers {len(daily) - 1} session(s)"
        )
    if not np.isfinite(daily).all() or (daily[:-1] <= 0).any():
        raise ValidationError(
            "result.equity has a NaN or non-positive value, so its daily returns are undefined"
        )
    return np.diff(daily) / daily[:-1]


def _whole(value: object, name: str, minimum: int, what: str = "") -> int:
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValidationError(
            f"monte_carlo {name}={value!r} must be a whole number {what}≥ {minimum}"
        )
    return int(value)


def _finite(value: object, name: str, *, minimum: float, strict: bool = False) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    ok = math.isfinite(number) and (number > minimum if strict else number >= minimum)
    if not ok:
        sign = ">" if strict else "≥"
        raise ValidationError(f"{name}={value!r} must be a finite number {sign} {minimum:g}")
    return number
