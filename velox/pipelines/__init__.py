"""Notebook pipelines: papermill runs kept on disk and recorded in the store, and their schedule.

A *pipeline* is a notebook executed top to bottom by papermill with parameters injected after
its cell tagged ``parameters``. :func:`run` (``velox pipeline run``) keeps the executed
``.ipynb`` and an HTML export under ``<data_dir>/runs/<IST date>/<name>-<HHMMSS>/`` and records
one row in the store's ``pipeline_runs`` table (status, parameters, duration, output paths, the
failing cell's error). :class:`PipelineScheduler` (``velox pipeline schedule``) runs the
``[[schedules.pipeline]]`` entries of ``velox.toml`` at IST times on NSE trading days with
APScheduler; every scheduled run is the same kind of row, keyed by its *slot* (the scheduled
time), so a slot runs at most once. See ``docs/pipelines.md``.

Conventions
-----------
- The kernel is ``python3`` of the running interpreter (this virtualenv), started in the
  notebook's folder (as JupyterLab does), with ``VELOX_DATA_DIR`` and ``VELOX_CONFIG`` set to
  the absolute paths this process uses, so the notebook sees the same store and settings.
- Parameters a notebook does not declare in its ``parameters`` cell are refused (a typo must not
  run the report with its default); ``strict=False`` injects them anyway with papermill's
  warning. A notebook without a ``parameters`` cell takes no parameters unless ``strict=False``.
- ``-p KEY VALUE`` values are read as papermill reads them: ``True``/``False``/``None``, an int,
  a float, else the text.
- Which slots are due is the pure function :func:`due_slots` of (schedules, now, the latest slot
  recorded per pipeline); APScheduler only decides *when* to ask.
"""

from __future__ import annotations

from velox.pipelines.execute import (
    KERNEL_NAME,
    CellError,
    PipelineError,
    PipelineFailed,
    PipelineRun,
    declared_parameters,
    history,
    parse_parameter,
    run,
)
from velox.pipelines.schedule import (
    DEFAULT_GRACE,
    SCHEDULE_DAYS,
    Due,
    PipelineScheduler,
    Schedule,
    check_schedules,
    due_slots,
    iter_schedules,
    next_slot,
    parse_schedules,
    slots_between,
    trading_day_trigger,
)
from velox.store.pipelines import PipelineBusy

__all__ = [
    "DEFAULT_GRACE",
    "KERNEL_NAME",
    "SCHEDULE_DAYS",
    "CellError",
    "Due",
    "PipelineBusy",
    "PipelineError",
    "PipelineFailed",
    "PipelineRun",
    "PipelineScheduler",
    "Schedule",
    "check_schedules",
    "declared_parameters",
    "due_slots",
    "history",
    "iter_schedules",
    "next_slot",
    "parse_parameter",
    "parse_schedules",
    "run",
    "slots_between",
    "trading_day_trigger",
]
