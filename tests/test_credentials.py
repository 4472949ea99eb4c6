"""Credentials: where they come from, the key-file permission check, and that nothing prints them."""
from __future__ import annotations

import os
import traceback
from pathlib import Path

import attrs
import pytest

from triplegain_fsm.config import Config, ExchangeConfig
from triplegain_fsm.credentials import Credentials, load_credentials
from triplegain_fsm.errors import ConfigError

pytestmark = pytest.mark.unit

# Kraken's documented example secret (kraken-api.md): valid base64, not a live key.
SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
KEY = "AbCdEfGh1234567890klmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV"

needs_posix_modes = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def exchange(key_file: Path | None = None) -> ExchangeConfig:
    return ExchangeConfig(key_file=None if key_file is None else str(key_file))


def key_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "kraken.key"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def assert_never_shows_secret(text: str) -> None:
    assert SECRET not in text
    assert SECRET[:12] not in text
    assert KEY[4:] not in text


# --------------------------------------------------------------------------- environment


def test_nothing_configured_gives_none() -> None:
    assert load_credentials(exchange(), environ={}) is None
    assert load_credentials(exchange(), environ={"KRAKEN_API_KEY": "", "KRAKEN_API_SECRET": ""}) is None


def test_environment_credentials() -> None:
    creds = load_credentials(exchange(), environ={"KRAKEN_API_KEY": KEY, "KRAKEN_API_SECRET": SECRET})
    assert creds == Credentials(KEY, SECRET)
    assert creds is not None and creds.api_key == KEY and creds.api_secret == SECRET


def test_environment_values_are_stripped() -> None:
    creds = load_credentials(exchange(), environ={"KRAKEN_API_KEY": f" {KEY}\n", "KRAKEN_API_SECRET": f"{SECRET}\n"})
    assert creds == Credentials(KEY, SECRET)


def test_environment_wins_over_key_file(tmp_path: Path) -> None:
    path = key_file(tmp_path, "api_key: FILEKEY-not-used-000\napi_secret: c2VjcmV0\n")
    creds = load_credentials(exchange(path), environ={"KRAKEN_API_KEY": KEY, "KRAKEN_API_SECRET": SECRET})
    assert creds is not None and creds.api_key == KEY


def test_whole_config_is_accepted() -> None:
    creds = load_credentials(Config(), environ={"KRAKEN_API_KEY": KEY, "KRAKEN_API_SECRET": SECRET})
    assert creds == Credentials(KEY, SECRET)


@pytest.mark.parametrize(("env", "missing"), [
    ({"KRAKEN_API_KEY": KEY}, "KRAKEN_API_SECRET"),
    ({"KRAKEN_API_SECRET": SECRET}, "KRAKEN_API_KEY"),
    ({"KRAKEN_API_KEY": KEY, "KRAKEN_API_SECRET": "  "}, "KRAKEN_API_SECRET"),
])
def test_half_set_environment_is_an_error(env: dict[str, str], missing: str, tmp_path: Path) -> None:
    # even with a usable key file: a half-set environment is a mistake to stop for
    path = key_file(tmp_path, f"{KEY}\n{SECRET}\n")
    with pytest.raises(ConfigError, match=f"{missing} is not: set both, or neither") as info:
        load_credentials(exchange(path), environ=env)
    assert_never_shows_secret(str(info.value))


def test_secret_that_is_not_base64_is_refused_without_showing_it() -> None:
    bad = "not-base64!!-TOPSECRET"
    with pytest.raises(ConfigError) as info:
        load_credentials(exchange(), environ={"KRAKEN_API_KEY": KEY, "KRAKEN_API_SECRET": bad})
    message = str(info.value)
    assert "KRAKEN_API_SECRET" in message and "not valid base64" in message
    assert "TOPSECRET" not in message
    assert "TOPSECRET" not in "".join(traceback.format_exception(info.value))


def test_key_with_whitespace_is_refused() -> None:
    with pytest.raises(ConfigError, match="api_key: must not contain whitespace"):
        Credentials("two words-here", SECRET)


# --------------------------------------------------------------------------- key file


@needs_posix_modes
def test_key_file_yaml_mapping_0600(tmp_path: Path) -> None:
    path = key_file(tmp_path, f"api_key: {KEY}\napi_secret: {SECRET}\n")
    assert load_credentials(exchange(path), environ={}) == Credentials(KEY, SECRET)


@needs_posix_modes
def test_key_file_two_lines(tmp_path: Path) -> None:
    path = key_file(tmp_path, f"\n{KEY}\n{SECRET}\n\n", mode=0o400)
    assert load_credentials(exchange(path), environ={}) == Credentials(KEY, SECRET)


@needs_posix_modes
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, f"api_key: {KEY}\napi_secret: {SECRET}\n", mode=mode)
    with pytest.raises(ConfigError) as info:
        load_credentials(exchange(path), environ={})
    message = str(info.value)
    assert str(path) in message
    assert f"chmod 600 {path}" in message
    assert f"{mode:04o}" in message
    assert_never_shows_secret(message)


def test_key_file_loaded_through_config(tmp_path: Path) -> None:
    key_file(tmp_path, f"{KEY}\n{SECRET}\n")
    (tmp_path / "execution.yaml").write_text("exchange:\n  key_file: kraken.key\n")
    config = Config.load(tmp_path / "execution.yaml")
    assert load_credentials(config.exchange, environ={}) == Credentials(KEY, SECRET)


def test_missing_key_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_credentials(exchange(tmp_path / "absent.key"), environ={})


def test_key_file_that_is_a_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        load_credentials(exchange(tmp_path), environ={})


@pytest.mark.parametrize("text", [f"{KEY}\n", f"{KEY}\n{SECRET}\nextra-line-TOPSECRET\n", ""])
def test_key_file_with_wrong_shape_is_refused_without_content(tmp_path: Path, text: str) -> None:
    path = key_file(tmp_path, text)
    with pytest.raises(ConfigError, match="expected a YAML mapping") as info:
        load_credentials(exchange(path), environ={})
    assert_never_shows_secret(str(info.value))
    assert "TOPSECRET" not in str(info.value)


def test_key_file_mapping_with_unknown_keys_does_not_name_them(tmp_path: Path) -> None:
    path = key_file(tmp_path, f"api_key: {KEY}\napi_secret: {SECRET}\nTOPSECRETVALUE: \n")
    with pytest.raises(ConfigError, match="1 unexpected key") as info:
        load_credentials(exchange(path), environ={})
    assert "TOPSECRETVALUE" not in str(info.value)


def test_key_file_bad_secret_names_the_file_not_the_value(tmp_path: Path) -> None:
    path = key_file(tmp_path, f"api_key: {KEY}\napi_secret: '%%%TOPSECRET%%%'\n")
    with pytest.raises(ConfigError) as info:
        load_credentials(exchange(path), environ={})
    assert str(path) in str(info.value) and "not valid base64" in str(info.value)
    assert "TOPSECRET" not in str(info.value)


# --------------------------------------------------------------------------- redaction


def test_repr_and_str_are_redacted() -> None:
    creds = Credentials(KEY, SECRET)
    for text in (repr(creds), str(creds), f"{creds}", f"{creds!r}", repr([creds]), repr({"c": creds})):
        assert_never_shows_secret(text)
        assert "<redacted>" in text
    assert repr(creds) == "Credentials(api_key='AbCd…', api_secret=<redacted>)"


def test_short_key_is_not_shown_at_all() -> None:
    assert repr(Credentials("shortkey", SECRET)) == "Credentials(api_key='…', api_secret=<redacted>)"


def test_credentials_are_frozen() -> None:
    creds = Credentials(KEY, SECRET)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        creds.api_secret = "x"  # type: ignore[misc]
