"""Identifiers shaped like Kraken's, so code that parses or logs them sees the real format.

Order txids look like `OUF4EM-FRGI2-MQMWZD`; trade, position and amend ids share
the shape with a `T` first. A seed makes them reproducible; every id is unique
within one exchange (checked, not assumed).
"""
from __future__ import annotations

import random
import string
import threading

_ALPHABET = string.ascii_uppercase + string.digits


class IdFactory:
    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._issued: set[str] = set()
        self._trade_number = 40_000_000
        self._lock = threading.Lock()

    def _make(self, prefix: str) -> str:
        with self._lock:
            while True:
                chars = "".join(self._rng.choice(_ALPHABET) for _ in range(16))
                candidate = f"{prefix}{chars[:5]}-{chars[5:10]}-{chars[10:]}"
                if candidate not in self._issued:
                    self._issued.add(candidate)
                    return candidate

    def order_txid(self) -> str:
        return self._make("O")

    def trade_txid(self) -> str:
        return self._make("T")

    def position_id(self) -> str:
        return self._make("T")

    def amend_id(self) -> str:
        return self._make("T")

    def trade_number(self) -> int:
        """Kraken's integer `trade_id`: increasing per exchange."""
        with self._lock:
            self._trade_number += 1
            return self._trade_number
