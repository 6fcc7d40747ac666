"""Pipelines (issue 12): papermill runs of tiny real notebooks, their rows, the CLI, the schedule.

Every run here executes a real notebook with papermill on this virtualenv's ``python3`` kernel
and records it in a real PostgreSQL (the ``store`` fixture: embedded and Debian). The scheduler
is tested on injected clocks: which slots are due is a pure function of (schedules, now, the
last recorded slots), and the store's (pipeline, slot) key makes "once" exact.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import threading
import time as _time
from datetime import datetime, time, timedelta
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from velox.calendar import IST
from velox.config import load_settings, reset_settings
from velox.errors import ConfigError
from velox.pipelines import (
    DEFAULT_GRACE,
    PipelineBusy,
    PipelineError,
    PipelineFailed,
    PipelineScheduler,
    Schedule,
    check_schedules,
    declared_parameters,
    due_slots,
    next_slot,
    parse_parameter,
    run,
    slots_between,
    trading_day_trigger,
)

ROOT = Path(__file__).resolve().parent.parent


def write_notebook(path: Path, parameters: str | None, *cells: str) -> Path:
    """Write a small notebook: a ``parameters`` cell (unless None), then code cells."""
    body = [new_markdown_cell("# test notebook")]
    if parameters is not None:
        body.append(new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    body += [new_code_cell(source) for source in cells]
    nb = new_notebook(cells=body)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with its own data_dir and no velox.toml; settings reloaded."""
    for var in [v for v in os.environ if v.startswith("VELOX_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("VELOX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    reset_settings()
    yield tmp_path
    reset_settings()


@pytest.fixture
def report(workdir: Path) -> Path:
    return write_notebook(
        workdir / "notebooks" / "report.ipynb",
        "n = 1\nlabel = 'default'",
        "import os\nprint(n * 2, label)",
        "print('cwd', os.getcwd())\nprint('data', os.environ['VELOX_DATA_DIR'])",
    )


@pytest.fixture
def failing(workdir: Path) -> Path:
    return write_notebook(
        workdir / "notebooks" / "failing.ipynb",
        "divisor = 0",
        "print('before the failure')",
        "ratio = 1 / divisor",
        "print('never reached')",
    )


def html_text(path: str | Path) -> str:
    """Return the visible text of an HTML export (code is split into highlighting spans)."""
    return html.unescape(re.sub(r"<[^>]+>", "", Path(path).read_text()))


def outputs(path: str | Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )


# -- parameters --------------------------------------------------------------------------------


def test_parameter_values_are_read_as_papermill_reads_them() -> None:
    from papermill.cli import _resolve_type

    for text in ("5", "-3", "0.25", "1e3", "True", "False", "None", "nifty50", "2024-11-01", ""):
        assert parse_parameter(text) == _resolve_type(text), text
        assert type(parse_parameter(text)) is type(_resolve_type(text)), text


def test_declared_parameters_are_the_tagged_cell(report: Path, workdir: Path) -> None:
    assert declared_parameters(report) == {"n": "1", "label": "'default'"}
    plain = write_notebook(workdir / "plain.ipynb", None, "x = 1")
    assert declared_parameters(plain) is None


# -- running -----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_run_with_parameters_keeps_ipynb_and_html_and_records_success(store, report, workdir):
    result = run(report, {"n": 21, "label": "hello"}, store=store)

    assert result.status == "succeeded" and result.trigger == "manual" and result.slot is None
    started = result.started_at.astimezone(IST)
    folder = workdir / "data" / "runs" / f"{started:%Y-%m-%d}" / f"report-{started:%H%M%S}"
    assert Path(result.output_dir) == folder
    assert Path(result.output_path) == folder / "report.ipynb"
    assert Path(result.html_path) == folder / "report.html"
    text = outputs(result.output_path)
    assert "42 hello" in text
    assert f"cwd {report.parent}" in text  # the kernel runs in the notebook's folder
    assert f"data {workdir / 'data'}" in text  # ... and sees this process's data_dir
    shown = html_text(result.html_path)
    assert "42 hello" in shown and "print(n * 2, label)" in shown  # code kept by default

    row = store.pipeline_run(result.id)
    assert row["status"] == "succeeded" and row["pipeline"] == "report"
    assert row["parameters"] == {"n": 21, "label": "hello"}
    assert row["notebook"] == str(report)
    assert row["output_path"] == result.output_path and row["html_path"] == result.html_path
    assert row["error"] is None and row["trigger"] == "manual"
    assert 0 < row["duration"] < 60
    assert row["started_at"] <= row["finished_at"]
    assert "pid" in row["triggered_by"]


@pytest.mark.postgres
def test_a_run_leaves_no_kernel_behind(store, report, failing):
    import psutil

    def kernels() -> set[int]:
        children = psutil.Process().children(recursive=True)
        return {p.pid for p in children if "ipykernel_launcher" in " ".join(p.cmdline())}

    before = kernels()
    run(report, {"n": 1}, store=store)
    with pytest.raises(PipelineFailed):
        run(failing, store=store)
    assert kernels() - before == set()  # neither the good run's kernel nor the failed one's


@pytest.mark.postgres
def test_no_input_leaves_the_code_out_of_the_html_only(store, report):
    result = run(report, {"n": 2}, name="daily-report", no_input=True, store=store)
    shown = html_text(result.html_path)
    assert "4 default" in shown and "print(n * 2, label)" not in shown
    assert "print(n * 2, label)" in Path(result.output_path).read_text()  # the notebook keeps it
    assert Path(result.output_path).name == "daily-report.ipynb"


@pytest.mark.postgres
def test_failing_notebook_is_kept_and_its_cell_and_error_recorded(store, failing):
    with pytest.raises(PipelineFailed) as caught:
        run(failing, store=store)
    failed = caught.value.run
    assert "cell 3" in str(caught.value) and "ZeroDivisionError: division by zero" in str(
        caught.value
    )
    assert failed.status == "failed"
    assert failed.error.cell_index == 3  # markdown 0, parameters 1, print 2, the division 3
    assert failed.error.ename == "ZeroDivisionError"
    assert failed.error.source == "ratio = 1 / divisor"
    assert Path(failed.output_path).exists() and Path(failed.html_path).exists()
    kept = outputs(failed.output_path)
    assert "before the failure" in kept and "never reached" not in kept

    row = store.pipeline_run(failed.id)
    assert row["status"] == "failed"
    assert row["error"]["ename"] == "ZeroDivisionError"
    assert row["error"]["cell_index"] == 3 and row["error"]["evalue"] == "division by zero"


@pytest.mark.postgres
def test_injected_parameters_do_not_shift_the_failing_cell_index(store, failing):
    with pytest.raises(PipelineFailed) as caught:
        run(failing, {"divisor": 0}, store=store)  # papermill injects a cell after cell 1
    assert caught.value.run.error.cell_index == 3
    assert caught.value.run.error.execution_count == 4  # In [4]: the injected cell ran too


@pytest.mark.postgres
def test_a_cell_past_the_timeout_fails_the_run_naming_that_cell(store, workdir):
    slow = write_notebook(
        workdir / "slow.ipynb", "seconds = 30", "print('quick')", "import time; time.sleep(seconds)"
    )
    with pytest.raises(PipelineFailed, match=r"in cell 3 \(In \[3\]\): CellTimeoutError") as caught:
        run(slow, timeout=1, store=store)
    failed = caught.value.run
    assert failed.error.source == "import time; time.sleep(seconds)"
    assert failed.duration < 15 and Path(failed.output_path).exists()
    assert store.pipeline_run(failed.id)["error"]["ename"] == "CellTimeoutError"


@pytest.mark.postgres
def test_undeclared_parameter_is_refused_before_anything_runs(store, report):
    with pytest.raises(PipelineError, match=r"no parameter 'lable'; did you mean 'label'\?"):
        run(report, {"lable": "x"}, store=store)
    assert store.pipeline_runs().empty


@pytest.mark.postgres
def test_allow_unknown_injects_with_papermills_warning(store, report, caplog):
    result = run(report, {"extra": 5}, strict=False, store=store)
    assert result.succeeded
    assert "Passed unknown parameter: extra" in caplog.text


@pytest.mark.postgres
def test_missing_or_broken_notebook_and_parameterless_notebook_are_refused(store, workdir):
    with pytest.raises(PipelineError, match="does not exist"):
        run(workdir / "nope.ipynb", store=store)
    (workdir / "broken.ipynb").write_text("{not json")
    with pytest.raises(PipelineError, match="is not a readable notebook"):
        run(workdir / "broken.ipynb", store=store)
    plain = write_notebook(workdir / "plain.ipynb", None, "x = 1")
    with pytest.raises(PipelineError, match="has no cell tagged 'parameters'"):
        run(plain, {"x": 2}, store=store)
    assert run(plain, store=store).succeeded  # no parameters: fine
    assert len(store.pipeline_runs()) == 1


@pytest.mark.postgres
def test_a_pipeline_does_not_overlap_itself(store, workdir):
    slow = write_notebook(workdir / "slow.ipynb", "seconds = 4", "import time; time.sleep(seconds)")
    first = threading.Thread(target=run, args=(slow,), kwargs={"store": store})
    first.start()
    try:
        deadline = _time.monotonic() + 30
        while store.pipeline_runs(status="running").empty and _time.monotonic() < deadline:
            _time.sleep(0.05)
        with pytest.raises(PipelineBusy, match="pipeline 'slow' is already running"):
            run(slow, store=store)
        assert run(slow, {"seconds": 0}, name="slow-2", store=store).succeeded  # another name
    finally:
        first.join()
    assert sorted(store.pipeline_runs()["status"]) == ["succeeded", "succeeded"]


@pytest.mark.postgres
def test_a_run_left_running_by_a_dead_process_is_marked_failed(store, report):
    stale = store.start_pipeline_run(pipeline="report", notebook=str(report))
    result = run(report, store=store)
    assert result.succeeded
    row = store.pipeline_run(stale)
    assert row["status"] == "failed" and row["error"]["ename"] == "Abandoned"


# -- the CLI -----------------------------------------------------------------------------------


def velox(args: list[str], cwd: Path, store, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VELOX_")}
    base.update(
        {
            "VELOX_DATA_DIR": str(cwd / "data"),
            "VELOX_DATABASE_URL": store.url,
            "PYTHONPATH": str(ROOT),
        },
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "velox.cli", *args],
        capture_output=True, text=True, env=base, cwd=cwd, timeout=180,
    )  # fmt: skip


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert out.returncode != 0, out.stderr
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    assert len(lines) == 1, out.stderr
    return lines[0]


@pytest.mark.postgres
def test_cli_run_prints_the_outputs_and_list_shows_the_history(store, report, failing, workdir):
    ok = velox(
        ["pipeline", "run", str(report), "-p", "n", "5", "-p", "label", "cli"], workdir, store
    )
    assert ok.returncode == 0, ok.stderr
    assert "pipeline 'report' succeeded" in ok.stdout and "report.html" in ok.stdout
    assert store.pipeline_runs()["parameters"][0] == {"n": 5, "label": "cli"}

    bad = velox(["pipeline", "run", str(failing)], workdir, store)
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    assert "error: pipeline 'failing' failed in cell 3" in bad.stderr
    assert "ZeroDivisionError: division by zero" in bad.stderr
    assert "ratio = 1 / divisor" in bad.stderr  # the failing cell's source
    assert "kept: " in bad.stderr and "failing.ipynb" in bad.stderr

    listed = velox(["pipeline", "list"], workdir, store)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:5] == ["id", "pipeline", "trigger", "slot", "status"]
    assert "failing" in lines[1] and "failed" in lines[1] and "ZeroDivisionError" in lines[1]
    assert "report" in lines[2] and "succeeded" in lines[2] and "report.html" in lines[2]

    as_json = json.loads(
        velox(["pipeline", "list", "--json", "--limit", "1"], workdir, store).stdout
    )
    assert len(as_json) == 1 and as_json[0]["pipeline"] == "failing"
    assert as_json[0]["error"]["ename"] == "ZeroDivisionError"
    assert datetime.fromisoformat(as_json[0]["started_at"]).utcoffset() == timedelta(hours=5.5)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-p", "lable", "x"], "no parameter 'lable'; did you mean 'label'?"),
        (["-p", "n"], "Option '-p' requires 2 arguments"),
        (["-p", "n", "1", "-p", "n", "2"], "parameter 'n' is given twice"),
        (["--name", "bad name"], "pipeline name 'bad name' must be"),
        (["--timeout", "0"], "Invalid value for '--timeout'"),
    ],
)
def test_cli_bad_parameters_are_one_line_errors(store, report, workdir, args, expected):
    out = velox(["pipeline", "run", str(report), *args], workdir, store)
    assert expected in one_line_error(out)
    assert store.pipeline_runs().empty


@pytest.mark.postgres
def test_cli_missing_notebook_is_a_one_line_error(store, workdir):
    out = velox(["pipeline", "run", "notebooks/nope.ipynb"], workdir, store)
    assert "notebooks/nope.ipynb does not exist" in one_line_error(out)


# -- the [schedules] table ---------------------------------------------------------------------

SCHEDULES_TOML = """
[schedules]
grace_minutes = 45

[[schedules.pipeline]]
name = "morning-scan"
notebook = "notebooks/scan.ipynb"
at = "09:05"
parameters = { universe = "nifty50", day = 2024-11-01 }

[[schedules.pipeline]]
name = "daily-report"
notebook = "/abs/report.ipynb"
at = ["16:00", 18:45:00]
days = "every"
grace_minutes = 120
no_input = true
timeout = 600
"""


def test_schedules_table_is_read_from_velox_toml(tmp_path: Path) -> None:
    toml = tmp_path / "conf" / "velox.toml"
    toml.parent.mkdir()
    toml.write_text(SCHEDULES_TOML)
    scan, report = load_settings(env={}, config_file=toml).schedules
    assert scan == Schedule(
        name="morning-scan",
        notebook=tmp_path / "conf" / "notebooks" / "scan.ipynb",  # relative to the file
        at=(time(9, 5),),
        parameters={"universe": "nifty50", "day": "2024-11-01"},
        grace=timedelta(minutes=45),
    )
    assert report.notebook == Path("/abs/report.ipynb")
    assert report.at == (time(16, 0), time(18, 45)) and report.days == "every"
    assert report.grace == timedelta(minutes=120) and report.no_input and report.timeout == 600
    assert load_settings(env={}).schedules == ()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[schedules]\ngrace = 5\n', "unknown key 'grace'; did you mean 'grace_minutes'?"),
        ('[[schedules.pipeline]]\nname = "a"\nnotebook = "a.ipynb"\nat = "9:05"\natt = 1\n',
         "unknown key 'att'; did you mean 'at'?"),
        ('[[schedules.pipeline]]\nname = "a"\nnotebook = "a.ipynb"\n', "at is missing"),
        ('[[schedules.pipeline]]\nname = "a"\nnotebook = "a.ipynb"\nat = "25:00"\n',
         "at='25:00' must be an IST wall-clock time HH:MM"),
        ('[[schedules.pipeline]]\nname = "a"\nnotebook = "a.ipynb"\nat = 09:05:30\n',
         "whole minutes"),
        ('[[schedules.pipeline]]\nname = "a"\nnotebook = "a.ipynb"\nat = ["09:05", "9:05"]\n',
         "at lists 09:05 twice"),
        ('[[schedules.pipeline]]\nname = "a b"\nnotebook = "a.ipynb"\nat = "09:05"\n',
         "pipeline name 'a b' must be"),
        ('[[schedules.pipeline]]\nname = "a"\nnotebook = "a.ipynb"\nat = "09:05"\n'
         '[[schedules.pipeline]]\nname = "a"\nnotebook = "b.ipynb"\nat = "10:00"\n',
         "two pipelines are named 'a'"),
        ('[[schedules.pipeline]]\nname = "a"\nnotebook = "a.ipynb"\nat = "09:05"\n'
         'days = "weekdays"\n', "days='weekdays' must be 'trading'"),
        ('[[schedules.pipeline]]\nname = "a"\nnotebook = "a.ipynb"\nat = "09:05"\n'
         'parameters = "x"\n', "parameters must be a table"),
        ('[[schedules.pipeline]]\nname = "a"\nnotebook = "a.ipynb"\nat = "09:05"\n'
         "grace_minutes = 0\n", "grace_minutes=0 must be minutes > 0"),
        ('[[schedules.pipeline]]\nname = "a"\nnotebook = "a.ipynb"\nat = "09:05"\n'
         "timeout = -1\n", "timeout=-1 must be seconds > 0"),
        ('schedules = "daily"\n', "schedules must be a [schedules] table"),
    ],
)  # fmt: skip
def test_bad_schedules_are_config_errors_naming_the_file(tmp_path, body, message) -> None:
    toml = tmp_path / "velox.toml"
    toml.write_text(body)
    with pytest.raises(ConfigError) as caught:
        load_settings(env={}, config_file=toml)
    assert message in str(caught.value) and str(toml) in str(caught.value)


def test_schedules_cannot_come_from_the_environment() -> None:
    with pytest.raises(ConfigError, match="VELOX_SCHEDULES is not a setting; put a \\[schedules"):
        load_settings(env={"VELOX_SCHEDULES": "x"})


def test_scheduler_start_checks_notebooks_and_their_parameters(workdir: Path) -> None:
    nb = write_notebook(workdir / "scan.ipynb", "universe = 'nifty50'", "pass")
    check_schedules([Schedule("scan", nb, (time(9, 5),), {"universe": "bank"})])
    with pytest.raises(PipelineError, match="schedule 'scan': .* has no parameter 'univrse'"):
        check_schedules([Schedule("scan", nb, (time(9, 5),), {"univrse": "bank"})])
    with pytest.raises(PipelineError, match="schedule 'x': notebook .*missing.ipynb does not"):
        check_schedules([Schedule("x", workdir / "missing.ipynb", (time(9, 5),))])


# -- which slots are due (pure) ----------------------------------------------------------------

SCAN = Schedule("scan", Path("scan.ipynb"), (time(9, 5),))
EVENING = Schedule("evening", Path("evening.ipynb"), (time(18, 20),))


def ist(*args: int) -> datetime:
    return datetime(*args, tzinfo=IST)


def due_at(schedules, now, last=None) -> list[tuple[str, datetime]]:
    return [(d.schedule.name, d.slot) for d in due_slots(schedules, now, last or {})]


def test_a_trading_day_slot_is_due_from_its_time_until_its_grace_ends() -> None:
    monday = ist(2024, 11, 4, 9, 5)  # the Monday after Diwali
    assert due_at([SCAN], monday - timedelta(minutes=1)) == []  # not yet
    assert due_at([SCAN], monday) == [("scan", monday)]  # on time
    assert due_at([SCAN], monday + DEFAULT_GRACE - timedelta(seconds=1)) == [("scan", monday)]
    assert due_at([SCAN], monday + DEFAULT_GRACE) == []  # missed by the whole grace: left
    assert due_at([SCAN], monday + timedelta(hours=3)) == []
    assert due_at([SCAN], monday + timedelta(minutes=10), {"scan": monday}) == []  # ran


def test_holidays_and_weekends_are_skipped() -> None:
    holi = ist(2024, 3, 25, 9, 10)  # Holi, a Monday: an NSE holiday
    saturday, sunday = ist(2024, 3, 23, 9, 10), ist(2024, 3, 24, 9, 10)
    for now in (holi, saturday, sunday):
        assert due_at([SCAN], now) == [], now
    assert due_at([SCAN], ist(2024, 3, 26, 9, 10)) == [("scan", ist(2024, 3, 26, 9, 5))]
    every = Schedule("every", Path("e.ipynb"), (time(9, 5),), days="every")
    assert due_at([every], saturday) == [("every", ist(2024, 3, 23, 9, 5))]


def test_muhurat_sessions_are_trading_days() -> None:
    # 2023-11-12 was a Sunday with the Diwali Muhurat session (18:15-19:15 IST); 2024-11-01 a
    # Friday holiday with its Muhurat session 18:00-19:00: both are trading days.
    assert due_at([EVENING], ist(2023, 11, 12, 18, 25)) == [("evening", ist(2023, 11, 12, 18, 20))]
    assert due_at([EVENING], ist(2024, 11, 1, 18, 25)) == [("evening", ist(2024, 11, 1, 18, 20))]
    assert due_at([EVENING], ist(2024, 11, 2, 18, 25)) == []  # the Saturday after: no session


def test_missed_slots_coalesce_into_the_latest_and_later_slots_are_due_again() -> None:
    often = Schedule("often", Path("o.ipynb"), (time(9, 5), time(9, 15), time(9, 25)))
    now = ist(2024, 11, 4, 9, 30)  # woke up after sleeping through three slots
    assert due_at([often], now) == [("often", ist(2024, 11, 4, 9, 25))]  # once, not thrice
    assert due_at([often], now, {"often": ist(2024, 11, 4, 9, 25)}) == []
    assert due_at([often], now, {"often": ist(2024, 11, 4, 9, 15)}) == [
        ("often", ist(2024, 11, 4, 9, 25))
    ]


def test_slots_next_slot_and_the_apscheduler_trigger_agree() -> None:
    schedule = Schedule("two", Path("t.ipynb"), (time(9, 5), time(18, 20)))
    start, end = ist(2023, 11, 1), ist(2023, 12, 1)  # Diwali 2023: the Muhurat Sunday
    slots = slots_between(schedule, start, end)
    assert ist(2023, 11, 12, 18, 20) in slots  # the Muhurat Sunday
    assert ist(2023, 11, 11, 9, 5) not in slots  # a Saturday
    assert ist(2023, 11, 14, 9, 5) not in slots  # Diwali Balipratipada: a holiday
    trigger, fired, previous = trading_day_trigger(schedule), [], None
    now = start
    while True:
        fire = trigger.get_next_fire_time(previous, now)
        if fire > end:
            break
        fired.append(fire.astimezone(IST))
        previous, now = fire, fire
    assert fired == slots
    assert next_slot(schedule, ist(2023, 11, 10, 18, 20)) == ist(2023, 11, 12, 9, 5)  # Sunday


# -- the scheduler on a frozen clock, with real runs -------------------------------------------


@pytest.fixture
def scan_schedule(workdir: Path) -> Schedule:
    nb = write_notebook(
        workdir / "notebooks" / "scan.ipynb",
        "universe = 'all'\nday = ''",
        "print('scanned', universe, day)",
    )
    return Schedule("scan", nb, (time(9, 5),), {"universe": "nifty50", "day": "{date}"})


MONDAY_0905 = ist(2024, 11, 4, 9, 5)


@pytest.mark.postgres
def test_a_missed_slot_runs_once_within_grace_also_across_a_restart(store, scan_schedule):
    scheduler = PipelineScheduler([scan_schedule], store=store)
    late = MONDAY_0905 + timedelta(minutes=12)  # the machine woke at 09:17
    (result,) = scheduler.tick(late)
    assert result.status == "succeeded" and result.trigger == "schedule"
    assert result.slot == MONDAY_0905
    assert result.parameters == {"universe": "nifty50", "day": "2024-11-04"}  # {date} filled
    assert "scanned nifty50 2024-11-04" in outputs(result.output_path)

    assert scheduler.tick(late + timedelta(minutes=1)) == []  # the next wake-up: done
    restarted = PipelineScheduler([scan_schedule], store=store)  # a new process, same store
    assert restarted.tick(late + timedelta(minutes=5)) == []
    assert restarted.due(late + timedelta(minutes=5)) == []
    assert len(store.pipeline_runs()) == 1
    # the same slot claimed again straight through the store: refused by the (pipeline, slot) key
    assert (
        store.start_pipeline_run(
            pipeline="scan", notebook="x.ipynb", trigger="schedule", slot=MONDAY_0905
        )
        is None
    )


@pytest.mark.postgres
def test_a_slot_missed_beyond_its_grace_is_not_run(store, scan_schedule):
    scheduler = PipelineScheduler([scan_schedule], store=store)
    assert scheduler.tick(MONDAY_0905 + timedelta(minutes=31)) == []
    assert store.pipeline_runs().empty
    (result,) = scheduler.tick(MONDAY_0905 + timedelta(days=1, minutes=1))  # Tuesday's slot
    assert result.slot == MONDAY_0905 + timedelta(days=1)


@pytest.mark.postgres
def test_holiday_weekend_and_muhurat_with_real_runs(store, workdir):
    nb = write_notebook(workdir / "evening.ipynb", "x = 1", "print(x)")
    evening = Schedule("evening", nb, (time(18, 20),))
    scheduler = PipelineScheduler([evening], store=store)
    assert scheduler.tick(ist(2024, 3, 25, 18, 21)) == []  # Holi
    assert scheduler.tick(ist(2024, 3, 23, 18, 21)) == []  # a Saturday
    (muhurat,) = scheduler.tick(ist(2023, 11, 12, 18, 21))  # the Muhurat Sunday
    assert muhurat.succeeded and muhurat.slot == ist(2023, 11, 12, 18, 20)
    assert len(store.pipeline_runs()) == 1


@pytest.mark.postgres
def test_two_schedulers_racing_for_one_slot_run_it_once(store, scan_schedule):
    schedulers = [PipelineScheduler([scan_schedule], store=store) for _ in range(3)]
    barrier, results = threading.Barrier(3), []

    def tick(scheduler: PipelineScheduler) -> None:
        barrier.wait()
        results.extend(scheduler.tick(MONDAY_0905 + timedelta(minutes=1)))

    threads = [threading.Thread(target=tick, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ran = [r for r in results if r is not None]
    assert len(ran) == 1 and ran[0].succeeded
    rows = store.pipeline_runs()
    assert list(rows["status"]) == ["succeeded"]  # nothing skipped: the slot was not overlapped


@pytest.mark.postgres
def test_a_slot_that_overlaps_a_slow_run_is_skipped_not_started(store, workdir):
    nb = write_notebook(workdir / "slow.ipynb", "seconds = 5", "import time; time.sleep(seconds)")
    slow = Schedule("slow", nb, (time(9, 5), time(9, 6)))
    scheduler = PipelineScheduler([slow], store=store)
    first = threading.Thread(target=scheduler.tick, args=(ist(2024, 11, 4, 9, 5, 10),))
    first.start()
    try:
        deadline = _time.monotonic() + 30
        while store.pipeline_runs(status="running").empty and _time.monotonic() < deadline:
            _time.sleep(0.05)
        # a second trigger for the same slot: it is being run, nothing happens
        assert scheduler.tick(ist(2024, 11, 4, 9, 5, 30)) == []
        # the next slot comes while the first run is still going: skipped, recorded
        assert scheduler.tick(ist(2024, 11, 4, 9, 6, 5)) == [None]
        assert set(store.pipeline_runs()["status"]) == {"running", "skipped"}
    finally:
        first.join()
    rows = store.pipeline_runs().set_index("status")
    assert rows.loc["succeeded", "slot"] == ist(2024, 11, 4, 9, 5)
    assert rows.loc["skipped", "slot"] == ist(2024, 11, 4, 9, 6)
    assert "earlier run was still running" in rows.loc["skipped", "error"]["reason"]
    assert scheduler.tick(ist(2024, 11, 4, 9, 7)) == []  # the skipped slot is not run late


@pytest.mark.postgres
def test_a_failed_scheduled_run_is_recorded_and_alerted_and_the_scheduler_goes_on(
    store, failing, scan_schedule
):
    broken = Schedule("broken", failing, (time(9, 5),))
    scheduler = PipelineScheduler([broken, scan_schedule], store=store)
    results = scheduler.tick(MONDAY_0905 + timedelta(minutes=2))
    assert [r.status for r in results] == ["failed", "succeeded"]
    alerts = store.alerts()
    assert list(alerts["kind"]) == ["pipeline_failed"]
    assert "broken" in alerts["message"][0] and "ZeroDivisionError" in alerts["message"][0]
    assert scheduler.tick(MONDAY_0905 + timedelta(minutes=3)) == []  # a failed slot: not retried


@pytest.mark.postgres
def test_apscheduler_jobs_fire_the_due_slot(store, scan_schedule):
    clock = {"now": MONDAY_0905 + timedelta(minutes=3)}
    scheduler = PipelineScheduler([scan_schedule], store=store, clock=lambda: clock["now"])
    aps = scheduler.build(blocking=False)
    job = aps.get_job("scan")
    assert (job.misfire_grace_time, job.coalesce, job.max_instances) == (1800, True, 1)
    _time.sleep(1.5)  # a slow start-up (APScheduler's default grace is 1 s) must not lose it
    aps.start()  # the wake-up job runs at once: the 09:05 slot is due on the frozen clock
    try:
        deadline = _time.monotonic() + 60
        while _time.monotonic() < deadline:
            done = store.pipeline_runs(status="succeeded")
            if not done.empty:
                break
            _time.sleep(0.1)
        assert list(done["slot"]) == [MONDAY_0905]
        assert aps.get_job("scan").next_run_time.astimezone(IST) == next_slot(
            scan_schedule, datetime.now(IST)
        )
    finally:
        scheduler.shutdown()
    assert len(store.pipeline_runs()) == 1


@pytest.mark.postgres
def test_cli_schedule_once_runs_the_due_slot_from_velox_toml(store, workdir):
    write_notebook(workdir / "notebooks" / "scan.ipynb", "universe = 'all'", "print(universe)")
    (workdir / "velox.toml").write_text(
        '[[schedules.pipeline]]\nname = "scan"\nnotebook = "notebooks/scan.ipynb"\n'
        'at = "18:20"\nparameters = { universe = "nifty50" }\n'
    )
    muhurat = ["pipeline", "schedule", "--once", "--now", "2023-11-12 18:30"]
    dry = velox([*muhurat, "--dry-run"], workdir, store)
    assert dry.returncode == 0, dry.stderr
    assert "scan: due now (slot 2023-11-12 18:20); next 2023-11-13 18:20 IST" in dry.stdout
    out = velox(muhurat, workdir, store)
    assert out.returncode == 0, out.stderr
    assert "scan slot 2023-11-12 18:20: succeeded" in out.stdout
    again = velox(muhurat, workdir, store)
    assert "nothing due at 2023-11-12 18:30 IST" in again.stdout
    holiday = velox(["pipeline", "schedule", "--once", "--now", "2023-11-14 18:30"], workdir, store)
    assert "nothing due" in holiday.stdout
    assert len(store.pipeline_runs()) == 1
    assert "--now needs --once" in one_line_error(
        velox(["pipeline", "schedule", "--now", "2023-11-12 18:30"], workdir, store)
    )


def test_the_documented_schedule_fits_the_bundled_notebooks(tmp_path: Path) -> None:
    """docs/pipelines.md's ``[schedules]`` example loads, and each notebook it names declares
    every parameter it passes (as ``velox pipeline schedule`` checks on start)."""
    text = (ROOT / "docs" / "pipelines.md").read_text()
    block = re.search(r"```toml\n(\[schedules\].*?)```", text, re.S)
    assert block, "docs/pipelines.md has a [schedules] example"
    (tmp_path / "velox.toml").write_text(block.group(1))
    (tmp_path / "notebooks").symlink_to(ROOT / "notebooks")
    (tmp_path / "dashboards").symlink_to(ROOT / "dashboards")
    schedules = load_settings(env={}, config_file=tmp_path / "velox.toml").schedules
    assert {s.notebook.name for s in schedules} == {
        "05_scanner.ipynb", "06_daily_report.ipynb", "investor_reports.ipynb"
    }  # fmt: skip
    check_schedules(list(schedules))
