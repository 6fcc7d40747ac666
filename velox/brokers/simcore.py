"""The broker-neutral half of Velox's loopback broker simulators (Kite, SmartAPI, Breeze).

Why: each simulator speaks one broker's wire protocol (routes, envelopes, tick packets) so the
adapter can be tested through that broker's official SDK, but what stands behind the protocol
is the same for all of them: one simulated exchange (:class:`~velox.brokers.sim.exchange.SimBroker`)
matching the orders, a market that is a paced replay of stored bars or trades only when told,
the last print per instrument (quotes, depth, OHLC), injected faults, request counters and
rate limits, and one tornado IOLoop on its own thread serving it all. That lives here once;
a broker's simulator subclasses :class:`LoopbackSimulator` and adds its protocol.

A subclass sets :attr:`~LoopbackSimulator.NAME`, :attr:`~LoopbackSimulator.RATE_LIMITS` and
:attr:`~LoopbackSimulator.FAULTS` and implements :meth:`~LoopbackSimulator.key_of`,
:meth:`~LoopbackSimulator.routes` and :meth:`~LoopbackSimulator.flush_ticks` (and, as the
exchange's listener, ``on_order_update`` and ``on_fill``). Everything the subclass's handlers
touch runs on the IOLoop thread; the in-process levers (:meth:`~LoopbackSimulator.trade`,
:meth:`~LoopbackSimulator.fault`, …) hand their work to that thread and wait for it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time as _time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web

from velox.brokers.sim.exchange import SimBroker, SimConfig
from velox.calendar import IST
from velox.errors import ConfigError
from velox.types import Fill, Instrument, InstrumentKind, Order

if TYPE_CHECKING:
    import pandas as pd

    from velox.instruments import InstrumentMaster

__all__ = [
    "DEFAULT_SESSION",
    "BarReader",
    "Fault",
    "LoopbackSimulator",
    "RateCounter",
    "SimMarket",
    "number",
]

log = logging.getLogger(__name__)

#: The session the market clock starts in when there is no replay (a regular NSE trading day).
DEFAULT_SESSION = date(2025, 5, 20)


class BarReader(Protocol):
    """What historical candles are read from (``velox.store.Store`` has this method)."""

    def read_bars(
        self, instrument_id: str, timeframe: str, start: object = None, end: object = None
    ) -> pd.DataFrame:
        """Return stored bars (UTC index; open/high/low/close/volume)."""
        ...


def number(value: float) -> float | int:
    """Return a price as brokers' JSON carries it: ints stay ints (``2500``, not ``2500.0``),
    floats are rounded to 6 places (no ``1402.5500000000002``)."""
    rounded = round(float(value), 6)
    return int(rounded) if rounded == int(rounded) else rounded


@dataclass
class SimMarket:
    """What the simulated exchange last printed for one instrument (quotes, packets, depth)."""

    token: object  # the broker's key of the instrument (a Kite int token, an Angel string, …)
    tick_size: float
    tradable: bool
    ltp: float = 0.0
    last_qty: int = 0
    volume: int = 0
    turnover: float = 0.0
    open: float = 0.0
    high: float = 0.0
    low: float = 0.0
    close: float = 0.0  # the previous session's last price
    last_trade: datetime | None = None
    day: date | None = None

    def on_trade(self, ts: datetime, price: float, volume: int | None, quantity: int) -> None:
        """Record a print: ``volume`` is the cumulative day volume if known, else ``quantity``
        is added to it; a new IST date starts a new day (yesterday's last price is the close)."""
        day = ts.astimezone(IST).date()
        if day != self.day:
            if self.day is not None:
                self.close = self.ltp
            self.day = day
            self.open = self.high = self.low = price
            self.volume, self.turnover = 0, 0.0
        traded = quantity if volume is None else max(0, volume - self.volume)
        self.volume = self.volume + traded if volume is None else max(volume, self.volume)
        self.turnover += traded * price
        self.last_qty = traded
        self.ltp = price
        self.high, self.low = max(self.high, price), min(self.low, price)
        self.last_trade = ts

    @property
    def average(self) -> float:
        """Return the day's volume-weighted average price (the last price before any volume)."""
        return self.turnover / self.volume if self.volume else self.ltp

    def depth(self) -> dict[str, list[dict[str, float | int]]]:
        """Return five synthetic levels a side, one tick apart around the last price.

        The simulators keep no order book: depth is a fixed ladder (level k: ``ltp ∓ k·tick``,
        quantity ``100·k``, ``k`` orders) so tick packets carry known numbers.
        """
        if not self.tradable or not self.ltp or not self.tick_size:
            empty = [{"price": 0, "quantity": 0, "orders": 0} for _ in range(5)]
            return {"buy": empty, "sell": [dict(x) for x in empty]}
        step = self.tick_size
        buy = [
            {"price": number(round(self.ltp - k * step, 2)), "quantity": 100 * k, "orders": k}
            for k in range(1, 6)
        ]
        sell = [
            {"price": number(round(self.ltp + k * step, 2)), "quantity": 100 * k, "orders": k}
            for k in range(1, 6)
        ]
        return {"buy": buy, "sell": sell}


@dataclass
class Fault:
    """One armed fault: the next ``count`` requests of ``route`` (``*``: any) misbehave."""

    kind: str
    route: str = "*"
    status: int = 500
    count: int = 1
    delay: float = 0.0


class RateCounter:
    """Sliding-window request counters per (key, category), on an injectable clock.

    ``limits`` maps a category to its windows: ``{"order": ((1.0, 10), (60.0, 400))}`` allows
    10 a second and 400 a minute.
    """

    def __init__(
        self, limits: Mapping[str, tuple[tuple[float, int], ...]], clock: Callable[[], float]
    ) -> None:
        self.limits = limits
        self.clock = clock
        self._seen: dict[tuple[str, str], deque[float]] = {}

    def allow(self, key: str, category: str) -> bool:
        """Return whether one more request fits every window; count it if it does."""
        limits = self.limits.get(category)
        if not limits:
            return True
        longest = max(window for window, _ in limits)
        now = self.clock()
        seen = self._seen.setdefault((key, category), deque())
        while seen and seen[0] <= now - longest:
            seen.popleft()
        for window, allowed in limits:
            if sum(1 for t in seen if t > now - window) >= allowed:
                return False
        seen.append(now)
        return True


class LoopbackSimulator:
    """A broker simulator's engine room: exchange, market clock, faults, stats, IOLoop thread.

    Parameters
    ----------
    instruments
        The instrument master served (the bundled one when omitted).
    bars
        ``{(instrument_id, timeframe): DataFrame}`` of stored bars replayed as ticks (paced by
        ``speed``, as :class:`velox.feeds.bar_replay.BarReplay` orders them); also what
        historical candles come from when no ``store`` is given. ``None``: no replay, the
        market trades only when told (:meth:`trade`).
    speed
        Replay pace (simulated seconds per wall second); without a replay, the pace of the
        market clock from ``session_start``.
    cash
        Opening cash (rupees) of the simulated account.
    store
        Where historical candles are read (resamples finer bars).
    session_start
        Market time the clock starts at when there is no replay (09:15 IST of
        :data:`DEFAULT_SESSION` by default).
    rate_clock
        Monotonic clock (seconds) of the rate limiter; tests pass a frozen one so "11 orders
        within a second" does not depend on how fast the machine is.
    rate_limits
        Enforce :attr:`RATE_LIMITS`. Off only for experiments.
    sim_config
        Behaviour switches of the simulated exchange.
    replay_on_subscribe
        Hold the replay until a market-data connection first subscribes
        (:meth:`release_replay`): a client that starts later still sees the session from its
        first tick, e.g. a live engine compared with a replay of the same bars.
    """

    #: The broker's name in messages, logs and the thread's name.
    NAME: ClassVar[str] = "broker"
    #: The broker's published request limits: category → ((window seconds, requests), …).
    RATE_LIMITS: ClassVar[Mapping[str, tuple[tuple[float, int], ...]]] = {}
    #: Fault kinds :meth:`fault` accepts (``clear`` removes every armed fault).
    FAULTS: ClassVar[tuple[str, ...]] = ("http_status", "slow", "clear")
    #: The market record class (a subclass may add its tick encodings).
    MARKET: ClassVar[type[SimMarket]] = SimMarket

    def __init__(
        self,
        instruments: InstrumentMaster | None = None,
        bars: Mapping[tuple[str, str], pd.DataFrame] | None = None,
        *,
        speed: float = 1.0,
        cash: float = 1_000_000.0,
        store: BarReader | None = None,
        session_start: datetime | None = None,
        rate_clock: Callable[[], float] = _time.monotonic,
        rate_limits: bool = True,
        sim_config: SimConfig | None = None,
        replay_on_subscribe: bool = False,
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ConfigError(f"speed={speed!r} must be a finite number > 0")
        if instruments is None:
            from velox.instruments import load_bundled_master

            instruments = load_bundled_master()
        self.master = instruments
        self.speed = float(speed)
        self.cash = float(cash)
        self.store = store
        self.rate_limits = rate_limits
        self._replay_held = replay_on_subscribe
        self._rates = RateCounter(self.RATE_LIMITS, rate_clock)
        self._bars = dict(bars or {})
        self.sim = SimBroker(self.master.get, initial_cash=cash, config=sim_config)
        self.sim.set_listener(self)
        self.replay = None
        if self._bars:
            from velox.feeds.bar_replay import BarReplay

            self.replay = BarReplay(self._bars)
        start = session_start or datetime.combine(DEFAULT_SESSION, time(9, 15), IST)
        if start.utcoffset() is None:
            raise ConfigError("session_start must be tz-aware (IST), e.g. 2025-05-20 09:15+05:30")
        self._session_start = start
        self._wall0 = _time.monotonic()
        self._markets: dict[str, SimMarket] = {}
        self._pending: set[str] = set()  # instruments with a tick to send
        self._faults: list[Fault] = []
        self._stats: dict[str, dict[str, Any]] = {}
        self.replay_done = threading.Event()
        self._loop: tornado.ioloop.IOLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: tornado.httpserver.HTTPServer | None = None
        self._beat: tornado.ioloop.PeriodicCallback | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------ what a broker adds

    def key_of(self, instrument_id: str) -> object:
        """Return the broker's key (token) of a Velox instrument id; ``ConfigError`` if none."""
        raise NotImplementedError

    def instrument_id(self, key: str | int) -> str:
        """Return the Velox id of ``key`` (a broker may accept its own keys too)."""
        self.key_of(str(key))
        return str(key)

    def routes(self) -> list[tuple[Any, ...]]:
        """Return the tornado routes ``(pattern, handler, kwargs)`` of the broker's protocol."""
        raise NotImplementedError

    def flush_ticks(self, pending: set[str]) -> None:
        """Send the ticks of the instruments in ``pending`` to their subscribers (loop thread)."""

    def heartbeat(self) -> None:
        """Run every second on the loop thread (a ticker's heartbeat); nothing by default."""

    def close_connections(self) -> None:
        """Close the broker's long-lived connections (websockets) when the server stops."""

    def on_order_update(self, order: Order) -> None:
        """SimBroker's order postback (the subclass keeps the broker's view of the order)."""

    def on_fill(self, fill: Fill) -> None:
        """SimBroker's fill (the subclass records it as the broker's trade)."""

    # ------------------------------------------------------------------ instruments and market

    def market(self, instrument_id: str) -> SimMarket:
        """Return the last-print record of ``instrument_id`` (created on first use)."""
        market = self._markets.get(instrument_id)
        if market is None:
            ins: Instrument = self.master.get(instrument_id)
            market = self.MARKET(
                self.key_of(instrument_id), ins.tick_size, ins.kind is not InstrumentKind.INDEX
            )
            self._markets[instrument_id] = market
        return market

    def market_now(self) -> datetime:
        """Return the simulated market time (IST): the replay's, or the paced session clock."""
        if self.replay is not None:
            now = self.sim.now
            assert now is not None
            return now
        elapsed = (_time.monotonic() - self._wall0) * self.speed
        return self._session_start + timedelta(seconds=elapsed)

    def advance_to(self, when: datetime) -> None:
        """Move the market clock (no replay only) to ``when``, e.g. the next session's open.

        The simulated exchange closes the day it leaves (open orders expire, CNC buys become
        holdings); a subclass expires the sessions a broker would (:meth:`on_advance`).
        """
        if self.replay is not None:
            raise ConfigError("the market clock of a replay is the replay's; advance_to needs "
                              "a simulator without bars")  # fmt: skip
        if when.utcoffset() is None:
            raise ConfigError("advance_to needs a tz-aware time, e.g. 2025-05-21 09:15+05:30")

        def run() -> None:
            if when <= self.market_now():
                raise ConfigError(f"{when} is not after the market time {self.market_now()}")
            self._session_start += when - self.market_now()
            self.sim.on_clock(when)

        self.call(run)

    def sync_clock(self) -> datetime:
        """Bring the exchange to the market clock (no replay) and return the market time."""
        now = self.market_now()
        if self.replay is None:
            self.sim.on_clock(now)
        return now

    def print_trade(
        self, instrument_id: str, ts: datetime, price: float, volume: int | None, quantity: int
    ) -> None:
        """Record one print (loop thread): the market record, the exchange's matching, and a
        tick pending for subscribers (sent by :meth:`send_ticks`)."""
        self.market(instrument_id).on_trade(ts, price, volume, quantity)
        self.sim.on_quote(instrument_id, ts, price, volume)
        self._pending.add(instrument_id)

    def send_ticks(self) -> None:
        """Hand the pending ticks to :meth:`flush_ticks` (loop thread)."""
        pending, self._pending = self._pending, set()
        if pending:
            self.flush_ticks(pending)

    def trade(
        self, instrument: str | int, price: float, *, quantity: int = 1, volume: int | None = None
    ) -> datetime:
        """Make the market trade ``instrument`` once at ``price`` (at the market clock's time).

        Working orders match against it and subscribed market-data connections get the tick.
        The contract suite's lever; each simulator's ``POST /_sim/trade`` does the same over
        HTTP. Returns the market time of the print.
        """

        def run() -> datetime:
            iid = self.instrument_id(instrument)
            self.key_of(iid)
            now = self.sync_clock()
            self.print_trade(iid, now, float(price), volume, int(quantity))
            self.send_ticks()
            return now

        return self.call(run)  # type: ignore[no-any-return]

    def bars_between(
        self, instrument_id: str, timeframe: str, start: datetime, end: datetime
    ) -> pd.DataFrame | None:
        """Return the stored bars of ``instrument_id`` from ``start`` to ``end`` (IST index):
        the store's when there is one, else the replayed ones; ``None`` when there are none."""
        frame = None
        if self.store is not None:
            frame = self.store.read_bars(instrument_id, timeframe, start.date(), end.date())
        elif (instrument_id, timeframe) in self._bars:
            frame = self._bars[(instrument_id, timeframe)]
        if frame is None or not len(frame):
            return None
        frame = frame.tz_convert(IST)
        return frame[(frame.index >= start) & (frame.index <= end)]

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """Return ``http://127.0.0.1:PORT`` (the REST root an SDK is pointed at)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> int:
        """Serve on 127.0.0.1:``port`` (0: any free port) from a thread; return the port."""
        if self._thread is not None:
            raise ConfigError(f"this {self.NAME} simulator is already started; stop() it first")
        sockets = tornado.netutil.bind_sockets(port, "127.0.0.1")
        self.port = int(sockets[0].getsockname()[1])
        ready: Future[None] = Future()

        def run() -> None:
            asyncio.set_event_loop(asyncio.new_event_loop())
            self._loop = tornado.ioloop.IOLoop.current()
            try:
                app = tornado.web.Application(self.routes(), websocket_ping_interval=None)
                self._server = tornado.httpserver.HTTPServer(app)
                self._server.add_sockets(sockets)
                self._beat = tornado.ioloop.PeriodicCallback(self.heartbeat, 1000)
                self._beat.start()
                self._wall0 = _time.monotonic()
                if self.replay is not None:
                    from velox.feeds import from_ns

                    self.sim.on_clock(from_ns(int(self.replay.ts_ns[0])))
                    if not self._replay_held:
                        self._loop.spawn_callback(self._run_replay)
                else:
                    self.sim.on_clock(self._session_start)
            except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
                ready.set_exception(exc)
                return
            ready.set_result(None)
            self._loop.start()
            self._loop.close(all_fds=True)

        name = f"velox-{self.NAME.lower()}-sim"
        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()
        ready.result(timeout=30)
        log.info("%s simulator serving %s", self.NAME, self.url)
        return self.port

    def stop(self) -> None:
        """Stop serving (closing every connection) and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        def shutdown() -> None:
            if self._beat is not None:
                self._beat.stop()
            self.close_connections()
            if self._server is not None:
                self._server.stop()
            loop.stop()

        loop.add_callback(shutdown)
        thread.join(timeout=10)
        self._loop = self._thread = None

    def __enter__(self) -> LoopbackSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn: Callable[[], object], timeout: float = 30.0) -> object:
        """Run ``fn`` on the IOLoop thread and return its result (or run it here if not started)."""
        loop = self._loop
        if loop is None or threading.current_thread() is self._thread:
            return fn()
        box: Future[object] = Future()

        def run() -> None:
            try:
                box.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                box.set_exception(exc)

        loop.add_callback(run)
        return box.result(timeout=timeout)

    def spawn(self, coroutine: Any) -> None:
        """Run ``coroutine`` on the IOLoop (loop thread; closed unrun when not serving)."""
        if self._loop is not None:
            asyncio.ensure_future(coroutine)
        else:
            coroutine.close()

    def release_replay(self, delay: float = 0.5) -> None:
        """Start a held replay (``replay_on_subscribe``) ``delay`` seconds from now, once.

        A market-data handler calls it when the first connection subscribes; the delay lets the
        client's mode message arrive before the first tick.
        """
        loop = self._loop
        if self._replay_held and loop is not None:
            self._replay_held = False
            loop.call_later(delay, lambda: loop.spawn_callback(self._run_replay))

    async def _run_replay(self) -> None:
        from velox.feeds import from_ns

        r = self.replay
        assert r is not None
        ids, symbol = r.instrument_ids, r.symbol.tolist()
        ts, price, volume = r.ts_ns.tolist(), r.price.tolist(), r.volume.tolist()
        wall0, t0, k, n = _time.monotonic(), ts[0], 0, len(ts)
        while k < n and self._loop is not None:
            due = wall0 + (ts[k] - t0) / 1e9 / self.speed
            wait = due - _time.monotonic()
            if wait > 0:
                await asyncio.sleep(min(wait, 0.05))
                continue
            while k < n and _time.monotonic() >= wall0 + (ts[k] - t0) / 1e9 / self.speed:
                v = volume[k]
                self.print_trade(ids[symbol[k]], from_ns(ts[k]), price[k],
                                 None if v != v else int(v), 1)  # fmt: skip
                k += 1
            self.send_ticks()
        self.replay_done.set()

    # ------------------------------------------------------------------ faults, stats, limits

    def fault(self, kind: str, **params: object) -> dict[str, object]:
        """Inject a fault of a kind in :attr:`FAULTS` (see the broker's simulator docs).

        Generic kinds: ``http_status`` (the next ``count`` requests of ``route`` answer HTTP
        ``status`` with the broker's error envelope), ``slow`` (answered after ``delay`` s),
        ``clear`` (remove every armed fault); a subclass adds its own in :meth:`arm_fault`.
        """
        return self.call(lambda: self.arm_fault(kind, dict(params)))  # type: ignore[return-value]

    def arm_fault(self, kind: str, params: dict[str, object]) -> dict[str, object]:
        """Arm (or, for immediate kinds, perform) a fault on the loop thread."""
        if kind not in self.FAULTS:
            raise ConfigError(f"Unknown fault {kind!r}; use one of {', '.join(self.FAULTS)}")
        count = int(params.get("count", 1))  # type: ignore[call-overload]
        if kind == "clear":
            cleared = len(self._faults)
            self._faults.clear()
            return {"cleared": cleared}
        route = str(params.get("route", "*"))
        status = int(params.get("status", 500))  # type: ignore[call-overload]
        delay = float(params.get("delay", 0.0))  # type: ignore[arg-type]
        if kind in ("slow", "timeout_after_place") and not delay > 0:
            raise ConfigError(f"{kind} needs a delay > 0 (seconds)")
        self._faults.append(Fault(kind, route, status, count, delay))
        return {"armed": kind, "route": route, "count": count}

    def take_fault(self, kinds: tuple[str, ...], route: str, path: str) -> Fault | None:
        """Return (and use up one count of) the first armed fault of ``kinds`` on this request."""
        for fault in self._faults:
            if fault.kind in kinds and fault.route in ("*", route, path):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def allow(self, key: str, category: str) -> bool:
        """Return whether one more request of ``category`` from ``key`` fits the rate limits."""
        return not self.rate_limits or self._rates.allow(key, category)

    def count(self, route: str, method: str, path: str, status: int) -> None:
        """Record one request of ``route`` and its answer's status (see :meth:`stats`)."""
        entry = self._stats.setdefault(route, {"count": 0, "times": [], "statuses": []})
        entry["count"] += 1
        entry["times"].append(_time.monotonic())
        entry["statuses"].append(status)

    def stats(self) -> dict[str, dict[str, object]]:
        """Return per-route request counts, ``time.monotonic()`` times and answer statuses.

        Keys are the SDK's route names; a test counts the order rate the simulator saw from
        ``stats()[route]["times"]``.
        """
        return self.call(self.stats_now)  # type: ignore[return-value]

    def stats_now(self) -> dict[str, dict[str, object]]:
        """:meth:`stats` on the loop thread (what ``GET /_sim/stats`` serves)."""
        return {
            k: {"count": v["count"], "times": list(v["times"]), "statuses": list(v["statuses"])}
            for k, v in self._stats.items()
        }
