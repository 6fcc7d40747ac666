"""Pipeline runs in the store: one row per notebook execution (:mod:`velox.pipelines`).

A *pipeline* is a named notebook run by papermill, by hand (``velox pipeline run``, trigger
``manual``) or by the scheduler (trigger ``schedule``). :meth:`PipelinesMixin.start_pipeline_run`
records it ``running``; :meth:`~PipelinesMixin.finish_pipeline_run` sets ``succeeded`` or
``failed`` with the duration, the output paths and the error of the failing cell. A scheduled
run carries its *slot* (the scheduled IST time it is for) and ``(pipeline, slot)`` is unique:
starting a slot that has a row returns None instead of a second run, which is what makes "a
missed run runs once, never twice" exact across scheduler restarts and racing schedulers.

:meth:`~PipelinesMixin.hold_pipeline` keeps two runs of one pipeline from overlapping, across
processes: a PostgreSQL session-level advisory lock on a connection of its own, released when
the run ends or its process dies.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from psycopg import sql

from velox.errors import DataError, ValidationError, VeloxError
from velox.store._values import (
    StoreLike,
    aware,
    choice,
    filtered_select,
    identifiers,
    ist_column,
    jsonb_text,
    mapping,
    optional_text,
    recent_hint,
    text,
    to_ist,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

PIPELINE_STATUSES = ("running", "succeeded", "failed", "skipped")
PIPELINE_TRIGGERS = ("manual", "schedule")
#: First key of the advisory locks that hold pipelines (:meth:`PipelinesMixin.hold_pipeline`).
PIPELINE_LOCK_CLASS = 0x76706970  # "vpip"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

#: Columns of the pipeline-runs frame, in table order.
PIPELINE_RUN_COLUMNS = (
    "id", "pipeline", "notebook", "parameters", "status", "trigger", "slot", "triggered_by",
    "started_at", "finished_at", "duration", "output_dir", "output_path", "html_path", "error",
)  # fmt: skip
_TIMES = ("slot", "started_at", "finished_at")


class PipelineBusy(VeloxError):
    """Another run of the same pipeline is in progress (``holder`` says where, if known)."""

    def __init__(self, pipeline: str, holder: str = "") -> None:
        where = f" ({holder})" if holder else ""
        super().__init__(
            f"pipeline {pipeline!r} is already running{where}; wait for it to finish, or give "
            "this run another name (--name)"
        )
        self.pipeline = pipeline
        self.holder = holder


def check_pipeline_name(name: object) -> str:
    """Return ``name`` if it is a pipeline name: 1-64 letters, digits, ``_ . -``, not leading."""
    if not (isinstance(name, str) and _NAME.fullmatch(name)):
        raise ValidationError(
            f"pipeline name {name!r} must be 1-64 ASCII letters, digits, '_', '.' or '-' "
            "starting with a letter or digit (it names the output folder), e.g. morning-scan"
        )
    return name


class PipelinesMixin(StoreLike):
    """Pipeline runs: :meth:`start_pipeline_run`, :meth:`finish_pipeline_run`, the readers."""

    # -- writing -----------------------------------------------------------------------------

    def start_pipeline_run(
        self,
        *,
        pipeline: str,
        notebook: str,
        parameters: Mapping[str, object] | None = None,
        trigger: str = "manual",
        slot: datetime | None = None,
        triggered_by: str = "",
        output_dir: str | None = None,
        started_at: datetime | None = None,
    ) -> int | None:
        """Record a pipeline run as ``running`` and return its id.

        A scheduled run (``trigger="schedule"``) must give its ``slot``; when that
        ``(pipeline, slot)`` already has a row (it ran, is running, or was skipped) nothing is
        written and None is returned: the caller must not run it. A manual run has no slot.
        NOTIFY ``velox_pipelines`` with the id.

        Raises
        ------
        ValidationError
            Unknown trigger, a slot missing (schedule) or given (manual), a naive time, a bad
            pipeline name or parameters that are not JSON.
        """
        values = self._run_values(
            pipeline, notebook, parameters, trigger, slot, triggered_by, output_dir
        )
        values["started_at"] = None if started_at is None else aware("started_at", started_at)
        with self._atomic() as conn:
            row = conn.execute(
                "INSERT INTO pipeline_runs (pipeline, notebook, parameters, trigger, slot,"
                " triggered_by, output_dir, started_at) VALUES (%(pipeline)s, %(notebook)s,"
                " %(parameters)s::jsonb, %(trigger)s, %(slot)s, %(triggered_by)s,"
                " %(output_dir)s, coalesce(%(started_at)s, now()))"
                " ON CONFLICT (pipeline, slot) DO NOTHING RETURNING id",
                values,
            ).fetchone()
            if row is None:
                log.info("pipeline %s: slot %s has a run already; not started", pipeline, slot)
                return None
            conn.execute("SELECT pg_notify('velox_pipelines', %s)", (str(row[0]),))
        return int(row[0])

    def skip_pipeline_run(
        self,
        *,
        pipeline: str,
        notebook: str,
        slot: datetime,
        reason: str,
        parameters: Mapping[str, object] | None = None,
        triggered_by: str = "",
    ) -> int | None:
        """Record a scheduled slot as ``skipped`` (with ``reason``) so it is never run later.

        Returns the row id, or None when the slot already has a row.
        """
        values = self._run_values(
            pipeline, notebook, parameters, "schedule", slot, triggered_by, None
        )
        values["error"] = jsonb_text("error", {"reason": text("reason", reason)})
        with self._atomic() as conn:
            row = conn.execute(
                "INSERT INTO pipeline_runs (pipeline, notebook, parameters, status, trigger,"
                " slot, triggered_by, finished_at, duration, error) VALUES (%(pipeline)s,"
                " %(notebook)s, %(parameters)s::jsonb, 'skipped', %(trigger)s, %(slot)s,"
                " %(triggered_by)s, now(), 0, %(error)s::jsonb)"
                " ON CONFLICT (pipeline, slot) DO NOTHING RETURNING id",
                values,
            ).fetchone()
            if row is None:
                return None
            conn.execute("SELECT pg_notify('velox_pipelines', %s)", (str(row[0]),))
        log.warning("pipeline %s: slot %s skipped: %s", pipeline, slot, reason)
        return int(row[0])

    def finish_pipeline_run(
        self,
        run_id: int,
        *,
        status: str,
        duration: float,
        output_path: str | None = None,
        html_path: str | None = None,
        error: Mapping[str, object] | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        """Mark a running pipeline run ``succeeded`` or ``failed`` (NOTIFY ``velox_pipelines``).

        Raises
        ------
        DataError
            Unknown id, or a run that is not ``running`` any more.
        """
        status = choice("status", status, ("succeeded", "failed"))
        error_json = None if error is None else jsonb_text("error", mapping("error", error))
        ended = None if finished_at is None else aware("finished_at", finished_at)
        with self._atomic() as conn:
            row = conn.execute(
                "UPDATE pipeline_runs SET status = %s, duration = %s, output_path = %s,"
                " html_path = %s, error = %s::jsonb, finished_at = coalesce(%s, now())"
                " WHERE id = %s AND status = 'running' RETURNING id",
                (
                    status,
                    float(duration),
                    optional_text("output_path", output_path),
                    optional_text("html_path", html_path),
                    error_json,
                    ended,
                    run_id,
                ),
            ).fetchone()
            if row is None:
                raise _not_running(conn, run_id)
            conn.execute("SELECT pg_notify('velox_pipelines', %s)", (str(run_id),))

    def abandon_pipeline_runs(self, pipeline: str) -> list[int]:
        """Mark the pipeline's ``running`` rows ``failed`` (their process ended); return ids.

        Only call it while holding the pipeline (:meth:`hold_pipeline`): no live process is
        then running it, so a ``running`` row is left over from a crash or a ``kill -9``.
        """
        check_pipeline_name(pipeline)
        error = jsonb_text(
            "error",
            {"ename": "Abandoned", "evalue": "the process running it ended before it finished"},
        )
        with self._atomic() as conn:
            ids = [
                int(r[0])
                for r in conn.execute(
                    "UPDATE pipeline_runs SET status = 'failed', finished_at = now(),"
                    " error = %s::jsonb WHERE pipeline = %s AND status = 'running'"
                    " RETURNING id",
                    (error, pipeline),
                )
            ]
        if ids:
            log.warning("pipeline %s: runs %s were left running by a dead process", pipeline, ids)
        return ids

    @contextmanager
    def hold_pipeline(self, pipeline: str) -> Iterator[None]:
        """Hold ``pipeline`` for this block: at most one run of a pipeline at a time.

        A PostgreSQL session-level advisory lock on a connection of its own (like
        :meth:`~velox.store.runs.RunsMixin.hold_run`), so it holds across threads and
        processes and is released when the block ends or the process dies.

        Raises
        ------
        PipelineBusy
            Another run of ``pipeline`` holds it (the message names its pid and host).
        """
        check_pipeline_name(pipeline)
        conn = self.connect(autocommit=True)
        try:
            conn.execute(
                "SELECT set_config('application_name', %s, false)",
                (f"velox pipeline {pipeline} pid {os.getpid()}"[:63],),
            )
            held = conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (PIPELINE_LOCK_CLASS, pipeline)
            ).fetchone()[0]
            if not held:
                holder = conn.execute(
                    "SELECT a.application_name, a.client_addr FROM pg_locks l"
                    " JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory'"
                    " AND l.granted AND l.classid = %s AND l.objid = hashtext(%s)::oid"
                    " AND l.objsubid = 2",
                    (PIPELINE_LOCK_CLASS, pipeline),
                ).fetchone()
                who = holder[0].rsplit(" pid ", 1) if holder else []
                raise PipelineBusy(pipeline, f"pid {who[1]}" if len(who) == 2 else "")
            yield
        finally:
            conn.close()

    # -- reading -----------------------------------------------------------------------------

    def pipeline_runs(
        self,
        *,
        pipeline: str | None = None,
        status: str | None = None,
        trigger: str | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Return pipeline runs, newest first (columns :data:`PIPELINE_RUN_COLUMNS`, IST times).

        Filters are exact matches; None means any. ``parameters`` and ``error`` are the stored
        JSON as dicts (``error`` None for a run without one).

        Examples
        --------
        >>> store.pipeline_runs(pipeline="morning-scan", limit=5)  # doctest: +SKIP
        """
        import pandas as pd

        query, values = filtered_select(
            "pipeline_runs",
            PIPELINE_RUN_COLUMNS,
            (
                ("pipeline", pipeline, None),
                ("status", status, PIPELINE_STATUSES),
                ("trigger", trigger, PIPELINE_TRIGGERS),
            ),
            "started_at DESC, id DESC",
            limit,
        )
        with self._shared() as conn:
            rows = conn.execute(query, values).fetchall()
        frame = pd.DataFrame(rows, columns=list(PIPELINE_RUN_COLUMNS))
        frame["id"] = frame["id"].astype("int64")
        frame["duration"] = frame["duration"].astype("float64")
        for col in _TIMES:
            ist_column(frame, col)
        return frame

    def pipeline_run(self, run_id: int) -> dict[str, object]:
        """Return one pipeline run as a dict (keys :data:`PIPELINE_RUN_COLUMNS`, IST times).

        Raises
        ------
        DataError
            Unknown id (the message lists a few recent ones).
        """
        query = sql.SQL("SELECT {} FROM pipeline_runs WHERE id = %s").format(
            identifiers(PIPELINE_RUN_COLUMNS)
        )
        with self._shared() as conn:
            row = conn.execute(query, (run_id,)).fetchone()
            if row is None:
                raise _unknown(conn, run_id)
        record = dict(zip(PIPELINE_RUN_COLUMNS, row, strict=True))
        for col in _TIMES:
            record[col] = to_ist(record[col])  # type: ignore[arg-type]
        return record

    def last_pipeline_slots(self, pipelines: Iterable[str]) -> dict[str, datetime]:
        """Return ``{pipeline: latest slot with a row}`` (IST) for those that have one.

        What the scheduler's "which slots are due" logic needs from the store: a slot at or
        before a pipeline's latest recorded slot is done (ran, running, failed or skipped).
        """
        names = [check_pipeline_name(name) for name in pipelines]
        with self._shared() as conn:
            rows = conn.execute(
                "SELECT pipeline, max(slot) FROM pipeline_runs"
                " WHERE pipeline = ANY(%s) AND slot IS NOT NULL GROUP BY pipeline",
                (names,),
            ).fetchall()
        return {name: to_ist(slot) for name, slot in rows}  # type: ignore[misc]

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _run_values(
        pipeline: str,
        notebook: str,
        parameters: Mapping[str, object] | None,
        trigger: str,
        slot: datetime | None,
        triggered_by: str,
        output_dir: str | None,
    ) -> dict[str, object]:
        trigger = choice("trigger", trigger, PIPELINE_TRIGGERS)
        if trigger == "schedule" and slot is None:
            raise ValidationError("a scheduled pipeline run needs its slot (the scheduled time)")
        if trigger == "manual" and slot is not None:
            raise ValidationError("a manual pipeline run has no slot; pass slot=None")
        return {
            "pipeline": check_pipeline_name(pipeline),
            "notebook": text("notebook", notebook),
            "parameters": jsonb_text("parameters", mapping("parameters", parameters)),
            "trigger": trigger,
            "slot": None if slot is None else aware("slot", slot),
            "triggered_by": text("triggered_by", triggered_by, empty=True),
            "output_dir": optional_text("output_dir", output_dir),
        }


def _unknown(conn: object, run_id: object) -> DataError:
    recent = [
        str(row[0])
        for row in conn.execute(  # type: ignore[attr-defined]
            "SELECT id FROM pipeline_runs ORDER BY started_at DESC, id DESC LIMIT 5"
        )
    ]
    return DataError(
        f"unknown pipeline run {run_id!r}{recent_hint(recent, 'pipeline runs')}; list them "
        "with `velox pipeline list`"
    )


def _not_running(conn: object, run_id: object) -> DataError:
    row = conn.execute(  # type: ignore[attr-defined]
        "SELECT status FROM pipeline_runs WHERE id = %s", (run_id,)
    ).fetchone()
    if row is None:
        return _unknown(conn, run_id)
    return DataError(f"pipeline run {run_id} is {row[0]}, not running; it cannot finish again")


__all__ = [
    "PIPELINE_LOCK_CLASS",
    "PIPELINE_RUN_COLUMNS",
    "PIPELINE_STATUSES",
    "PIPELINE_TRIGGERS",
    "PipelineBusy",
    "PipelinesMixin",
    "check_pipeline_name",
]
