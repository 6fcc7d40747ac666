"""Packaging promises: environment.yml matches pyproject, `import velox` stays light, CLI help."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from velox.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pythons = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert pythons == ["python=3.11"]
    assert ">=3.11" in project["requires-python"] and "<3.12" in project["requires-python"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert pip == ["-e .[all]"]
    extras = project["optional-dependencies"]
    (all_extra,) = extras["all"]
    included = set(all_extra.split("[", 1)[1].rstrip("]").split(","))
    assert included == set(extras) - {"all"}, "the 'all' extra must include every other extra"


def test_import_velox_does_not_import_heavy_libraries():
    heavy = [
        "pandas",
        "numba",
        "vectorbt",
        "panel",
        "holoviews",
        "kiteconnect",
        "SmartApi",
        "breeze_connect",
        "psycopg",
        "pgserver",
        "talib",
        "dask",
        "distributed",
        "hvplot",
        "ipywidgets",
        "bokeh",
    ]
    code = (
        f"import sys, velox; heavy = {heavy!r}; "
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_only_velox_backtest_imports_vectorbt():
    """vectorbt stays behind one package (issue 11): no other module names it in an import."""
    import ast

    offenders = []
    for path in sorted((ROOT / "velox").rglob("*.py")):
        if (ROOT / "velox" / "backtest") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "vectorbt" or n.startswith("vectorbt.") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_submodules_load_lazily_on_attribute_access():
    code = "import velox, sys; velox.costs; print('velox.costs' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        import velox

        velox.nonsense  # noqa: B018


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def test_every_cli_verb_has_help():
    runner = CliRunner()
    verbs = list(_commands(main))
    assert {("run",), ("data", "import"), ("data", "list"), ("data", "show")} <= {
        v for v, _ in verbs
    }
    for verb, command in verbs:
        result = runner.invoke(main, [*verb, "--help"])
        assert result.exit_code == 0, (verb, result.output)
        first_line = " ".join((command.help or "").split("\n")[0].split())
        assert first_line and first_line in " ".join(result.output.split())


def test_readme_shows_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
