"""Kraken's request signature and nonce: the only code that touches the secret's bytes."""
from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time


def sign(url_path: str, nonce: int | str, body: str, secret_b64: str) -> str:
    """API-Sign = b64(HMAC-SHA512(b64decode(secret), path + SHA256(nonce + body)))."""
    digest = hashlib.sha256((str(nonce) + body).encode()).digest()
    mac = hmac.new(base64.b64decode(secret_b64), url_path.encode() + digest, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()


class NonceSource:
    """Strictly increasing nonces for one key in one process (microseconds since the epoch).

    `max(last + 1, now)` under a lock: two threads never get the same value and a
    clock step backwards never produces a smaller one. One scale only, forever.
    """

    def __init__(self, clock=time.time_ns) -> None:
        self._clock = clock
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, self._clock() // 1_000)
            return self._last
