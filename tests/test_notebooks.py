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
