"""Running one notebook as a pipeline: papermill, the run folder, the store row (private).

Public names are re-exported by :mod:`velox.pipelines`; see its docstring for the conventions.
"""

from __future__ import annotations

import difflib
import getpass
import logging
import os
import re
import socket
import time as _time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from velox.calendar import IST
from velox.errors import VeloxError
from velox.store.pipelines import check_pipeline_name

if TYPE_CHECKING:
    import pandas as pd

    from velox.store import Store

log = logging.getLogger(__name__)

#: The kernel every pipeline runs on: ipykernel's ``python3``, i.e. this interpreter.
KERNEL_NAME = "python3"
#: Placeholders replaced in string parameter values when a scheduled run starts.
PLACEHOLDERS = ("{date}", "{slot}")


class PipelineError(VeloxError):
    """A pipeline was refused before it ran: no such notebook, bad parameters, bad schedule."""


class PipelineFailed(VeloxError):
    """A notebook raised while it ran; ``run`` is the recorded :class:`PipelineRun`.

    The message names the failing cell and its error; the executed notebook (up to the failure)
    and its HTML export are kept at ``run.output_path`` and ``run.html_path``.
    """

    def __init__(self, run: PipelineRun) -> None:
        super().__init__(run.describe_error())
        self.run = run


# ---- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CellError:
    """Where and how a notebook failed: the cell (0-based index in the source notebook, as
    opened in JupyterLab; None if not in a cell), its ``In [n]`` count, the exception name and
    value, and the cell's source."""

    ename: str
    evalue: str
    cell_index: int | None = None
    execution_count: int | None = None
    source: str = ""

    def to_dict(self) -> dict[str, object]:
        """Return the error as stored in ``pipeline_runs.error`` (JSON)."""
        return {
            "cell_index": self.cell_index,
            "execution_count": self.execution_count,
            "ename": self.ename,
            "evalue": self.evalue,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellError:
        return cls(
            ename=str(data.get("ename", "")),
            evalue=str(data.get("evalue", "")),
            cell_index=data.get("cell_index"),
            execution_count=data.get("execution_count"),
            source=str(data.get("source", "")),
        )


@dataclass(frozen=True, slots=True)
class PipelineRun:
    """One recorded pipeline run (a row of ``pipeline_runs``; times in IST)."""

    id: int
    pipeline: str
    notebook: str
    parameters: Mapping[str, object]
    status: str
    trigger: str
    slot: datetime | None
    started_at: datetime
    finished_at: datetime | None
    duration: float | None
    output_dir: str | None
    output_path: str | None
    html_path: str | None
    error: CellError | None
    skip_reason: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PipelineRun:
        error = record.get("error") or None
        reason = error.get("reason") if error and "reason" in error else None
        return cls(
            id=int(record["id"]),
            pipeline=record["pipeline"],
            notebook=record["notebook"],
            parameters=dict(record["parameters"] or {}),
            status=record["status"],
            trigger=record["trigger"],
            slot=record["slot"],
            started_at=record["started_at"],
            finished_at=record["finished_at"],
            duration=record["duration"],
            output_dir=record["output_dir"],
            output_path=record["output_path"],
            html_path=record["html_path"],
            error=None if error is None or reason is not None else CellError.from_dict(error),
            skip_reason=reason,
        )

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def describe_error(self) -> str:
        """Return one line naming the failing cell and its error (empty if none)."""
        if self.error is None:
            return self.skip_reason or ""
        where = ""
        if self.error.cell_index is not None:
            count = self.error.execution_count
            where = f" in cell {self.error.cell_index}" + (f" (In [{count}])" if count else "")
        value = " ".join(self.error.evalue.split())
        return f"pipeline {self.pipeline!r} failed{where}: {self.error.ename}: {value}".rstrip()


# ---- parameters ------------------------------------------------------------------------------


def parse_parameter(value: str) -> object:
    """Return a ``-p KEY VALUE`` value as papermill reads it.

    ``True``, ``False`` and ``None`` are those constants, a number is an int or a float, and
    anything else stays text (quote nothing: the shell already did).

    Examples
    --------
    >>> [parse_parameter(v) for v in ("5", "0.25", "True", "None", "nifty50", "2024-11-01")]
    [5, 0.25, True, None, 'nifty50', '2024-11-01']
    """
    if value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[value]
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def declared_parameters(notebook: str | Path) -> dict[str, str] | None:
    """Return ``{name: default source}`` of the notebook's ``parameters`` cell, or None if it
    has no cell tagged ``parameters`` (papermill's own inspection of the cell)."""
    from papermill.inspection import _infer_parameters
    from papermill.iorw import load_notebook_node

    path = Path(notebook)
    _read_notebook(path)  # a clear error for a missing or broken file
    nb = load_notebook_node(str(path))  # papermill's own reading (cells get their tags list)
    if not any("parameters" in cell.metadata.tags for cell in nb.cells):
        return None
    found = _infer_parameters(nb, name=KERNEL_NAME, language="python")
    return {p.name: p.default for p in found}


def _check_parameters(
    path: Path, parameters: Mapping[str, object], *, strict: bool
) -> dict[str, object]:
    from velox.store._values import jsonb_text

    values = dict(parameters)
    for key in values:
        if not isinstance(key, str) or not key.isidentifier():
            raise PipelineError(f"parameter name {key!r} is not a Python identifier")
    jsonb_text("parameters", values)  # refused here, before anything runs, if not JSON
    if not values:
        return values
    declared = declared_parameters(path)
    if declared is None:
        if strict:
            raise PipelineError(
                f"{path} has no cell tagged 'parameters', so it takes no parameters (got "
                f"{', '.join(sorted(values))}); tag the cell that sets the defaults "
                "(JupyterLab: property inspector → Cell Tags → parameters)"
            )
        log.warning("%s has no parameters cell; papermill injects the parameters first", path)
        return values
    unknown = [key for key in values if key not in declared]
    for key in unknown:
        close = difflib.get_close_matches(key, declared, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(declared) or "none"
        if strict:
            raise PipelineError(
                f"{path.name} has no parameter {key!r}{hint} (its parameters cell declares: "
                f"{known}); pass --allow-unknown to inject it anyway"
            )
        log.warning("Passed unknown parameter: %s%s", key, hint)  # papermill's own words
    return values


def _expand(parameters: Mapping[str, object], slot: datetime) -> dict[str, object]:
    """Return ``parameters`` with ``{date}``/``{slot}`` in string values filled from ``slot``."""
    out: dict[str, object] = {}
    for key, value in parameters.items():
        if isinstance(value, str):
            value = value.replace("{date}", slot.date().isoformat()).replace(
                "{slot}", slot.isoformat(timespec="minutes")
            )
        out[key] = value
    return out


# ---- running ---------------------------------------------------------------------------------


def _read_notebook(path: Path):  # noqa: ANN202  (nbformat.NotebookNode)
    import nbformat

    if not path.exists():
        raise PipelineError(f"notebook {path} does not exist")
    if not path.is_file():
        raise PipelineError(f"notebook {path} is not a file")
    if path.suffix != ".ipynb":
        raise PipelineError(f"{path} is not a notebook (.ipynb)")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises JSON, validation and reader errors alike
        first = " ".join(str(exc).split())[:200]
        raise PipelineError(f"{path} is not a readable notebook: {first}") from None


def _name_of(path: Path, name: str | None) -> str:
    if name is not None:
        return check_pipeline_name(name)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-._")[:64] or "notebook"
    return check_pipeline_name(stem)


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container without a passwd entry
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _output_dir(root: Path, name: str, started: datetime) -> Path:
    day = root / started.strftime("%Y-%m-%d")
    base = f"{name}-{started.strftime('%H%M%S')}"
    for n in range(1, 1000):
        candidate = day / (base if n == 1 else f"{base}-{n}")
        if not candidate.exists():
            return candidate
    raise PipelineError(f"no free run folder for {base} in {day}")  # pragma: no cover


def _kernel_env() -> dict[str, str]:
    """Return the variables that make the kernel read this process's settings and store."""
    from velox.config import config_file, get_settings

    env = {"VELOX_DATA_DIR": str(get_settings().data_dir.resolve())}
    config = config_file()
    if config is not None:
        env["VELOX_CONFIG"] = str(config.resolve())
    return env


def _kernel_manager(cwd: Path, log_path: Path):  # noqa: ANN202  (AsyncKernelManager)
    """Return a kernel manager starting ``python3`` in ``cwd`` with :func:`_kernel_env`.

    Passed to papermill as ``km=``: papermill's own ``cwd=`` changes the working directory of
    the whole process, which threads of the scheduler must not do. The kernel's own stdout and
    stderr (start-up warnings, a crash) go to ``kernel.log`` beside the executed notebook.
    """
    from jupyter_client.manager import AsyncKernelManager

    extra = _kernel_env()

    class _VeloxKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            env = {**os.environ, **(kw.pop("env", None) or {}), **extra}
            with open(log_path, "ab") as sink:  # the child keeps its own copy of the handle
                await super().start_kernel(env=env, cwd=str(cwd), stdout=sink, stderr=sink, **kw)

    return _VeloxKernelManager(kernel_name=KERNEL_NAME)


def _shutdown_kernel(km: Any) -> None:
    """Stop the kernel of a finished run and remove its connection file.

    nbclient shuts down only kernels whose manager it created itself; with ``km=`` given (see
    :func:`_kernel_manager`) the kernel would outlive the run, and a scheduler running for
    weeks would keep one idle kernel (300–500 MB) per pipeline run.
    """
    from jupyter_core.utils import run_sync

    try:
        if run_sync(km.is_alive)():
            run_sync(km.shutdown_kernel)(now=True)
        else:
            km.cleanup_resources()
    except Exception as exc:  # the run's outcome stands; say what could not be stopped
        log.warning("pipeline kernel %s not shut down: %s", getattr(km, "kernel_id", "?"), exc)


def _cell_error(exc: BaseException, executed_path: Path) -> CellError:
    """Return the :class:`CellError` of papermill's exception, indexed in the source notebook.

    A cell that raised is papermill's :class:`PapermillExecutionError`. A cell that ran past the
    timeout, or whose kernel died, raises from nbclient instead, naming no cell: it is the last
    cell papermill started (``metadata.papermill.start_time``) in the executed notebook.
    """
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    try:
        import nbformat

        cells = nbformat.read(executed_path, as_version=4).cells
    except Exception:  # the kernel never started: no notebook was written
        cells = []
    # papermill's error markers were inserted after it took the index: leave them out
    cells = [c for c in cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]

    def source_index(index: int) -> int:
        # the injected-parameters cell is papermill's, not the author's: do not count it
        return index - sum(
            "injected-parameters" in c.metadata.get("tags", []) for c in cells[:index]
        )

    if isinstance(exc, PapermillExecutionError):
        return CellError(
            ename=exc.ename,
            evalue=exc.evalue,
            cell_index=source_index(exc.cell_index),
            execution_count=exc.exec_count,
            source=exc.source,
        )
    evalue = " ".join(str(exc).split())
    if isinstance(exc, CellTimeoutError | DeadKernelError):
        evalue = evalue.split(" The message was")[0]  # nbclient repeats the cell's source
        started = [
            i
            for i, c in enumerate(cells)
            if c.cell_type == "code" and c.metadata.get("papermill", {}).get("start_time")
        ]
        if started:
            cell = cells[started[-1]]
            return CellError(
                ename=type(exc).__name__,
                evalue=evalue,
                cell_index=source_index(started[-1]),
                execution_count=cell.get("execution_count"),
                source=cell.source,
            )
    return CellError(ename=type(exc).__name__, evalue=evalue[:2000])


def _export_html(executed: Path, html: Path, *, no_input: bool) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = no_input
    exporter.exclude_input_prompt = no_input
    exporter.exclude_output_prompt = no_input
    with warnings.catch_warnings():
        # an output with no mimetype nbconvert can show (bokeh's comm placeholders) warns per
        # output; the HTML simply leaves it out, as JupyterLab's static view does
        warnings.filterwarnings("ignore", "Your element with mimetype", UserWarning)
        body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    html.write_text(body, encoding="utf-8")


def run(
    notebook: str | Path,
    parameters: Mapping[str, object] | None = None,
    *,
    name: str | None = None,
    no_input: bool = False,
    strict: bool = True,
    timeout: float | None = None,
    progress: bool = False,
    store: Store | None = None,
) -> PipelineRun:
    """Execute ``notebook`` with papermill, keep its output and record the run; return it.

    The executed notebook and its HTML export are written to
    ``<data_dir>/runs/<IST date>/<name>-<HHMMSS>/<name>.ipynb`` and ``.html`` (``name`` defaults
    to the notebook's file name without ``.ipynb``). The store gets a ``pipeline_runs`` row,
    ``running`` while it executes, then ``succeeded`` or ``failed``.

    Parameters
    ----------
    notebook
        Path of the ``.ipynb`` to run (relative to the working directory).
    parameters
        Values injected after the notebook's ``parameters`` cell (JSON-able values).
    name
        Pipeline name (folder and store key; 1-64 letters, digits, ``_ . -``).
    no_input
        Leave the code out of the HTML export (a report); the ``.ipynb`` keeps it.
    strict
        Refuse parameters the ``parameters`` cell does not declare (default); False injects them
        with papermill's warning.
    timeout
        Seconds one cell may run before the run fails (None: no limit).
    progress
        Show papermill's progress bar (stderr).
    store
        Where to record the run (default :func:`velox.store.open_store`).

    Raises
    ------
    PipelineError
        The notebook does not exist or is not one, or a parameter is undeclared or not JSON;
        nothing ran and nothing was recorded.
    PipelineBusy
        Another run of the same pipeline name is in progress.
    PipelineFailed
        A cell raised (or timed out): the run is recorded ``failed``, the executed notebook and
        its HTML are kept, ``exc.run`` holds the row.

    Examples
    --------
    >>> from velox import pipelines                                      # doctest: +SKIP
    >>> r = pipelines.run("notebooks/06_daily_report.ipynb",
    ...                   {"date": "2024-11-01"}, no_input=True)         # doctest: +SKIP
    >>> r.status, r.html_path                                            # doctest: +SKIP
    ('succeeded', '…/data/runs/2024-11-01/06_daily_report-160002/06_daily_report.html')
    """
    path = Path(notebook).expanduser().absolute()
    result = _run(
        path,
        dict(parameters or {}),
        name=_name_of(path, name),
        no_input=no_input,
        strict=strict,
        timeout=timeout,
        progress=progress,
        store=store,
        trigger="manual",
        slot=None,
    )
    assert result is not None  # a manual run always starts
    if not result.succeeded:
        raise PipelineFailed(result)
    return result


def _run(
    path: Path,
    parameters: dict[str, object],
    *,
    name: str,
    no_input: bool,
    strict: bool,
    timeout: float | None,
    progress: bool,
    store: Store | None,
    trigger: str,
    slot: datetime | None,
) -> PipelineRun | None:
    """Run one pipeline (manual or one scheduled slot); None if the slot has a row already."""
    import papermill

    from velox.config import get_settings

    _read_notebook(path)
    parameters = _check_parameters(path, parameters, strict=strict)
    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
        raise PipelineError(f"timeout={timeout!r} must be seconds > 0 (or None for no limit)")
    if store is None:
        from velox.store import open_store

        store = open_store()
    root = get_settings().data_dir / "runs"
    with store.hold_pipeline(name):
        store.abandon_pipeline_runs(name)
        started = datetime.now(IST)
        folder = _output_dir(root, name, started)
        run_id = store.start_pipeline_run(
            pipeline=name,
            notebook=str(path),
            parameters=parameters,
            trigger=trigger,
            slot=slot,
            triggered_by=_who(),
            output_dir=str(folder),
            started_at=started,
        )
        if run_id is None:
            return None
        folder.mkdir(parents=True)
        executed, html = folder / f"{name}.ipynb", folder / f"{name}.html"
        log.info("pipeline %s (run %d): executing %s into %s", name, run_id, path, folder)
        error: CellError | None = None
        clock = _time.perf_counter()
        km = _kernel_manager(path.parent, folder / "kernel.log")
        try:
            papermill.execute_notebook(
                str(path),
                str(executed),
                parameters=parameters,
                kernel_name=KERNEL_NAME,
                language="python",
                progress_bar=progress,
                execution_timeout=timeout,
                km=km,
            )
        except KeyboardInterrupt:
            kept = executed if executed.exists() else None
            _finish(store, run_id, CellError("KeyboardInterrupt", "interrupted"), clock, kept, None)
            raise
        except Exception as exc:  # a cell raised, timed out, or the kernel died
            error = _cell_error(exc, executed)
        finally:
            _shutdown_kernel(km)
        duration = _time.perf_counter() - clock
        html_path: Path | None = None
        if executed.exists():
            try:
                _export_html(executed, html, no_input=no_input)
                html_path = html
            except Exception as exc:  # the run's report is its point: no HTML is a failure
                log.warning("pipeline %s: HTML export failed: %s", name, exc)
                error = error or CellError(ename=type(exc).__name__, evalue=f"HTML export: {exc}")
        _finish(
            store,
            run_id,
            error,
            clock,
            executed if executed.exists() else None,
            html_path,
            duration=duration,
        )
    record = PipelineRun.from_record(store.pipeline_run(run_id))
    if error is not None:
        # a manual run's caller gets PipelineFailed (the CLI prints it): log it quietly then
        level = logging.ERROR if trigger == "schedule" else logging.INFO
        log.log(level, "%s; kept %s", record.describe_error(), record.output_path or folder)
        if trigger == "schedule":
            store.raise_alert(
                kind="pipeline_failed",
                severity="warning",
                message=record.describe_error(),
                dedup_key=f"pipeline:{name}",
                payload={"pipeline_run": run_id, "html": record.html_path},
            )
    else:
        log.info("pipeline %s (run %d) succeeded in %.1f s", name, run_id, duration)
    return record


def _finish(
    store: Store,
    run_id: int,
    error: CellError | None,
    clock: float,
    executed: Path | None,
    html: Path | None,
    *,
    duration: float | None = None,
) -> None:
    store.finish_pipeline_run(
        run_id,
        status="failed" if error is not None else "succeeded",
        duration=_time.perf_counter() - clock if duration is None else duration,
        output_path=None if executed is None else str(executed),
        html_path=None if html is None else str(html),
        error=None if error is None else error.to_dict(),
    )


def history(
    *,
    limit: int | None = None,
    pipeline: str | None = None,
    status: str | None = None,
    store: Store | None = None,
) -> pd.DataFrame:
    """Return recorded pipeline runs, newest first (``velox pipeline list``).

    Examples
    --------
    >>> from velox import pipelines                                      # doctest: +SKIP
    >>> pipelines.history(limit=10)[["id", "pipeline", "status"]]        # doctest: +SKIP
    """
    if store is None:
        from velox.store import open_store

        store = open_store(create=False)
    return store.pipeline_runs(pipeline=pipeline, status=status, limit=limit)
