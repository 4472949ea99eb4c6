"""Scripted misbehaviour for tests: the failures a real exchange connection produces.

Each `*_next` call queues a fault for the next call(s) of one Kraken method (or
"*" for any). Faults that do not act answer before the engine sees the request;
the others let the exchange act first and then spoil the answer -- the case an
execution core must survive without placing an order twice:

    fail_next           a Kraken error in a normal 200 answer          (not acted)
    timeout_before_next the client times out; the exchange never saw it (not acted)
    lose_next_response  the exchange acts, then the client times out   (acted)
    http_status_next    500/502/520 etc. with an HTML page             (acted only if acted=True)
    malformed_next      a truncated, non-JSON body with HTTP 200       (acted only if acted=True)
    corrupt_result_next the real answer, passed through `mutate`       (acted)
    during_next         the world moves while the answer travels: `action()` runs after
                        the exchange acted, before the client reads the (true) answer
                        -- a fill or a tick landing inside another call's round trip

Thread-safe: faults are taken atomically, first queued first served.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import attrs

ERROR = "error"
TIMEOUT_BEFORE = "timeout_before"
LOSE_RESPONSE = "lose_response"
HTTP_STATUS = "http_status"
MALFORMED = "malformed"
CORRUPT = "corrupt"
DURING = "during"
ANY_METHOD = "*"


@attrs.frozen
class Fault:
    kind: str
    method: str
    error: str | None = None
    status: int | None = None
    acted: bool = False
    mutate: Callable[[dict[str, Any]], Any] | None = None
    action: Callable[[], Any] | None = None

    @property
    def acts_first(self) -> bool:
        """True when the exchange processes the request before the fault spoils the answer."""
        return self.kind in (LOSE_RESPONSE, CORRUPT, DURING) or (self.kind in (HTTP_STATUS, MALFORMED) and self.acted)

    def matches(self, method: str) -> bool:
        return self.method in (method, ANY_METHOD)


def _times(times: int) -> int:
    if not isinstance(times, int) or times < 1:
        raise ValueError(f"times: a positive int, got {times!r}")
    return times


class Faults:
    def __init__(self) -> None:
        self._queue: list[list[Any]] = []    # [Fault, remaining uses]
        self._lock = threading.Lock()

    def _add(self, fault: Fault, times: int) -> Fault:
        if not fault.method:
            raise ValueError("method: a Kraken method name like 'AddOrder', or '*'")
        with self._lock:
            self._queue.append([fault, _times(times)])
        return fault

    def fail_next(self, method: str, error: str, times: int = 1) -> Fault:
        if not error.startswith(("E", "W")):
            raise ValueError(f"error: a Kraken error string like 'EService:Unavailable', got {error!r}")
        return self._add(Fault(ERROR, method, error=error), times)

    def timeout_before_next(self, method: str, times: int = 1) -> Fault:
        return self._add(Fault(TIMEOUT_BEFORE, method), times)

    def lose_next_response(self, method: str, times: int = 1) -> Fault:
        return self._add(Fault(LOSE_RESPONSE, method, acted=True), times)

    def http_status_next(self, method: str, status: int, *, acted: bool = False, times: int = 1) -> Fault:
        if not 400 <= status <= 599:
            raise ValueError(f"status: an HTTP error status (400-599), got {status}")
        return self._add(Fault(HTTP_STATUS, method, status=status, acted=acted), times)

    def malformed_next(self, method: str, *, acted: bool = False, times: int = 1) -> Fault:
        return self._add(Fault(MALFORMED, method, acted=acted), times)

    def corrupt_result_next(self, method: str, mutate: Callable[[dict[str, Any]], Any], times: int = 1) -> Fault:
        """`mutate(payload)` gets a copy of the whole `{"error", "result"}` answer; it may edit it
        in place (return None) or return a replacement."""
        return self._add(Fault(CORRUPT, method, acted=True, mutate=mutate), times)

    def during_next(self, method: str, action: Callable[[], Any], times: int = 1) -> Fault:
        """Run `action()` (e.g. a price tick that fills a resting order) while the answer to the next
        `method` call is on its way: the client then reads an answer that is already out of date."""
        return self._add(Fault(DURING, method, acted=True, action=action), times)

    def take(self, method: str) -> Fault | None:
        """The next fault for `method`, consuming one use of it."""
        with self._lock:
            for entry in self._queue:
                fault = entry[0]
                if fault.matches(method):
                    entry[1] -= 1
                    if entry[1] == 0:
                        self._queue.remove(entry)
                    return fault
            return None

    def pending(self) -> list[Fault]:
        with self._lock:
            return [fault for fault, remaining in self._queue for _ in range(remaining)]

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
