"""Settings: env over file over defaults; unknown keys and misplaced secrets are errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from velox.config import load_settings
from velox.errors import ConfigError


def test_defaults_without_env_or_file(tmp_path: Path):
    settings = load_settings(env={}, config_file=None)
    assert settings.database_url is None
    assert settings.mis_square_off == "15:15"
    assert settings.store_dir == settings.data_dir / "store"


def test_env_overrides_file(tmp_path: Path):
    toml = tmp_path / "velox.toml"
    toml.write_text('log_level = "debug"\nmis_square_off = "15:10"\n')
    settings = load_settings(env={"VELOX_MIS_SQUARE_OFF": "15:20"}, config_file=toml)
    assert settings.log_level == "DEBUG"
    assert settings.mis_square_off == "15:20"


def test_unknown_env_variable_is_an_error_with_suggestion():
    with pytest.raises(ConfigError, match="VELOX_DATA_DRI; did you mean VELOX_DATA_DIR"):
        load_settings(env={"VELOX_DATA_DRI": "/tmp"})


def test_unknown_file_key_is_an_error(tmp_path: Path):
    toml = tmp_path / "velox.toml"
    toml.write_text('log_levle = "INFO"\n')
    with pytest.raises(ConfigError, match="unknown setting 'log_levle'; did you mean 'log_level'"):
        load_settings(env={}, config_file=toml)


def test_secret_in_file_is_refused(tmp_path: Path):
    toml = tmp_path / "velox.toml"
    toml.write_text('database_url = "postgresql://u:hunter2@db/velox"\n')
    with pytest.raises(ConfigError, match="database_url is a secret; set VELOX_DATABASE_URL"):
        load_settings(env={}, config_file=toml)


def test_secret_never_in_repr():
    settings = load_settings(env={"VELOX_DATABASE_URL": "postgresql://u:hunter2@db/velox"})
    assert settings.database_url.endswith("@db/velox")
    assert "hunter2" not in repr(settings)
    assert "database_url='postgresql://u:***@db/velox'" in repr(settings)


@pytest.mark.parametrize("value", ["3pm", "16:00", "15:75"])
def test_bad_square_off_time(value):
    with pytest.raises(ConfigError, match="mis_square_off"):
        load_settings(env={"VELOX_MIS_SQUARE_OFF": value})


def test_malformed_toml_names_the_file(tmp_path: Path):
    toml = tmp_path / "velox.toml"
    toml.write_text("log_level = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(env={}, config_file=toml)


# ---- hardening: every bad setting is one clear error; settings that exist act --------------


def test_risk_table_is_the_engines_default_limits(tmp_path: Path):
    from velox.risk import RiskLimits, default_risk_limits

    toml = tmp_path / "velox.toml"
    toml.write_text('log_level = "INFO"\n[risk]\nmax_order_qty = 1800\ntrading_end = "15:15"\n')
    settings = load_settings(env={}, config_file=toml)
    # the same limits --risk FILE reads from the same table
    assert settings.risk_limits == RiskLimits.from_toml(toml)
    assert settings.risk_limits.max_order_qty == 1800
    assert load_settings(env={}).risk_limits == RiskLimits()  # no table: the defaults
    from velox import config

    try:
        config._cached = settings
        assert default_risk_limits().max_order_qty == 1800
    finally:
        config.reset_settings()


def test_risk_table_errors_name_the_file(tmp_path: Path):
    toml = tmp_path / "velox.toml"
    toml.write_text("[risk]\nmax_ordr_qty = 5\n")
    with pytest.raises(ConfigError, match=r"toml \[risk\]: unknown risk limit 'max_ordr_qty'"):
        load_settings(env={}, config_file=toml)
    toml.write_text('risk = "tight"\n')
    with pytest.raises(ConfigError, match="risk must be a \\[risk\\] table"):
        load_settings(env={}, config_file=toml)
    with pytest.raises(ConfigError, match="VELOX_RISK is not a setting; put a \\[risk\\] table"):
        load_settings(env={"VELOX_RISK": "x"})


@pytest.mark.parametrize("rate", [10, 1000, 10.5])
def test_rate_at_or_above_the_sebi_line_needs_an_algo_id(tmp_path: Path, rate: float):
    toml = tmp_path / "velox.toml"
    toml.write_text(f"[risk]\nmax_orders_per_second = {rate}\n")
    with pytest.raises(ConfigError, match="needs an exchange-registered algo ID: set algo_id"):
        load_settings(env={}, config_file=toml)
    toml.write_text(f'[risk]\nmax_orders_per_second = {rate}\nalgo_id = "NSE-ALGO-42"\n')
    limits = load_settings(env={}, config_file=toml).risk_limits
    assert (limits.max_orders_per_second, limits.algo_id) == (float(rate), "NSE-ALGO-42")
    toml.write_text("[risk]\nmax_orders_per_second = 9.99\n")  # just under the line
    assert load_settings(env={}, config_file=toml).risk_limits.max_orders_per_second == 9.99


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x7fELF\x02\x01\x01\x00\x00\xff\xfe", "not a TOML text file"),
        (b"\xff\xfe\x00l\x00o\x00g", "not a TOML text file"),
        (b"data_dir = [unclosed\n", "not valid TOML"),
        (b"data_dir = 42\n", "data_dir=42 must be a folder path"),
        (b"data_dir = true\n", "data_dir=True must be a folder path"),
        (b'data_dir = ""\n', "data_dir is empty"),
        (b"log_level = 5\n", "log_level=5 is not a logging level"),
        (b"mis_square_off = 15:15:30\n", "must be a whole minute"),
        (b'mis_square_off = "09:00"\n', "outside market hours"),
    ],
)
def test_bad_file_is_one_line_naming_the_file(tmp_path: Path, content: bytes, message: str):
    toml = tmp_path / "velox.toml"
    toml.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(env={}, config_file=toml)
    assert str(toml) in str(info.value) and "\n" not in str(info.value)


def test_toml_time_for_square_off_is_accepted(tmp_path: Path):
    toml = tmp_path / "velox.toml"
    toml.write_text("mis_square_off = 15:00:00\n")
    assert load_settings(env={}, config_file=toml).mis_square_off == "15:00"


@pytest.mark.parametrize("value", ["", "  ", "data ", "da\nta", "da\tta", "\x00"])
def test_non_path_data_dir_is_refused(value: str):
    with pytest.raises(ConfigError, match="VELOX_DATA_DIR: data_dir"):
        load_settings(env={"VELOX_DATA_DIR": value})


def test_data_dir_that_is_a_file_is_refused(tmp_path: Path):
    file = tmp_path / "velox.csv"
    file.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        load_settings(env={"VELOX_DATA_DIR": str(file)})


def test_velox_config_must_exist(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"/nonexistent.toml \(from VELOX_CONFIG\) does not"):
        load_settings(env={"VELOX_CONFIG": "/nonexistent.toml"})
    with pytest.raises(ConfigError, match="is a folder"):
        load_settings(env={"VELOX_CONFIG": str(tmp_path)})
    with pytest.raises(ConfigError, match="VELOX_CONFIG is empty"):
        load_settings(env={"VELOX_CONFIG": ""})


@pytest.mark.parametrize("value", ["09:15", "15:30", "8:00", "25:00", "15:60"])
def test_square_off_outside_the_session_is_refused(value: str):
    with pytest.raises(ConfigError, match="mis_square_off"):
        load_settings(env={"VELOX_MIS_SQUARE_OFF": value})


#: Malformed (and well-formed) database URLs; the password text is always "pw-SECRET-1".
URLS = [
    "postgresql://bob:pw-SECRET-1@[::1/db",
    "postgresql://bob:pw-SECRET-1@host:notaport/db",
    "bob:pw-SECRET-1@localhost/db",
    "host=db password=pw-SECRET-1 port=x",
    "host=db password='pw-SECRET-1",
    "postgresql://bob@db/velox?password=pw-SECRET-1&sslmode=bogus",
    "postgresql://bob:pw%2DSECRET%2D1@db/velox",
    "postgresql://bob:pw-SECRET-1@db:5432/velox",
]


@pytest.mark.parametrize("url", URLS)
def test_mask_url_hides_the_password_of_any_url(url: str):
    from velox.config import mask_url

    masked = mask_url(url)
    assert "pw-SECRET-1" not in masked and "SECRET" not in masked and "***" in masked
    settings_or_error: object
    try:
        settings_or_error = repr(load_settings(env={"VELOX_DATABASE_URL": url}))
    except ConfigError as exc:
        settings_or_error = str(exc)
        assert exc.__cause__ is None and exc.__suppress_context__  # -v prints no psycopg chain
    assert "SECRET" not in str(settings_or_error)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon", ""])
def test_bad_callback_budget_is_one_clear_error(value: str):
    with pytest.raises(ConfigError, match="callback_budget=.* must be seconds > 0"):
        load_settings(env={"VELOX_CALLBACK_BUDGET": value})


def test_callback_budget_from_file_and_env(tmp_path: Path):
    toml = tmp_path / "velox.toml"
    toml.write_text("callback_budget = 2.5\n")
    assert load_settings(env={}, config_file=None).callback_budget == 5.0
    assert load_settings(env={}, config_file=toml).callback_budget == 2.5
    env = {"VELOX_CALLBACK_BUDGET": "0.75"}
    assert load_settings(env=env, config_file=toml).callback_budget == 0.75


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("http://10.0.0.5:8786", "must start with tcp:// or tls://"),
        ("10.0.0.5:8786", "must start with tcp:// or tls://"),
        ("tcp://10.0.0.5", "names no port"),
        ("tcp://:8786", "names no host"),
        ("tcp://10.0.0.5:99999", "port is not a number"),
        ("tcp://10.0.0.5:8786/x", "scheme://host:port and nothing more"),
        ("", "dask_scheduler is empty; unset it"),
    ],
)
def test_bad_dask_scheduler_is_one_clear_error(value: str, problem: str):
    with pytest.raises(ConfigError, match=problem) as caught:
        load_settings(env={"VELOX_DASK_SCHEDULER": value})
    assert str(caught.value).startswith("environment VELOX_DASK_SCHEDULER: dask_scheduler")


def test_dask_scheduler_from_file_and_env(tmp_path: Path):
    toml = tmp_path / "velox.toml"
    toml.write_text('dask_scheduler = "tls://sched.example:8786"\n')
    assert load_settings(env={}, config_file=None).dask_scheduler is None
    assert load_settings(env={}, config_file=toml).dask_scheduler == "tls://sched.example:8786"
    env = {"VELOX_DASK_SCHEDULER": "tcp://127.0.0.1:8786"}
    assert load_settings(env=env, config_file=toml).dask_scheduler == "tcp://127.0.0.1:8786"
    assert load_settings(env={"VELOX_DASK_SCHEDULER": "tcp://[::1]:8786"}).dask_scheduler == (
        "tcp://[::1]:8786"
    )
    toml.write_text("dask_scheduler = 8786\n")
    with pytest.raises(ConfigError, match=r"velox.toml: dask_scheduler=8786 must be a scheduler"):
        load_settings(env={}, config_file=toml)


def test_broker_setting_names_a_live_broker(tmp_path: Path):
    toml = tmp_path / "velox.toml"
    toml.write_text('broker = "kite"\n')
    assert load_settings(env={}, config_file=None).broker is None
    assert load_settings(env={}, config_file=toml).broker == "kite"
    assert load_settings(env={"VELOX_BROKER": " Kite "}).broker == "kite"
    toml.write_text('broker = "zerodha"\n')
    with pytest.raises(ConfigError, match=r"velox.toml: broker='zerodha' is not a live broker"):
        load_settings(env={}, config_file=toml)
    with pytest.raises(ConfigError, match="use one of .*kite"):
        load_settings(env={"VELOX_BROKER": ""})
