"""`velox run` with bundled-style files of which some cannot even be read (a MANIFEST entry that
is missing, a directory, a file of garbage past its first chunk): every other file is imported,
each refused one named with its reason on a line of its own, exit code 1, nothing of the
refused ones written."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

HEADER = "timestamp,open,high,low,close,volume\n"
GOOD = HEADER + "2024-04-01,10,11,9,10.5,1\n2024-04-02,10.5,12,10,11,2\n"


@pytest.mark.postgres
def test_velox_run_names_each_unreadable_file_and_imports_the_rest(
    store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from velox import cli

    folder = tmp_path / "bars"
    folder.mkdir()
    (folder / "good.csv").write_text(GOOD)
    (folder / "a_directory.csv").mkdir()
    (folder / "late_garbage.csv").write_text(GOOD + "2024-04-03,10,11,9,ten,1\n")
    (folder / "MANIFEST.csv").write_text(
        "file,instrument_id,timeframe\n"
        "missing.csv,NSE:GONE,1d\n"
        "a_directory.csv,NSE:DIR,1d\n"
        "good.csv,NSE:GOOD,1d\n"
        "late_garbage.csv,NSE:LATE,1d\n"
    )
    monkeypatch.setattr("velox.store.open_store", lambda url=None, **_: store)
    monkeypatch.setattr("velox.data.bundled_files.__defaults__", (tmp_path,))
    result = CliRunner().invoke(cli.main, ["run", "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    refused = [line for line in result.output.splitlines() if line.startswith("refused: ")]
    assert len(refused) == 3, result.output
    gone, directory, late = refused
    assert "missing.csv (NSE:GONE 1d)" in gone, gone
    assert "does not exist" in gone.lower() or "no such file" in gone.lower(), gone
    assert "a_directory.csv (NSE:DIR 1d)" in directory and "directory" in directory, directory
    assert "late_garbage.csv (NSE:LATE 1d)" in late and "close is missing or not a number" in late
    assert "line 4" in late, late
    assert store.read_bars("NSE:GOOD", "1d")["close"].tolist() == [10.5, 11.0]
    for iid in ("NSE:GONE", "NSE:DIR", "NSE:LATE"):
        assert store.read_bars(iid, "1d").empty, iid
    assert store.read_import_log()["instrument_id"].tolist() == ["NSE:GOOD"]
    assert "error: 3 of 4 bundled file(s) refused" in result.output
