"""Run many independent research tasks (sweep combinations, walk-forward folds, universe
members) in parallel on Dask, or in this process when that is faster.

:func:`run_tasks` maps one picklable function over a list of tasks and returns the results in
task order, wherever they ran:

1. ``scheduler=`` when given: a scheduler address (``tcp://host:port``, ``tls://host:port``),
   a :class:`distributed.Client` to reuse, ``"local"`` (start a LocalCluster) or
   ``"in-process"``;
2. else the ``dask_scheduler`` setting (``VELOX_DASK_SCHEDULER`` or ``velox.toml``): an
   existing cluster, which is never shut down by Velox;
3. else the job starts **in-process** and stays there while it is small: after each task
   (from the second on) the time the rest would take here is projected from the fastest task
   so far, and while that stays under :data:`IN_PROCESS_SECONDS` the job goes on in-process. A
   LocalCluster takes seconds to pay back: it starts worker processes, and each worker pays
   the warm-up again (imports of numpy, pandas and velox, numba compilation), so a sweep of
   cheap replays is faster here. The first task's time includes this process's warm-up, so it
   never decides alone. With fewer than two cores the whole job runs here;
4. otherwise the remaining tasks go to a **LocalCluster** of processes on this machine (one
   worker per core, one thread each: research code is numpy/numba and holds the GIL often),
   listening on 127.0.0.1 only, without a dashboard, shut down when the job ends.

The function and its results travel by pickle (cloudpickle): a function defined in a module
the workers can import travels by name, one defined in a notebook travels by value. The
function is sent to the cluster once (scattered) however many tasks there are, so a
:func:`functools.partial` holding the bars is cheap. A task that raises stops the job: the other
tasks are cancelled and :class:`velox.errors.TaskFailed` names the task, with the task's own
exception and worker traceback as its cause.

dask is imported when a job runs on a cluster, never by ``import velox``; without it installed
(it comes with the ``research`` extra) every job runs in-process unless a scheduler is asked
for, which is then a :class:`~velox.errors.ConfigError` saying what to install.
"""

from __future__ import annotations

import logging
import math
import os
import reprlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from velox.errors import ConfigError, TaskFailed, ValidationError

if TYPE_CHECKING:
    from distributed import Client
    from tqdm import tqdm

__all__ = ["run_tasks", "client", "IN_PROCESS_SECONDS", "IN_PROCESS", "LOCAL"]

logger = logging.getLogger(__name__)

#: A job without a scheduler stays in this process while the projected time of its remaining
#: tasks here is under this many seconds (see the module documentation).
IN_PROCESS_SECONDS = 10.0
#: ``scheduler=`` value that runs the tasks one after another in this process.
IN_PROCESS = "in-process"
#: ``scheduler=`` value that starts a LocalCluster whatever the job's size.
LOCAL = "local"
#: Scheduler options of a LocalCluster started here: no dashboard, HTTP on 127.0.0.1 only.
LOOPBACK_SCHEDULER = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
#: Seconds to wait for an existing scheduler to answer.
CONNECT_TIMEOUT = 10

_Task = TypeVar("_Task")
_Result = TypeVar("_Result")


def run_tasks(
    fn: Callable[[_Task], _Result],
    tasks: Iterable[_Task],
    *,
    progress: bool = True,
    scheduler: str | Client | None = None,
    local_workers: int | None = None,
    names: Sequence[str] | None = None,
) -> list[_Result]:
    """Return ``[fn(task) for task in tasks]``, computed in parallel on Dask when it pays.

    Where the tasks run is decided as the module documentation says: ``scheduler=``, else the
    ``dask_scheduler`` setting, else in-process while the rest of the job is projected to take
    under :data:`IN_PROCESS_SECONDS` here, the remaining tasks going to a LocalCluster started
    (and shut down) for this job otherwise. The results are the same either way, in task order.

    Parameters
    ----------
    fn
        A picklable function of one task (use :func:`functools.partial` for shared inputs).
    tasks
        The tasks: parameter dicts, fold boundaries, instrument ids …
    progress
        Show a tqdm progress bar (a widget in Jupyter, text in a terminal).
    scheduler
        ``"tcp://host:port"`` / ``"tls://host:port"`` (an existing scheduler), a
        :class:`distributed.Client` (reused, left open), ``"local"`` (a LocalCluster) or
        ``"in-process"``; ``None`` follows the setting, else the job's projected duration.
    local_workers
        Worker processes of a LocalCluster (default: the machine's cores).
    names
        One label per task for progress and errors (default: the task's short ``repr``).

    Raises
    ------
    velox.errors.TaskFailed
        When a task raises: names the task (index and label); its exception is ``__cause__``.
    velox.errors.ConfigError
        For a malformed or unreachable scheduler address.
    velox.errors.ValidationError
        For ``local_workers`` < 1 or ``names`` of the wrong length.

    Examples
    --------
    >>> from functools import partial
    >>> from velox.backtest.distributed import run_tasks
    >>> def replay_stats(params, bars):
    ...     import velox
    ...     return velox.replay("strategies/sma_cross.py", bars=bars, **params).stats
    >>> grid = [{"fast": f, "slow": s} for f in range(5, 30, 5) for s in range(30, 90, 10)]
    >>> stats = run_tasks(partial(replay_stats, bars=df), grid)       # doctest: +SKIP
    >>> run_tasks(abs, [-1, -2], scheduler="in-process", progress=False)
    [1, 2]
    """
    from tqdm.auto import tqdm

    items = list(tasks)
    labels = _labels(items, names)
    workers = _local_workers(local_workers)
    if not items:
        return []
    if scheduler is None:
        from velox.config import get_settings

        scheduler = get_settings().dask_scheduler
    with tqdm(total=len(items), desc=_describe(fn), unit="task", disable=not progress) as bar:
        if scheduler == IN_PROCESS or (scheduler is None and (workers < 2 or not _have_dask())):
            return _run_in_process(fn, items, labels, bar)
        results: list[_Result] = []
        if scheduler is None:  # start here; move to a LocalCluster once the job proves big
            results = _run_in_process(fn, items, labels, bar, until_big=True)
            if len(results) == len(items):
                return results
            logger.info(
                "%d tasks left, projected over %.0f s in-process: moving them to a LocalCluster",
                len(items) - len(results), IN_PROCESS_SECONDS,
            )  # fmt: skip
            scheduler = LOCAL
        with client(scheduler, local_workers=workers) as dask_client:
            return results + _run_on(dask_client, fn, items, labels, bar, start=len(results))


@contextmanager
def client(
    scheduler: str | Client | None = None, *, local_workers: int | None = None
) -> Iterator[Client]:
    """Yield a :class:`distributed.Client`: on ``scheduler``, else on the ``dask_scheduler``
    setting, else on a LocalCluster started here; close what was opened here on exit.

    A LocalCluster started here (``scheduler="local"`` or no address anywhere) has
    ``local_workers`` processes (default: the cores) of one thread each, listens on 127.0.0.1
    only, has no dashboard, and is shut down on exit. An existing cluster is only disconnected
    from; a :class:`distributed.Client` passed in is yielded as it is and left open. Reusing one
    client over several :func:`run_tasks` calls saves the cluster's start-up each time.

    Examples
    --------
    >>> from velox.backtest.distributed import client, run_tasks
    >>> with client("local", local_workers=2) as dask_client:           # doctest: +SKIP
    ...     first = run_tasks(fn, tasks, scheduler=dask_client)
    ...     second = run_tasks(fn, more_tasks, scheduler=dask_client)
    """
    if not _have_dask():
        raise ConfigError(
            "running on Dask needs dask.distributed: pip install 'velox[research]' (or "
            "'dask[distributed]'), or pass scheduler='in-process'"
        )
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler is None:
        from velox.config import get_settings

        scheduler = get_settings().dask_scheduler
    if scheduler is None or scheduler == LOCAL:
        workers = _local_workers(local_workers)
        logger.info("starting a Dask LocalCluster of %d worker processes on 127.0.0.1", workers)
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                worker_dashboard_address=None,
                # no dashboard, and the scheduler's health/metrics endpoint on a free loopback
                # port rather than 8787, which a user's own dashboard may hold
                scheduler_kwargs=LOOPBACK_SCHEDULER,
                silence_logs=logging.WARNING,
            ) as cluster,
            Client(cluster) as local,
        ):
            yield local
        return
    if not isinstance(scheduler, str):
        raise ConfigError(
            f"scheduler= must be an address such as 'tcp://10.0.0.5:8786', a distributed.Client, "
            f"{LOCAL!r} or {IN_PROCESS!r}, not {type(scheduler).__name__}"
        )
    from velox.config import _check_dask_scheduler

    address = _check_dask_scheduler(scheduler, "scheduler=")
    try:
        remote = Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"no Dask scheduler answered at {address} within {CONNECT_TIMEOUT} s ({exc}); start "
            "one (`dask scheduler`, then `dask worker ADDRESS` on each machine) or unset "
            "VELOX_DASK_SCHEDULER to use a LocalCluster"
        ) from None
    logger.info("running on the Dask scheduler at %s", address)
    with remote:
        yield remote


# ---- running ---------------------------------------------------------------------------------


def _run_in_process(
    fn: Callable[[_Task], _Result],
    items: list[_Task],
    labels: list[str],
    bar: tqdm,
    *,
    until_big: bool = False,
) -> list[_Result]:
    """Return the results of the tasks run here in order; with ``until_big``, stop early once
    the fastest task so far (from two on) × the tasks left exceeds :data:`IN_PROCESS_SECONDS`."""
    results: list[_Result] = []
    fastest = math.inf
    for index, task in enumerate(items):
        started = time.perf_counter()
        try:
            results.append(fn(task))
        except Exception as exc:
            raise TaskFailed(index, len(items), labels[index], exc) from exc
        fastest = min(fastest, time.perf_counter() - started)
        bar.update()
        left = len(items) - index - 1
        if until_big and index >= 1 and left and fastest * left > IN_PROCESS_SECONDS:
            break
    return results


def _run_on(
    dask_client: Client,
    fn: Callable[[_Task], _Result],
    items: list[_Task],
    labels: list[str],
    bar: tqdm,
    *,
    start: int = 0,
) -> list[_Result]:
    """Return the results of ``items[start:]`` computed on the cluster, in task order."""
    from distributed import as_completed

    token = uuid.uuid4().hex[:12]
    prefix = _describe(fn).replace(" ", "_")
    # the function (maybe a partial holding the bars) goes to the cluster once, not per task
    shipped = dask_client.scatter(fn, hash=False)
    keys = [f"{prefix}-{token}-{i}" for i in range(start, len(items))]
    futures = dask_client.map(_call, items[start:], fn=shipped, key=keys, pure=False)
    where = {future.key: index for index, future in enumerate(futures)}
    results: list[_Result] = [None] * len(futures)  # type: ignore[list-item]
    try:
        for future, value in as_completed(futures, with_results=True, raise_errors=False):
            index = where[future.key]
            if future.status == "error":
                error = future.exception()
                trace = future.traceback()
                if trace is not None:
                    error = error.with_traceback(trace)
                raise TaskFailed(start + index, len(items), labels[start + index], error) from (
                    error
                )
            results[index] = value
            bar.update()
    except BaseException:  # a failed task, Ctrl-C: drop the rest of the job from the cluster
        dask_client.cancel(futures)
        raise
    finally:
        dask_client.cancel([shipped])
    return results


def _call(task: _Task, fn: Callable[[_Task], _Result]) -> _Result:
    """Apply the scattered ``fn`` (resolved by Dask on the worker) to one task."""
    return fn(task)


# ---- helpers ---------------------------------------------------------------------------------

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60


def _labels(items: list[object], names: Sequence[str] | None) -> list[str]:
    if names is None:
        return [_short.repr(task) for task in items]
    labels = [str(name) for name in names]
    if len(labels) != len(items):
        raise ValidationError(
            f"run_tasks got {len(labels)} names for {len(items)} tasks; give one name per task"
        )
    return labels


def _local_workers(local_workers: int | None) -> int:
    if local_workers is None:
        return os.cpu_count() or 1
    if isinstance(local_workers, bool) or not isinstance(local_workers, int) or local_workers < 1:
        raise ValidationError(
            f"local_workers={local_workers!r} must be a whole number of worker processes ≥ 1"
        )
    return local_workers


def _have_dask() -> bool:
    """Return whether dask.distributed is installed (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("distributed") is not None


def _describe(fn: Callable[..., object]) -> str:
    inner = getattr(fn, "func", fn)  # a functools.partial names its function
    return str(getattr(inner, "__name__", type(inner).__name__))
