"""Operator commands: targets decided at issue time, taken and finished exactly once."""

from __future__ import annotations

import psycopg
import pytest

from velox.errors import DataError, ValidationError
from velox.store import COMMAND_VERBS, Command, Store

pytestmark = pytest.mark.postgres


def start(store: Store, mode: str = "paper", account: str = "ZX1234", **kwargs: object) -> str:
    strategies = kwargs.pop("strategies", [{"name": "orb"}, {"name": "pairs"}])
    return store.create_run(mode=mode, account=account, initial_cash=1e6,
                            strategies=strategies, **kwargs)  # type: ignore[arg-type]  # fmt: skip


def test_issue_take_finish_happens_exactly_once(store: Store) -> None:
    run_id = start(store)
    command = store.issue_command("flatten", issued_by="ops", strategy="orb")
    assert isinstance(command, Command)
    assert (command.verb, command.strategy, command.targets) == ("flatten", "orb", (run_id,))
    assert command.created_at.utcoffset().total_seconds() == 5.5 * 3600
    assert store.pending_commands(run_id) == [command]

    assert store.take_command(command.id, run_id) is True
    assert store.pending_commands(run_id) == [command]  # taken, not finished: still owed
    assert store.finish_command(command.id, run_id, ok=True, result={"orders": ["P1-4"]})
    assert store.pending_commands(run_id) == []
    assert store.take_command(command.id, run_id) is False
    assert store.finish_command(command.id, run_id, ok=False, result={}) is False

    results = store.command_results(command.id)
    assert results[["run_id", "status"]].values.tolist() == [[run_id, "done"]]
    assert results["result"].iloc[0] == {"orders": ["P1-4"]}
    assert results["done_at"].iloc[0] >= results["taken_at"].iloc[0]
    events = store.command_events(command.id)
    assert events["status"].tolist() == ["pending", "taken", "done"]
    assert events["detail"].tolist() == [{"issued_by": "ops"}, {}, {"orders": ["P1-4"]}]

    listed = store.commands()
    assert listed[["id", "verb", "done", "pending"]].values.tolist() == [
        [command.id, "flatten", 1, 0]
    ]
    assert listed["targets"].iloc[0] == (run_id,)
    assert store.command(command.id) == command


def test_a_command_issued_while_the_engine_is_down_is_pending_on_restart(store: Store) -> None:
    run_id = start(store)
    taken = store.issue_command("cancel-order", issued_by="ops", args={"client_id": f"{run_id}-3"})
    assert taken.run_id == run_id  # implied by the client id
    store.take_command(taken.id, run_id)  # ... and the engine crashes before finishing it
    store.close()
    kill = store.issue_command("kill", issued_by="ops")  # issued while it is down

    restarted = Store(store.url, backend=store.backend)  # a new process
    try:
        assert start(restarted, run_id=run_id) == run_id
        pending = restarted.pending_commands(run_id)
        assert [c.id for c in pending] == [taken.id, kill.id]
        assert restarted.take_command(taken.id, run_id) is True  # taken again after the crash
        assert restarted.take_command(kill.id, run_id) is True
        for command in pending:
            restarted.finish_command(command.id, run_id, ok=True, result={})
        assert restarted.pending_commands(run_id) == []
        again = restarted.command_events(taken.id)
        assert again["status"].tolist() == ["pending", "taken", "taken", "done"]
        assert again["detail"].iloc[2] == {"again": True}
    finally:
        restarted.close()


def test_targets_are_the_running_paper_and_live_runs_at_issue_time(store: Store) -> None:
    first, second = start(store), start(store, mode="live")
    other_account = start(store, account="AB999")
    replay = start(store, mode="replay", account="ZX1234")
    finished = start(store)
    store.finish_run(finished, status="stopped", summary={})

    kill_all = store.issue_command("kill", issued_by="ops")
    later = start(store)
    kill_account = store.issue_command("kill", issued_by="ops", account="ZX1234")

    assert kill_all.targets == tuple(sorted((first, second, other_account)))
    assert replay not in kill_all.targets and finished not in kill_all.targets
    assert later not in kill_all.targets
    assert set(kill_account.targets) == {first, second, later}
    assert [c.id for c in store.pending_commands(later)] == [kill_account.id]
    assert [c.id for c in store.pending_commands(first)] == [kill_all.id, kill_account.id]
    assert store.pending_commands(finished) == []

    only_orb = start(store, strategies=[{"name": "orb"}])
    only_pairs = start(store, strategies=[{"name": "pairs"}])
    stop = store.issue_command("stop-strategy", issued_by="ops", strategy="pairs")
    assert only_pairs in stop.targets and only_orb not in stop.targets


def test_a_command_to_no_running_engine_is_still_stored(store: Store) -> None:
    with store.listen("velox_commands") as listener:
        command = store.issue_command("kill", issued_by="ops", account="ZX1234")
        assert listener.wait(5.0) == [("velox_commands", "")]
    assert command.targets == ()
    assert store.commands()["id"].tolist() == [command.id]
    assert store.command_results(command.id).empty


def test_issue_and_finish_notify_each_target(store: Store) -> None:
    first, second = start(store), start(store)
    with store.listen("velox_commands") as listener:
        command = store.issue_command("reset-kill", issued_by="ops")
        received = listener.wait(5.0)
        while len(received) < 2:
            more = listener.wait(5.0)
            assert more, received
            received += more
        assert sorted(received) == [("velox_commands", first), ("velox_commands", second)]
        store.take_command(command.id, first)
        store.finish_command(command.id, first, ok=False, result={"error": "not killed"})
        assert listener.wait(5.0) == [("velox_commands", first)]
    assert store.command_results(command.id)["status"].tolist() == ["failed", "pending"]


@pytest.mark.parametrize(
    ("verb", "kwargs", "match"),
    [
        ("kil", {}, "verb='kil' is not one of kill, reset-kill, .*; did you mean 'kill'"),
        ("flaten", {}, "did you mean 'flatten'"),
        ("stop-strategy", {}, "stop-strategy needs strategy="),
        ("start-strategy", {}, "start-strategy needs strategy="),
        ("cancel-order", {}, "cancel-order needs args=\\{'client_id'"),
        (
            "cancel-order",
            {"args": {"client_id": "P1-3"}, "run_id": "P2"},
            "order P1-3 belongs to run P1, not run_id='P2'",
        ),
        ("order", {"args": {"instrument_id": "NSE:SBIN", "side": "BUY"}}, "missing \\['qty'\\]"),
        (
            "order",
            {"args": {"instrument_id": "NSE:SBIN", "side": "BUY", "qty": 1, "px": 1}},
            "unknown keys \\['px'\\]",
        ),
        (
            "order",
            {"args": {"instrument_id": "NSE:SBIN", "side": "BUY", "qty": -5}},
            "not a valid order: Order.qty=-5 must be > 0",
        ),
        (
            "order",
            {"args": {"instrument_id": "NSE:SBIN", "side": "BUY", "qty": 5, "order_type": "LIMIT"}},
            "not a valid order",
        ),
        ("switch-mode", {"args": {"mode": "paper"}}, "args\\['mode'\\]='paper' is not one of live"),
        ("kill", {"issued_by": ""}, "issued_by='' must be a non-empty string"),
        ("kill", {"args": {"when": object()}}, "args\\['when'\\] holds a object"),
    ],
)
def test_bad_commands_are_refused_naming_the_problem(store: Store, verb, kwargs, match) -> None:
    start(store)
    with pytest.raises(ValidationError, match=match):
        store.issue_command(verb, **{"issued_by": "ops", **kwargs})
    assert store.commands().empty


def test_a_named_run_must_be_running_paper_or_live(store: Store) -> None:
    paper = start(store)
    store.finish_run(paper, status="finished", summary={})
    replay = start(store, mode="replay")
    live = start(store, mode="live")
    start(store)
    with pytest.raises(ValidationError, match=f"run {paper} is finished, not running"):
        store.issue_command("kill", issued_by="ops", run_id=paper)
    with pytest.raises(ValidationError, match=f"run {replay} is a replay"):
        store.issue_command("kill", issued_by="ops", run_id=replay)
    with pytest.raises(ValidationError, match="unknown run 'P99'"):
        store.issue_command("kill", issued_by="ops", run_id="P99")
    with pytest.raises(ValidationError, match=f"run {live} trades account 'ZX1234', not 'AB1'"):
        store.issue_command("kill", issued_by="ops", run_id=live, account="AB1")
    with pytest.raises(ValidationError, match="does not run strategy 'orbb'; it runs \\['orb'"):
        store.issue_command("stop-strategy", issued_by="ops", run_id=live, strategy="orbb")
    order = {"instrument_id": "NSE:SBIN", "side": "BUY", "qty": 1}
    with pytest.raises(ValidationError, match="would go to 2 running engines"):
        store.issue_command("order", issued_by="ops", args=order)
    command = store.issue_command("order", issued_by="ops", run_id=live, args=order)
    assert command.targets == (live,) and command.args == order


def test_take_and_finish_refuse_what_does_not_exist_or_was_not_taken(store: Store) -> None:
    run_id = start(store)
    command = store.issue_command("kill", issued_by="ops")
    with pytest.raises(ValidationError, match=f"command {command.id} has no target 'P9'"):
        store.take_command(command.id, "P9")
    with pytest.raises(ValidationError, match="was never taken; call take_command"):
        store.finish_command(command.id, run_id, ok=True, result={})
    with pytest.raises(DataError, match=f"unknown command 999; recent commands: {command.id}"):
        store.command_results(999)
    with pytest.raises(DataError, match="unknown run 'P9'"):
        store.pending_commands("P9")


def test_commands_and_command_events_are_append_only(store: Store) -> None:
    run_id = start(store)
    command = store.issue_command("kill", issued_by="ops")
    store.take_command(command.id, run_id)
    for table in ("commands", "command_events"):
        before = store.table_fingerprint(table)
        for statement in (f"UPDATE {table} SET id = id", f"DELETE FROM {table}",
                          f"TRUNCATE {table} CASCADE"):  # fmt: skip
            with pytest.raises(psycopg.Error, match="append-only"), store.connect() as conn:
                conn.execute(statement)
        assert store.table_fingerprint(table) == before


def test_command_verbs() -> None:
    assert COMMAND_VERBS == ("kill", "reset-kill", "stop-strategy", "flatten", "cancel-order",
                             "order", "switch-mode", "start-strategy")  # fmt: skip
