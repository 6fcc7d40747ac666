"""The real ``velox`` CLI on bad input: one line of error on stderr, exit != 0, no traceback.

Each case runs the command line in a subprocess (``python -m velox.cli``) against an empty data
folder, as a user would; the store (where a case reaches it) is unchanged because none exists.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMA = str(ROOT / "strategies" / "sma_cross.py")
SECRET = "pw-SECRET-1"


def velox(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VELOX_")}
    base.update({"VELOX_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}, **env)
    (tmp_path / "data").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "velox.cli", *args],
        capture_output=True, text=True, env=base, cwd=tmp_path, timeout=120,
    )  # fmt: skip


def assert_one_line_error(out: subprocess.CompletedProcess[str], expected: str) -> None:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode != 0, (out.stdout, out.stderr)
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert expected in lines[0], lines[0]


def _file(tmp_path: Path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


CASES = {
    "missing argument": (["data", "show"], {}, "Missing argument 'INSTRUMENT_ID'"),
    "unknown option": (["--bogus"], {}, "No such option '--bogus'"),
    "bad option type": (["data", "show", "--tail", "x", "NSE:SBIN"], {}, "'x' is not a valid"),
    "id with trailing space": (["data", "show", "NSE:RELIANCE "], {}, "trailing blanks"),
    "id A:B:C": (["data", "show", "NSE:A:B:C"], {}, "more than one ':'"),
    "id with tab (import)": (
        ["data", "import", "x.csv", "--symbol", "NSE:X\tY", "--timeframe", "5m"], {},
        "'NSE:X\\tY' has control characters",
    ),
    "id with newline (replay)": (
        ["replay", SMA, "--symbol", "NSE:SBIN\nINFO forged"], {}, "control characters",
    ),
    "emoji id": (["instruments", "show", "NSE:🚀"], {}, "outside the exchange's character set"),
    "2.8 KB id": (["instruments", "show", "NSE:" + "A" * 2800], {}, "(2,804 characters)"),
    "mistyped data dir": (["data", "list"], {"VELOX_DATA_DIR": "/tmp/velox-no-such-dir"},
                          "no store in /tmp/velox-no-such-dir/store"),
    "non-path data dir": (["data", "list"], {"VELOX_DATA_DIR": "data\n"}, "does not look like a"),
    "missing VELOX_CONFIG": (["config"], {"VELOX_CONFIG": "/nonexistent.toml"}, "does not exist"),
    "square-off after the close": (["config"], {"VELOX_MIS_SQUARE_OFF": "16:00"},
                                   "outside market hours"),
    "unknown variable": (["config"], {"VELOX_DATA_DRI": "x"}, "did you mean VELOX_DATA_DIR"),
    "--json into a missing folder": (["replay", SMA, "--json", "/nonexistent/dir/r.json"], {},
                                     "'/nonexistent/dir' does not exist"),
    "--json onto a folder": (["replay", SMA, "--json", "/tmp"], {}, "is a folder, not a file"),
    "--json under a file": (["replay", SMA, "--json", "/etc/hostname/r.json"], {},
                            "is not a folder"),
    "--risk file missing": (["replay", SMA, "--risk", "/nonexistent.toml"], {},
                            "does not exist"),
    "live without a broker": (["live", SMA, "--confirm-live"], {},
                              'no broker named: give --broker (breeze, kite, smartapi)'),
    "unknown broker setting": (["live", SMA, "--confirm-live"], {"VELOX_BROKER": "upstox"},
                               "broker='upstox' is not a live broker Velox has; use one of"),
}  # fmt: skip


@pytest.mark.parametrize(("args", "env", "expected"), CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_line_without_traceback(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    assert_one_line_error(velox(args, tmp_path, **env), expected)
    assert not (tmp_path / "data" / "store").exists()  # nothing created a store


CONFIG_FILES = {
    "binary": (b"\x7fELF\x02\x01\x01\x00\xff\xfe\x00", "not a TOML text file"),
    "garbage": (b"[[[ = = =\n", "not valid TOML"),
    "data_dir = 42": (b"data_dir = 42\n", "data_dir=42 must be a folder path"),
    "risk rate 1000": (b"[risk]\nmax_orders_per_second = 1000\n", "needs an exchange-registered"),
    "risk typo": (b"[risk]\nmax_ordr_qty = 5\n", "unknown risk limit 'max_ordr_qty'"),
}


@pytest.mark.parametrize(("content", "expected"), CONFIG_FILES.values(), ids=CONFIG_FILES.keys())
def test_bad_config_file_is_one_line_naming_it(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = _file(tmp_path, "velox.toml", content)
    for args in (["config"], ["data", "list"]):
        out = velox(args, tmp_path, VELOX_CONFIG=path)
        assert_one_line_error(out, expected)
        assert path in out.stderr


def test_risk_table_in_velox_toml_is_accepted_and_shown(tmp_path: Path) -> None:
    _file(tmp_path, "velox.toml", b"[risk]\nmax_order_qty = 1800\n")  # ./velox.toml
    out = velox(["config"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "max_order_qty=1800" in out.stdout


URLS = [
    f"postgresql://bob:{SECRET}@[::1/db",
    f"postgresql://bob:{SECRET}@host:notaport/db",
    f"bob:{SECRET}@localhost/db",
    f"host=127.0.0.1 password={SECRET} port=x",
    f"host=127.0.0.1 password='{SECRET}",
    f"postgresql://bob@127.0.0.1:1/velox?password={SECRET}&sslmode=bogus",
    f"postgresql://bob:{SECRET}@127.0.0.1:1/velox",
]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("verbose", [False, True], ids=["plain", "-v"])
def test_database_url_password_never_printed(tmp_path: Path, url: str, verbose: bool) -> None:
    for args in (["data", "list"], ["config"]):
        out = velox(["-v", *args] if verbose else args, tmp_path, VELOX_DATABASE_URL=url)
        assert SECRET not in out.stdout + out.stderr, out.stdout + out.stderr
        if out.returncode != 0 and not verbose:
            assert_one_line_error(out, "VELOX_DATABASE_URL")


def test_read_only_store_is_one_line_permission_denied(tmp_path: Path) -> None:
    store = tmp_path / "data" / "store"
    store.mkdir(parents=True)
    (store / "PG_VERSION").write_text("16\n")
    store.chmod(0o555)
    try:
        out = velox(["data", "list"], tmp_path)
    finally:
        store.chmod(0o755)
    assert_one_line_error(out, f"permission denied: {store} is not writable")


def test_verbose_shows_the_traceback_of_a_user_error(tmp_path: Path) -> None:
    out = velox(["-v", "data", "show", "NSE:A:B:C"], tmp_path)
    assert out.returncode == 1
    assert "Traceback" in out.stderr and "ValidationError" in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: instrument id 'NSE:A:B:C'")
