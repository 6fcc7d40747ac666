"""Bar-file import: every rejection reason, all-or-nothing writes, warnings, re-import skip.

The store is a real PostgreSQL server (the ``store`` fixture runs each test against the embedded
pgserver and the Debian server). Expected values are worked by hand from the tiny files below.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from velox.data import import_bars, validate_bars
from velox.errors import DataError, ValidationError

GOOD = """timestamp,open,high,low,close,volume
2024-04-01T09:15:00+05:30,100.0,101.0,99.5,100.5,1000
2024-04-01T09:20:00+05:30,100.5,102.0,100.0,101.5,1500
2024-04-01T09:25:00+05:30,101.5,101.5,100.5,101.0,800
"""


def _write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _replace_line(text: str, line: int, new: str) -> str:
    lines = text.splitlines()
    lines[line - 1] = new
    return "\n".join(lines) + "\n"


BAD_FILES = {
    "missing column": (
        GOOD.replace("high,", "hi,"),
        r"missing column\(s\) high; found timestamp, open, hi, low, close, volume",
    ),
    "unparseable timestamp": (
        _replace_line(GOOD, 3, "not-a-time,100.5,102.0,100.0,101.5,1500"),
        r"unparseable timestamp at line 3",
    ),
    "non-numeric price": (
        _replace_line(GOOD, 4, "2024-04-01T09:25:00+05:30,101.5,abc,100.5,101.0,800"),
        r"high is missing or not a number at line 4",
    ),
    "non-positive price": (
        _replace_line(GOOD, 2, "2024-04-01T09:15:00+05:30,100.0,101.0,-99.5,100.5,1000"),
        r"low is not positive at line 2",
    ),
    "negative volume": (
        _replace_line(GOOD, 3, "2024-04-01T09:20:00+05:30,100.5,102.0,100.0,101.5,-5"),
        r"volume is missing, negative or not a number at line 3",
    ),
    "OHLC inconsistent": (
        _replace_line(GOOD, 3, "2024-04-01T09:20:00+05:30,100.5,101.0,100.0,101.5,1500"),
        r"OHLC inconsistent \(needs low <= open, close <= high\) at line 3",
    ),
    "duplicate timestamp": (
        _replace_line(GOOD, 4, "2024-04-01T09:20:00+05:30,101.5,101.5,100.5,101.0,800"),
        r"duplicate timestamp at line 3, 4",
    ),
    "off the session grid": (
        _replace_line(GOOD, 4, "2024-04-01T09:27:00+05:30,101.5,101.5,100.5,101.0,800"),
        r"not on the 5m session grid .* at line 4",
    ),
    "mixed time zones": (
        _replace_line(GOOD, 4, "2024-04-01T09:25:00,101.5,101.5,100.5,101.0,800"),
        r"mix time zones or naive and aware",
    ),
}


@pytest.mark.parametrize("reason", list(BAD_FILES))
def test_each_rejection_reason_names_the_line(tmp_path: Path, reason: str):
    text, message = BAD_FILES[reason]
    with pytest.raises(DataError, match=message):
        validate_bars(
            pd.read_csv(_write(tmp_path, text), dtype=str), timeframe="5m", source="bars.csv"
        )


def test_several_problems_are_reported_together(tmp_path: Path):
    text = _replace_line(GOOD, 2, "2024-04-01T09:15:00+05:30,0,101.0,99.5,100.5,1000")
    text = _replace_line(text, 4, "2024-04-01T09:25:00+05:30,101.5,99.0,100.5,101.0,800")
    with pytest.raises(DataError) as info:
        validate_bars(pd.read_csv(_write(tmp_path, text), dtype=str), timeframe="5m")
    assert "open is not positive at line 2" in str(info.value)
    assert "OHLC inconsistent" in str(info.value) and "line 2, 4" in str(info.value)


@pytest.mark.postgres
@pytest.mark.parametrize("reason", list(BAD_FILES))
def test_rejected_import_leaves_store_unchanged(store, tmp_path: Path, reason: str):
    import_bars(_write(tmp_path, GOOD, "good.csv"), "NSE:TEST", "5m", store=store)
    before = {t: store.table_fingerprint(t) for t in ("bars", "imports")}
    with pytest.raises(DataError, match="rejected, nothing written|missing column"):
        import_bars(_write(tmp_path, BAD_FILES[reason][0]), "NSE:TEST", "5m", store=store)
    assert {t: store.table_fingerprint(t) for t in ("bars", "imports")} == before


@pytest.mark.postgres
def test_import_round_trip_and_checksum_skip(store, tmp_path: Path):
    path = _write(tmp_path, GOOD)
    first = import_bars(path, "NSE:TEST", "5m", store=store)
    assert (first.rows, first.skipped) == (3, False)
    again = import_bars(path, "NSE:TEST", "5m", store=store)
    assert again.skipped and again.rows == 0
    bars = store.read_bars("NSE:TEST", "5m")
    assert list(bars.index.strftime("%H:%M")) == ["09:15", "09:20", "09:25"]
    assert str(bars.index.tz) == "Asia/Kolkata"
    assert bars["close"].tolist() == [100.5, 101.5, 101.0]
    # A corrected file is refused without replace=True; with it, the values at the same
    # timestamps are replaced and the others kept.
    fixed = _replace_line(GOOD, 3, "2024-04-01T09:20:00+05:30,100.5,102.0,100.0,101.75,1500")
    path.write_text(fixed)
    with pytest.raises(DataError, match="would overwrite 1 stored 5m bar"):
        import_bars(path, "NSE:TEST", "5m", store=store)
    assert import_bars(path, "NSE:TEST", "5m", store=store, replace=True).rows == 3
    assert store.read_bars("NSE:TEST", "5m")["close"].tolist() == [100.5, 101.75, 101.0]


@pytest.mark.postgres
def test_naive_timestamps_are_ist_and_reported(store, tmp_path: Path):
    naive = GOOD.replace("+05:30", "")
    result = import_bars(_write(tmp_path, naive), "NSE:TEST", "5m", store=store)
    assert any("read as IST" in w for w in result.warnings)
    first = store.read_bars("NSE:TEST", "5m").index[0]
    assert first.tz_convert("UTC") == pd.Timestamp("2024-04-01 03:45", tz="UTC")


@pytest.mark.postgres
def test_end_labelled_file_and_parquet(store, tmp_path: Path):
    frame = pd.read_csv(_write(tmp_path, GOOD))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]) + pd.Timedelta(minutes=5)
    path = tmp_path / "end.parquet"
    frame.to_parquet(path)
    result = import_bars(path, "NSE:PQ", "5m", store=store, label="end")
    assert result.rows == 3
    assert list(store.read_bars("NSE:PQ", "5m").index.strftime("%H:%M")) == [
        "09:15",
        "09:20",
        "09:25",
    ]
    frame.loc[1, "low"] = -1.0
    frame.to_parquet(path)
    with pytest.raises(DataError, match="low is not positive at row 2"):
        import_bars(path, "NSE:PQ", "5m", store=store, label="end")


def test_gaps_and_out_of_session_rows_are_warnings_not_rejections(tmp_path: Path):
    text = GOOD.replace("2024-04-01T09:20", "2024-04-01T09:30")  # 09:20 and 09:25 missing…
    text += "2024-04-01T15:30:00+05:30,101,101,101,101,0\n"  # …and a post-close print
    bars, warnings = validate_bars(pd.read_csv(_write(tmp_path, text), dtype=str), timeframe="5m")
    assert len(bars) == 4
    assert any(w.startswith("1 bar(s) outside NSE session hours") for w in warnings)
    # 2024-04-01 is a full session: 75 five-minute bars expected, 3 inside hours present.
    assert any("gaps: 72 missing 5m bar(s) on 1 of 1 session(s)" in w for w in warnings)


def test_bad_instrument_id_and_file_type(tmp_path: Path):
    with pytest.raises(ValidationError, match="must read .EXCHANGE:SYMBOL."):
        import_bars(_write(tmp_path, GOOD), "RELIANCE", "5m")
    with pytest.raises(DataError, match="unsupported file type"):
        from velox.data import read_bar_file

        read_bar_file(_write(tmp_path, GOOD, "bars.xlsx"))


@pytest.mark.postgres
def test_cli_import_list_show(store, tmp_path: Path, monkeypatch):
    from velox import cli

    monkeypatch.setattr("velox.store.open_store", lambda url=None, **_: store)
    runner = CliRunner()
    ok = runner.invoke(
        cli.main,
        ["data", "import", str(_write(tmp_path, GOOD)), "--symbol", "NSE:CLI", "--timeframe", "5m"],
    )
    assert ok.exit_code == 0, ok.output
    assert "stored 3 5m bars of NSE:CLI" in ok.output
    bad = runner.invoke(
        cli.main,
        [
            "data",
            "import",
            str(_write(tmp_path, BAD_FILES["duplicate timestamp"][0], "bad.csv")),
            "--symbol",
            "NSE:CLI",
            "--timeframe",
            "5m",
        ],
    )
    assert bad.exit_code == 1 and "duplicate timestamp at line 3, 4" in bad.output
    listed = runner.invoke(cli.main, ["data", "list"])
    assert "NSE:CLI" in listed.output
    shown = runner.invoke(
        cli.main, ["data", "show", "NSE:CLI", "--timeframe", "15m", "--format", "csv"]
    )
    assert shown.exit_code == 0, shown.output
    # 09:15-09:25 is one 15-minute bar: open 100.0, high 102.0, low 99.5, close 101.0, vol 3300
    assert shown.output.splitlines()[1] == "2024-04-01T09:15:00+05:30,100.0,102.0,99.5,101.0,3300.0"
