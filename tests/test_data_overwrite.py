"""Imports never silently overwrite: refused differences, audited replacement, content-keyed skip.

The store is a real PostgreSQL server (each test runs on the embedded and the Debian server);
expected values come from the tiny files written here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from velox.data import file_sha256, import_bars
from velox.errors import DataError

HEADER = "timestamp,open,high,low,close,volume\n"
RELIANCE = HEADER + (
    "2024-04-01,2280.0,2290.0,2270.0,2283.95,1000\n2024-04-02,2283.95,2300.0,2280.0,2295.5,1200\n"
)
SBIN = (
    HEADER + "2024-04-01,480.0,485.0,478.0,482.95,9000\n2024-04-02,482.95,490.0,481.0,488.1,9500\n"
)
LATER = HEADER + "2024-04-03,2295.5,2310.0,2290.0,2305.0,1100\n"

pytestmark = pytest.mark.postgres


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _fingerprints(store) -> dict:
    return {t: store.table_fingerprint(t) for t in ("bars", "bar_series", "imports", "import_log")}


def test_differing_overlap_is_refused_naming_the_first_bar(store, tmp_path: Path):
    import_bars(_file(tmp_path, "reliance.csv", RELIANCE), "NSE:RELIANCE", "1d", store=store)
    before = _fingerprints(store)
    with pytest.raises(DataError) as info:
        import_bars(_file(tmp_path, "sbin.csv", SBIN), "NSE:RELIANCE", "1d", store=store)
    message = str(info.value)
    assert "\n" not in message
    assert "would overwrite 2 stored 1d bar(s) of NSE:RELIANCE" in message
    assert "first at 2024-04-01 00:00 IST" in message
    assert "stored O/H/L/C/V 2280/2290/2270/2283.95/1000" in message
    assert "file 480/485/478/482.95/9000" in message
    assert _fingerprints(store) == before


def test_identical_overlap_is_idempotent_and_other_rows_merge(store, tmp_path: Path):
    import_bars(_file(tmp_path, "reliance.csv", RELIANCE), "NSE:RELIANCE", "1d", store=store)
    # Another file with the same two rows (different bytes: a trailing blank line) is fine.
    same = import_bars(
        _file(tmp_path, "copy.csv", RELIANCE + "\n"), "NSE:RELIANCE", "1d", store=store
    )
    assert (same.rows, same.replaced, same.skipped) == (2, 0, False)
    merged = import_bars(_file(tmp_path, "later.csv", LATER), "NSE:RELIANCE", "1d", store=store)
    assert merged.rows == 1
    closes = store.read_bars("NSE:RELIANCE", "1d")["close"].tolist()
    assert closes == [2283.95, 2295.5, 2305.0]


def test_replace_is_audited_and_reimporting_the_original_restores_it(store, tmp_path: Path):
    original = _file(tmp_path, "reliance.csv", RELIANCE)
    import_bars(original, "NSE:RELIANCE", "1d", store=store)
    sbin = _file(tmp_path, "sbin.csv", SBIN)
    wrong = import_bars(sbin, "NSE:RELIANCE", "1d", store=store, replace=True)
    assert wrong.replaced == 2
    assert store.read_bars("NSE:RELIANCE", "1d")["close"].tolist() == [482.95, 488.1]
    # Same bytes, same series, but the series changed since: imported, not "unchanged; skipped".
    restored = import_bars(original, "NSE:RELIANCE", "1d", store=store, replace=True)
    assert not restored.skipped and restored.replaced == 2
    assert store.read_bars("NSE:RELIANCE", "1d")["close"].tolist() == [2283.95, 2295.5]
    # Now the original is the last write: skipped.
    assert import_bars(original, "NSE:RELIANCE", "1d", store=store).skipped
    audit = store.read_import_log()
    digests = [file_sha256(original), file_sha256(sbin), file_sha256(original)]
    assert audit["sha256"].tolist() == digests
    assert audit["replaced_rows"].tolist() == [0, 2, 2]
    assert audit["replace"].tolist() == [False, True, True]
    assert audit["instrument_id"].unique().tolist() == ["NSE:RELIANCE"]
    assert audit["source"].tolist()[1] == str(sbin.resolve())
    assert (audit["imported_by"] != "").all()


def test_same_bytes_into_another_series_are_not_skipped(store, tmp_path: Path):
    path = _file(tmp_path, "reliance.csv", RELIANCE)
    import_bars(path, "NSE:RELIANCE", "1d", store=store)
    other = import_bars(path, "NSE:RELIANCEX", "1d", store=store)
    assert not other.skipped and other.rows == 2


def test_import_log_is_append_only(store, tmp_path: Path):
    import psycopg

    import_bars(_file(tmp_path, "reliance.csv", RELIANCE), "NSE:RELIANCE", "1d", store=store)
    with store.connect(autocommit=True) as conn, pytest.raises(psycopg.Error, match="append-only"):
        conn.execute("DELETE FROM import_log")


def test_velox_run_restores_a_bundled_series_only_with_replace(store, tmp_path: Path, monkeypatch):
    """``velox run`` imports bundled files: after a wrong file replaced one, it refuses, then
    with --replace restores the bundled closes exactly."""
    from velox import cli

    folder = tmp_path / "bars"
    folder.mkdir()
    _file(folder, "reliance_1d.csv", RELIANCE)
    _file(folder, "MANIFEST.csv", "file,instrument_id,timeframe\nreliance_1d.csv,NSE:RELIANCE,1d\n")
    monkeypatch.setattr("velox.store.open_store", lambda url=None, **_: store)
    monkeypatch.setattr("velox.data.bundled_files.__defaults__", (tmp_path,))
    runner = CliRunner()
    first = runner.invoke(cli.main, ["run", "--no-progress"])
    assert first.exit_code == 0, first.output
    wrong = runner.invoke(
        cli.main,
        ["data", "import", str(_file(tmp_path, "sbin.csv", SBIN))]
        + ["--symbol", "NSE:RELIANCE", "--timeframe", "1d", "--replace"],
    )
    assert wrong.exit_code == 0, wrong.output
    assert "replaced 2 stored bars" in wrong.output
    refused = runner.invoke(cli.main, ["run", "--no-progress"])
    assert refused.exit_code == 1 and "would overwrite 2 stored 1d bar(s)" in refused.output
    assert store.read_bars("NSE:RELIANCE", "1d")["close"].tolist() == [482.95, 488.1]
    fixed = runner.invoke(cli.main, ["run", "--no-progress", "--replace"])
    assert fixed.exit_code == 0, fixed.output
    assert store.read_bars("NSE:RELIANCE", "1d")["close"].tolist() == [2283.95, 2295.5]


def test_velox_run_imports_every_file_it_can_and_names_each_refused_one(store, tmp_path: Path):
    """A refused bundled file does not stop ``velox run``: the files before and after it land,
    the refused ones change nothing, each is named with its reason, and the exit code is 1.

    The real command line in a subprocess, finding its files the way it always does (the
    MANIFEST.csv under ``$VELOX_DATA_DIR/bars``), on the test's PostgreSQL database.
    """
    root = Path(__file__).resolve().parent.parent
    import_bars(_file(tmp_path, "reliance.csv", RELIANCE), "NSE:RELIANCE", "1d", store=store)
    reliance_before = store.read_bars("NSE:RELIANCE", "1d")
    folder = tmp_path / "data" / "bars"
    folder.mkdir(parents=True)
    _file(folder, "first.csv", HEADER + "2024-04-01,10,11,9,10.5,1\n2024-04-02,10.5,12,10,11,2\n")
    _file(folder, "sbin_as_reliance.csv", SBIN)  # different values over RELIANCE's stored bars
    _file(folder, "malformed.csv", HEADER + "2024-04-01,10,11,9,10,1\n2024-04-02,10,9,11,10,1\n")
    _file(folder, "last.csv", HEADER + "2024-04-01,20,21,19,20,5\n2024-04-02,20,22,20,21,6\n"
          "2024-04-03,21,21,20,20.5,7\n")  # fmt: skip
    _file(folder, "MANIFEST.csv", "file,instrument_id,timeframe\n"
          "first.csv,NSE:FIRST,1d\nsbin_as_reliance.csv,NSE:RELIANCE,1d\n"
          "malformed.csv,NSE:BROKEN,1d\nlast.csv,NSE:LAST,1d\n")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("VELOX_")}
    env |= {"VELOX_DATA_DIR": str(tmp_path / "data"), "VELOX_DATABASE_URL": store.url,
            "PYTHONPATH": str(root)}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "velox.cli", "run", "--no-progress"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180,
    )  # fmt: skip

    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    # both good files landed, before and after the refused ones
    assert store.read_bars("NSE:FIRST", "1d")["close"].tolist() == [10.5, 11.0]
    assert store.read_bars("NSE:LAST", "1d")["close"].tolist() == [20.0, 21.0, 20.5]
    # the refused files changed nothing: RELIANCE as it was, no BROKEN bars, no audit of them
    pd.testing.assert_frame_equal(store.read_bars("NSE:RELIANCE", "1d"), reliance_before)
    assert store.read_bars("NSE:RELIANCE", "1d")["close"].tolist() == [2283.95, 2295.5]
    assert store.read_bars("NSE:BROKEN", "1d").empty
    assert store.table_fingerprint("bars")[0] == 2 + 2 + 3  # RELIANCE's, FIRST's, LAST's
    audit = store.read_import_log()
    assert audit["instrument_id"].tolist() == ["NSE:RELIANCE", "NSE:FIRST", "NSE:LAST"]
    # each refused file named, with its reason, on one line of its own
    refusals = [line for line in out.stderr.splitlines() if line.startswith("refused: ")]
    assert len(refusals) == 2, out.stderr
    overwrite, malformed = refusals
    assert f"{folder / 'sbin_as_reliance.csv'} (NSE:RELIANCE 1d)" in overwrite
    assert "would overwrite 2 stored 1d bar(s) of NSE:RELIANCE" in overwrite
    assert "first at 2024-04-01 00:00 IST" in overwrite
    assert f"{folder / 'malformed.csv'} (NSE:BROKEN 1d)" in malformed
    assert "OHLC inconsistent" in malformed and "at line 3" in malformed
    assert "imported 5 rows from 2 file(s), 0 unchanged file(s) skipped, 2 file(s) refused" in (
        out.stdout
    )
    assert out.stderr.strip().splitlines()[-1].startswith("error: 2 of 4 bundled file(s) refused")


def test_concurrent_import_into_a_new_series_waits_and_is_refused(store, tmp_path: Path):
    """A second import cannot slip its bars in between the first's check and its write."""
    import threading

    sbin = _file(tmp_path, "sbin.csv", SBIN)
    reliance = _file(tmp_path, "reliance.csv", RELIANCE)
    outcome: list[object] = []
    with store.connect() as conn, conn.transaction():
        # The first importer has checked the (new) series and holds it, not yet written.
        store.differing_bars("NSE:NEW", "1d", store.read_bars("NSE:NONE", "1d"), conn=conn)

        def second() -> None:
            try:
                outcome.append(import_bars(sbin, "NSE:NEW", "1d", store=store))
            except DataError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=1.0)
        assert thread.is_alive(), "the second import must wait for the first's transaction"
        frame = store.read_bars("NSE:NONE", "1d")
        assert frame.empty
        from velox.data import validate_bars

        bars, _ = validate_bars(pd.read_csv(reliance, dtype=str), timeframe="1d")
        store.write_bars("NSE:NEW", "1d", bars, conn=conn)
    thread.join(timeout=30)
    assert isinstance(outcome[0], DataError) and "would overwrite 2 stored" in str(outcome[0])
    assert store.read_bars("NSE:NEW", "1d")["close"].tolist() == [2283.95, 2295.5]
