"""Circuit breaker: repeated exchange failures stop new entries, never exits or protection.

Closed → (N consecutive failures) → open: `execute_trade` refuses, an alert
says so, the poller keeps managing orders and protection. After the probe
interval the next call is a probe: a success closes the circuit. A lockout or
an authentication failure halts ALL calls for a while instead: hammering a
locked key only extends the lockout.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from triplegain_fsm.kraken.errors import KrakenError, TemporaryLockout

LOCKOUT_SECONDS = 15 * 60
AUTH_HALT_SECONDS = 60.0


class CircuitBreaker:
    def __init__(self, threshold: int, probe_seconds: float, on_change: Callable[[bool, str], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.threshold = threshold
        self.probe_seconds = probe_seconds
        self.on_change = on_change
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.halted_until = 0.0
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def allows_entries(self) -> bool:
        with self._lock:
            if self.clock() < self.halted_until:
                return False
            return self.opened_at is None or self.clock() - self.opened_at >= self.probe_seconds

    def allows_calls(self) -> bool:
        return self.clock() >= self.halted_until

    def record_success(self) -> None:
        with self._lock:
            was_open = self.opened_at is not None
            self.failures = 0
            self.opened_at = None
        if was_open:
            self.on_change(False, "exchange answered again")

    def record_failure(self, exc: KrakenError) -> None:
        if not (exc.retry_safe or exc.outcome_unknown or exc.auth_failure or isinstance(exc, TemporaryLockout)):
            return  # a definite business rejection says nothing about the exchange's health
        with self._lock:
            self.failures += 1
            if isinstance(exc, TemporaryLockout):
                self.halted_until = self.clock() + LOCKOUT_SECONDS
            elif exc.auth_failure:
                self.halted_until = self.clock() + AUTH_HALT_SECONDS
            opening = self.opened_at is None and (
                self.failures >= self.threshold or self.halted_until > self.clock())
            if opening or (self.opened_at is not None and self.failures >= self.threshold):
                self.opened_at = self.clock()
        if opening:
            self.on_change(True, f"{self.failures} consecutive exchange failures, last: {exc}")
