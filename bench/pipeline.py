"""Benchmark pipeline overhead: papermill start to finish, an empty notebook vs a small report.

Run ``python bench/pipeline.py``. It starts a throwaway embedded PostgreSQL and data folder in a
temp dir (never the user's store) and writes two notebooks there:

- *empty*: a ``parameters`` cell (``day = ""``) and nothing else;
- *report*: ``notebooks/06_daily_report.ipynb``, the daily report the scheduler runs after the
  close (movers across six stocks, a recorded run's fills, equity and drawdown, bokeh charts).

Each is timed (median of ``RUNS`` interleaved runs after one warm-up) four ways: bare
``papermill.execute_notebook`` (kernel start, execution, the .ipynb written), the HTML export
alone (nbconvert ``HTMLExporter``, lab template), :func:`velox.pipelines.run` (both, plus the
parameters check, the pipeline lock and the store row: the whole pipeline), and the
``velox pipeline run`` command in a fresh interpreter (what cron or a user pays). The
difference between ``velox.pipelines.run`` and bare papermill + HTML is Velox's own overhead.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
RUNS = 7

#: The daily report the scheduler runs after the close (notebook 6), and its parameters here.
REPORT = ROOT / "notebooks" / "06_daily_report.ipynb"
PARAMETERS = {"date": "2022-02-25"}


def write_notebook(path: Path) -> Path:
    """Write the empty notebook: a title and a ``parameters`` cell like the report's."""
    body = [new_markdown_cell(f"# {path.stem}")]
    body.append(new_code_cell('date = ""', metadata={"tags": ["parameters"]}))
    nb = new_notebook(cells=body)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def interleaved(fns: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Return RUNS timings of each function, run in turn, forwards then backwards (a busy
    machine slows all alike)."""
    for fn in fns.values():
        fn()  # warm-up: the first kernel start pays for cold caches
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(RUNS):
        order = list(fns.items())
        for name, fn in order if round_ % 2 == 0 else reversed(order):  # no order bias
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return samples


def main() -> None:
    import papermill

    from velox.config import reset_settings
    from velox.pipelines import run
    from velox.pipelines.execute import _export_html
    from velox.store import Store, embedded_url, stop_embedded

    root = Path(tempfile.mkdtemp(prefix="vx-bench-pipe-"))
    os.environ["VELOX_DATA_DIR"] = str(root / "data")
    (root / "data").mkdir()
    (root / "data" / "bars").symlink_to(ROOT / "data" / "bars")  # the report's bundled bars
    reset_settings()
    try:
        url = embedded_url(root / "data" / "store")
        store = Store(url, backend="embedded")
        notebooks = {
            "empty": write_notebook(root / "empty.ipynb"),
            "report": REPORT,
        }
        rows = []
        for label, path in notebooks.items():
            out = root / f"{label}-out.ipynb"

            def bare(path: Path = path, out: Path = out) -> None:
                papermill.execute_notebook(
                    str(path), str(out), parameters=PARAMETERS, progress_bar=False,
                    kernel_name="python3", cwd=str(path.parent),
                )  # fmt: skip

            env = {**os.environ, "VELOX_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
            command = [sys.executable, "-m", "velox.cli", "pipeline", "run", str(path),
                       "-p", "date", PARAMETERS["date"]]  # fmt: skip
            samples = interleaved(
                {
                    "papermill": bare,
                    "html": lambda out=out: _export_html(
                        out, out.with_suffix(".html"), no_input=False
                    ),
                    "velox": lambda path=path: run(path, PARAMETERS, store=store),
                    "cli": lambda command=command, env=env: subprocess.run(
                        command, env=env, check=True, capture_output=True
                    ),
                }
            )
            rows.append((label, samples))
            size = (out.stat().st_size / 1024, out.with_suffix(".html").stat().st_size / 1024)
            print(f"{label}: executed .ipynb {size[0]:.0f} KiB, .html {size[1]:.0f} KiB")
        print()
        print(f"median of {RUNS} interleaved runs (min in brackets); load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
        print("| notebook | `papermill.execute_notebook` | HTML export | papermill + HTML |"
              " `velox.pipelines.run` | `velox pipeline run` (new process) |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|")
        medians = {}
        for label, samples in rows:
            med = {k: statistics.median(v) for k, v in samples.items()}
            low = {k: min(v) for k, v in samples.items()}
            medians[label] = med
            cells = [f"{med[k]:.2f} s ({low[k]:.2f})" for k in ("papermill", "html")]
            both = f"{med['papermill'] + med['html']:.2f} s"
            rest = [f"{med[k]:.2f} s ({low[k]:.2f})" for k in ("velox", "cli")]
            print(f"| {label} | {' | '.join(cells)} | {both} | {' | '.join(rest)} |")
        for label, med in medians.items():
            overhead = med["velox"] - med["papermill"] - med["html"]
            print(f"{label}: Velox's own overhead (run - papermill - HTML) {overhead:+.2f} s")
        empty, report = medians["empty"], medians["report"]
        extra = report["velox"] - empty["velox"]
        print(f"report vs empty through velox.pipelines.run: +{extra:.2f} s")
        print(f"pipeline rows recorded: {len(store.pipeline_runs())}")
        store.close()
    finally:
        stop_embedded(root / "data" / "store")
        shutil.rmtree(root, ignore_errors=True)
        reset_settings()


if __name__ == "__main__":
    main()
