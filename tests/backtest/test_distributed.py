"""run_tasks on Dask: the same results as in-process, the scheduler setting honoured, a failing
task named, a LocalCluster of its own shut down, nothing listening beyond 127.0.0.1.

One LocalCluster of two worker processes serves the module (starting one takes about a second).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import cloudpickle
import pandas as pd
import psutil
import pytest
from distributed import Client, LocalCluster

from velox import config
from velox.backtest import distributed as dist
from velox.backtest.distributed import IN_PROCESS, client, run_tasks
from velox.errors import ConfigError, TaskFailed, ValidationError

ROOT = Path(__file__).resolve().parents[2]
SMA = str(ROOT / "strategies" / "sma_cross.py")

# the workers unpickle this module's task functions by value, whatever their sys.path
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs=dist.LOOPBACK_SCHEDULER,
    ) as started:
        yield started


@pytest.fixture(scope="module")
def dask_client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster) as opened:
        yield opened


@pytest.fixture(autouse=True)
def _no_scheduler_setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("VELOX_DASK_SCHEDULER", raising=False)
    config.reset_settings()
    yield
    config.reset_settings()


@pytest.fixture(scope="module")
def reliance_1d() -> pd.DataFrame:
    from velox.data import read_bar_file, validate_bars

    name = "RELIANCE_1d_2017_2022.csv.gz"
    frame, _ = validate_bars(read_bar_file(ROOT / "data" / "bars" / name), timeframe="1d",
                             source=name)  # fmt: skip
    return frame


# -- task functions (module level, so they pickle) ----------------------------------------------


def replay_stats(params: dict[str, int], bars: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    import velox

    result = velox.replay(SMA, symbols="NSE:RELIANCE", timeframe="1d", bars=bars, **params)
    return result.stats, result.trades


def where(task: int) -> tuple[int, str]:
    """Return the task and the address of the Dask worker running it (or "in-process")."""
    from distributed import get_worker

    try:
        return task, get_worker().address
    except ValueError:
        return task, IN_PROCESS


def slow_square(task: int) -> int:
    time.sleep(0.002 * (task % 7))  # finish out of order
    return task * task


def fails_on_seven(task: int) -> int:
    if task == 7:
        raise ZeroDivisionError(f"no division for task {task}")
    return task


# -- results ---------------------------------------------------------------------------------------


def test_replays_on_two_workers_equal_the_in_process_ones(
    dask_client: Client, reliance_1d: pd.DataFrame
) -> None:
    grid = [{"fast": 5, "slow": 20}, {"fast": 10, "slow": 30}, {"fast": 20, "slow": 60},
            {"fast": 15, "slow": 40}]  # fmt: skip
    job = partial(replay_stats, bars=reliance_1d)
    local = run_tasks(job, grid, scheduler=IN_PROCESS, progress=False)
    remote = run_tasks(job, grid, scheduler=dask_client, progress=False)
    assert len(remote) == len(grid)
    for (stats, trades), (mine, my_trades) in zip(remote, local, strict=True):
        assert stats == mine
        pd.testing.assert_frame_equal(trades, my_trades)
    assert len({stats["trades"] for stats, _ in local}) > 1  # the parameters mattered


def test_results_come_back_in_task_order(dask_client: Client) -> None:
    tasks = list(range(60))
    assert run_tasks(slow_square, tasks, scheduler=dask_client, progress=True) == [
        t * t for t in tasks
    ]
    assert run_tasks(slow_square, [], scheduler=dask_client) == []


def test_the_scheduler_setting_is_honoured(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers = set(cluster.scheduler_info["workers"])
    # unset: a small job runs in this process
    assert {w for _, w in run_tasks(where, range(3), progress=False)} == {IN_PROCESS}
    monkeypatch.setenv("VELOX_DASK_SCHEDULER", cluster.scheduler_address)
    config.reset_settings()
    assert config.get_settings().dask_scheduler == cluster.scheduler_address
    ran = run_tasks(where, range(12), progress=False)
    assert [t for t, _ in ran] == list(range(12))
    assert {w for _, w in ran} <= workers and len({w for _, w in ran}) >= 1
    # a small job goes to the configured cluster too: the setting wins over the size rule
    assert {w for _, w in run_tasks(where, range(2), progress=False)} <= workers
    # and the cluster is still up: Velox never shuts down a cluster it did not start
    assert set(cluster.scheduler_info["workers"]) == workers


def test_a_job_of_cheap_tasks_stays_in_process() -> None:
    ran = run_tasks(where, range(200), progress=False)
    assert ran == [(t, IN_PROCESS) for t in range(200)]


def test_a_big_job_moves_to_a_local_cluster_of_its_own_and_shuts_it_down(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dist, "IN_PROCESS_SECONDS", 0.0)  # every job is "big"
    before = {p.pid for p in multiprocessing.active_children()}
    ran = run_tasks(where, range(12), local_workers=2, progress=False)
    assert [t for t, _ in ran] == list(range(12))
    # two tasks run here to time the job (the first alone is warm-up), the rest on the cluster
    assert [w for _, w in ran[:2]] == [IN_PROCESS, IN_PROCESS]
    used = {w for _, w in ran[2:]}
    assert IN_PROCESS not in used and not used & set(cluster.scheduler_info["workers"])
    assert 1 <= len(used) <= 2 and all(w.startswith("tcp://127.0.0.1:") for w in used)
    deadline = time.monotonic() + 10
    while {p.pid for p in multiprocessing.active_children()} - before:
        assert time.monotonic() < deadline, "LocalCluster worker processes still alive"
        time.sleep(0.1)
    for address in used:  # its workers no longer listen
        host, port = address.removeprefix("tcp://").rsplit(":", 1)
        with socket.socket() as probe:
            assert probe.connect_ex((host, int(port))) != 0


def test_after_the_move_results_and_errors_are_placed_in_the_whole_job(
    dask_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dist, "IN_PROCESS_SECONDS", 0.0)

    @contextmanager
    def module_cluster(scheduler: object, local_workers: int | None = None) -> Iterator[Client]:
        assert scheduler == dist.LOCAL and local_workers == 2
        yield dask_client  # the module's cluster instead of starting another

    monkeypatch.setattr(dist, "client", module_cluster)
    assert run_tasks(slow_square, range(30), local_workers=2, progress=False) == [
        t * t for t in range(30)
    ]
    with pytest.raises(TaskFailed, match=r"task 7 of 9 \(7\) failed"):
        run_tasks(fails_on_seven, range(9), local_workers=2, progress=False)


def test_local_cluster_listens_on_loopback_only() -> None:
    with client("local", local_workers=1) as local:
        addresses = [local.scheduler.address, *local.scheduler_info()["workers"]]
        assert all(a.startswith("tcp://127.0.0.1:") for a in addresses)
        pids = [os.getpid(), *local.run(os.getpid).values()]  # scheduler and nanny: here
        listening = [
            conn.laddr
            for pid in pids
            for conn in psutil.Process(pid).net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN
        ]
        assert listening and {addr.ip for addr in listening} == {"127.0.0.1"}


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("where_", ["in-process", "cluster"])
def test_a_failing_task_is_named(where_: str, dask_client: Client) -> None:
    scheduler = IN_PROCESS if where_ == "in-process" else dask_client
    with pytest.raises(TaskFailed, match=r"task 7 of 20 \(7\) failed: ZeroDivisionError: no "
                       r"division for task 7") as caught:  # fmt: skip
        run_tasks(fails_on_seven, range(20), scheduler=scheduler, progress=False)
    assert caught.value.index == 7 and isinstance(caught.value.__cause__, ZeroDivisionError)
    names = [f"combo fast={t}" for t in range(20)]
    with pytest.raises(TaskFailed, match=r"task 7 of 20 \(combo fast=7\)"):
        run_tasks(fails_on_seven, range(20), scheduler=scheduler, progress=False, names=names)
    # the cluster is usable after a failed job
    assert run_tasks(slow_square, range(3), scheduler=scheduler, progress=False) == [0, 1, 4]


def test_bad_scheduler_or_options_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="must start with tcp:// or tls://"):
        run_tasks(abs, range(20), scheduler="http://127.0.0.1:8786")
    with pytest.raises(ConfigError, match="scheduler= must be an address"):
        run_tasks(abs, range(20), scheduler=42)  # type: ignore[arg-type]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    monkeypatch.setattr(dist, "CONNECT_TIMEOUT", 1)
    with pytest.raises(ConfigError, match=f"no Dask scheduler answered at tcp://127.0.0.1:{free}"):
        run_tasks(abs, range(20), scheduler=f"tcp://127.0.0.1:{free}", progress=False)
    with pytest.raises(ValidationError, match="local_workers=0"):
        run_tasks(abs, range(20), local_workers=0)
    with pytest.raises(ValidationError, match="2 names for 3 tasks"):
        run_tasks(abs, range(3), names=["a", "b"])


def test_the_docstring_examples_run() -> None:
    import doctest

    assert doctest.testmod(dist).failed == 0


def test_without_dask_jobs_run_in_process_and_a_cluster_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dist, "_have_dask", lambda: False)
    monkeypatch.setattr(dist, "IN_PROCESS_SECONDS", 0.0)  # would otherwise move to a cluster
    assert run_tasks(where, range(20), progress=False) == [(t, IN_PROCESS) for t in range(20)]
    with pytest.raises(
        ConfigError, match=r"needs dask.distributed: pip install 'velox\[research\]'"
    ):
        run_tasks(where, range(3), scheduler="local", progress=False)
