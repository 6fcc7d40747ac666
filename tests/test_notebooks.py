"""Every tutorial notebook in notebooks/ runs top to bottom (papermill, a real kernel) on the
bundled data against a fresh store, with its defaults and with the parameters tests pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

#: Smaller or different parameters a notebook runs with here (its defaults otherwise).
PARAMETERS: dict[str, dict[str, object]] = {}


def test_every_notebook_reads_like_a_tutorial_and_has_a_parameters_cell() -> None:
    assert len(NOTEBOOKS) >= 4
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: one cell tagged 'parameters'"
        assert cells[0]["cell_type"] == "markdown", f"{path.name} opens with its title"
        prose = sum(c["cell_type"] == "markdown" for c in cells)
        assert prose >= 4, f"{path.name}: explain what each step does"
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), (
            f"{path.name} is stored without outputs"
        )


def test_papermill_sees_every_parameter_a_notebook_declares() -> None:
    """`velox pipeline run NB -p name value` refuses names papermill cannot find, and papermill
    silently skips lines it cannot parse (a comment with quotes, for one)."""
    import ast

    import papermill

    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        (cell,) = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        tree = ast.parse("".join(cell["source"]))
        assigned = [t.id for node in tree.body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)]  # fmt: skip
        assert list(papermill.inspect_notebook(str(path))) == assigned, path.name


@pytest.mark.postgres
@pytest.mark.parametrize("pg_server", ["embedded"], indirect=True)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(
    path: Path, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import papermill

    from velox.config import reset_settings

    monkeypatch.setenv("VELOX_DATABASE_URL", store.url)
    monkeypatch.setenv("VELOX_DATA_DIR", str(ROOT / "data"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    reset_settings()
    out = tmp_path / path.name
    papermill.execute_notebook(
        str(path),
        str(out),
        parameters=PARAMETERS.get(path.stem, {}),
        cwd=str(path.parent),
        kernel_name="python3",
        progress_bar=False,
        execution_timeout=300,
    )
    executed = json.loads(out.read_text())
    outputs = [o for c in executed["cells"] for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert errors == []


# -- the scheduled notebooks with the parameters a schedule passes --------------------------------


@pytest.fixture
def bundled_workdir(tmp_path: Path, store, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data_dir whose bundled files are the repository's (linked) and whose runs/ is new."""
    from velox.config import reset_settings

    data = tmp_path / "data"
    data.mkdir()
    for entry in (ROOT / "data").iterdir():
        if entry.name != "runs":
            (data / entry.name).symlink_to(entry)
    monkeypatch.setenv("VELOX_DATABASE_URL", store.url)
    monkeypatch.setenv("VELOX_DATA_DIR", str(data))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.chdir(ROOT)
    reset_settings()
    yield data
    reset_settings()


def cell_outputs(path: str, starts: str) -> str:
    """Return the text and HTML outputs of the executed code cell whose source starts so."""
    (cell,) = [c for c in json.loads(Path(path).read_text())["cells"]
               if c["cell_type"] == "code" and "".join(c["source"]).startswith(starts)]  # fmt: skip
    parts = []
    for out in cell.get("outputs", []):
        parts.append("".join(out.get("text", "")))
        parts.append("".join(out.get("data", {}).get("text/html", "")))
    return "".join(parts)


def independent_movers(ids: list[str], day: str) -> list[str]:
    """Instrument ids by their change on ``day`` (descending), read from the bundled CSVs."""
    import pandas as pd

    files = pd.read_csv(ROOT / "data" / "bars" / "MANIFEST.csv")
    files = files[(files["timeframe"] == "1d") & files["instrument_id"].isin(ids)]
    change = {}
    for row in files.itertuples():
        close = pd.read_csv(ROOT / "data" / "bars" / row.file, index_col="timestamp")["close"]
        at = list(close.index).index(f"{day}T00:00:00+05:30")
        change[row.instrument_id] = close.iloc[at] / close.iloc[at - 1] - 1
    return sorted(change, key=change.get, reverse=True)


@pytest.mark.postgres
@pytest.mark.parametrize("pg_server", ["embedded"], indirect=True)
def test_daily_report_as_scheduled_reads_a_named_universe_and_a_date(bundled_workdir) -> None:
    """docs/pipelines.md's schedule passes ``universe = "nifty50"`` and ``date``, as text."""
    from velox.pipelines import run
    from velox.universes import NIFTY50

    done = run(ROOT / "notebooks" / "06_daily_report.ipynb",
               {"date": "2022-02-27", "universe": "nifty50"}, no_input=True)  # fmt: skip
    assert done.status == "succeeded"
    assert str(bundled_workdir / "runs") in done.output_path
    # 27 Feb 2022 is a Sunday: the report is of Friday's session, over all 44 stocks
    header = cell_outputs(done.output_path, "import pandas")
    assert f"Report for Friday 25 February 2022 over {len(NIFTY50)} instruments" in header
    movers = cell_outputs(done.output_path, "i = closes.index.get_loc(day)")
    top = independent_movers(list(NIFTY50), "2022-02-25")[:5]
    where = [movers.find(iid) for iid in top]
    assert -1 not in where and where == sorted(where), (top, where)


@pytest.mark.postgres
@pytest.mark.parametrize("pg_server", ["embedded"], indirect=True)
def test_daily_report_of_an_account_without_runs_fails_naming_it(bundled_workdir) -> None:
    from velox.pipelines import PipelineFailed, run

    with pytest.raises(PipelineFailed, match="no recorded run of account 'desk-9'"):
        run(ROOT / "notebooks" / "06_daily_report.ipynb",
            {"account": "desk-9", "universe": "NSE:SBIN"})  # fmt: skip


@pytest.mark.postgres
@pytest.mark.parametrize("pg_server", ["embedded"], indirect=True)
def test_morning_scan_reads_ids_separated_by_commas_and_scans_the_last_bar(
    bundled_workdir,
) -> None:
    from velox.pipelines import run

    ids = "NSE:SBIN, NSE:TCS,NSE:INFY"
    done = run(ROOT / "notebooks" / "05_scanner.ipynb", {"universe": ids})
    assert done.status == "succeeded"
    header = cell_outputs(done.output_path, "import logging")
    assert "3 instruments; scanning the bar at the end of the data" in header
