"""Encrypted credentials: nothing readable at rest, a wrong key is a clear error, no leaks."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from velox.config import load_settings
from velox.errors import ConfigError
from velox.secrets import SecretBox, SecretStore, generate_key, resolve_key
from velox.store import Store

PLAIN = "kite-api-secret-0123456789abcdef"


def test_ciphertext_at_rest_holds_no_plaintext(store: Store) -> None:
    secrets = SecretStore(store, key=generate_key())
    when = datetime(2026, 12, 4, 0, 30, tzinfo=UTC)
    secrets.put("kite.api_secret", PLAIN, expires_at=when)
    with store.connect() as conn:
        (raw,) = conn.execute("SELECT ciphertext FROM secrets").fetchone()
        dump = " ".join(str(r) for r in conn.execute("SELECT * FROM secrets").fetchall())
    assert PLAIN.encode() not in bytes(raw) and PLAIN not in dump
    assert secrets.get("kite.api_secret") == PLAIN
    assert secrets.get_with_expiry("kite.api_secret") == (PLAIN, when)
    assert secrets.get("missing") is None
    secrets.put("kite.api_secret", PLAIN + "2")  # replaced, not duplicated
    assert secrets.names() == ["kite.api_secret"] and secrets.get("kite.api_secret") == PLAIN + "2"
    assert secrets.delete("kite.api_secret") and not secrets.delete("kite.api_secret")


def test_a_wrong_key_is_a_clear_error(store: Store) -> None:
    SecretStore(store, key=generate_key()).put("kite.access_token", PLAIN)
    other = SecretStore(store, key=generate_key())
    with pytest.raises(ConfigError, match="'kite.access_token'.*not the one it was stored with"):
        other.get("kite.access_token")


def test_passphrase_keys_work_and_short_ones_are_refused() -> None:
    box = SecretBox("a long enough passphrase")
    token = box.encrypt(PLAIN)
    assert SecretBox("a long enough passphrase").decrypt(token, name="x") == PLAIN
    with pytest.raises(ConfigError, match="too short"):
        SecretBox("short")


def test_no_key_anywhere_says_how_to_set_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import velox.secrets as module

    monkeypatch.setattr(module, "_keyring_key", lambda: None)
    monkeypatch.setattr("velox.config._cached", load_settings(env={}))
    with pytest.raises(ConfigError, match="VELOX_SECRET_KEY"):
        resolve_key()


def test_settings_take_the_key_from_env_only_and_mask_it(tmp_path) -> None:
    key = generate_key()
    settings = load_settings(env={"VELOX_SECRET_KEY": key, "VELOX_KITE_API_SECRET": PLAIN})
    assert settings.secret_key == key and settings.kite_api_secret == PLAIN
    assert key not in repr(settings) and PLAIN not in repr(settings)
    toml = tmp_path / "velox.toml"
    toml.write_text(f'kite_api_secret = "{PLAIN}"\n')
    with pytest.raises(ConfigError, match="VELOX_KITE_API_SECRET") as info:
        load_settings(env={}, config_file=toml)
    assert PLAIN not in str(info.value)
    roots = load_settings(env={"VELOX_KITE_ROOT": "http://127.0.0.1:9/"})
    assert roots.kite_root == "http://127.0.0.1:9" and roots.kite_ws_root == "wss://ws.kite.trade"
    with pytest.raises(ConfigError, match="kite_ws_root"):
        load_settings(env={"VELOX_KITE_WS_ROOT": "http://x"})


def test_secrets_never_reach_logs_or_repr(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    key = generate_key()
    caplog.set_level(logging.DEBUG)
    secrets = SecretStore(store, key=key)
    secrets.put("kite.api_secret", PLAIN)
    secrets.get("kite.api_secret")
    text = caplog.text + repr(secrets) + repr(SecretBox(key))
    assert PLAIN not in text and key not in text
    assert "kite.api_secret" in caplog.text
