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
