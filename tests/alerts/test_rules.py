"""Users' alert rules: the grammar, the ``alert_rules`` table and CLI, and the watcher on
real stored bars, whose firings must equal a TA-Lib/pandas computation of the crossings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from velox.alerts.rules import RuleWatcher, add_rule, list_rules, parse_rule, remove_rule
from velox.errors import ValidationError

ROOT = Path(__file__).resolve().parents[2]
IID = "NSE:RELIANCE"
#: The replayed window of the bundled RELIANCE 5m file (2025-05-16 … 2025-06-26): the bars
#: before it are the warm-up the watcher reads from the store.
LIVE_FROM = "2025-06-02"


# -- grammar --------------------------------------------------------------------------------


def test_the_issue_examples_parse() -> None:
    rule = parse_rule("NSE:RELIANCE close crosses above 2900")
    assert (rule.instrument_id, rule.left.name, rule.operator, rule.right.number,
            rule.timeframe) == ("NSE:RELIANCE", "close", "crosses above", 2900.0, "1m")  # fmt: skip
    rule = parse_rule("nse:reliance close > 2900 on 5m")
    assert (rule.instrument_id, rule.operator, rule.timeframe) == ("NSE:RELIANCE", ">", "5m")
    rule = parse_rule("NSE:SBIN RSI(14) < 30 on 15m")
    assert (rule.left.kind, rule.left.name, rule.left.args) == ("indicator", "RSI", (14.0,))
    assert (rule.operator, rule.right.number, rule.timeframe) == ("<", 30.0, "15m")
    rule = parse_rule("NSE:TCS MACD(12, 26, 9).histogram crosses below 0 on 1h")
    assert (rule.left.name, rule.left.output, rule.operator) == ("MACD", "histogram",
                                                                 "crosses below")  # fmt: skip
    rule = parse_rule("NSE:INFY SMA(20) crosses above SMA(50) on 1d")
    assert (str(rule.left), str(rule.right), rule.timeframe) == ("SMA(20)", "SMA(50)", "1d")


def test_a_rule_without_an_instrument_takes_the_one_given() -> None:
    rule = parse_rule("RSI(14) < 30 on 15m", "NSE:RELIANCE")
    assert (rule.instrument_id, str(rule.left), rule.operator, rule.right.number,
            rule.timeframe) == ("NSE:RELIANCE", "RSI(14)", "<", 30.0, "15m")  # fmt: skip
    assert parse_rule(rule.text) == rule  # the stored text reads back alone
    assert parse_rule("NSE:RELIANCE close > 2900", "NSE:RELIANCE").instrument_id == "NSE:RELIANCE"
    with pytest.raises(ValidationError, match="names NSE:SBIN but the instrument given is NSE:TCS"):
        parse_rule("NSE:SBIN close > 3", "NSE:TCS")
    with pytest.raises(ValidationError, match="--instrument"):
        parse_rule("RSI(14) < 30 on 15m")


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("RSI(14) < 30 on 15m", ["'RSI'", "column 1", "instrument"]),
        ("NSE:SBIN RSX(14) < 30", ["'RSX'", "column 10", "did you mean 'RSI'"]),
        ("NSE:SBIN clse > 3", ["'clse'", "did you mean 'close'"]),
        ("NSE:SBIN RSI(14) << 30", ["'<'", "column 19"]),
        ("NSE:SBIN close crosses over 3", ["'over'", "'above' or 'below'"]),
        ("NSE:SBIN RSI(14) < 30 on 7m", ["'7m'", "1m, 3m, 5m"]),
        ("NSE:SBIN RSI(a) < 30", ["'a'", "column 14"]),
        ("NSE:SBIN RSI(14, 3) < 30", ["RSI takes at most 1"]),
        ("NSE:SBIN RSI(2.5) < 30", ["window=2.5", "whole number"]),
        ("NSE:SBIN MACD(12, 26, 9) > 0", ["several outputs", "macd, signal, histogram"]),
        ("NSE:SBIN MACD(12, 26, 9).hist > 0", ["'hist'", "macd, signal, histogram"]),
        ("NSE:SBIN close > 3 on 5m now", ["'now'", "end of the rule"]),
        ("NSE:SBIN close > 3 $", ["'$'", "column 20"]),
        ("NSE:SBIN close >", ["ends too early"]),
        ("NSE:SBIN 3 > 2", ["two numbers"]),
        ("   ", ["empty"]),
    ],
)
def test_bad_rules_name_the_bad_token(text: str, names: list[str]) -> None:
    with pytest.raises(ValidationError) as info:
        parse_rule(text)
    message = str(info.value)
    assert "\n" not in message
    for name in names:
        assert name in message


# -- the table and the CLI ------------------------------------------------------------------


def test_rules_are_stored_listed_and_removed(store) -> None:  # noqa: ANN001
    first = add_rule(store, "NSE:SBIN RSI(14) < 30 on 15m", severity="warning", owner="asha")
    second = add_rule(store, "NSE:RELIANCE close crosses above 2900", owner="ravi")
    rules = list_rules(store)
    assert rules["id"].tolist() == [first, second]
    assert rules.loc[0, ["owner", "instrument_id", "timeframe", "severity", "enabled"]].tolist() \
        == ["asha", "NSE:SBIN", "15m", "warning", True]  # fmt: skip
    assert rules.loc[1, "timeframe"] == "1m" and pd.isna(rules.loc[1, "last_fired_at"])
    assert list_rules(store, owner="ravi")["id"].tolist() == [second]
    remove_rule(store, first)
    assert list_rules(store)["id"].tolist() == [second]
    with pytest.raises(ValidationError, match=f"no alert rule {first}"):
        remove_rule(store, first)
    with pytest.raises(KeyError, match="NSE:NOSUCHCO"):  # UnknownInstrument is a KeyError
        add_rule(store, "NSE:NOSUCHCO close > 1")


def test_cli_add_list_remove(store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: ANN001
    from velox.cli import main
    from velox.config import reset_settings

    monkeypatch.setenv("VELOX_DATABASE_URL", store.url)
    monkeypatch.setenv("VELOX_DATA_DIR", str(tmp_path))
    reset_settings()
    try:
        runner = CliRunner()
        out = runner.invoke(main, ["alerts", "add", "NSE:SBIN RSI(14) < 30 on 15m",
                                   "--severity", "critical", "--user", "asha"])  # fmt: skip
        assert out.exit_code == 0, out.output
        (rule_id,) = list_rules(store)["id"].tolist()
        assert f"alert rule {rule_id}: NSE:SBIN RSI(14) < 30 on 15m (critical)" in out.output
        out = runner.invoke(main, ["alerts", "list"])
        assert out.exit_code == 0 and "asha" in out.output and "never" in out.output
        assert "NSE:SBIN RSI(14) < 30 on 15m" in out.output
        out = runner.invoke(main, ["alerts", "add", "RSI(14) < 30 on 15m",
                                   "--instrument", "NSE:INFY"])  # fmt: skip
        assert out.exit_code == 0, out.output
        assert list_rules(store)["rule"].tolist()[-1] == "NSE:INFY RSI(14) < 30 on 15m"
        remove_rule(store, int(list_rules(store)["id"].tolist()[-1]))
        bad = runner.invoke(main, ["alerts", "add", "NSE:SBIN RSX(14) < 30"])
        assert bad.exit_code != 0 and "did you mean 'RSI'" in bad.output
        assert len(bad.output.strip().splitlines()) == 1
        out = runner.invoke(main, ["alerts", "remove", str(rule_id)])
        assert out.exit_code == 0 and list_rules(store).empty
        again = runner.invoke(main, ["alerts", "remove", str(rule_id)])
        assert again.exit_code != 0 and f"no alert rule {rule_id}" in again.output
    finally:
        reset_settings()


# -- the watcher on real bars ---------------------------------------------------------------


@pytest.fixture
def stored_reliance(store) -> pd.DataFrame:  # noqa: ANN001
    """Import the bundled RELIANCE 5m bars into the test's store; return them as stored."""
    from velox.data import import_bars

    import_bars(ROOT / "data" / "bars" / "RELIANCE_5m_2025.csv", IID, "5m", store=store)
    return store.read_bars(IID, "5m")


def _reference(bars: pd.DataFrame) -> dict[str, pd.DatetimeIndex]:
    """Return, per rule, the bars where it must fire: crossings computed with TA-Lib/pandas
    over the whole stored series, kept from LIVE_FROM on (what the watcher saw live)."""
    import talib

    close = bars["close"].to_numpy(np.float64)
    c = bars["close"]
    rsi = pd.Series(talib.RSI(close, timeperiod=14), index=bars.index)
    fast = pd.Series(talib.SMA(close, timeperiod=10), index=bars.index)
    slow = pd.Series(talib.SMA(close, timeperiod=30), index=bars.index)
    level = 1430.0
    crossings = {
        # became < 30 after being >= 30 at the previous bar (both bars' RSI defined)
        "RSI(14) < 30": (rsi < 30) & (rsi.shift(1) >= 30),
        f"close crosses above {level:g}": (c > level) & (c.shift(1) <= level),
        "SMA(10) crosses below SMA(30)": (fast < slow) & (fast.shift(1) >= slow.shift(1)),
    }
    live = bars.index >= pd.Timestamp(LIVE_FROM, tz="Asia/Kolkata")
    return {rule: bars.index[mask.to_numpy() & live] for rule, mask in crossings.items()}


def _engine(store, bars: pd.DataFrame, watcher: RuleWatcher, *, ticks: bool):  # noqa: ANN001, ANN202
    from velox.brokers.sim import SimBroker
    from velox.engine import Engine
    from velox.feeds import BarReplay
    from velox.modes import default_instruments

    master = default_instruments()
    replay = BarReplay({(IID, "5m"): bars.loc[LIVE_FROM:]})
    feed = replay.ticks() if ticks else replay
    sim = SimBroker(master, initial_cash=1_000_000)
    return Engine([], broker=sim, feed=feed, instruments=master, watchers=[watcher], run_id="P9")


@pytest.mark.parametrize("loop", ["tick loop", "bar loop"])
def test_watcher_fires_where_talib_crossings_are(store, stored_reliance, loop: str) -> None:  # noqa: ANN001
    expected = _reference(stored_reliance)
    assert all(len(bars) >= 2 for bars in expected.values()), "each rule must fire to prove it"
    ids = {add_rule(store, f"{IID} {rule} on 5m", severity="warning", owner="asha"): rule
           for rule in expected}  # fmt: skip
    watcher = RuleWatcher(store, run_id="P9", account="paper")
    assert watcher.keys == [(IID, "5m")] and len(watcher) == 3
    engine = _engine(store, stored_reliance, watcher, ticks=loop == "tick loop")
    engine.run()
    for rule_id, rule in ids.items():
        fired = [f.bar_ts for f in watcher.fired if f.rule_id == rule_id]
        assert fired == list(expected[rule]), rule
    # each firing is one stored user_alert, keyed by rule and bar
    alerts = store.alerts(kind="user_alert")
    assert len(alerts) == len(watcher.fired)
    assert set(alerts["dedup_key"]) == {f"rule:{f.rule_id}:{f.bar_ts.isoformat()}"
                                        for f in watcher.fired}  # fmt: skip
    assert set(alerts["severity"]) == {"warning"} and set(alerts["run_id"]) == {"P9"}
    rules = list_rules(store).set_index("id")
    for rule_id, rule in ids.items():
        assert rules.loc[rule_id, "fired_count"] == len(expected[rule])
        assert rules.loc[rule_id, "last_fired_bar"] == expected[rule][-1]


def test_a_restarted_watcher_does_not_fire_the_same_bars_again(store, stored_reliance) -> None:  # noqa: ANN001
    add_rule(store, f"{IID} close crosses above 1430 on 5m", owner="asha")
    first = RuleWatcher(store)
    _engine(store, stored_reliance, first, ticks=True).run()
    assert first.fired
    again = RuleWatcher(store)  # a restart replays the same bars: nothing new fires
    _engine(store, stored_reliance, again, ticks=True).run()
    assert again.fired == []
    assert len(store.alerts(kind="user_alert")) == len(first.fired)


def test_warm_up_makes_rsi_defined_at_the_first_live_bar(store, stored_reliance) -> None:  # noqa: ANN001
    import talib

    add_rule(store, f"{IID} RSI(14) > 0 on 5m", owner="asha")  # true whenever defined
    watcher = RuleWatcher(store)
    (watch,) = watcher._watches[(IID, "5m")]
    first_live = stored_reliance.loc[LIVE_FROM:].iloc[0]
    from velox.types import Bar

    bar = Bar(IID, "5m", first_live.name.to_pydatetime(), *first_live[["open", "high", "low",
              "close", "volume"]].astype(float).tolist())  # fmt: skip
    watcher.on_bar(bar)
    # the warm-up ran the stored bars before it: the previous bar's RSI was defined (no firing:
    # the level held already), and this bar's value is TA-Lib's over the whole history
    assert watch.previous is True and watcher.fired == []
    upto = stored_reliance.loc[: first_live.name, "close"].to_numpy(np.float64)
    expected = talib.RSI(upto, timeperiod=14)[-1]
    replay = RuleWatcher(store)  # the same warm-up, then read the value at the bar
    (w2,) = replay._watches[(IID, "5m")]
    replay._warm.add((IID, "5m"))
    replay._warm_up((IID, "5m"), bar.ts, [w2])
    _, value, _ = w2.step(bar)
    assert value == pytest.approx(expected, rel=1e-12)
