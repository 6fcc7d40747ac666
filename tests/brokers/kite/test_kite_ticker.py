"""KiteMarketData end to end: the official KiteTicker in its child process, over loopback.

The server is a small tornado stand-in speaking Kite's ticker protocol (binary frames, text
order/error messages, subscribe/mode/unsubscribe), so each test says exactly what goes on the
wire; the child runs the unmodified SDK. Expected ticks come from Zerodha's recorded packets and
the SDK's own parser. Nothing waits on a clock: each step waits for an event (with a generous
deadline that only guards against a hang).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import signal
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import tornado.web
import tornado.websocket
from kiteconnect import KiteTicker

from velox.brokers.base import ConnectionEvent, ConnectionState, MarketData, TickMode
from velox.brokers.kite.ticker import KiteMarketData
from velox.errors import DataError
from velox.testing import KITE_MOCKS
from velox.types import Tick

MOCKS = KITE_MOCKS
RELIANCE, INFY, NIFTY = 738561, 408065, 256265
IDS = {"NSE:RELIANCE": RELIANCE, "NSE:INFY": INFY, "NSE:NIFTY": NIFTY}
SECRET = "sekret-access-token-123"
WAIT = 30.0  # a hang guard, not a timing assertion


def frame_of(*packets: bytes) -> bytes:
    out = [struct.pack(">H", len(packets))]
    out += [struct.pack(">H", len(p)) + p for p in packets]
    return b"".join(out)


def full_packet(token: int, ltp: int, volume: int, epoch: int) -> bytes:
    import base64

    body = bytearray(base64.b64decode((MOCKS / "ticker_full.packet").read_bytes()))
    body[0:8] = struct.pack(">II", token, ltp)
    body[16:20] = struct.pack(">I", volume)
    body[60:64] = struct.pack(">I", epoch)
    return bytes(body)


class StandIn:
    """A loopback Kite ticker server: records what clients send, pushes what a test says."""

    def __init__(self) -> None:
        self.clients: list[tornado.websocket.WebSocketHandler] = []
        self.received: queue.Queue[tuple[int, dict]] = queue.Queue()  # (connection no, message)
        self.connections = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self._ready = threading.Event()

    def start(self) -> int:
        threading.Thread(target=self._serve, daemon=True).start()
        assert self._ready.wait(WAIT)
        return self.port

    def _serve(self) -> None:
        server = self

        class Handler(tornado.websocket.WebSocketHandler):
            def open(self) -> None:
                server.connections += 1
                self.number = server.connections
                self.query = {k: self.get_argument(k) for k in ("api_key", "access_token")}
                server.clients.append(self)

            def on_message(self, message: str | bytes) -> None:
                server.received.put((self.number, json.loads(message)))

            def on_close(self) -> None:
                if self in server.clients:
                    server.clients.remove(self)

        async def main() -> None:
            app = tornado.web.Application([(r"/ws", Handler)])
            http = app.listen(0, address="127.0.0.1")
            self.port = next(iter(http._sockets.values())).getsockname()[1]
            self.loop = asyncio.get_running_loop()
            self._ready.set()
            await asyncio.Event().wait()

        asyncio.run(main())

    def call(self, fn: Callable[[], object]) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(fn)

    def push(self, data: bytes | str) -> None:
        """Send ``data`` (binary frame or text message) to every connected client."""
        binary = isinstance(data, bytes)
        self.call(lambda: [c.write_message(data, binary=binary) for c in list(self.clients)])

    def drop(self) -> None:
        """Cut every connection at the TCP level (no close handshake), as a network drop."""
        self.call(lambda: [c.ws_connection.stream.close() for c in list(self.clients)])

    def expect(self, predicate: Callable[[int, dict], bool]) -> tuple[int, dict]:
        """Return the first client message (after those already read) that ``predicate`` likes."""
        while True:
            number, message = self.received.get(timeout=WAIT)
            if predicate(number, message):
                return number, message


class Running:
    """A KiteMarketData run() on its own thread, its deliveries on a queue."""

    def __init__(self, feed: KiteMarketData) -> None:
        self.feed = feed
        self.events: queue.Queue[Tick | ConnectionEvent] = queue.Queue()
        self.orders: queue.Queue[dict] = queue.Queue()
        feed.on_order_update = self.orders.put
        self.thread = threading.Thread(target=feed.run, args=(self.events.put,), daemon=True)
        self.thread.start()

    def next(self, predicate: Callable[[Tick | ConnectionEvent], bool], wait: float = WAIT) -> list:
        """Return every delivery up to and including the first one ``predicate`` likes."""
        seen = []
        while True:
            event = self.events.get(timeout=wait)
            seen.append(event)
            if predicate(event):
                return seen

    def state(self, state: ConnectionState) -> list:
        return self.next(lambda e: isinstance(e, ConnectionEvent) and e.state is state)

    def tick_of(self, instrument_id: str) -> list:
        return self.next(lambda e: isinstance(e, Tick) and e.instrument_id == instrument_id)


@pytest.fixture
def server() -> StandIn:
    standin = StandIn()
    standin.start()
    return standin


@pytest.fixture
def feed(server: StandIn) -> Iterator[KiteMarketData]:
    md = KiteMarketData(
        "key",
        SECRET,
        root=f"ws://127.0.0.1:{server.port}/ws",
        instruments=IDS,
        restart_delay=0.1,
    )
    yield md
    md.stop()


def subscribed(server: StandIn, tokens: list[int], mode: str) -> int:
    """Wait for a client to subscribe ``tokens`` and set ``mode``; return its connection no."""
    number, _ = server.expect(lambda n, m: m == {"a": "subscribe", "v": tokens})
    server.expect(lambda n, m: n == number and m == {"a": "mode", "v": [mode, tokens]})
    return number


def test_feed_is_a_market_data_and_maps_ids_through_the_master() -> None:
    md = KiteMarketData("key", SECRET)  # the bundled master
    assert isinstance(md, MarketData)
    md.subscribe(["NSE:RELIANCE"], TickMode.LTP)
    assert md.subscriptions == {"NSE:RELIANCE": TickMode.LTP}
    with pytest.raises(DataError, match="NSE:NOSUCHTHING"):
        md.subscribe(["NSE:RELIANCE", "NSE:NOSUCHTHING"])
    assert md.subscriptions == {"NSE:RELIANCE": TickMode.LTP}  # nothing half-subscribed
    md.unsubscribe(["NSE:RELIANCE", "NSE:NEVER"])
    assert md.subscriptions == {}
    many = KiteMarketData("key", SECRET, instruments={f"NSE:S{k}": k for k in range(3001)})
    many.subscribe([f"NSE:S{k}" for k in range(3000)])
    with pytest.raises(DataError, match="at most 3000"):
        many.subscribe(["NSE:S3000"])


def test_ticks_of_subscribed_tokens_equal_what_was_sent(
    server: StandIn, feed: KiteMarketData
) -> None:
    feed.subscribe(["NSE:RELIANCE"], TickMode.FULL)
    feed.subscribe(["NSE:NIFTY"], TickMode.LTP)
    run = Running(feed)
    run.state(ConnectionState.CONNECTED)
    number, _ = server.expect(lambda n, m: m["a"] == "subscribe")
    modes = {}
    while len(modes) < 2:
        _, message = server.expect(lambda n, m: n == number and m["a"] == "mode")
        modes[message["v"][0]] = message["v"][1]
    assert modes == {"full": [RELIANCE], "ltp": [NIFTY]}
    client = server.clients[0]
    assert client.query == {"api_key": "key", "access_token": SECRET}

    frame = frame_of(
        full_packet(RELIANCE, 290055, 1_000_000, 1_712_000_000),
        struct.pack(">II", NIFTY, 2_250_015),
        struct.pack(">II", 999_999, 1),  # not subscribed: dropped
    )
    server.push(frame)
    ticks = run.tick_of("NSE:NIFTY")
    reference = KiteTicker("k", "t")._parse_binary(frame)
    assert [t.instrument_id for t in ticks] == ["NSE:RELIANCE", "NSE:NIFTY"]
    assert [t.ltp for t in ticks] == [d["last_price"] for d in reference[:2]]
    assert ticks[0].volume == reference[0]["volume_traded"] == 1_000_000
    assert ticks[0].ts.timestamp() == 1_712_000_000
    assert ticks[0].bid == reference[0]["depth"]["buy"][0]["price"]


def test_unsubscribe_stops_ticks_and_tells_kite(server: StandIn, feed: KiteMarketData) -> None:
    feed.subscribe(["NSE:RELIANCE", "NSE:INFY"], TickMode.FULL)
    run = Running(feed)
    run.state(ConnectionState.CONNECTED)
    subscribed(server, [INFY, RELIANCE], "full")
    feed.unsubscribe(["NSE:RELIANCE"])
    server.expect(lambda n, m: m == {"a": "unsubscribe", "v": [RELIANCE]})
    server.push(frame_of(full_packet(RELIANCE, 290000, 10, 1_712_000_000)))
    server.push(frame_of(full_packet(INFY, 150000, 10, 1_712_000_001)))
    seen = run.tick_of("NSE:INFY")
    assert [e.instrument_id for e in seen if isinstance(e, Tick)] == ["NSE:INFY"]
    feed.subscribe(["NSE:RELIANCE"], TickMode.QUOTE)  # back, in another mode
    subscribed(server, [RELIANCE], "quote")


def test_order_updates_reach_the_callback_and_errors_are_logged(
    server: StandIn, feed: KiteMarketData, caplog: pytest.LogCaptureFixture
) -> None:
    order = json.loads((MOCKS / "postback.json").read_text())
    feed.subscribe(["NSE:INFY"], TickMode.LTP)
    run = Running(feed)
    run.state(ConnectionState.CONNECTED)
    subscribed(server, [INFY], "ltp")
    with caplog.at_level(logging.WARNING, logger="velox.brokers.kite.ticker"):
        server.push(json.dumps({"type": "error", "data": "Invalid subscription"}))
        server.push(json.dumps({"type": "order", "data": order}))
        assert run.orders.get(timeout=WAIT) == order
        server.push(frame_of(struct.pack(">II", INFY, 150000)))
        run.tick_of("NSE:INFY")  # the text messages came before this tick: all handled
    assert "Invalid subscription" in caplog.text


def test_malformed_frames_are_skipped_and_the_feed_goes_on(
    server: StandIn, feed: KiteMarketData, caplog: pytest.LogCaptureFixture
) -> None:
    feed.subscribe(["NSE:INFY"], TickMode.FULL)
    run = Running(feed)
    run.state(ConnectionState.CONNECTED)
    subscribed(server, [INFY], "full")
    good = frame_of(full_packet(INFY, 150000, 10, 1_712_000_000))
    with caplog.at_level(logging.WARNING, logger="velox.brokers.kite.ticker"):
        server.push(good[:100])  # cut short
        server.push(struct.pack(">H", 9) + good[2:])  # claims nine packets
        server.push(b"\x00")  # heartbeat
        server.push(good)
        seen = run.tick_of("NSE:INFY")
    assert [e for e in seen if isinstance(e, Tick)] == seen and len(seen) == 1
    assert feed.stats.malformed == 2 and feed.stats.heartbeats == 1
    assert caplog.text.count("malformed frame") == 2


def test_a_dropped_connection_is_a_reported_gap_then_resubscribed(
    server: StandIn, feed: KiteMarketData
) -> None:
    feed.subscribe(["NSE:INFY"], TickMode.FULL)
    feed.subscribe(["NSE:NIFTY"], TickMode.LTP)
    run = Running(feed)
    run.state(ConnectionState.CONNECTED)
    server.expect(lambda n, m: m["a"] == "mode" and m["v"][0] == "ltp")
    server.drop()
    down = run.state(ConnectionState.DISCONNECTED)[-1]
    back = run.state(ConnectionState.CONNECTED)[-1]
    assert "gap" in back.detail and " s " in back.detail
    assert back.ts >= down.ts
    # the new connection got the whole set again, modes included
    number, message = server.expect(lambda n, m: n == 2 and m["a"] == "subscribe")
    assert sorted(message["v"]) == [NIFTY, INFY]
    modes = {}
    while len(modes) < 2:
        _, m = server.expect(lambda n, m: n == 2 and m["a"] == "mode")
        modes[m["v"][0]] = m["v"][1]
    assert modes == {"full": [INFY], "ltp": [NIFTY]}
    for k in range(5):  # every tick after the reconnect arrives
        server.push(frame_of(full_packet(INFY, 150000 + k, 10 + k, 1_712_000_000 + k)))
    ticks = []
    while len(ticks) < 5:
        ticks += [e for e in run.tick_of("NSE:INFY") if isinstance(e, Tick)]
    assert [t.volume for t in ticks] == [10, 11, 12, 13, 14]
    assert server.connections == 2 and feed.restarts == 0  # the SDK's own reconnect


def test_a_killed_child_is_restarted_and_resubscribed(
    server: StandIn, feed: KiteMarketData
) -> None:
    feed.subscribe(["NSE:INFY"], TickMode.QUOTE)
    run = Running(feed)
    run.state(ConnectionState.CONNECTED)
    subscribed(server, [INFY], "quote")
    pid = feed.child_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    down = run.state(ConnectionState.DISCONNECTED)[-1]
    assert "exited" in down.detail
    back = run.state(ConnectionState.CONNECTED)[-1]
    assert "gap" in back.detail
    number = subscribed(server, [INFY], "quote")
    assert number == 2 and feed.restarts == 1 and feed.child_pid not in (None, pid)
    quote = struct.pack(">IIIIIIIIIII", INFY, 150025, 3, 150000, 777, 1, 2, 3, 4, 5, 6)
    server.push(frame_of(quote))
    (tick,) = [e for e in run.tick_of("NSE:INFY") if isinstance(e, Tick)]
    assert (tick.ltp, tick.last_qty, tick.volume) == (1500.25, 3, 777)


def test_stop_ends_run_and_the_child(server: StandIn, feed: KiteMarketData) -> None:
    run = Running(feed)
    run.state(ConnectionState.CONNECTED)
    pid = feed.child_pid
    feed.stop()
    run.thread.join(WAIT)
    assert not run.thread.is_alive()
    assert feed.child_pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, gone


def test_credentials_stay_off_the_command_line_and_out_of_logs(
    server: StandIn, feed: KiteMarketData, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        run = Running(feed)
        run.state(ConnectionState.CONNECTED)
        pid = feed.child_pid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        server.drop()  # the SDK logs its close and reconnect: none of it may name the token
        run.state(ConnectionState.CONNECTED)
    assert SECRET.encode() not in cmdline and SECRET.encode() not in environ
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("velox")]
    assert not [line for line in ours if SECRET in line]  # (the stand-in's access log has it)
    assert any("kiteconnect" in line for line in ours)  # the child's SDK logs did arrive


def test_a_new_access_token_restarts_the_child_with_it(
    server: StandIn, feed: KiteMarketData
) -> None:
    feed.subscribe(["NSE:INFY"], TickMode.LTP)
    run = Running(feed)
    run.state(ConnectionState.CONNECTED)
    subscribed(server, [INFY], "ltp")
    feed.update_access_token("tomorrows-token")
    run.state(ConnectionState.DISCONNECTED)
    run.state(ConnectionState.CONNECTED)
    assert subscribed(server, [INFY], "ltp") == 2
    assert [c.query["access_token"] for c in server.clients] == ["tomorrows-token"]


# ---- against the loopback Kite simulator (velox sim kite) -------------------------------------


def login(port: int) -> str:
    """Return an access token the simulator issued (the official client's login call)."""
    from kiteconnect import KiteConnect

    kite = KiteConnect("key", root=f"http://127.0.0.1:{port}")
    return kite.generate_session("request-token", api_secret="secret")["access_token"]


@pytest.fixture
def simulator() -> Iterator[tuple[int, str]]:
    """Yield (port, access token) of a running KiteSimulator that trades when told."""
    from velox.brokers.kite.simulator import KiteSimulator

    sim = KiteSimulator(rate_limits=False)
    port = sim.start()
    try:
        yield port, login(port)
    finally:
        sim.stop()


def sim_post(port: int, path: str, body: dict) -> dict:
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        return json.loads(response.read() or b"{}")


def traded(run: Running, port: int, instrument_id: str, price: float) -> Tick:
    """Make the simulator trade ``instrument_id`` at ``price`` until its tick arrives."""
    for _ in range(20):  # the first trades may precede the simulator seeing our subscription
        sim_post(port, "/_sim/trade", {"instrument_id": instrument_id, "price": price})
        try:
            seen = run.next(
                lambda e: (
                    isinstance(e, Tick) and e.instrument_id == instrument_id and e.ltp == price
                ),
                wait=2.0,
            )
            return seen[-1]
        except queue.Empty:
            continue
    raise AssertionError(f"no tick of {instrument_id} at {price} from the simulator")


def every_trade_arrives(run: Running, port: int, prices: list[float]) -> None:
    """Trade RELIANCE at each price in turn (after a tick proved the subscription live) and
    assert every one arrives, in order, with its cumulative volume: none lost."""
    for k, price in enumerate(prices):
        sim_post(
            port,
            "/_sim/trade",
            {"instrument_id": "NSE:RELIANCE", "price": price, "volume": 1000 + k},
        )
    ticks: list[Tick] = []
    while len(ticks) < len(prices):
        for event in run.tick_of("NSE:RELIANCE"):
            # ticks before the first new price are the helper's retried trades or a snapshot
            if isinstance(event, Tick) and (ticks or event.ltp == prices[0]):
                ticks.append(event)
    assert [(t.ltp, t.volume) for t in ticks] == [(p, 1000 + k) for k, p in enumerate(prices)]


@pytest.fixture
def sim_feed(simulator: tuple[int, str]) -> Iterator[tuple[int, KiteMarketData]]:
    port, token = simulator
    md = KiteMarketData("key", token, root=f"ws://127.0.0.1:{port}/ws", restart_delay=0.1)
    yield port, md
    md.stop()


def test_sim_replayed_ticks_equal_the_replay() -> None:
    import kite_sim_support as support
    import numpy as np

    from velox.brokers.kite import simulator as module
    from velox.feeds import BarReplay

    bars = {("NSE:RELIANCE", "5m"): support.reliance_day()}
    replay = BarReplay(bars)  # the reference: the simulator replays these synthetic ticks
    prices, times = replay.price.tolist(), (replay.ts_ns // 1_000_000_000).tolist()
    volumes = np.nan_to_num(replay.volume).astype(int).tolist()
    with module.KiteSimulator(bars=bars, speed=1500, rate_limits=False) as sim:
        feed = KiteMarketData("key", login(sim.port), root=sim.ws_url)
        feed.subscribe(["NSE:RELIANCE"], TickMode.FULL)
        run = Running(feed)
        try:
            ticks: list[Tick] = []
            while len(ticks) < 12:
                ticks += [e for e in run.tick_of("NSE:RELIANCE") if isinstance(e, Tick)]
        finally:
            feed.stop()
    body = ticks[1:]  # the first may be the subscription's snapshot of the last print
    seen = [t.ltp for t in body]
    start = next(k for k in range(len(prices)) if prices[k : k + 3] == seen[:3])
    for k, tick in enumerate(body, start):
        assert tick.ltp == prices[k]
        assert tick.ts.timestamp() == times[k]
        assert tick.volume == volumes[k]
        assert tick.bid == pytest.approx(prices[k] - 0.05)
        assert tick.ask == pytest.approx(prices[k] + 0.05)


def test_sim_ticks_and_order_updates(sim_feed: tuple[int, KiteMarketData]) -> None:
    port, feed = sim_feed
    feed.subscribe(["NSE:RELIANCE"], TickMode.FULL)
    run = Running(feed)
    run.state(ConnectionState.CONNECTED)
    tick = traded(run, port, "NSE:RELIANCE", 2501.5)
    assert tick.ts.tzinfo is not None
    from kiteconnect import KiteConnect

    kite = KiteConnect("key", access_token=feed._session["access_token"])
    kite.root = f"http://127.0.0.1:{port}"
    order_id = kite.place_order(
        variety="regular",
        exchange="NSE",
        tradingsymbol="RELIANCE",
        transaction_type="BUY",
        quantity=1,
        product="CNC",
        order_type="MARKET",
        tag="velox-t1",
    )
    while True:
        update = run.orders.get(timeout=WAIT)
        if str(update.get("order_id")) == str(order_id):
            break
    assert update["tradingsymbol"] == "RELIANCE" and update["tag"] == "velox-t1"


def test_sim_drop_ws_is_a_gap_then_every_tick_resumes(sim_feed: tuple[int, KiteMarketData]) -> None:
    port, feed = sim_feed
    feed.subscribe(["NSE:RELIANCE"], TickMode.QUOTE)
    run = Running(feed)
    run.state(ConnectionState.CONNECTED)
    traded(run, port, "NSE:RELIANCE", 2502.0)
    assert sim_post(port, "/_sim/fault", {"kind": "drop_ws"})["data"]["dropped"] == 1
    run.state(ConnectionState.DISCONNECTED)
    back = run.state(ConnectionState.CONNECTED)[-1]
    assert "gap" in back.detail
    traded(run, port, "NSE:RELIANCE", 2503.0)  # resubscribed by the child
    every_trade_arrives(run, port, [2503.5 + k / 20 for k in range(10)])
    assert feed.restarts == 0


def test_sim_killed_child_is_restarted_and_resubscribed(
    sim_feed: tuple[int, KiteMarketData],
) -> None:
    port, feed = sim_feed
    feed.subscribe(["NSE:RELIANCE"], TickMode.FULL)
    run = Running(feed)
    run.state(ConnectionState.CONNECTED)
    traded(run, port, "NSE:RELIANCE", 2504.0)
    os.kill(feed.child_pid or 0, signal.SIGKILL)
    run.state(ConnectionState.DISCONNECTED)
    assert "gap" in run.state(ConnectionState.CONNECTED)[-1].detail
    traded(run, port, "NSE:RELIANCE", 2504.5)
    every_trade_arrives(run, port, [2505.0 + k / 20 for k in range(10)])
    assert feed.restarts == 1


def test_sim_malformed_packet_is_skipped(sim_feed: tuple[int, KiteMarketData]) -> None:
    port, feed = sim_feed
    feed.subscribe(["NSE:RELIANCE"], TickMode.FULL)
    run = Running(feed)
    run.state(ConnectionState.CONNECTED)
    traded(run, port, "NSE:RELIANCE", 2506.0)
    sim_post(port, "/_sim/fault", {"kind": "malformed_packet"})
    every_trade_arrives(run, port, [2506.5, 2507.0])
    assert feed.stats.malformed == 1 and run.thread.is_alive()


PARENT = """
import sys
from velox.brokers.base import ConnectionEvent
from velox.brokers.kite.ticker import KiteMarketData
feed = KiteMarketData("key", "token", root=sys.argv[1], instruments={})
def callback(event):
    if isinstance(event, ConnectionEvent):
        print(feed.child_pid, flush=True)
feed.run(callback)
"""


def test_the_child_ends_when_its_parent_is_killed(server: StandIn) -> None:
    import subprocess
    import sys

    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, f"ws://127.0.0.1:{server.port}/ws"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    for _ in range(int(WAIT / 0.05)):  # stdin closed: the child stops its reactor and exits
        status = Path(f"/proc/{child}/stat")
        if not status.exists() or status.read_text().split()[2] == "Z":
            break
        threading.Event().wait(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the ticker child outlived its parent")
