"""Multi-leg baskets through the engine: the shipped short straddle replayed on real NIFTY bars.

References: the same legs placed one by one with ``ctx.sell``/``ctx.buy`` (split by hand), and
``velox.fno.backtest_basket`` (the research backtester, a separate implementation) on the
same model prices. Risk and rollback tests use the real simulator and risk engine.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from velox.brokers.sim import SimBroker
from velox.engine import Engine
from velox.errors import RiskBreach, UnknownInstrument, ValidationError
from velox.feeds import BarReplay
from velox.fno import backtest_basket, option_feed, option_instrument_id, straddle
from velox.modes import replay
from velox.oms import MemoryAuditLog
from velox.risk import RiskEngine, RiskLimits
from velox.strategy import BasketLeg, Context, Product, Strategy, load_strategy

ROOT = Path(__file__).resolve().parents[2]
ShortStraddle = load_strategy(str(ROOT / "strategies/short_straddle.py"))
START, END = "2022-06-13", "2022-06-17"
SIGMA, FREEZE, LOTS, STOP = 0.15, 100, 3, 3_000.0  # 3 lots of 50 → orders of 100 + 50


@pytest.fixture(scope="module")
def nifty() -> pd.DataFrame:
    return pd.read_csv(ROOT / "data/bars/NIFTY_1m_2021_2022.csv.gz", index_col=0, parse_dates=True)


@pytest.fixture(scope="module")
def feed(nifty):  # noqa: ANN001, ANN201
    return option_feed(nifty, start=START, end=END, strikes=3, sigma=SIGMA, freeze_qty=FREEZE)


def _bars(nifty: pd.DataFrame, feed, start: str = START, end: str = END) -> dict:  # noqa: ANN001
    days = nifty.index.normalize()
    first, last = pd.Timestamp(start, tz=days.tz), pd.Timestamp(end, tz=days.tz)
    index = nifty[(days >= first) & (days <= last)]
    return {("NSE:NIFTY", "1m"): index, **feed.bars}


def _run(strategy: Strategy, nifty, feed, **kw):  # noqa: ANN001, ANN003, ANN202
    kw.setdefault("initial_cash", 5_000_000)
    return replay(strategy, bars=_bars(nifty, feed), instruments=feed.lookup(), **kw)


class OneByOne(ShortStraddle):
    """The same straddle with each leg's orders placed by hand: split at the freeze quantity
    (100 units = 2 lots), bought legs first, through ``ctx.buy``/``ctx.sell``."""

    def place(self, ctx: Context, legs: list[BasketLeg], tag: str) -> None:
        for leg in sorted(legs, key=lambda leg: leg.side != "BUY"):
            left = leg.qty
            while left:
                part = min(left, FREEZE)
                send = ctx.buy if leg.side == "BUY" else ctx.sell
                send(part, leg.instrument_id, tag=tag)
                left -= part


def _orders(result) -> pd.DataFrame:  # noqa: ANN001
    cols = ["client_id", "instrument_id", "side", "qty", "status", "filled_qty", "average_price",
            "tag"]  # fmt: skip
    return result.orders[cols].reset_index(drop=True)


def _fills(result) -> pd.DataFrame:  # noqa: ANN001
    cols = ["ts", "client_id", "instrument_id", "side", "qty", "price", "charges"]
    return result.fills[cols].reset_index(drop=True)


def test_basket_replay_equals_the_same_legs_placed_one_by_one(nifty, feed):
    # One-by-one, the second order of a split leg is identical to the first: the duplicate
    # guard would refuse it, so it is off in both runs (a basket needs no such exemption).
    limits = RiskLimits(duplicate_window_seconds=0)
    basket = _run(ShortStraddle(lots=LOTS, stop_loss=STOP), nifty, feed, risk_limits=limits)
    by_hand = _run(OneByOne(lots=LOTS, stop_loss=STOP), nifty, feed, risk_limits=limits)
    assert len(basket.orders) == 5 * 2 * 2 * 2  # 5 days × (entry, exit) × 2 legs × 2 orders
    assert set(basket.orders["qty"]) == {100, 50}
    assert (basket.orders["status"] == "FILLED").all()
    pd.testing.assert_frame_equal(_orders(basket), _orders(by_hand))
    pd.testing.assert_frame_equal(_fills(basket), _fills(by_hand))
    assert basket.equity_values == by_hand.equity_values
    assert basket.fills["charges"].sum() == by_hand.fills["charges"].sum()
    assert basket.stats["total_return"] == by_hand.stats["total_return"]


def test_basket_replay_equals_backtest_basket_on_the_same_prices(nifty, feed):
    result = _run(ShortStraddle(lots=LOTS, stop_loss=STOP), nifty, feed)
    research = backtest_basket(
        straddle("sell", LOTS), nifty, start=START, end=END, entry="09:20", exit="15:15",
        stop_loss=STOP, sigma=SIGMA, freeze_qty=FREEZE,
    )  # fmt: skip
    legs = research.legs
    assert set(legs["exit_reason"]) == {"time", "stop loss"}  # the combined stop is exercised
    fills = result.fills.copy()
    fills["date"] = pd.to_datetime(fills["ts"]).dt.date
    fills["cash"] = fills["qty"] * fills["price"] * fills["side"].map({"BUY": -1, "SELL": 1})
    engine = fills.groupby(["date", "instrument_id"]).agg(
        pnl=("cash", "sum"), charges=("charges", "sum"), entry=("ts", "min"), exit=("ts", "max"),
        orders=("client_id", "nunique"),
    )  # fmt: skip
    assert len(engine) == len(legs)
    for leg in legs.itertuples():
        iid = option_instrument_id("NIFTY", leg.kind, leg.expiry, leg.strike)
        row = engine.loc[(leg.entry_time.date(), iid)]
        assert row["entry"] == leg.entry_time and row["exit"] == leg.exit_time
        assert round(row["pnl"], 2) == leg.pnl  # fills at the same prices, same quantities
        assert row["orders"] == 2 * leg.orders  # the same split, on entry and on exit
        # the simulator charges each fill unrounded; the backtester rounds each leg's day to a
        # contract note (STT and stamp duty to the rupee): at most ₹1 apart per leg and day
        assert abs(row["charges"] - leg.charges) <= 1.0
    assert engine["pnl"].sum() == pytest.approx(legs["pnl"].sum(), abs=1e-6)


class _Basket(Strategy):
    """Sells a straddle as one basket at the first bar ending at or after 09:20, once; keeps
    what the basket call raised."""

    instruments = ("NSE:NIFTY",)
    timeframe = "1m"
    lots: int = 1

    def on_start(self, ctx: Context) -> None:
        self.done = False
        self.refused: RiskBreach | None = None
        self.ids: list[str] = []

    def on_bar(self, ctx: Context, bar) -> None:  # noqa: ANN001
        if self.done or (bar.ts + pd.Timedelta(minutes=1)).time() < pd.Timestamp("09:20").time():
            return
        self.done = True
        strike = round(bar.close / 50) * 50
        legs = [
            BasketLeg(option_instrument_id("NIFTY", k, pd.Timestamp("2022-06-16").date(), strike),
                      "SELL", self.lots * 50, product="NRML")
            for k in ("CE", "PE")
        ]  # fmt: skip
        try:
            self.ids = ctx.basket(legs, tag="t")
        except RiskBreach as exc:
            self.refused = exc


def _one_day(nifty, feed, strategy: Strategy, **kw):  # noqa: ANN001, ANN003, ANN202
    bars = _bars(nifty, feed, "2022-06-13", "2022-06-13")
    kw.setdefault("initial_cash", 5_000_000)
    return replay(strategy, bars=bars, instruments=feed.lookup(), **kw)


@pytest.mark.parametrize(
    ("limits", "limit"),
    [
        # the CE leg alone is allowed; the PE is not, so the CE is not sent either
        ({"allowed_instruments": "CE"}, "allowed_instruments"),
        # each of the 4 orders alone would fit 3 open orders; as a basket the 4th does not
        ({"max_open_orders": 3}, "max_open_orders"),
        # 4 orders at once do not fit a throttle of 3/s (one by one, 3 would have gone out)
        ({"max_orders_per_second": 3}, "max_orders_per_second"),
    ],
)
def test_a_basket_breaching_any_limit_sends_no_leg(nifty, feed, limits, limit):
    strategy = _Basket(lots=3)
    if "allowed_instruments" in limits:
        ids = [i for i in feed.instruments if i.endswith("CE")]
        limits = {"allowed_instruments": frozenset(ids + ["NSE:NIFTY"])}
    audit = MemoryAuditLog("replay")
    result = _one_day(nifty, feed, strategy, risk_limits=RiskLimits(**limits), audit=audit)
    assert strategy.refused is not None and strategy.refused.limit == limit
    rows = [(r.client_id, r.status) for r in audit.rows]
    assert rows[0] == ("R1-RISK", "BASKET")  # the basket is audited before its orders
    assert audit.rows[0].payload["orders"] == ["R1-1", "R1-2", "R1-3", "R1-4"]
    for cid in ("R1-1", "R1-2", "R1-3", "R1-4"):
        assert [s for c, s in rows if c == cid] == ["NEW", "REJECTED"]
    orders = result.orders
    assert len(orders) == 4 and (orders["status"] == "REJECTED").all()
    assert orders["broker_order_id"].isna().all()  # none reached the simulator
    assert result.fills.empty
    assert orders["status_message"].str.startswith("basket t refused").all()


def test_split_legs_of_one_basket_are_not_duplicates(nifty, feed):
    strategy = _Basket(lots=4)  # 200 units per leg → two identical orders of 100
    result = _one_day(nifty, feed, strategy, risk_limits=RiskLimits(duplicate_window_seconds=2))
    assert strategy.refused is None
    assert list(result.orders["qty"]) == [100, 100, 100, 100]
    assert (result.orders["status"] == "FILLED").all()


def test_a_broker_reject_rolls_the_basket_back(nifty, feed):
    # The simulator blocks 15 % of strike × qty for a sold option: ≈ ₹1.18 lakh per lot at
    # 15,750, so ₹1.5 lakh takes the first leg and rejects the second for funds.
    strategy = _Basket(lots=1)
    result = _one_day(nifty, feed, strategy, initial_cash=150_000)
    orders = result.orders.set_index("client_id")
    first, second = strategy.ids
    assert orders.loc[second, "status"] == "REJECTED"
    assert "funds" in orders.loc[second, "status_message"].lower()
    assert orders.loc[first, "status"] == "CANCELLED"  # working when the reject came: cancelled
    assert result.fills.empty
    rolled = [a for a in result.alerts if "rolled back" in a["message"]]
    assert len(rolled) == 1 and rolled[0]["severity"] == "critical"


def test_the_tick_loop_paper_runs_trades_the_basket_the_same(nifty, feed):
    # Paper (and live) run the engine's tick loop: ticks in, candles rebuilt. The same synthetic
    # ticks through it give the bar replay's orders and fills: one path, no mode branches.
    bars = _bars(nifty, feed, "2022-06-13", "2022-06-14")
    lookup = feed.lookup()
    limits = RiskLimits(duplicate_window_seconds=0)

    def run(source):  # noqa: ANN001, ANN202
        sim = SimBroker(lookup, initial_cash=5_000_000)
        engine = Engine([ShortStraddle(lots=LOTS, stop_loss=STOP)], broker=sim, feed=source,
                        instruments=lookup, risk=RiskEngine(limits), mode="paper")  # fmt: skip
        result = engine.run()
        assert engine.errors == {}
        return result

    replayed = BarReplay(bars)
    by_bars, by_ticks = run(replayed), run(replayed.ticks())
    assert len(by_bars.fill_list) == 2 * 2 * 2 * 2
    assert _fills(by_ticks).equals(_fills(by_bars))
    assert by_ticks.equity_values[-1] == by_bars.equity_values[-1]


class _Malformed(Strategy):
    """At 09:20: a basket with a leg of 70 units (not whole lots of 50), then a contract outside
    the feed, then one good order."""

    instruments = ("NSE:NIFTY",)
    timeframe = "1m"
    product = Product.NRML

    def on_start(self, ctx: Context) -> None:
        self.errors: list[Exception] = []
        self.done = False

    def on_bar(self, ctx: Context, bar) -> None:  # noqa: ANN001
        if self.done or (bar.ts + pd.Timedelta(minutes=1)).time() < pd.Timestamp("09:20").time():
            return
        self.done = True
        ce = ctx.option("NIFTY", "CE", spot=bar.close)
        pe = ctx.option("NIFTY", "PE", spot=bar.close)
        for attempt in (
            lambda: ctx.basket([BasketLeg(ce, "SELL", 50), BasketLeg(pe, "SELL", 70)]),
            lambda: ctx.basket([BasketLeg(ce, "SHORT", 50)]),
            lambda: ctx.option("NIFTY", "CE", spot=bar.close, offset=40),
        ):
            try:
                attempt()
            except Exception as exc:  # noqa: BLE001 - the test keeps what each raised
                self.errors.append(exc)
        self.good = ctx.sell(50, ce)


def test_a_malformed_basket_is_refused_whole_with_a_one_line_error(nifty, feed):
    strategy = _Malformed()
    result = _one_day(nifty, feed, strategy)
    lot, side, far = strategy.errors
    assert isinstance(lot, ValidationError) and "70" in str(lot) and "lot" in str(lot)
    assert isinstance(side, ValidationError) and "SHORT" in str(side)
    assert isinstance(far, UnknownInstrument) and "NFO:NIFTY22616" in str(far)
    assert strategy.good == "R1-1"  # the refused baskets took no client id
    assert list(result.orders["client_id"]) == ["R1-1"]
