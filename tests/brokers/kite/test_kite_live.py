"""Live trading through Kite end to end, as a user runs it: `velox broker set/login kite`, then
`velox live … --broker kite --confirm-live` (and `velox paper … --broker kite`) as processes,
the official SDK inside them talking to the loopback Kite simulator replaying real bars.

Parity with `velox replay` (the same trades, each fill one tick later) is checked for every
broker in tests/brokers/test_live_parity.py; here: login and confirmation, the dry run and its
switch to live, a ticker drop and an expired session.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.engine.conftest import BARS, DAY, ROOT, command_answer
from velox.brokers.kite.simulator import KiteSimulator

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SMA = ROOT / "strategies" / "sma_cross.py"
ARGS = ["--symbol", "NSE:RELIANCE", "--timeframe", "5m", "--param", "fast=3", "--param", "slow=8"]
#: An SMA(3)/SMA(8) crossover of fixed size: its quantities do not depend on the fill prices.
CROSS = """
from velox.strategy import Strategy


class Cross(Strategy):
    instruments = ("NSE:RELIANCE",)
    timeframe = "5m"

    def on_bar(self, ctx, bar):
        close = ctx.history(8)["close"]
        if len(close) < 8:
            return
        fast, slow = close.iloc[-3:].mean(), close.mean()
        if fast > slow and ctx.position() == 0:
            ctx.buy(100)
        elif fast < slow and ctx.position() > 0:
            ctx.sell(ctx.position())
"""


@pytest.fixture
def day_bars(store) -> pd.DataFrame:  # noqa: ANN001
    from velox.data import import_bars

    import_bars(BARS / "RELIANCE_5m_2025.csv", "NSE:RELIANCE", "5m", store=store)
    return store.read_bars("NSE:RELIANCE", "5m", DAY, DAY)


#: Replay speeds other than 1500× (75 s between ticks → 50 ms). The expiry test expires the
#: session once the third fill is booked and needs that to happen before the fourth order (two
#: bars later) is sent: 1.2 s rather than 0.4 s on a loaded machine.
SPEEDS = {"test_live_books_every_fill_across_a_ticker_drop_and_halts_on_an_expired_session": 500.0}


@pytest.fixture
def kite(day_bars: pd.DataFrame, request: pytest.FixtureRequest) -> Iterator[KiteSimulator]:
    """The Kite simulator replaying the stored RELIANCE 5m bars of DAY (at 1500× unless
    :data:`SPEEDS` says otherwise) once the engine's ticker subscribes."""
    speed = SPEEDS.get(request.node.originalname, 1500.0)
    sim = KiteSimulator(bars={("NSE:RELIANCE", "5m"): day_bars}, speed=speed,
                        replay_on_subscribe=True)  # fmt: skip
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def env(store, kite: KiteSimulator, tmp_path: Path) -> dict[str, str]:  # noqa: ANN001
    """The environment of a user's shell: the test's store, a secret key, Kite at the
    simulator; the user has stored the app's key and secret and logged in for the day."""
    from velox.secrets import generate_key

    env = {**os.environ, "VELOX_DATABASE_URL": store.url, "VELOX_DATA_DIR": str(tmp_path),
           "VELOX_SECRET_KEY": generate_key(), "VELOX_KITE_ROOT": kite.url,
           "VELOX_KITE_WS_ROOT": kite.ws_url}  # fmt: skip
    for step, stdin in ((["set", "kite", "--api-key", "demo", "--api-secret-stdin"], "s3cret\n"),
                        (["login", "kite", "--request-token", "rtlive01"], "")):  # fmt: skip
        done = _velox(env, "broker", *step, stdin=stdin)
        assert done.returncode == 0, done.stdout + done.stderr
    return env


def _velox(env: dict[str, str], *args: str, stdin: str = "", timeout: float = 180):  # noqa: ANN202
    return subprocess.run([sys.executable, "-m", "velox.cli", *args], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _fills(frame: pd.DataFrame) -> list[tuple[str, int, float, pd.Timestamp]]:
    return sorted(
        (str(r.side), int(r.qty), round(float(r.price), 2), pd.Timestamp(r.ts).tz_convert("UTC"))
        for r in frame.itertuples()
    )


def test_live_needs_confirmation_and_a_login(env: dict[str, str], store) -> None:  # noqa: ANN001
    refused = _velox(env, "live", str(SMA), *ARGS, "--broker", "kite")
    assert refused.returncode == 1 and "--confirm-live" in refused.stderr + refused.stdout
    with store.connect() as conn:  # the day's login is gone (another day, or revoked)
        conn.execute("DELETE FROM secrets WHERE name = 'kite.access_token'")
    expired = _velox(env, "live", str(SMA), *ARGS, "--broker", "kite", "--confirm-live")
    assert expired.returncode == 1
    assert "velox broker login kite" in expired.stderr + expired.stdout
    # the broker setting stands in for --broker
    configured = _velox({**env, "VELOX_BROKER": "kite"}, "live", str(SMA), *ARGS, "--confirm-live")
    assert configured.returncode == 1
    assert "velox broker login kite" in configured.stderr + configured.stdout
    unknown = _velox(env, "live", str(SMA), *ARGS, "--broker", "upstox", "--confirm-live")
    assert unknown.returncode == 1 and "kite" in unknown.stderr + unknown.stdout


def test_dry_run_on_kite_data_never_reaches_kite_and_switches_to_live(
    store,
    kite: KiteSimulator,
    env: dict[str, str],  # noqa: ANN001
) -> None:
    engine = subprocess.Popen(
        [sys.executable, "-m", "velox.cli", "paper", str(SMA), *ARGS, "--broker", "kite",
         "--confirm-live", "--run", "D1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not len(store.run_fills("D1") if _has_run(store, "D1") else []):
            assert engine.poll() is None, engine.stdout.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the dry run never traded"
            time.sleep(0.1)
        assert kite.state()["orders"] == [], "a dry run sent an order to Kite"
        # holding: the switch is refused; flatten, then switch
        held = store.issue_command("switch-mode", issued_by="ops", run_id="D1",
                                   args={"mode": "live"})  # fmt: skip
        status, result = command_answer(store, held.id)
        if status == "failed":  # refused while holding (or with a working order)
            assert "flatten first" in result["error"], result
            flat = store.issue_command("flatten", issued_by="ops", run_id="D1")
            assert command_answer(store, flat.id)[0] == "done"
            time.sleep(1.0)  # the square-off fills on the next ticks
            again = store.issue_command("switch-mode", issued_by="ops", run_id="D1",
                                        args={"mode": "live"})  # fmt: skip
            status, result = command_answer(store, again.id)
        assert status == "done", result
        assert result == {"mode": "live", "venue": "kite"}
        deadline = time.monotonic() + 120
        while not kite.state()["orders"]:  # the strategy's next order goes to Kite
            assert engine.poll() is None, engine.stdout.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no order reached Kite after the switch"
            time.sleep(0.1)
    finally:
        engine.terminate()
        out, _ = engine.communicate(timeout=60)
        _shutdown_dry_run(Path(env["VELOX_DATA_DIR"]) / "paper" / "D1.sock")
    events = store.read_order_events(run_id="D1")
    mode_rows = events.index[events["status"] == "MODE"]
    assert len(mode_rows) == 1
    later = events.loc[mode_rows[0] + 1 :]
    assert later["mode"].eq("live").all() and events.loc[: mode_rows[0], "mode"].eq("paper").all()
    tags = {o["tag"] for o in kite.state()["orders"]}
    assert tags <= set(later["client_id"]), (tags, out)


def _shutdown_dry_run(socket: Path) -> None:
    """Stop the dry run's simulator server: a terminated engine leaves it up, as a crashed one
    must (a restart resumes it)."""
    from velox.brokers.sim.paper import PaperConnection, PaperVenue, listening

    if listening(socket):
        link = PaperConnection(socket)
        try:
            PaperVenue(link).shutdown()
        finally:
            link.close()


def _has_run(store, run_id: str) -> bool:  # noqa: ANN001
    from velox.errors import DataError

    try:
        store.run(run_id)
    except DataError:
        return False
    return True


def test_live_books_every_fill_across_a_ticker_drop_and_halts_on_an_expired_session(
    store,
    kite: KiteSimulator,
    env: dict[str, str],
    tmp_path: Path,  # noqa: ANN001
) -> None:
    cross = tmp_path / "cross.py"
    cross.write_text(CROSS)
    engine = subprocess.Popen(
        [sys.executable, "-m", "velox.cli", "live", str(cross), "--broker", "kite",
         "--confirm-live", "--run", "L2", "--stop-after", "-74", "--reconcile-every", "3600"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip

    def alerts() -> pd.DataFrame:
        return store.alerts(run_id="L2") if _has_run(store, "L2") else pd.DataFrame()

    def wait(check, what: str) -> None:  # noqa: ANN001
        deadline = time.monotonic() + 120
        while not check():
            assert engine.poll() is None, engine.stdout.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    try:
        wait(lambda: _has_run(store, "L2") and len(store.run_fills("L2")) >= 1, "no first fill")
        kite.fault("drop_ws")  # the ticker's connection dies: order updates of the gap are lost
        wait(lambda: "reconnected" in " ".join(alerts().get("message", [])), "never reconnected")
        wait(lambda: len(store.run_fills("L2")) >= 3, "no fills after the reconnection")
        kite.fault("expire_token")  # the day's session ends at Kite
        wait(lambda: "session_expired" in set(alerts().get("kind", [])), "no session alert")
        out, _ = engine.communicate(timeout=120)
    finally:
        if engine.poll() is None:
            engine.kill()
    assert engine.returncode == 0, out  # halted and alerted, never crashed
    (expired,) = alerts().query("kind == 'session_expired'").itertuples()
    assert expired.severity == "critical" and "velox broker login kite" in expired.message
    assert "order refused" in out and "broker session expired" in out
    # every trade at Kite is booked exactly once (fill id = Kite's trade id), none lost in the gap
    trades = kite.state()["trades"]
    fills = store.run_fills("L2")
    assert sorted(fills["fill_id"]) == sorted(str(t["trade_id"]) for t in trades)
    assert len(set(fills["fill_id"])) == len(fills)
