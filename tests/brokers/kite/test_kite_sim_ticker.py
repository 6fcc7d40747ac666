"""The Kite simulator's ticker: packet encoding against Zerodha's recorded packets, and the
official ``KiteTicker`` (in a child process) receiving replayed ticks and order updates."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pytest

pytest.importorskip("kiteconnect")
pytest.importorskip("tornado")

from kite_sim_support import MOCKS, TickerChild, reliance_day  # noqa: E402
from kiteconnect import KiteConnect, KiteTicker  # noqa: E402

from velox.brokers.kite.sim_ws import encode_frame, encode_packet  # noqa: E402
from velox.brokers.kite.simulator import KiteSimulator  # noqa: E402
from velox.feeds import BarReplay  # noqa: E402

RELIANCE = 738561


def recorded(name: str) -> tuple[dict, bytes]:
    tick = json.loads((MOCKS / f"ticker_{name}.json").read_text())
    packet = base64.b64decode((MOCKS / f"ticker_{name}.packet").read_text())
    return tick, packet


def sdk_parse(frame: bytes) -> list[dict]:
    """Return the ticks the official SDK decodes from a binary frame."""
    return KiteTicker("key", "token")._parse_binary(frame)


@pytest.mark.parametrize("name", ["quote", "full"])
def test_the_encoder_reproduces_zerodhas_recorded_packets(name: str) -> None:
    tick, packet = recorded(name)
    assert encode_packet(tick) == packet


@pytest.mark.parametrize("name", ["ltp", "quote", "full"])
def test_the_sdk_decodes_our_frames_to_the_recorded_ticks(name: str) -> None:
    tick = json.loads((MOCKS / f"ticker_{name}.json").read_text())
    (decoded,) = sdk_parse(encode_frame([encode_packet(tick)]))
    assert decoded["mode"] == name and decoded["instrument_token"] == tick["instrument_token"]
    assert decoded["last_price"] == tick["last_price"]
    if name == "ltp":
        return
    assert decoded["ohlc"] == tick["ohlc"]
    assert decoded["volume_traded"] == tick["volume"]
    assert decoded["last_traded_quantity"] == tick["last_quantity"]
    assert decoded["average_traded_price"] == tick["average_price"]
    assert (decoded["total_buy_quantity"], decoded["total_sell_quantity"]) == (
        tick["buy_quantity"], tick["sell_quantity"])  # fmt: skip
    if name == "full":
        assert decoded["depth"] == tick["depth"]
        when = datetime.fromisoformat(tick["timestamp"]).timestamp()
        assert decoded["exchange_timestamp"].timestamp() == when
        assert decoded["last_trade_time"].timestamp() == when


def test_several_packets_and_an_index_share_one_frame() -> None:
    nifty = {"mode": "full", "instrument_token": 256265, "last_price": 22500.5,
             "ohlc": {"open": 22400.0, "high": 22550.0, "low": 22390.25, "close": 22410.0},
             "timestamp": "2025-05-20T10:00:00+05:30"}  # fmt: skip
    ltp = {"mode": "ltp", "instrument_token": RELIANCE, "last_price": 1402.35}
    index, stock = sdk_parse(encode_frame([encode_packet(nifty), encode_packet(ltp)]))
    assert (index["tradable"], index["mode"], index["last_price"]) == (False, "full", 22500.5)
    assert index["ohlc"] == nifty["ohlc"]
    assert stock == {"tradable": True, "mode": "ltp", "instrument_token": RELIANCE,
                     "last_price": 1402.35}  # fmt: skip
    assert sdk_parse(b"\x00") == []  # a heartbeat


# -- the official KiteTicker against the simulator ------------------------------------------


def login(sim: KiteSimulator) -> KiteConnect:
    kite = KiteConnect("demo", root=sim.url)
    kite.set_access_token(kite.generate_session("request-token", "secret")["access_token"])
    return kite


@pytest.fixture
def market() -> Iterator[tuple[KiteSimulator, KiteConnect]]:
    """A simulator without replay (the market trades when the test says) and a session."""
    sim = KiteSimulator(rate_limits=False)
    sim.start()
    yield sim, login(sim)
    sim.stop()


@pytest.fixture
def child_factory() -> Iterator:
    children: list[TickerChild] = []

    def make(*args: object, **kwargs: object) -> TickerChild:
        child = TickerChild(*args, **kwargs)  # type: ignore[arg-type]
        children.append(child)
        return child

    yield make
    for child in children:
        child.close()


def ticks_of(event: dict, token: int = RELIANCE) -> list[dict]:
    return [t for t in event.get("ticks", []) if t["instrument_token"] == token]


def test_replayed_ticks_reach_kiteticker_with_the_replayed_prices(child_factory) -> None:  # noqa: ANN001
    bars = {("NSE:RELIANCE", "5m"): reliance_day()}
    replay = BarReplay(bars)  # the reference: the same synthetic ticks, computed here
    prices, times = replay.price.tolist(), (replay.ts_ns // 1_000_000_000).tolist()
    with KiteSimulator(bars=bars, speed=1500, rate_limits=False) as sim:
        kite = login(sim)
        child = child_factory(sim.ws_url, "demo", kite.access_token, [RELIANCE], "full")
        received: list[dict] = []
        while len(received) < 12:
            received += ticks_of(child.wait_for(lambda e: e["event"] == "ticks"))
    seen = [t["last_price"] for t in received]
    start = next(k for k in range(len(prices)) if prices[k : k + 3] == seen[1:4])
    start -= 1  # the first tick may be the subscription snapshot: it repeats the last print
    for k, tick in enumerate(received[1:], start + 1):
        assert tick["last_price"] == prices[k]
        assert tick["exchange_timestamp"] == times[k] == tick["last_trade_time"]
        day = prices[: k + 1]
        assert tick["ohlc"] == {"open": prices[0], "high": max(day), "low": min(day),
                                "close": 0.0}  # fmt: skip
        assert tick["mode"] == "full" and tick["tradable"] is True
        best_bid, best_ask = tick["depth"]["buy"][0], tick["depth"]["sell"][0]
        assert best_bid["price"] == pytest.approx(prices[k] - 0.05)
        assert best_ask["price"] == pytest.approx(prices[k] + 0.05)
        assert len(tick["depth"]["buy"]) == len(tick["depth"]["sell"]) == 5
    volume = np.nan_to_num(replay.volume)
    assert received[-1]["volume_traded"] == int(volume[start + len(received) - 1])


def test_order_updates_reach_on_order_update(market, child_factory) -> None:  # noqa: ANN001
    sim, kite = market
    child = child_factory(sim.ws_url, "demo", kite.access_token, [RELIANCE], "ltp")
    child.wait_for(lambda e: e["event"] == "connect")
    sim.trade("NSE:RELIANCE", 1400.0)
    child.wait_for(lambda e: e["event"] == "ticks")  # subscribed before we place
    order_id = kite.place_order("regular", exchange="NSE", tradingsymbol="RELIANCE",
                                transaction_type="BUY", quantity=1, order_type="MARKET",
                                product="MIS", tag="ws-1")  # fmt: skip
    sim.trade("NSE:RELIANCE", 1400.5)
    done = child.wait_for(lambda e: e["event"] == "order" and e["data"]["status"] == "COMPLETE")
    assert done["data"]["order_id"] == order_id and done["data"]["tag"] == "ws-1"
    assert done["data"]["average_price"] == 1400.5
    statuses = [e["data"]["status"] for e in child.events if e["event"] == "order"]
    assert statuses == ["OPEN", "COMPLETE"]


def test_a_dropped_websocket_reconnects_by_itself_and_ticks_resume(market, child_factory) -> None:  # noqa: ANN001
    sim, kite = market
    child = child_factory(sim.ws_url, "demo", kite.access_token, [RELIANCE], "quote")
    child.wait_for(lambda e: e["event"] == "connect")
    sim.trade("NSE:RELIANCE", 1400.0)
    child.wait_for(lambda e: e["event"] == "ticks")
    assert sim.fault("drop_ws") == {"dropped": 1}
    child.wait_for(lambda e: e["event"] == "connect")  # KiteTicker reconnected on its own
    sim.trade("NSE:RELIANCE", 1405.0)
    tick = child.wait_for(lambda e: any(t["last_price"] == 1405.0 for t in ticks_of(e)))
    (quote,) = ticks_of(tick)
    assert quote["mode"] == "quote"  # the SDK resubscribed in its mode
    assert sim.stats()["ws.connect"]["count"] == 2


def test_a_malformed_packet_does_not_kill_the_server(market, child_factory) -> None:  # noqa: ANN001
    sim, kite = market
    child = child_factory(sim.ws_url, "demo", kite.access_token, [RELIANCE], "ltp")
    child.wait_for(lambda e: e["event"] == "connect")
    sim.trade("NSE:RELIANCE", 1400.0)
    child.wait_for(lambda e: e["event"] == "ticks")
    assert sim.fault("malformed_packet") == {"sent": 1}
    assert kite.profile()["user_id"]  # REST still answers
    sim.trade("NSE:RELIANCE", 1401.0)  # and ticks still flow (on this or a new connection)
    while True:
        child.wait_for(lambda e: e["event"] in ("ticks", "connect"))
        if any(t["last_price"] == 1401.0 for e in child.events for t in ticks_of(e)):
            break
        sim.trade("NSE:RELIANCE", 1401.0)


def test_a_bad_token_cannot_open_the_ticker(market, child_factory) -> None:  # noqa: ANN001
    sim, _ = market
    child = child_factory(sim.ws_url, "demo", "bogus", [RELIANCE], "ltp", seconds=5)
    event = child.wait_for(lambda e: e["event"] in ("error", "close", "connect", "reconnect"))
    assert event["event"] != "connect"
