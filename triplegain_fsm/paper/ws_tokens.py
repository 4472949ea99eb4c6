"""WebSocket tokens, as REST `GetWebSocketsToken` hands them out and the v2 socket checks them.

Kraken's rule: a token must be used within 15 minutes (`expires: 900`); once a
private subscription uses it, it lives as long as that subscription. Tokens do
get invalidated in real life, so tests can invalidate them all at once.
"""
from __future__ import annotations

import secrets
import threading
from collections.abc import Callable

TOKEN_LIFETIME = 900


class TokenBook:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._issued: dict[str, float] = {}      # token -> time issued
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def issue(self) -> dict[str, object]:
        """A fresh random token, in GetWebSocketsToken's result shape."""
        token = secrets.token_urlsafe(30)
        with self._lock:
            self._issued[token] = self._clock()
        return {"token": token, "expires": TOKEN_LIFETIME}

    def is_valid(self, token: object) -> bool:
        with self._lock:
            if not isinstance(token, str) or token not in self._issued:
                return False
            return token in self._used or self._clock() < self._issued[token] + TOKEN_LIFETIME

    def use(self, token: object) -> bool:
        """Check a token and mark it used (it then no longer expires); False if it is not valid."""
        if not isinstance(token, str) or not self.is_valid(token):
            return False
        with self._lock:
            self._used.add(token)
        return True

    def invalidate_all(self) -> int:
        """Forget every token (later requests get `EAPI:Invalid token`); returns how many there were."""
        with self._lock:
            count = len(self._issued)
            self._issued.clear()
            self._used.clear()
            return count
