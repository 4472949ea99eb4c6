"""Kraken's request signature and nonce: the only code that touches the secret's bytes."""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


def sign(url_path: str, nonce: int | str, body: str, secret_b64: str) -> str:
    """API-Sign = b64(HMAC-SHA512(b64decode(secret), path + SHA256(nonce + body)))."""
    digest = hashlib.sha256((str(nonce) + body).encode()).digest()
    mac = hmac.new(base64.b64decode(secret_b64), url_path.encode() + digest, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()


NONCE_LEASE = 60_000_000   # µs: the persisted floor runs this far ahead, so it is written about once a minute


class NonceSource:
    """Strictly increasing nonces for one key in one process (microseconds since the epoch).

    `max(last + 1, now)` under a lock: two threads never get the same value and a
    clock step backwards never produces a smaller one. One scale only, forever.

    Across processes (`persist`): Kraken never accepts a nonce at or below the highest
    it has seen for a key, so a restart whose clock stepped back would be refused
    until the clock caught up. The source keeps a floor persisted ahead of every
    nonce it hands out (a lease of NONCE_LEASE) and starts above it after a restart.
    """

    def __init__(self, clock: Callable[[], int] | None = None) -> None:
        self._clock = clock or time.time_ns
        self._last = 0
        self._reserved = 0
        self._on_reserve: Callable[[int], None] | None = None
        self._lock = threading.Lock()

    def persist(self, floor: int, on_reserve: Callable[[int], None]) -> None:
        """Start above `floor` (the last persisted reservation); report each new reservation."""
        with self._lock:
            self._last = max(self._last, floor)
            self._reserved = self._last   # the next nonce makes a reservation
            self._on_reserve = on_reserve

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, self._clock() // 1_000)
            if self._on_reserve is not None and self._last >= self._reserved:
                self._reserved = self._last + NONCE_LEASE
                try:
                    self._on_reserve(self._reserved)
                except Exception:  # the nonce is still good in this process; a restart may meet it again
                    logger.exception("could not persist the nonce floor %d", self._reserved)
            return self._last
