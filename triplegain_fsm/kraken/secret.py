"""A credential (API key, secret, WebSocket token) that no repr, log line or traceback prints."""
from __future__ import annotations


class Secret:
    __slots__ = ("_value",)
    LABEL = "<redacted>"

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return self.LABEL

    __str__ = __repr__
