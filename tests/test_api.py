"""The top-level ``velox`` namespace: lazy submodules, ``load_strategy`` and ``replay``."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import velox
from velox.errors import ConfigError, DataError
from velox.strategy import Strategy

ROOT = Path(__file__).resolve().parent.parent
SMA = str(ROOT / "strategies" / "sma_cross.py")


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


def _crossover_entries(close: pd.Series, fast: int, slow: int) -> list:
    """Return the sessions after the fast mean crosses above the slow one (pandas rolling)."""
    state = (close.rolling(fast).mean() > close.rolling(slow).mean()).where(
        close.rolling(slow).mean().notna()
    )
    entries, holding, days = [], False, list(close.index)
    for i, value in enumerate(state):
        if pd.isna(value) or i + 1 >= len(days):
            continue
        if value and not holding:
            entries.append(days[i + 1].date())
        holding = bool(value)
    return entries


# -- the namespace --------------------------------------------------------------------------------


def test_import_velox_is_fast_light_and_every_name_resolves() -> None:
    code = (
        "import sys, time\n"
        "t = time.perf_counter(); import velox; elapsed = time.perf_counter() - t\n"
        "heavy = [m for m in ('pandas', 'numba', 'numpy', 'holoviews') if m in sys.modules]\n"
        "names = ['replay', 'load_strategy', 'engine', 'strategy', 'modes', 'risk', 'oms',\n"
        "         'backtest', 'feeds', 'brokers', 'store', 'testing', 'RunResult']\n"
        "resolved = [n for n in names if getattr(velox, n, None) is not None]\n"
        "same = velox.load_strategy is sys.modules['velox.strategy'].load_strategy\n"
        "print(elapsed, ','.join(heavy), ','.join(resolved), same)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)  # fmt: skip
    elapsed, heavy, resolved, same = out.stdout.split(" ")
    assert float(elapsed) < 0.5
    assert heavy == "", f"import velox imported {heavy}"
    assert resolved.split(",") == ["replay", "load_strategy", "engine", "strategy", "modes",
                                   "risk", "oms", "backtest", "feeds", "brokers", "store",
                                   "testing", "RunResult"]  # fmt: skip
    assert same.strip() == "True"


def test_every_public_module_is_reachable_from_velox() -> None:
    package = ROOT / "velox"
    public = {p.stem for p in package.glob("*.py") if not p.stem.startswith("_")}
    public |= {p.parent.name for p in package.glob("*/__init__.py")}
    assert public == set(velox._SUBMODULES)
    assert public <= set(dir(velox))
    assert velox.engine.RunResult is velox.RunResult
    with pytest.raises(AttributeError, match="no attribute 'enigne'"):
        velox.enigne  # noqa: B018


def test_replay_signature_is_the_notebook_contract() -> None:
    params = list(inspect.signature(velox.replay).parameters)
    assert params == ["strategy_or_path", "symbols", "timeframe", "start", "end", "bars",
                      "record", "params"]  # fmt: skip
    options = set(inspect.signature(velox.modes.replay).parameters) - {"strategies", "bars",
                                                                       "start", "end"}  # fmt: skip
    # every run option of velox.modes.replay is reachable by name (its lookup under a new name)
    assert options - {"instruments"} <= velox.REPLAY_OPTIONS
    assert "instrument_master" in velox.REPLAY_OPTIONS and "instruments" not in velox.REPLAY_OPTIONS


# -- velox.replay ---------------------------------------------------------------------------------


def test_replay_a_file_with_symbols_timeframe_params_and_bars(reliance_1d: pd.DataFrame) -> None:
    res = velox.replay(SMA, symbols="NSE:RELIANCE", timeframe="1d", start="2019-01-01",
                       end="2021-10-29", bars=reliance_1d, fast=10, slow=30)  # fmt: skip
    cut = reliance_1d.loc["2019-01-01":"2021-10-29"]
    assert res.strategies[0]["params"] == {"fast": 10, "slow": 30, "weight": 0.95}
    assert res.strategies[0]["instruments"] == ["NSE:RELIANCE"]
    assert res.trades["entry_time"].dt.date.tolist() == _crossover_entries(cut["close"], 10, 30)
    assert len(res.trades) >= 10
    # start/end cut the given bars as the store would: inclusive, through the end date
    assert res.equity.index[0].date() >= cut.index[0].date()
    assert res.equity.index[-1].date() == pd.Timestamp("2021-10-29").date()
    pd.testing.assert_frame_equal(res.bars[("NSE:RELIANCE", "1d")], cut)
    assert len(res.plot()) == 3


def test_replay_takes_a_class_an_instance_or_module_class_alike(reliance_1d: pd.DataFrame) -> None:
    bars = reliance_1d.loc["2021"]
    cls = velox.load_strategy(SMA)
    by_class = velox.replay(cls, bars=bars, fast=5, slow=20)
    by_instance = velox.replay(cls(fast=5, slow=20), bars=bars)
    by_spec = velox.replay(f"{SMA}:SmaCross", bars=bars, fast="5", slow="20")  # text coerced
    columns = ["entry_time", "exit_time", "qty", "entry_price", "exit_price"]
    assert len(by_class.trades) > 2
    pd.testing.assert_frame_equal(by_class.trades[columns], by_instance.trades[columns])
    pd.testing.assert_frame_equal(by_class.trades[columns], by_spec.trades[columns])
    assert by_class.trades["entry_time"].dt.date.tolist() == _crossover_entries(
        bars["close"], 5, 20
    )


def test_replay_passes_run_options_by_name(reliance_1d: pd.DataFrame) -> None:
    from velox.risk import RiskLimits

    bars = reliance_1d.loc["2021"]
    res = velox.replay(SMA, bars=bars, initial_cash=500_000, run_id="X7", fast=5, slow=20,
                       risk_limits=RiskLimits(max_order_notional=1.0))  # fmt: skip
    assert res.run_id == "X7" and res.stats["initial_cash"] == 500_000
    assert res.orders["client_id"].str.startswith("X7-").all() and len(res.orders) > 0
    assert (res.orders["status"] == "REJECTED").all(), "every order is above ₹1"
    assert res.trades.empty and res.stats["final_equity"] == 500_000


def test_record_goes_to_modes_replay_untouched(reliance_1d: pd.DataFrame) -> None:
    bars = reliance_1d.loc["2021"]
    if "record" in inspect.signature(velox.modes.replay).parameters:
        assert velox.replay(SMA, bars=bars, record=False).mode == "replay"
    else:
        with pytest.raises(TypeError, match="record"):
            velox.replay(SMA, bars=bars, record=False)


def test_replay_several_instruments_from_a_mapping_of_bars() -> None:
    bars = {
        "NSE:RELIANCE": _bars("RELIANCE_1d_2017_2022.csv.gz", "1d").loc["2020":"2021"],
        "NSE:TCS": _bars("TCS_1d_2017_2022.csv.gz", "1d").loc["2020":"2021"],
    }
    # 0.4 of equity each: both can be held at once, so each follows its own crossings
    res = velox.replay(SMA, symbols=["NSE:RELIANCE", "NSE:TCS"], bars=bars, fast=5, slow=20,
                       weight=0.4)  # fmt: skip
    for iid, frame in bars.items():
        mine = res.trades[res.trades["instrument_id"] == iid]
        assert len(mine) > 3
        assert mine["entry_time"].dt.date.tolist() == _crossover_entries(frame["close"], 5, 20)
    assert len(res.plot()) == 4  # two price panels, equity, drawdown


def test_replay_refuses_what_it_cannot_run_with_a_fix(reliance_1d: pd.DataFrame) -> None:
    bars = reliance_1d.loc["2021"]
    with pytest.raises(ConfigError, match="no parameter 'fsat'; did you mean 'fast'"):
        velox.replay(SMA, bars=bars, fsat=3)
    cls = velox.load_strategy(SMA)
    with pytest.raises(ConfigError, match="instance and fast=.*pass the class"):
        velox.replay(cls(), bars=bars, fast=3)
    with pytest.raises(ConfigError, match="symbols="):
        velox.replay(SMA, bars=bars, instruments=("NSE:RELIANCE",))
    with pytest.raises(ConfigError, match="mapping"):
        velox.replay(SMA, symbols=["NSE:RELIANCE", "NSE:TCS"], bars=bars)
    with pytest.raises(ConfigError, match="not int"):
        velox.replay(3, bars=bars)  # type: ignore[arg-type]

    class Clashing(Strategy):
        instruments = ("NSE:RELIANCE",)
        run_id: str = "mine"

    with pytest.raises(ConfigError, match="parameter 'run_id'.*velox.replay\\(Clashing"):
        velox.replay(Clashing, bars=bars, run_id="R2")
    with pytest.raises(DataError, match="no frame for NSE:RELIANCE 1d"):
        velox.replay(SMA, bars={"NSE:TCS": bars})


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"fast": 0}, "SmaCross.fast=0 is out of range: it must be >= 1 (default 10)"),
        ({"slow": -10}, "SmaCross.slow=-10 is out of range: it must be >= 1"),
        ({"product": "YOLO"}, "valid: CNC, MIS, NRML"),
        ({"capital": "abc"}, "capital must be a number"),
        ({"name": "X"}, "'name' cannot be set"),
    ],
)
def test_replay_validates_parameters_before_the_run(
    params: dict[str, object], needle: str, reliance_1d: pd.DataFrame
) -> None:
    with pytest.raises(ConfigError) as info:
        velox.replay(SMA, bars=reliance_1d.loc["2021"], **params)
    assert needle in str(info.value)


def test_replay_checks_the_bars_are_on_the_timeframe_grid(
    reliance_1d: pd.DataFrame, reliance_5m: pd.DataFrame
) -> None:
    # 5-minute bars handed to a daily strategy: refused, naming both timeframes
    with pytest.raises(DataError, match=r"at 1d are off the 1d grid.*look like 5m bars"):
        velox.replay(SMA, timeframe="1d", bars=reliance_5m)
    # daily bars labelled at the open instead of the session date
    at_open = reliance_1d.loc["2021"].copy()
    at_open.index = at_open.index + pd.Timedelta("9h15min")
    with pytest.raises(DataError, match=r"normalize\(\)"):
        velox.replay(SMA, bars=at_open)
    # one bar off the 5-minute grid among good ones
    shifted = reliance_5m.iloc[:400].copy()
    shifted.index = shifted.index.where(shifted.index != shifted.index[7],
                                        shifted.index[7] + pd.Timedelta("2min"))  # fmt: skip
    with pytest.raises(DataError, match=r"1 of 400 bars are not"):
        velox.replay(SMA, timeframe="5m", bars=shifted)
    with pytest.raises(DataError, match="tz_localize"):
        velox.replay(SMA, bars=reliance_1d.loc["2021"].tz_localize(None))
    with pytest.raises(DataError, match="DatetimeIndex"):
        velox.replay(SMA, bars=reliance_1d.loc["2021"].reset_index())
    # the same 5-minute bars at their own timeframe run
    res = velox.replay(SMA, timeframe="5m", bars=reliance_5m, fast=5, slow=20)
    assert len(res.trades) > 10


@pytest.mark.postgres
def test_replay_reads_the_store_when_no_bars_are_given(store, reliance_1d: pd.DataFrame) -> None:
    from velox.data import import_bars

    import_bars(ROOT / "data/bars/RELIANCE_1d_2017_2022.csv.gz", "NSE:RELIANCE", "1d", store=store)
    res = velox.replay(SMA, symbols="NSE:RELIANCE", timeframe="1d", start="2019-01-01",
                       end="2021-10-29", store=store, fast=10, slow=30)  # fmt: skip
    cut = reliance_1d.loc["2019-01-01":"2021-10-29"]
    assert res.trades["entry_time"].dt.date.tolist() == _crossover_entries(cut["close"], 10, 30)
    assert json.loads(res.to_json())["orders"] == len(res.orders)
