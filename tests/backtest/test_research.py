"""``velox.research``: the vectorised backtest against the engine, velox.costs and vectorbt.

References are independent of the kernel: the event-driven engine (``velox.replay``: OMS,
simulator, Python charges) for fills, trades, charges and equity; ``velox.costs.trade_charges``
(the contract-note calculator, rounded as Zerodha's) and ``CostModel.fill_charges`` for every
fill's charges; vectorbt's own ``Portfolio`` accounting for the final value and cash; CPython's
``math.fsum``/``round`` for the compiled arithmetic helpers.
"""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import velox
from velox.backtest.research import ResearchResult, compare
from velox.brokers.sim import SimConfig
from velox.costs import BpsSlippage, CostModel, NoSlippage, TickSlippage, trade_charges
from velox.errors import ConfigError, ValidationError
from velox.strategy import Product, Strategy, is_cross_sectional, load_strategy
from velox.types import Side, snap_to_tick

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "strategies").glob("*.py"))


def _bars(name: str, timeframe: str) -> pd.DataFrame:
    from velox.data import read_bar_file, validate_bars

    frame, _ = validate_bars(read_bar_file(ROOT / "data" / "bars" / name), timeframe=timeframe,
                             source=name)  # fmt: skip
    return frame


@pytest.fixture(scope="module")
def reliance_1d() -> pd.DataFrame:
    return _bars("RELIANCE_1d_2017_2022.csv.gz", "1d")


@pytest.fixture(scope="module")
def reliance_5m() -> pd.DataFrame:
    return _bars("RELIANCE_5m_2025.csv", "5m")


def _vectorisable() -> list[Path]:
    """The vectorisable examples with one instrument (the cross-sectional rotation's parity is
    tests/backtest/test_cross_sectional_engine.py's)."""
    return [
        p
        for p in EXAMPLES
        if load_strategy(str(p))().vectorised and not is_cross_sectional(load_strategy(str(p)))
    ]


@pytest.fixture(scope="module")
def nifty() -> dict[str, pd.DataFrame]:
    rotation = load_strategy(str(ROOT / "strategies/momentum_rotation.py"))
    return {
        iid: _bars(f"{iid.split(':')[1]}_1d_2017_2022.csv.gz", "1d") for iid in rotation.instruments
    }


class MisCross(Strategy):
    """Intraday long/short SMA cross (MIS): exercises shorts, margin and the square-off."""

    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"
    product = Product.MIS
    fast: int = 5
    slow: int = 20
    weight: float = 1.0

    def signals(self, bars: pd.DataFrame) -> pd.Series:
        close = bars["close"]
        fast, slow = close.rolling(self.fast).mean(), close.rolling(self.slow).mean()
        out = np.where(fast > slow, self.weight, -self.weight)
        out[slow.isna().to_numpy()] = np.nan
        return pd.Series(out, index=bars.index)


class Basket(Strategy):
    """Three stocks, 30 % each while its fast mean is above its slow one: one cash pool."""

    instruments = ("NSE:INFY", "NSE:TCS", "NSE:SBIN")
    timeframe = "1d"
    weight: float = 0.3

    def signals(self, bars: pd.DataFrame) -> pd.Series:
        close = bars["close"]
        fast, slow = close.rolling(10).mean(), close.rolling(40).mean()
        out = np.where(fast > slow, self.weight, 0.0)
        out[slow.isna().to_numpy()] = np.nan
        return pd.Series(out, index=bars.index)


class Peek(Strategy):
    """A planted look-ahead: tomorrow's close decides today's weight."""

    instruments = ("NSE:RELIANCE",)

    def signals(self, bars: pd.DataFrame) -> pd.Series:
        return (bars["close"].shift(-1) > bars["close"]).astype(float)


# -- parity with the engine ------------------------------------------------------------------------


def _example_bars(cls: type[Strategy]) -> dict[str, pd.DataFrame]:
    """The bundled bars of an example's own instruments at its own timeframe."""
    out = {}
    for iid in cls.instruments:
        files = sorted((ROOT / "data" / "bars").glob(f"{iid.split(':')[1]}_{cls.timeframe}_*"))
        assert files, f"{iid} has no bundled {cls.timeframe} bars for {cls.__name__}"
        out[iid] = _bars(files[0].name, cls.timeframe)
    return out


def _option_inputs(cls: type[Strategy], bars: dict[str, pd.DataFrame]) -> dict:
    """Replay inputs of an event-driven example: its bars, and for a strategy on an index (an
    index takes no orders, so it trades the index's options) one week of its option contracts
    from ``velox.fno.option_feed`` (model-priced bars and instrument rows)."""
    from velox.fno import option_feed
    from velox.options import UNDERLYINGS

    (iid,) = bars if len(bars) == 1 else (None,)
    if iid is None or iid.split(":")[1] not in UNDERLYINGS:
        return {"bars": bars}
    index = bars[iid].loc["2022-06-13":"2022-06-17"]
    feed = option_feed(index, start="2022-06-13", end="2022-06-17", strikes=3, sigma=0.15,
                       freeze_qty=1_800)  # fmt: skip
    return {"bars": {(iid, cls.timeframe): index, **feed.bars}, "instrument_master": feed.lookup(),
            "initial_cash": 5_000_000}  # fmt: skip


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_strategy_matches_the_engine_and_is_causal(path: Path) -> None:
    """Every file in strategies/ (a new example is covered by being there), on its own
    instruments and timeframe: vectorisable ones give the replay's fills, orders and charges
    and pass the signals look-ahead check; event-driven ones (the opening-range breakout
    trades on ticks inside a bar: docs/research.md) are refused by velox.research with the
    reason and pass the engine-path look-ahead check (replays of cut bars)."""
    cls = load_strategy(str(path))
    bars = _example_bars(cls)
    if cls().vectorised:
        report = velox.parity(str(path), bars)
        assert report.ok, report
        assert len(report.research.fill_list) > 4
        assert [f.charges for f in report.research.fill_list] == [
            f.charges for f in report.replay.fill_list
        ]
        assert velox.check_lookahead(str(path), bars) == []
    else:
        with pytest.raises(ConfigError, match="has no signals"):
            velox.research(str(path), bars)
        replay_inputs = _option_inputs(cls, bars)
        assert len(velox.replay(str(path), **replay_inputs).fill_list) > 4
        # on the inputs it trades on (the index strategy's option contracts too), so that the
        # replays of cut bars have fills to compare
        feeds = replay_inputs.pop("bars")
        assert velox.check_lookahead(str(path), feeds, **replay_inputs) == []
    assert {p.stem for p in EXAMPLES} >= {"sma_cross", "rsi_reversion", "supertrend",
                                          "orb_intraday", "momentum_rotation"}  # fmt: skip


@pytest.mark.parametrize("path", _vectorisable(), ids=lambda p: p.stem)
@pytest.mark.parametrize("stock", ["RELIANCE", "INFY", "HDFCBANK"])
def test_every_vectorisable_example_matches_replay(path: Path, stock: str) -> None:
    # sma_cross, rsi_reversion, supertrend (its replay runs the streaming on_bar, its research
    # the batch signals(): parity proves the two implementations trade alike)
    assert {p.stem for p in _vectorisable()} >= {"sma_cross", "rsi_reversion", "supertrend"}
    frame = _bars(f"{stock}_1d_2017_2022.csv.gz", "1d")
    report = velox.parity(str(path), {f"NSE:{stock}": frame}, timeframe="1d")
    assert report.ok, report
    res, rep = report.research, report.replay
    assert len(res.fill_list) > 4
    # bit-equal, not merely within tolerance
    assert [f.charges for f in res.fill_list] == [f.charges for f in rep.fill_list]
    assert res.equity.to_numpy().tolist() == rep.equity.to_numpy().tolist()
    assert res.equity.index.equals(rep.equity.index)
    assert res.stats == pytest.approx(rep.stats, nan_ok=True, rel=1e-12)


@pytest.mark.parametrize(
    "slippage", [NoSlippage(), TickSlippage(2), BpsSlippage(7.5)], ids=["none", "ticks", "bps"]
)
def test_mis_long_short_with_square_off_and_slippage_matches_replay(
    reliance_5m: pd.DataFrame, slippage: object
) -> None:
    report = velox.parity(MisCross, reliance_5m, slippage=slippage)
    assert report.ok, report
    res = report.research
    trades = res.trades
    assert (trades["side"] == "SELL").any() and (trades["side"] == "BUY").any()
    squared = res.orders[res.orders["tag"] == "squareoff"]
    assert len(squared) > 10
    # the square-off fills at the 15:15 bar's open, every time
    fills = res.fills[res.fills["client_id"].str.startswith("SQUAREOFF")]
    assert (fills["ts"].dt.strftime("%H:%M") == "15:15").all()
    # intraday positions never cross midnight: every trade opens and closes the same day
    done = trades[trades["exit_time"].notna()]
    assert (done["entry_time"].dt.date == done["exit_time"].dt.date).all()


def test_lot_sizes_and_tick_rounding_come_from_the_instrument_master(
    reliance_5m: pd.DataFrame,
) -> None:
    """An instrument master with lots of 25 and a ₹0.25 tick: quantities are whole lots
    (``int(weight × equity / close)`` rounded towards zero to lots, as ``Context.target_weight``
    sizes them) and slipped prices are on the ₹0.25 grid (``BpsSlippage.adjust`` with that tick),
    exactly as the engine's replay trades them."""
    from velox.types import Instrument, InstrumentKind

    lots = Instrument("NSE:RELIANCE", "NSE", "RELIANCE", InstrumentKind.EQ, tick_size=0.25,
                      lot_size=25)  # fmt: skip
    slippage = BpsSlippage(7.5)
    report = velox.parity(MisCross, reliance_5m, slippage=slippage,
                          instrument_master={"NSE:RELIANCE": lots})  # fmt: skip
    assert report.ok, report
    fills = report.research.fill_list
    assert len(fills) > 50
    assert all(f.qty % 25 == 0 for f in fills)
    assert all(math.isclose(f.price / 0.25, round(f.price / 0.25), abs_tol=1e-9) for f in fills)
    # the first order: decided at the close of the first bar with both means (row slow - 1),
    # filled at the next bar's open, slipped against the order and snapped to the ₹0.25 tick
    first = fills[0]
    close, opens = reliance_5m["close"].to_numpy(), reliance_5m["open"].to_numpy()
    assert first.ts == reliance_5m.index[MisCross.slow]
    assert first.qty == int(1_000_000 / close[MisCross.slow - 1]) // 25 * 25
    assert first.price == slippage.adjust(first.side, opens[MisCross.slow], 0.25)
    # the bundled master (lots of 1, ₹0.05 tick) trades other quantities and prices
    plain = velox.research(MisCross, reliance_5m, slippage=slippage).fill_list
    assert plain[0].qty == int(1_000_000 / close[MisCross.slow - 1]) != first.qty
    assert any(not math.isclose(f.price / 0.25, round(f.price / 0.25), abs_tol=1e-9)
               for f in plain)  # fmt: skip


def test_square_off_time_setting_moves_the_exit(reliance_5m: pd.DataFrame) -> None:
    config = SimConfig(square_off_time=time(14, 30), square_off_charge=50.0)
    report = velox.parity(MisCross, reliance_5m, sim_config=config)
    assert report.ok, report
    fills = report.research.fills
    squared = fills[fills["client_id"].str.startswith("SQUAREOFF")]
    assert (squared["ts"].dt.strftime("%H:%M") == "14:30").all()
    # ₹50 + 18 % GST on each square-off, on top of the statutory charges
    other = CostModel()
    for row in squared.itertuples():
        side = Side(row.side)
        base = other.fill_charges(
            velox.modes.default_instruments()("NSE:RELIANCE"), Product.MIS, side, row.qty,
            row.price, row.ts.date(),
        ).total  # fmt: skip
        assert row.charges == pytest.approx(base + 59.0, abs=1e-9)


def test_a_square_off_between_bar_starts_and_leverage_match_replay(
    reliance_5m: pd.DataFrame,
) -> None:
    """15:17 falls on the 15:15 bar's third tick (15:17:30): the square-off fills there, at
    that tick's price; weight 2 is MIS leverage (20 % margin)."""
    config = SimConfig(square_off_time=time(15, 17))
    report = velox.parity(MisCross, reliance_5m, sim_config=config, weight=2.0, fast=3, slow=8)
    assert report.ok, report
    fills = report.research.fills
    squared = fills[fills["client_id"].str.startswith("SQUAREOFF")]
    assert len(squared) > 10 and (squared["ts"].dt.strftime("%H:%M:%S") == "15:17:30").all()


def test_cash_below_zero_freezes_the_account_as_in_the_simulator() -> None:
    """All in (weight 1) at a close, filled at a higher open: charges and the gap take cash
    below zero, after which the simulator's RMS refuses every order, even the exit."""
    upl = _bars("UPL_1d_2017_2022.csv.gz", "1d")
    report = velox.parity(str(ROOT / "strategies/sma_cross.py"), {"NSE:UPL": upl}, fast=5,
                          slow=20, weight=1.0)  # fmt: skip
    assert report.ok, report
    refused = report.research.orders["status"] == "REJECTED"
    assert refused.sum() > 100 and len(report.research.fill_list) <= 2


def test_a_universe_shares_one_cash_pool_like_the_engine() -> None:
    frames = {f"NSE:{s}": _bars(f"{s}_1d_2017_2022.csv.gz", "1d") for s in ("INFY", "TCS", "SBIN")}
    report = velox.parity(Basket, frames)
    assert report.ok, report
    res = report.research
    assert set(res.trades["instrument_id"]) == set(frames)
    # more than one instrument held at once (a shared pool, not three separate accounts)
    held = res.fill_records
    assert res.universe.opens.shape[1] == 3 and len(held) > 30


def test_the_order_throttle_refuses_a_ninth_order_at_one_close_like_the_engine() -> None:
    """Ten stocks rebalanced at the same close: the risk engine sends 8 per second per exchange
    and refuses the rest, which (a risk refusal, not a broker's) are not retried."""
    names = ("INFY", "TCS", "SBIN", "NTPC", "ONGC", "UPL", "TITAN", "TECHM", "CIPLA", "BPCL")
    frames = {f"NSE:{s}": _bars(f"{s}_1d_2017_2022.csv.gz", "1d") for s in names}

    class Ten(Strategy):
        def signals(self, bars: pd.DataFrame) -> pd.Series:
            return pd.Series(np.where(np.arange(len(bars)) % 40 < 20, 0.09, 0.0), bars.index)

    report = velox.parity(Ten, frames)
    assert report.ok, report
    orders = report.research.orders
    throttled = orders[orders["status_message"].str.startswith("max_orders_per_second")]
    assert len(throttled) > 20
    assert (orders.groupby("created_at").size() <= 10).all()
    from velox.risk import RiskLimits

    limits = RiskLimits(max_orders_per_second=20, algo_id="ALGO-1")  # a registered algo
    free = velox.parity(Ten, frames, risk_limits=limits)
    assert free.ok, free
    assert not (free.research.orders["status"] == "REJECTED").any()


def test_capital_cash_brokerage_and_dates_reach_both_sides(reliance_1d: pd.DataFrame) -> None:
    path = str(ROOT / "strategies/sma_cross.py")
    options = {"initial_cash": 2_000_000, "cost_model": CostModel("flat20")}
    report = velox.parity(path, reliance_1d, capital=300_000, start="2018-03-01",
                          end="2021-06-30", **options)  # fmt: skip
    assert report.ok, report
    res = report.research
    assert res.fills["ts"].min() >= pd.Timestamp("2018-03-01", tz="Asia/Kolkata")
    assert res.fills["ts"].max() < pd.Timestamp("2021-07-01", tz="Asia/Kolkata")
    assert res.equity.iloc[0] == 2_000_000 and res.fills["charges"].min() >= 20.0
    # sized against the strategy's capital, not the account's cash
    first = res.fills.iloc[0]
    assert first["qty"] * first["price"] < 300_000 * 1.05
    cut = velox.research(path, reliance_1d.loc["2018-03-01":"2021-06-30"], capital=300_000,
                         **options)  # fmt: skip
    assert cut.final_equity == res.final_equity


def test_a_refused_order_is_retried_like_the_engine(reliance_1d: pd.DataFrame) -> None:
    class Greedy(Strategy):
        """Asks for 150 % in delivery: the simulator refuses for want of funds every time."""

        instruments = ("NSE:RELIANCE",)

        def signals(self, bars: pd.DataFrame) -> pd.Series:
            return pd.Series(np.where(np.arange(len(bars)) % 50 < 25, 1.5, 0.5), bars.index)

    report = velox.parity(Greedy, reliance_1d)
    assert report.ok, report
    refused = report.research.orders[report.research.orders["status"] == "REJECTED"]
    engine_refused = report.replay.orders[report.replay.orders["status"] == "REJECTED"]
    assert len(refused) == len(engine_refused) > 10


def test_a_cross_sectional_rotation_ranks_the_universe(nifty: dict[str, pd.DataFrame]) -> None:
    path = str(ROOT / "strategies/momentum_rotation.py")
    rotation = load_strategy(path)
    assert rotation.parameters() == {"window": 126, "top": 5, "weight": 0.95}  # not a parameter
    res = velox.research(path, nifty)
    assert len(nifty) == 44 and res.universe.opens.shape == (1277, 44)
    assert velox.check_lookahead(path, nifty) == []
    # the first ranking, recomputed from the raw closes: the five best 126-session returns
    close = pd.DataFrame({iid: f["close"] for iid, f in nifty.items()})
    momentum = close / close.shift(126) - 1
    month = close.index.year * 12 + close.index.month
    starts = np.r_[True, month[1:] != month[:-1]] & (momentum.notna().sum(axis=1) >= 5).to_numpy()
    first = int(np.flatnonzero(starts)[0])
    expected = set(momentum.iloc[first].nlargest(5).index)
    buys = res.fills[res.fills["side"] == "BUY"]
    opening = buys[buys["ts"] == buys["ts"].min()]
    assert opening["ts"].iloc[0].date() == close.index[first + 1].date()  # the next open
    assert set(opening["instrument_id"]) == expected
    held = res.fills.groupby("instrument_id")["qty"].count()
    assert len(held) > 10  # it rotates
    # one cash pool: never more than top names at once
    signed = res.fills.assign(q=np.where(res.fills["side"] == "BUY", 1, -1) * res.fills["qty"])
    positions = signed.pivot_table(index="ts", columns="instrument_id", values="q", aggfunc="sum")
    assert ((positions.fillna(0).cumsum() > 0).sum(axis=1) <= 5).all()


# -- charges ---------------------------------------------------------------------------------------


def test_each_fill_is_charged_as_velox_costs_charges_it(reliance_5m: pd.DataFrame) -> None:
    from velox.modes import default_instruments

    res = velox.research(MisCross, reliance_5m)
    reliance = default_instruments()("NSE:RELIANCE")
    model = CostModel()
    parts = res.charge_breakdown()
    assert len(parts) == len(res.fill_list) > 50
    for fill, (_, row) in zip(res.fill_list, parts.iterrows(), strict=True):
        exact = model.fill_charges(reliance, Product.MIS, fill.side, fill.qty, fill.price,
                                   fill.ts.date())  # fmt: skip
        assert fill.charges == exact.total  # bit for bit
        assert row["stt"] == exact.stt and row["brokerage"] == exact.brokerage
        # and the contract-note calculator, which rounds STT and stamp duty to the rupee
        value = fill.qty * fill.price
        buy = fill.side is Side.BUY
        note = trade_charges("equity_intraday", value if buy else 0.0, 0.0 if buy else value,
                             trade_date=fill.ts.date())  # fmt: skip
        assert row["brokerage"] == pytest.approx(note.brokerage, abs=0.005)
        assert row["exchange"] == pytest.approx(note.exchange, abs=0.005)
        assert row["sebi"] == pytest.approx(note.sebi, abs=0.005)
        assert row["stt"] == pytest.approx(note.stt, abs=0.5)
        assert row["stamp"] == pytest.approx(note.stamp, abs=0.5)
        assert row["gst"] == pytest.approx(note.gst, abs=0.01)
        assert (row["stt"] > 0) == (not buy) and (row["stamp"] > 0) == buy  # sides
        assert row["brokerage"] <= 20.0  # the per-order cap


def test_each_round_trip_costs_what_trade_charges_says(reliance_1d: pd.DataFrame) -> None:
    """Delivery round trips: the buy's and the sell's contract notes (one per session).

    The simulator (and so research) charges unrounded per-fill amounts; a contract note rounds
    STT and stamp duty to the rupee and the rest to the paisa. Each leg's pieces rounded as a
    note rounds them are the note's items exactly (GST, rounded as accumulated, to the paisa):
    the per-trade difference is that rounding and nothing else (rates, sides, brokerage cap).
    """
    from velox.costs import ChargeBreakdown

    res = velox.research(str(ROOT / "strategies/sma_cross.py"), reliance_1d, fast=10, slow=30)
    parts = res.charge_breakdown()
    closed = res.trades[res.trades["exit_time"].notna()]
    assert len(closed) > 10 and len(parts) >= 2 * len(closed)
    items = ["brokerage", "stt", "exchange", "sebi", "stamp", "gst"]
    for k, t in enumerate(closed.itertuples()):
        legs = parts.iloc[2 * k], parts.iloc[2 * k + 1]  # one order per leg: buy, then sell
        assert legs[0].name == t.entry_time and legs[1].name == t.exit_time
        assert t.charges == pytest.approx(legs[0]["total"] + legs[1]["total"], abs=1e-9)
        notes = (
            trade_charges("equity_delivery", t.qty * t.entry_price, 0.0,
                          trade_date=t.entry_time.date()),
            trade_charges("equity_delivery", 0.0, t.qty * t.exit_price,
                          trade_date=t.exit_time.date()),
        )  # fmt: skip
        for leg, note in zip(legs, notes, strict=True):
            rounded = ChargeBreakdown(*(float(leg[i]) for i in items)).rounded()
            for item in ("brokerage", "stt", "exchange", "sebi", "stamp"):
                assert getattr(rounded, item) == getattr(note, item), (k, item)
            assert rounded.gst == pytest.approx(note.gst, abs=0.0100001)
        assert t.charges == pytest.approx(notes[0].total + notes[1].total, abs=2.1)
        assert t.charges > 0.002 * t.qty * t.entry_price * 0.9  # STT 0.1 % each side at least


# -- causality -------------------------------------------------------------------------------------


def test_check_lookahead_catches_a_planted_shift(reliance_1d: pd.DataFrame) -> None:
    assert velox.check_lookahead(str(ROOT / "strategies/sma_cross.py"), reliance_1d) == []
    with pytest.raises(ValidationError, match="looks ahead"):
        velox.check_lookahead(Peek, reliance_1d)
    assert len(velox.check_lookahead(Peek, reliance_1d, raise_error=False)) > 10


class PeekEvents(Strategy):
    """A planted look-ahead in an event-driven strategy: it reads the replay's whole bar frame
    through the engine's private feed and holds while the close ``ahead`` sessions later is
    higher; ``ahead=-3`` reads three sessions back instead (causal)."""

    instruments = ("NSE:RELIANCE",)
    ahead: int = 2

    def on_start(self, ctx) -> None:  # noqa: ANN001
        frame = ctx._engine.feed.bars("NSE:RELIANCE", "1d")
        self.other = dict(zip(frame.index, frame["close"].shift(-self.ahead), strict=True))

    def on_bar(self, ctx, bar) -> None:  # noqa: ANN001
        other = self.other.get(bar.ts, math.nan)
        if other == other:
            ctx.target_weight(0.9 if other > bar.close else 0.0)


def test_check_lookahead_replays_cut_bars_of_an_event_driven_strategy(
    reliance_1d: pd.DataFrame,
) -> None:
    assert not PeekEvents().vectorised
    assert velox.check_lookahead(PeekEvents, reliance_1d, ahead=-3) == []
    with pytest.raises(ValidationError, match="looks ahead"):
        velox.check_lookahead(PeekEvents, reliance_1d)
    assert len(velox.check_lookahead(PeekEvents, reliance_1d, ahead=5, raise_error=False)) >= 2


def test_check_lookahead_catches_a_cross_sectional_peek(nifty: dict[str, pd.DataFrame]) -> None:
    rotation = load_strategy(str(ROOT / "strategies/momentum_rotation.py"))

    class PeekRotation(rotation):  # type: ignore[misc, valid-type]
        def signals(self, bars: pd.DataFrame) -> pd.DataFrame:
            return super().signals(bars.shift(-20))  # ranks on closes a month ahead

    few = {k: v for k, v in list(nifty.items())[:8]}
    assert len(velox.check_lookahead(PeekRotation, few, raise_error=False)) > 5
    with pytest.raises(ValidationError, match="looks ahead"):
        velox.check_lookahead(Peek, {"NSE:RELIANCE": nifty["NSE:RELIANCE"]})


# -- vectorbt --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["delivery", "intraday", "universe"])
def test_the_vectorbt_portfolio_ends_where_the_backtest_ends(
    case: str, reliance_1d: pd.DataFrame, reliance_5m: pd.DataFrame
) -> None:
    if case == "delivery":
        res = velox.research(str(ROOT / "strategies/sma_cross.py"), reliance_1d)
    elif case == "intraday":
        # weight 0.9: vectorbt pays for every buy in full cash (no margin), so a reversal of
        # a short needs some headroom; at weight 1 the margin model allows what vectorbt cuts
        res = velox.research(MisCross, reliance_5m, weight=0.9)
    else:
        frames = {f"NSE:{s}": _bars(f"{s}_1d_2017_2022.csv.gz", "1d") for s in ("INFY", "TCS")}
        res = velox.research(Basket, frames)
    pf = res.portfolio
    assert res.portfolio is pf  # built once
    assert float(pf.final_value()) == pytest.approx(res.final_equity, rel=1e-10)
    u = res.universe
    last = np.array([u.closes[~np.isnan(u.closes[:, j]), j][-1] for j in range(u.closes.shape[1])])
    held = np.zeros(len(last))
    for f in res.fill_list:
        held[u.instrument_ids.index(f.instrument_id)] += f.qty if f.side is Side.BUY else -f.qty
    cash = res.final_equity - float(held @ last)
    assert float(np.asarray(pf.cash())[-1].sum()) == pytest.approx(cash, rel=1e-9, abs=1e-6)
    assert int(pf.orders.count().sum()) == len(res.fill_list)
    assert float(pf.orders.records["fees"].sum()) == pytest.approx(res.charges, rel=1e-12)


# -- the result ------------------------------------------------------------------------------------


def test_the_result_has_the_engines_frames_plot_and_html(reliance_1d: pd.DataFrame) -> None:
    res = velox.research(str(ROOT / "strategies/sma_cross.py"), reliance_1d)
    assert isinstance(res, ResearchResult)
    quick = res.stats  # before any DataFrame: the same summary_stats as the RunResult's
    assert "run" not in res._cache  # noqa: SLF001
    assert quick == res.run_result.stats or all(
        (a == b) or (a != a and b != b)
        for a, b in zip(quick.values(), res.run_result.stats.values(), strict=True)
    )
    replay = velox.replay(str(ROOT / "strategies/sma_cross.py"), bars=reliance_1d)
    for name in ("trades", "fills"):
        assert list(getattr(res, name).columns) == list(getattr(replay, name).columns)
    assert list(res.orders.columns) == list(replay.orders.columns)
    for key in ("cagr", "sharpe", "sortino", "calmar", "max_drawdown", "win_rate",
                "profit_factor", "expectancy", "exposure", "charges"):  # fmt: skip
        assert key in res.stats
    assert res.stats["charges"] == pytest.approx(res.charges, rel=1e-12)
    assert "ResearchResult" in res._repr_html_()
    import json

    report = json.loads(res.to_json())
    assert report["mode"] == "research" and len(report["trades"]) == len(res.trades)
    assert res.equity_values[-1] == res.final_equity and len(res.equity_ns) == len(res.equity)
    table = res.monthly_returns()
    assert table.index.min() == 2017 and table.shape[1] == 12
    layout = res.plot()
    assert len(layout) == 4  # price with trades, equity, drawdown, monthly heatmap
    assert compare(res, replay).ok


def test_weights_array_entry_point_is_what_a_sweep_calls(reliance_1d: pd.DataFrame) -> None:
    from velox.backtest.research import prepare, strategy_weights

    strategy = load_strategy(str(ROOT / "strategies/sma_cross.py"))()
    universe = prepare(strategy, {"NSE:RELIANCE": reliance_1d})
    finals = []
    for fast in (5, 10, 20):
        strategy.fast = fast
        fills, orders, equity = universe.run(strategy_weights(strategy, universe))
        finals.append(equity[-1])
        alone = velox.research(str(ROOT / "strategies/sma_cross.py"), reliance_1d, fast=fast)
        assert equity[-1] == alone.final_equity and len(fills) == len(alone.fill_list)
    assert len(set(finals)) == 3
    with pytest.raises(ValidationError, match="shape"):
        universe.run(np.zeros((3, 1)))


def test_refusals_name_the_problem(reliance_1d: pd.DataFrame, reliance_5m: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="velox.replay"):  # tick-driven: no signals()
        velox.research(str(ROOT / "strategies/orb_intraday.py"), reliance_5m)
    with pytest.raises(ConfigError, match="intraday timeframe"):
        velox.research(MisCross, reliance_1d, timeframe="1d")
    with pytest.raises(ConfigError, match="TickSlippage"):
        velox.research(str(ROOT / "strategies/sma_cross.py"), reliance_1d, slippage=object())
    with pytest.raises(ConfigError, match="no parameter 'fsat'"):
        velox.research(str(ROOT / "strategies/sma_cross.py"), reliance_1d, fsat=3)


def test_import_velox_stays_light_and_vectorbt_waits_for_the_portfolio() -> None:
    code = (
        "import sys, velox\n"
        "from pathlib import Path\n"
        "assert 'vectorbt' not in sys.modules and 'numba' not in sys.modules\n"
        "import velox.backtest\n"
        "assert 'vectorbt' not in sys.modules and 'numba' not in sys.modules\n"
        "from velox.data import read_bar_file, validate_bars\n"
        "f, _ = validate_bars(read_bar_file(Path('data/bars/RELIANCE_1d_2017_2022.csv.gz')),\n"
        "                     timeframe='1d', source='x')\n"
        "res = velox.research('strategies/sma_cross.py', f)\n"
        "assert 'vectorbt' not in sys.modules, 'a plain backtest imported vectorbt'\n"
        "res.portfolio\n"
        "assert 'vectorbt' in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=False)  # fmt: skip
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.postgres
def test_research_reads_the_store_like_replay(store, reliance_1d: pd.DataFrame) -> None:
    from velox.data import import_bars

    import_bars(ROOT / "data/bars/RELIANCE_1d_2017_2022.csv.gz", "NSE:RELIANCE", "1d", store=store)
    res = velox.research(str(ROOT / "strategies/sma_cross.py"), "NSE:RELIANCE", timeframe="1d",
                         start="2019-01-01", end="2021-10-29", store=store)  # fmt: skip
    given = velox.research(str(ROOT / "strategies/sma_cross.py"),
                           reliance_1d.loc["2019-01-01":"2021-10-29"])  # fmt: skip
    assert res.final_equity == given.final_equity
    report = velox.parity(str(ROOT / "strategies/sma_cross.py"), "NSE:RELIANCE", timeframe="1d",
                          start="2019-01-01", end="2021-10-29", store=store)  # fmt: skip
    assert report.ok, report


# -- the compiled helpers against CPython ----------------------------------------------------


def test_compiled_fsum_sum_and_tick_snapping_match_python() -> None:
    from velox.backtest._kernel import charges_total, fsum, slipped, snap
    from velox.costs import ChargeBreakdown
    from velox.types import _decimals

    rng = np.random.default_rng(7)
    for _ in range(3000):
        values = rng.normal(0, 10.0 ** rng.integers(-3, 6), 6) * (rng.random(6) < 0.8)
        if rng.random() < 0.3:
            values = np.round(values, 2)  # whole paise: the integer path
        assert fsum(values) == math.fsum(values.tolist())
        assert charges_total(values) == ChargeBreakdown(*values.tolist()).total
    for tick in (0.05, 0.01, 0.1, 1.0):
        pow10 = 10.0 ** _decimals(tick)
        for price in rng.uniform(0.5, 50_000, 2000).tolist() + [100.0, 100.05, 2500.07]:
            for mode, name in ((0, "nearest"), (1, "down"), (2, "up")):
                assert snap(price, tick, pow10, mode) == snap_to_tick(price, tick, name)
            for side in (Side.BUY, Side.SELL):
                sign = 1 if side is Side.BUY else -1
                for model, kind, amount in ((NoSlippage(), 0, 0.0), (TickSlippage(3), 1, 3.0),
                                            (BpsSlippage(12.5), 2, 12.5)):  # fmt: skip
                    expected = model.adjust(side, price, tick)
                    assert slipped(sign, price, tick, pow10, kind, amount) == expected


def test_a_backtest_needing_more_order_room_than_estimated_runs_again(
    reliance_1d: pd.DataFrame,
) -> None:
    """Refusals retried every bar outgrow the first estimate of the order records."""
    from velox.backtest.research import prepare

    strategy = load_strategy(str(ROOT / "strategies/sma_cross.py"))()
    universe = prepare(strategy, {"NSE:RELIANCE": reliance_1d})
    weights = np.full((len(reliance_1d), 1), 5.0)  # 500 % in delivery: refused at every bar
    fills, orders, equity = universe.run(weights)
    assert len(fills) == 0 and len(orders) == len(reliance_1d)  # the last close's too
    assert (orders[:, 4] == 1).all() and equity[-1] == universe.initial_cash


class RandomWeights(Strategy):
    """Seeded random target weights that change every few bars, NaN gaps included: a fuzz of
    sizing, refusals (weights above 1 in delivery, cash below zero), reversals and shorts."""

    instruments = ("NSE:RELIANCE",)
    seed: int = 0
    low: float = 0.0
    high: float = 1.2

    def signals(self, bars: pd.DataFrame) -> pd.Series:
        rng = np.random.default_rng(self.seed)
        n = len(bars)
        levels = rng.uniform(self.low, self.high, n)
        hold = rng.integers(1, 12, n).cumsum()  # each level held for a few bars
        out = levels[np.minimum(np.searchsorted(hold, np.arange(n)), n - 1)]
        out[rng.random(n) < 0.1] = np.nan
        return pd.Series(out, index=bars.index)


@pytest.mark.parametrize("seed", range(4))
def test_random_weights_match_replay(
    seed: int, reliance_1d: pd.DataFrame, reliance_5m: pd.DataFrame
) -> None:
    slippage = (NoSlippage(), TickSlippage(1), BpsSlippage(4.0), TickSlippage(3))[seed]
    daily = velox.parity(RandomWeights, reliance_1d, seed=seed, slippage=slippage)
    assert daily.ok, daily
    intraday = velox.parity(RandomWeights, reliance_5m, timeframe="5m", product="MIS",
                            seed=seed, low=-1.5, high=1.5, slippage=slippage)  # fmt: skip
    assert intraday.ok, intraday
    assert len(intraday.research.fill_list) > 100


@pytest.mark.parametrize("seed", range(2))
def test_random_weights_over_a_universe_match_replay(seed: int) -> None:
    names = ("INFY", "TCS", "SBIN", "NTPC")
    frames = {f"NSE:{s}": _bars(f"{s}_1d_2017_2022.csv.gz", "1d") for s in names}

    class Spread(RandomWeights):
        def signals(self, bars: pd.DataFrame) -> pd.Series:
            # a different stream per instrument (its first close), the same in both runs
            self.seed = seed * 1000 + int(bars["close"].iloc[0])
            return super().signals(bars)

    report = velox.parity(Spread, frames, high=0.45)
    assert report.ok, report
