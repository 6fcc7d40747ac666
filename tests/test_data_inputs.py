"""Every bad input file and timestamp: a one-line error, exit 1, and the store left as it was.

Runs the real CLI (click's CliRunner, like tests/test_data.py) against a real PostgreSQL server
(embedded and Debian), comparing table fingerprints (row count + md5 of all rows) before and after.
"""

from __future__ import annotations

import bz2
import gzip
import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from velox.data import import_bars, validate_bars
from velox.errors import DataError

GOOD = """timestamp,open,high,low,close,volume
2024-04-01T09:15:00+05:30,100.0,101.0,99.5,100.5,1000
2024-04-01T09:20:00+05:30,100.5,102.0,100.0,101.5,1500
2024-04-01T09:25:00+05:30,101.5,101.5,100.5,101.0,800
"""
TABLES = ("bars", "bar_series", "imports", "import_log")


def _frame(timestamps: list[str]) -> pd.DataFrame:
    n = len(timestamps)
    return pd.DataFrame(
        {"timestamp": timestamps, "open": ["1"] * n, "high": ["1"] * n, "low": ["1"] * n}
        | {"close": ["1"] * n}
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("09:15:00", "time without a date .* at line 2"),
        ("09:15", "time without a date .* at line 2"),
        ("01/02/2024 09:15", "ambiguous day/month order .*--date-format.* at line 2"),
        ("13-02-2024 09:15", "ambiguous day/month order"),
        ("0001-04-01 09:15", "year outside 1900-2200 at line 2"),
        ("2300-04-01 09:15", "year outside 1900-2200 at line 2"),
        ("9999-04-01T09:15:00+05:30", "year outside 1900-2200 at line 2"),
    ],
)
def test_bad_timestamps_are_refused_with_their_line(value: str, message: str):
    with pytest.raises(DataError, match=message):
        validate_bars(_frame(["2024-04-01 09:10", value][1:]), timeframe="5m")


def test_date_format_reads_day_first():
    bars, _ = validate_bars(
        _frame(["01/04/2024 09:15", "02/04/2024 09:15"]),
        timeframe="5m",
        date_format="%d/%m/%Y %H:%M",
    )
    assert [t.strftime("%Y-%m-%d %H:%M") for t in bars.index] == [
        "2024-04-01 09:15",
        "2024-04-02 09:15",
    ]
    with pytest.raises(DataError, match="unparseable timestamp \\(format '%d/%m/%Y'\\) at line 3"):
        validate_bars(_frame(["01/04/2024", "2024-04-02"]), timeframe="1d", date_format="%d/%m/%Y")


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Return {case: (path, expected message part)} for every kind of unreadable file."""
    files: dict[str, tuple[Path, str]] = {}
    whole = gzip.compress(GOOD.encode())
    truncated = tmp_path / "truncated.csv.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    files["truncated gzip"] = (truncated, "cannot be read as a bar file")
    not_gzip = tmp_path / "notgzip.csv.gz"
    not_gzip.write_text(GOOD + "\n")  # other bytes than good.csv, which was imported
    files["not gzip"] = (not_gzip, "cannot be read as a bar file")
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    files["directory"] = (folder, "is a directory")
    loop = tmp_path / "loop.csv"
    os.symlink(loop, loop)
    files["symlink loop"] = (loop, "cannot be opened")
    dangling = tmp_path / "dangling.csv"
    os.symlink(tmp_path / "gone.csv", dangling)
    files["broken symlink"] = (dangling, "broken symlink")
    files["missing"] = (tmp_path / "missing.csv", "no such file")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    files["empty"] = (empty, "is empty")
    empty_gz = tmp_path / "empty.csv.gz"
    empty_gz.write_bytes(gzip.compress(b""))
    files["empty after gunzip"] = (empty_gz, "no header line")
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(GOOD.replace("1500", "15\xe90").encode("latin-1"))
    files["non-UTF8"] = (latin, "line 3 is not UTF-8 text")
    latin_gz = tmp_path / "latin1.csv.gz"
    latin_gz.write_bytes(gzip.compress(latin.read_bytes()))
    files["non-UTF8 gzip"] = (latin_gz, "line 3 is not UTF-8 text")
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(b"x" * (200 * 1024))
    files["no newline"] = (garbage, "line 1 is longer than 64 KiB")
    bz = tmp_path / "bars.csv.bz2"
    bz.write_bytes(bz2.compress(GOOD.encode()))
    files["bz2"] = (bz, "unsupported file type")
    parquet_junk = tmp_path / "junk.parquet"
    parquet_junk.write_text(GOOD + "\n")
    files["not parquet"] = (parquet_junk, "cannot be read as a bar file")
    return files


CASES = [
    "truncated gzip",
    "not gzip",
    "directory",
    "symlink loop",
    "broken symlink",
    "missing",
    "empty",
    "empty after gunzip",
    "non-UTF8",
    "non-UTF8 gzip",
    "no newline",
    "bz2",
    "not parquet",
]


@pytest.mark.postgres
@pytest.mark.parametrize("case", CASES)
def test_bad_file_is_one_line_error_and_store_unchanged(store, tmp_path, monkeypatch, case):
    from velox import cli

    monkeypatch.setattr("velox.store.open_store", lambda url=None, **_: store)
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    import_bars(good, "NSE:TEST", "5m", store=store)
    before = {t: store.table_fingerprint(t) for t in TABLES}
    path, message = _bad_files(tmp_path)[case]
    result = CliRunner().invoke(
        cli.main, ["data", "import", str(path), "--symbol", "NSE:TEST", "--timeframe", "5m"]
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "Aborted" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert {t: store.table_fingerprint(t) for t in TABLES} == before


@pytest.mark.postgres
def test_parquet_with_timestamp_index_is_accepted(store, tmp_path: Path):
    frame = pd.read_csv(pd.io.common.StringIO(GOOD), index_col="timestamp", parse_dates=True)
    path = tmp_path / "indexed.parquet"
    frame.to_parquet(path)  # pandas' default keeps the DatetimeIndex as the index
    assert import_bars(path, "NSE:PQ", "5m", store=store).rows == 3
    assert store.read_bars("NSE:PQ", "5m")["close"].tolist() == [100.5, 101.5, 101.0]


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("first_rows", "message"),
    [
        (b"\xff\xfe garbage,1,2,3,4\n", "line 2 is not UTF-8 text"),
        (b"lorem ipsum,1,2,3,4\n", "unparseable timestamp at line 2"),
    ],
)
def test_large_garbage_file_fails_in_its_first_chunk(store, tmp_path: Path, first_rows, message):
    """A big text file that is no bar file is refused before it is read whole (~60 MB here)."""
    import resource
    import time

    path = tmp_path / "garbage.csv"
    with open(path, "wb") as fh:
        fh.write(b"timestamp,open,high,low,close\n" + first_rows * 20)
        chunk = b"lorem ipsum dolor,sit,amet,1,2\n" * 40_000
        for _ in range(50):
            fh.write(chunk)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(DataError, match=message):
        import_bars(path, "NSE:TEST", "5m", store=store)
    assert time.monotonic() - started < 10
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 200


@pytest.mark.postgres
@pytest.mark.parametrize("option", ["--tail", "--head"])
@pytest.mark.parametrize("count", ["-2", "0"])
def test_data_show_refuses_non_positive_counts(store, tmp_path, monkeypatch, option, count):
    from velox import cli

    monkeypatch.setattr("velox.store.open_store", lambda url=None, **_: store)
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    import_bars(good, "NSE:TEST", "5m", store=store)
    runner = CliRunner()
    refused = runner.invoke(
        cli.main, ["data", "show", "NSE:TEST", "--timeframe", "5m", option, count]
    )
    assert refused.exit_code == 2 and f"Invalid value for '{option}'" in refused.output
    ok = runner.invoke(cli.main, ["data", "show", "NSE:TEST", "--timeframe", "5m", option, "2"])
    assert ok.exit_code == 0, ok.output
    assert "(2 bars)" in ok.output
    expected = "09:15" if option == "--head" else "09:25"
    assert expected in ok.output and ("09:25" if option == "--head" else "09:15") not in ok.output


#: A read's start/end follow the rules of a file's timestamps (and never print a traceback).
BAD_BOUNDS = {
    "09:15": "a time without a date",
    "01/02/2024": "ambiguous day/month order",
    "2-1-24": "ambiguous day/month order",
    "0001-01-01": "year outside 1900-2200",
    "2300-04-01 09:15": "year outside 1900-2200",
    "Jan-01-0001": "year outside 1900-2200",
    "2024-02-30": "day is out of range for month",
}


@pytest.mark.postgres
@pytest.mark.parametrize("option", ["--start", "--end"])
def test_read_bounds_follow_the_file_timestamp_rules(store, tmp_path, monkeypatch, option):
    from datetime import date

    from velox import cli
    from velox.errors import ValidationError

    monkeypatch.setattr("velox.store.open_store", lambda url=None, **_: store)
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    import_bars(good, "NSE:TEST", "5m", store=store)
    runner = CliRunner()
    for bound, reason in BAD_BOUNDS.items():
        result = runner.invoke(
            cli.main, ["data", "show", "NSE:TEST", "--timeframe", "5m", option, bound]
        )
        assert result.exit_code == 1, (bound, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.output, result.output
        assert lines[0].startswith(f"error: cannot read {bound!r} as a timestamp: "), lines
        assert reason in lines[0], lines[0]
    key = option.lstrip("-")
    for value in (date(1, 1, 1), pd.Timestamp("2300-01-01")):
        with pytest.raises(ValidationError, match="year outside 1900-2200"):
            store.read_bars("NSE:TEST", "5m", **{key: value})
    # well-formed bounds still select: the middle bar is the first (or last) one shown
    middle = {"--start": ["09:20", "09:25"], "--end": ["09:15", "09:20"]}[option]
    for bound in ("2024-04-01 09:20", "2024-04-01T09:20:00+05:30", "2024-04-01T03:50:00Z"):
        frame = store.read_bars("NSE:TEST", "5m", **{key: bound})
        assert frame.index.strftime("%H:%M").tolist() == middle, bound
