"""``velox sim``: broker simulators speaking a real broker's wire protocol on 127.0.0.1.

``velox sim kite`` serves Kite Connect's REST API and ticker (see ``docs/kite-simulator.md``)
so the Kite adapter, the official SDK or any Kite client can be tried without an account;
``velox sim smartapi`` does the same for Angel One SmartAPI (see ``docs/smartapi.md``) and
``velox sim breeze`` for ICICI Direct Breeze (see ``docs/breeze.md``).
"""

from __future__ import annotations

import signal
import threading
from datetime import datetime, time

import click

from velox.errors import ConfigError, VeloxError


def _one_line(text: object) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


@click.group("sim")
def sim() -> None:
    """Run a broker simulator on 127.0.0.1 (Kite Connect, Angel One SmartAPI, ICICI Breeze)."""


@sim.command("kite")
@click.option("--port", default=8765, show_default=True, help="TCP port (0: any free port).")
@click.option(
    "--bars",
    "bars",
    multiple=True,
    metavar="ID@TF",
    help="Replay stored bars of ID at timeframe TF as ticks (repeatable), e.g. NSE:RELIANCE@5m.",
)
@click.option("--start", default=None, help="First day replayed (YYYY-MM-DD); the session day "
              "the market clock starts in without --bars.")  # fmt: skip
@click.option("--end", default=None, help="Last day replayed (YYYY-MM-DD).")
@click.option("--speed", default=1.0, show_default=True, help="Market time × wall time.")
@click.option(
    "--replay-on-subscribe", is_flag=True, help="Start the replay when a ticker first subscribes."
)
@click.option("--cash", default=1_000_000.0, show_default=True, help="Opening cash (₹).")
@click.option("--api-key", default=None, help="Accept only this api_key (with --api-secret).")
@click.option("--api-secret", default=None, help="Secret the session checksum must use.")
@click.option("--postback-url", default=None, help="POST order updates (Kite postbacks) here.")
def kite(
    port: int,
    bars: tuple[str, ...],
    start: str | None,
    end: str | None,
    speed: float,
    replay_on_subscribe: bool,
    cash: float,
    api_key: str | None,
    api_secret: str | None,
    postback_url: str | None,
) -> None:
    """Serve Kite Connect's REST API at http://127.0.0.1:PORT and its ticker at /ws.

    Without --bars the market trades only when told: POST /_sim/trade
    {"instrument_id": "NSE:RELIANCE", "price": 1402.5}. Stop with Ctrl-C.
    """
    from velox.brokers.kite.simulator import KiteSimulator

    store, frames, session_start = _market(bars, start, end)
    simulator = KiteSimulator(
        bars=frames or None,
        speed=speed,
        replay_on_subscribe=replay_on_subscribe,
        cash=cash,
        api_key=api_key,
        api_secret=api_secret,
        postback_url=postback_url,
        store=store,
        session_start=session_start,
    )
    simulator.start(port)
    _serve(simulator, f"Kite simulator: REST {simulator.url}  ticker {simulator.ws_url}")


@sim.command("smartapi")
@click.option("--port", default=8766, show_default=True, help="TCP port (0: any free port).")
@click.option("--bars", "bars", multiple=True, metavar="ID@TF",
              help="Replay stored bars of ID at timeframe TF as ticks (repeatable).")  # fmt: skip
@click.option("--start", default=None, help="First day replayed (YYYY-MM-DD).")
@click.option("--end", default=None, help="Last day replayed (YYYY-MM-DD).")
@click.option("--speed", default=1.0, show_default=True, help="Market time × wall time.")
@click.option(
    "--replay-on-subscribe", is_flag=True, help="Start the replay when a feed first subscribes."
)
@click.option("--cash", default=1_000_000.0, show_default=True, help="Opening cash (₹).")
@click.option("--client-code", default=None, help="Accept only this client code.")
@click.option("--pin", default=None, help="With --client-code: the PIN it must give.")
@click.option("--totp-secret", default=None, help="With --client-code: check TOTPs against it.")
def smartapi(
    port: int,
    bars: tuple[str, ...],
    start: str | None,
    end: str | None,
    speed: float,
    replay_on_subscribe: bool,
    cash: float,
    client_code: str | None,
    pin: str | None,
    totp_secret: str | None,
) -> None:
    """Serve Angel One SmartAPI at http://127.0.0.1:PORT: REST at SmartConnect's paths, ticks
    at ws://127.0.0.1:PORT/smart-stream, order updates at /smart-order-update.

    Any demo login is accepted (any TOTP) unless --client-code is given. Without --bars the
    market trades only when told: POST /_sim/trade {"instrument_id": "NSE:SBIN", "price": 812}.
    """
    from velox.brokers.smartapi.simulator import SmartApiSimulator

    if (pin or totp_secret) and not client_code:
        raise click.UsageError("--pin and --totp-secret need --client-code")
    store, frames, session_start = _market(bars, start, end)
    simulator = SmartApiSimulator(
        bars=frames or None, speed=speed, replay_on_subscribe=replay_on_subscribe, cash=cash,
        store=store, session_start=session_start, client_code=client_code, pin=pin,
        totp_secret=totp_secret,
    )  # fmt: skip
    simulator.start(port)
    _serve(simulator, f"SmartAPI simulator: REST {simulator.url}  ticks {simulator.ws_url}  "
                      f"orders {simulator.order_ws_url}")  # fmt: skip


@sim.command("breeze")
@click.option("--port", default=8767, show_default=True, help="TCP port (0: any free port).")
@click.option("--bars", "bars", multiple=True, metavar="ID@TF",
              help="Replay stored bars of ID at timeframe TF as ticks (repeatable).")  # fmt: skip
@click.option("--start", default=None, help="First day replayed (YYYY-MM-DD).")
@click.option("--end", default=None, help="Last day replayed (YYYY-MM-DD).")
@click.option("--speed", default=1.0, show_default=True, help="Market time × wall time.")
@click.option(
    "--replay-on-subscribe", is_flag=True, help="Start the replay when a stream first joins."
)
@click.option("--cash", default=1_000_000.0, show_default=True, help="Opening cash (₹).")
@click.option("--api-key", default=None, help="Accept only this app key (with --api-secret).")
@click.option("--api-secret", default=None, help="The secret checksums must be signed with "
              "(default: velox-demo-secret).")  # fmt: skip
@click.option("--user-id", default="VELOXSIM", show_default=True, help="The ICICI user id.")
def breeze(
    port: int,
    bars: tuple[str, ...],
    start: str | None,
    end: str | None,
    speed: float,
    replay_on_subscribe: bool,
    cash: float,
    api_key: str | None,
    api_secret: str | None,
    user_id: str,
) -> None:
    """Serve ICICI Breeze at http://127.0.0.1:PORT: REST under /breezeapi/api/v1/, candles at
    /api/v2/historicalcharts, both socket.io streams at /socket.io/, the login page at
    /apiuser/login?api_key=K (it answers the apisession at once).

    Without --bars the market trades only when told: POST /_sim/trade
    {"instrument_id": "NSE:SBIN", "price": 812}.
    """
    from velox.brokers.breeze.simulator import BreezeSimulator

    if api_key and not api_secret:
        raise click.UsageError("--api-key needs --api-secret (the checksum's secret)")
    store, frames, session_start = _market(bars, start, end)
    simulator = BreezeSimulator(
        bars=frames or None, speed=speed, replay_on_subscribe=replay_on_subscribe, cash=cash,
        store=store, session_start=session_start, api_key=api_key, api_secret=api_secret,
        user_id=user_id,
    )  # fmt: skip
    simulator.start(port)
    _serve(simulator, f"Breeze simulator: {simulator.url}  (set VELOX_BREEZE_ROOT to it)")


def _market(
    bars: tuple[str, ...], start: str | None, end: str | None
) -> tuple[object, dict[tuple[str, str], object], datetime | None]:
    """Return the store, the stored bars of each ``ID@TF`` and the session start a simulator
    replays (a missing store is a warning without --bars: historical candles are empty)."""
    from velox.calendar import IST
    from velox.store import open_store

    try:
        store = open_store(create=False)
    except VeloxError as exc:
        if bars:
            raise
        click.echo(f"warning: no store ({_one_line(exc)}): historical candles are empty", err=True)
        store = None
    frames = {}
    for item in bars:
        iid, _, timeframe = item.rpartition("@")
        if not iid or not timeframe:
            raise click.BadParameter(f"{item!r}: use ID@TIMEFRAME, e.g. NSE:RELIANCE@5m")
        assert store is not None
        frame = store.read_bars(iid, timeframe, start, end)
        if frame.empty:
            raise ConfigError(
                f"no {timeframe} bars of {iid} stored{' in the range' if start or end else ''}; "
                "import them with `velox data import` or pick another ID@TF"
            )
        frames[(iid, timeframe)] = frame
    session_start = None
    if start and not frames:
        try:
            day = datetime.strptime(start, "%Y-%m-%d").date()
        except ValueError:
            raise click.BadParameter(f"--start {start!r}: use YYYY-MM-DD") from None
        session_start = datetime.combine(day, time(9, 15), IST)
    return store, frames, session_start


def _serve(simulator: object, banner: str) -> None:
    """Print ``banner`` and serve until Ctrl-C or SIGTERM, then stop the simulator."""
    click.echo(f"{banner}  (Ctrl-C stops)")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()  # type: ignore[attr-defined]


def register(main: click.Group) -> None:
    """Add the ``sim`` verbs to the ``velox`` command group."""
    main.add_command(sim)
