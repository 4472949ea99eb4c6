"""Identifiers shaped like Kraken's, so code that parses or logs them sees the real format.

Order txids look like `OUF4EM-FRGI2-MQMWZD`; trade, position and amend ids share
the shape with a `T` first. A seed makes them reproducible; every id is unique
within one exchange (checked, not assumed).
"""
from __future__ import annotations

import random
import string
import threading
from collections.abc import Iterable, Mapping
from typing import Any

_ALPHABET = string.ascii_uppercase + string.digits


class IdFactory:
    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._issued: set[str] = set()
        self._trade_number = 40_000_000
        self._lock = threading.Lock()
        self._fresh: list[str] | None = None      # ids issued since the journal last took them

    def _make(self, prefix: str) -> str:
        with self._lock:
            while True:
                chars = "".join(self._rng.choice(_ALPHABET) for _ in range(16))
                candidate = f"{prefix}{chars[:5]}-{chars[5:10]}-{chars[10:]}"
                if candidate not in self._issued:
                    self._issued.add(candidate)
                    if self._fresh is not None:
                        self._fresh.append(candidate)
                    return candidate

    def order_txid(self) -> str:
        return self._make("O")

    def trade_txid(self) -> str:
        return self._make("T")

    def position_id(self) -> str:
        return self._make("T")

    def amend_id(self) -> str:
        return self._make("T")

    # -- persistence (paper.persist): the generator's state, so ids never repeat after a restart --

    def track(self) -> None:
        """Start remembering newly issued ids for `take_fresh`."""
        with self._lock:
            self._fresh = []

    def take_fresh(self) -> list[str]:
        with self._lock:
            if self._fresh is None:
                return []
            fresh, self._fresh = self._fresh, []
            return fresh

    def snapshot(self) -> dict[str, Any]:
        """The random generator's state and the trade counter, JSON-ready."""
        with self._lock:
            version, internal, gauss = self._rng.getstate()
            return {"rng": [version, list(internal), gauss], "trade_number": self._trade_number}

    def restore(self, snapshot: Mapping[str, Any], issued: Iterable[str]) -> None:
        """Continue exactly where `snapshot` left off; `issued` are every id given out before."""
        with self._lock:
            version, internal, gauss = snapshot["rng"]
            self._rng.setstate((version, tuple(internal), gauss))
            self._trade_number = int(snapshot["trade_number"])
            self._issued = set(issued)

    def trade_number(self) -> int:
        """Kraken's integer `trade_id`: increasing per exchange."""
        with self._lock:
            self._trade_number += 1
            return self._trade_number
