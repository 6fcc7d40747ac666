"""Streaming validation: a file whose first chunks are valid bars and which turns to garbage at
line 500,000 is refused with a one-line error naming that line, the store unchanged (table
fingerprints: row count + md5 of all rows), and the read stops at the bad chunk: the
file's tail, which is a truncated gzip stream, is never reached."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from velox.data import import_bars

TABLES = ("bars", "bar_series", "imports", "import_log")
ROWS = 800_000  # four 200,000-line chunks; the garbage sits in the third
BAD_LINE = 500_000  # header is line 1, so this is row 499,998


def _timestamps(n: int) -> np.ndarray:
    """Return ``n`` 1-minute bar starts on the session grid (375 a weekday from 2001-01-01)."""
    days = pd.bdate_range("2001-01-01", periods=n // 375 + 1, tz="Asia/Kolkata")
    minutes = pd.to_timedelta(np.arange(375), unit="min") + pd.Timedelta("9h15min")
    stamps = (days.tz_convert(None).to_numpy()[:, None] + minutes.values[None, :]).ravel()[:n]
    return (
        pd.DatetimeIndex(stamps, tz="UTC")
        .tz_convert("Asia/Kolkata")
        .strftime("%Y-%m-%dT%H:%M:%S+05:30")
        .to_numpy()
    )


@pytest.fixture(scope="module")
def lines() -> list[str]:
    stamps = _timestamps(ROWS)
    return [f"{t},100.0,101.0,99.5,100.5,10\n" for t in stamps]


def _write(path: Path, lines: list[str], bad: str) -> Path:
    body = list(lines)
    body[BAD_LINE - 2] = bad
    data = gzip.compress(("timestamp,open,high,low,close,volume\n" + "".join(body)).encode(), 1)
    path.write_bytes(data[: len(data) - 4096])  # the end of the stream is cut off
    return path


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("2300-01-03T09:15:00+05:30,100,101,99.5,100.5,10\n", "year outside 1900-2200"),
        ("2005-07-01T09:15:00+05:30,abc,101,99.5,100.5,10\n", "open is missing or not a number"),
        ("yesterday-ish,100,101,99.5,100.5,10\n", "unparseable timestamp"),
    ],
)
def test_garbage_at_line_500000_is_refused_naming_it_and_the_store_is_unchanged(
    store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[str], bad: str,
    message: str,
) -> None:  # fmt: skip
    from velox import cli

    monkeypatch.setattr("velox.store.open_store", lambda url=None, **_: store)
    good = tmp_path / "good.csv"
    good.write_text("timestamp,open,high,low,close,volume\n" + "".join(lines[:750]))
    assert import_bars(good, "NSE:BIG", "1m", store=store).rows == 750
    before = {t: store.table_fingerprint(t) for t in TABLES}
    path = _write(tmp_path / "big.csv.gz", lines, bad)
    result = CliRunner().invoke(
        cli.main, ["data", "import", str(path), "--symbol", "NSE:BIG", "--timeframe", "1m"]
    )
    assert result.exit_code == 1, result.output
    out = result.output.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("error: "), out
    assert message in out[0] and f"line {BAD_LINE}" in out[0], out[0]
    assert "truncated" not in out[0] and "cannot be read" not in out[0]  # stopped before it
    assert {t: store.table_fingerprint(t) for t in TABLES} == before


@pytest.mark.postgres
def test_a_duplicate_across_chunks_names_both_lines(store, tmp_path: Path, lines: list[str]):
    body = lines[:300_000]
    body[250_000] = body[10]  # line 250,002 repeats line 12, 200,000 lines later
    path = tmp_path / "dup.csv"
    path.write_text("timestamp,open,high,low,close,volume\n" + "".join(body))
    before = store.table_fingerprint("bars")
    from velox.errors import DataError

    with pytest.raises(DataError, match="duplicate timestamp at line 12, 250002"):
        import_bars(path, "NSE:BIG", "1m", store=store)
    assert store.table_fingerprint("bars") == before
