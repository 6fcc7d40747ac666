"""One strategy, one setting: traded live through each broker's loopback simulator (the
official SDK inside ``velox live``), it makes the trades ``velox replay`` makes.

The strategy file and its config are the same for every broker; only ``VELOX_BROKER`` (the
``broker`` setting) changes. The independent reference is ``velox replay`` of the same stored
bars: each live fill is the replay's fill one tick later. Live, a bar is known to have closed
only when the next bar's first trade arrives, and the exchange has already matched that trade
when the order reaches it; a replay knows the bar's end in advance and fills at that trade.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.engine.conftest import BARS, DAY, ROOT
from velox.feeds import BarReplay
from velox.oms import FILL_EVENT

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

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


@dataclass(frozen=True)
class BrokerRig:
    """How a user points Velox at one broker's simulator and logs in."""

    simulator: Callable[..., Any]  # the simulator class: (bars=, speed=, replay_on_subscribe=)
    env: Callable[[Any], dict[str, str]]  # settings that point the SDK at the simulator
    login: Callable[[Any], tuple[tuple[list[str], str], ...]]  # `velox broker …` steps, stdin
    tags: Callable[[Any], list[str]]  # the order tags the simulator received


def _kite() -> BrokerRig:
    from velox.brokers.kite.simulator import KiteSimulator

    return BrokerRig(
        KiteSimulator,
        lambda sim: {"VELOX_KITE_ROOT": sim.url, "VELOX_KITE_WS_ROOT": sim.ws_url},
        lambda sim: ((["set", "kite", "--api-key", "demo", "--api-secret-stdin"], "s3cret\n"),
                     (["login", "kite", "--request-token", "rtlive01"], "")),
        lambda sim: [o["tag"] for o in sim.state()["orders"]],
    )  # fmt: skip


def _smartapi() -> BrokerRig:
    from velox.brokers.smartapi.simulator import SmartApiSimulator

    return BrokerRig(
        SmartApiSimulator,
        lambda sim: {"VELOX_SMARTAPI_ROOT": sim.url, "VELOX_SMARTAPI_WS_ROOT": sim.ws_url,
                     "VELOX_SMARTAPI_ORDER_WS": sim.order_ws_url},
        lambda sim: ((["set", "smartapi", "--api-key", "demo", "--client-code", "A123",
                      "--pin-stdin", "--totp-secret-stdin"],
                     "1234\nJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n"),
                     (["login", "smartapi"], "")),
        lambda sim: [o["ordertag"] for o in sim.state()["orders"]],
    )  # fmt: skip


def _breeze() -> BrokerRig:
    from velox.brokers.breeze.simulator import BreezeSimulator

    return BrokerRig(
        BreezeSimulator,
        lambda sim: {"VELOX_BREEZE_ROOT": sim.url},
        # the apisession is what ICICI's login page (the simulator's) hands the user
        lambda sim: ((["set", "breeze", "--api-key", "demo", "--api-secret-stdin"],
                      f"{sim.DEMO_SECRET}\n"),
                     (["login", "breeze", "--api-session", sim.api_session()], "")),
        lambda sim: [o["user_remark"] for o in sim.state()["orders"]],
    )  # fmt: skip


RIGS: dict[str, Callable[[], BrokerRig]] = {"kite": _kite, "smartapi": _smartapi,
                                            "breeze": _breeze}  # fmt: skip


@pytest.fixture
def day_bars(store) -> pd.DataFrame:  # noqa: ANN001
    from velox.data import import_bars

    import_bars(BARS / "RELIANCE_5m_2025.csv", "NSE:RELIANCE", "5m", store=store)
    return store.read_bars("NSE:RELIANCE", "5m", DAY, DAY)


def _velox(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "velox.cli", *args], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=240)  # fmt: skip


def _fills(frame: pd.DataFrame) -> list[tuple[str, int, float, pd.Timestamp]]:
    return sorted(
        (str(r.side), int(r.qty), round(float(r.price), 2), pd.Timestamp(r.ts).tz_convert("UTC"))
        for r in frame.itertuples()
    )


@pytest.fixture(params=sorted(RIGS))
def broker(request: pytest.FixtureRequest, day_bars: pd.DataFrame) -> Iterator[tuple[str, Any]]:
    """A broker's simulator replaying DAY's RELIANCE 5m bars once the engine subscribes, at
    500× (150 ms between ticks: every order reaches it before the next tick on a loaded
    machine)."""
    rig = RIGS[request.param]()
    sim = rig.simulator(bars={("NSE:RELIANCE", "5m"): day_bars}, speed=500.0,
                        replay_on_subscribe=True)  # fmt: skip
    sim.start()
    yield request.param, sim
    sim.stop()


def test_one_strategy_trades_like_the_replay_on_every_broker(
    store,  # noqa: ANN001
    broker: tuple[str, Any],
    tmp_path: Path,
    day_bars: pd.DataFrame,
) -> None:
    from velox.secrets import generate_key

    name, sim = broker
    rig = RIGS[name]()
    env = {**os.environ, "VELOX_DATABASE_URL": store.url, "VELOX_DATA_DIR": str(tmp_path),
           "VELOX_SECRET_KEY": generate_key(), **rig.env(sim)}  # fmt: skip
    for step, stdin in rig.login(sim):
        done = _velox(env, "broker", *step, stdin=stdin)
        assert done.returncode == 0, done.stdout + done.stderr
    cross = tmp_path / "cross.py"
    cross.write_text(CROSS)
    # the one setting that picks the broker; the session ends right after the last tick
    live = _velox({**env, "VELOX_BROKER": name}, "live", str(cross), "--confirm-live",
                  "--run", "L1", "--stop-after", "-74", "--reconcile-every", "3600")  # fmt: skip
    assert live.returncode == 0, live.stdout + live.stderr
    assert "mode: live" in live.stdout
    replay = _velox(env, "replay", str(cross), "--start", DAY, "--end", DAY,
                    "--record", "--run", "R1")  # fmt: skip
    assert replay.returncode == 0, replay.stdout + replay.stderr

    replayed = _fills(store.run_fills("R1"))
    assert len(replayed) >= 4, "the strategy should trade several times on the day"
    ticks = BarReplay({("NSE:RELIANCE", "5m"): day_bars})  # what the simulator streamed
    times = pd.to_datetime(ticks.ts_ns, utc=True)
    at = {t: k for k, t in enumerate(times)}
    expected = sorted(
        (side, qty, round(float(ticks.price[at[ts] + 1]), 2), times[at[ts] + 1])
        for side, qty, _, ts in replayed
    )
    assert _fills(store.run_fills("L1")) == expected, live.stdout + live.stderr
    # the orders reached the broker once each, tagged with their client ids, audited as live
    tags = rig.tags(sim)
    assert len(tags) == len(set(tags)) == len(expected)
    events = store.read_order_events(run_id="L1")
    assert events["mode"].eq("live").all()
    assert set(tags) == set(events.loc[events["status"] == FILL_EVENT, "client_id"])
    assert store.run("L1")["params"]["broker"] == name
