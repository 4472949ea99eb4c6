"""A clock tests and replays can set by hand, so time-based behaviour needs no sleeps.

The exchange only ever calls `clock()`; `time.time` is the default, and this class
is the drop-in replacement for deterministic runs (expiry, dead man's switch,
rate-limit decay, replays at the data's own timestamps).
"""
from __future__ import annotations

import threading


class ManualClock:
    """Seconds since the epoch that only move when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)  # float-ok: seconds, not money
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def set(self, now: float) -> None:
        with self._lock:
            self._now = float(now)  # float-ok: seconds, not money

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now
