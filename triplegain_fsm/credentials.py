"""Kraken API credentials: where they come from, and how they are kept out of logs.

The key and secret never live in the YAML config (``Config`` refuses them): a
config file is copied, committed and pasted into tickets. They come, in this
order, from

1. the environment, ``KRAKEN_API_KEY`` and ``KRAKEN_API_SECRET`` (both, or neither:
   one without the other is a mistake worth stopping for), or
2. ``exchange.key_file``: an owner-only file (``chmod 600``) holding either a YAML
   mapping ``api_key: ...`` / ``api_secret: ...`` or two lines, key then secret.

``Credentials`` never shows the secret, and shows at most the first four
characters of the key, in its repr, its str and every error this module raises,
so a traceback or a debug log line cannot leak them.
"""
from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from triplegain_fsm.config import Config, ExchangeConfig
from triplegain_fsm.errors import ConfigError

__all__ = ["ENV_API_KEY", "ENV_API_SECRET", "Credentials", "load_credentials"]

ENV_API_KEY = "KRAKEN_API_KEY"
ENV_API_SECRET = "KRAKEN_API_SECRET"

_FILE_KEY_NAMES = ("api_key", "key")
_FILE_SECRET_NAMES = ("api_secret", "secret")


@attrs.frozen(repr=False)
class Credentials:
    """An API key and its base64 secret, validated, with a repr that redacts them."""

    api_key: str
    api_secret: str

    def __attrs_post_init__(self) -> None:
        # Messages name the field, never its value.
        if not isinstance(self.api_key, str) or not self.api_key.strip():
            raise ConfigError("api_key: must be a non-empty string")
        if not isinstance(self.api_secret, str) or not self.api_secret.strip():
            raise ConfigError("api_secret: must be a non-empty string")
        if any(ch.isspace() for ch in self.api_key.strip()):
            raise ConfigError("api_key: must not contain whitespace (value not shown)")
        try:
            decoded = base64.b64decode(self.api_secret.strip(), validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if not decoded:
            raise ConfigError("api_secret: is not valid base64 (value not shown); "
                              "copy the private key exactly as Kraken displays it")
        # A value pasted from `echo` or a file often carries a newline: keep what Kraken issued.
        object.__setattr__(self, "api_key", self.api_key.strip())
        object.__setattr__(self, "api_secret", self.api_secret.strip())

    def __repr__(self) -> str:
        shown = self.api_key[:4] if len(self.api_key) >= 12 else ""
        return f"Credentials(api_key='{shown}…', api_secret=<redacted>)"

    __str__ = __repr__


def load_credentials(exchange_config: ExchangeConfig | Config,
                     environ: Mapping[str, str] = os.environ) -> Credentials | None:
    """Credentials from the environment, else from ``exchange.key_file``; None if neither is set.

    None is fine for paper mode; the core refuses live mode without credentials.
    Accepts the ``ExchangeConfig`` or the whole ``Config``.
    """
    exchange = exchange_config.exchange if isinstance(exchange_config, Config) else exchange_config
    key, secret = environ.get(ENV_API_KEY, ""), environ.get(ENV_API_SECRET, "")
    if key.strip() or secret.strip():
        if not key.strip():
            raise ConfigError(f"{ENV_API_SECRET} is set but {ENV_API_KEY} is not: set both, or neither")
        if not secret.strip():
            raise ConfigError(f"{ENV_API_KEY} is set but {ENV_API_SECRET} is not: set both, or neither")
        return _make(key, secret, f"environment ({ENV_API_KEY}/{ENV_API_SECRET})")
    if exchange.key_file is None:
        return None
    return _read_key_file(Path(exchange.key_file))


def _make(key: str, secret: str, source: str) -> Credentials:
    try:
        return Credentials(key, secret)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _read_key_file(path: Path) -> Credentials:
    """Read a key file after checking nobody but its owner can read it."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"exchange.key_file: {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"exchange.key_file: cannot stat {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"exchange.key_file: {path} is not a regular file")
    if os.name == "posix" and info.st_mode & 0o077:
        raise ConfigError(f"exchange.key_file: {path} is readable or writable by group/others "
                          f"(mode {stat.S_IMODE(info.st_mode):04o}); restrict it with: chmod 600 {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"exchange.key_file: cannot read {path} as UTF-8 text") from None
    key, secret = _parse_key_file(text, path)
    return _make(key, secret, f"exchange.key_file {path}")


def _parse_key_file(text: str, path: Path) -> tuple[str, str]:
    """A YAML mapping (api_key/api_secret, or key/secret) or two lines; errors never quote the text."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError:  # a bare secret can look like broken YAML; try the two-line form
        data = None
    if isinstance(data, Mapping):
        unknown = [k for k in data if k not in _FILE_KEY_NAMES + _FILE_SECRET_NAMES]
        if unknown:  # not named: a secret pasted as `value:` would be a key
            raise ConfigError(f"exchange.key_file: {path}: {len(unknown)} unexpected key(s); "
                              "expected only api_key and api_secret")
        key = next((data[k] for k in _FILE_KEY_NAMES if k in data), None)
        secret = next((data[k] for k in _FILE_SECRET_NAMES if k in data), None)
        if not isinstance(key, str) or not isinstance(secret, str):
            raise ConfigError(f"exchange.key_file: {path}: api_key and api_secret must both be strings")
        return key, secret
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 2:
        raise ConfigError(f"exchange.key_file: {path}: expected a YAML mapping with api_key and api_secret, "
                          f"or exactly two lines (key, then secret); found {len(lines)} non-empty line(s)")
    return lines[0], lines[1]
