"""Telemetry URLs: `${NAME}` filled in from the environment, and the masked form logs may show.

A notification or ping URL usually carries a secret (a bot token, a webhook key, a check's
UUID). The config holds the template, so the secret can live in the environment; the
expanded URL exists only inside the delivery objects and is never logged or repr'd.
"""
from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from triplegain_fsm.config import mask_url
from triplegain_fsm.errors import ConfigError

__all__ = ["expand", "fail_url", "mask_url", "quiet_third_parties"]

# Loggers that would print a telemetry URL in full: apprise ("Loaded JSON URL: json://host/TOKEN") and
# urllib3 at DEBUG ("POST /TOKEN HTTP/1.1"). Only records emitted inside `quiet_third_parties()` are dropped.
THIRD_PARTY_LOGGERS = ("apprise", "urllib3.connectionpool")

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(template: str, environ: Mapping[str, str], where: str) -> str:
    """`template` with every `${NAME}` replaced by the environment's value; a ConfigError names a
    missing variable (never a value)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ or not environ[name]:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return environ[name]

    return _VARIABLE.sub(value, template.strip())


def fail_url(url: str) -> str:
    """healthchecks.io style: the check's URL with `/fail` appended to its path (query kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))


class _Quiet(logging.Filter):
    """Drops a third-party logger's records emitted by a thread while it is inside `quiet_third_parties()`."""

    local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "quiet", False)


_QUIET = _Quiet()


@contextmanager
def quiet_third_parties() -> Iterator[None]:
    """Around every call that handles an expanded URL: apprise and urllib3 stay silent about it (this
    package logs what matters itself, with the URL masked). Other threads' records pass untouched."""
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).addFilter(_QUIET)   # idempotent: the same filter object
    previous = getattr(_Quiet.local, "quiet", False)
    _Quiet.local.quiet = True
    try:
        yield
    finally:
        _Quiet.local.quiet = previous
