"""Every request the paper exchange received, in order, with what became of it.

Tests count on it ("exactly one AddOrder reached the exchange despite the
timeout") and read its parameters ("the retry reused the cl_ord_id"). A call
that a fault answered without acting is logged too, with `acted=False`.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator

import attrs


@attrs.define(eq=False)
class Call:
    seq: int
    time: float
    http_method: str
    path: str
    method: str                       # Kraken method name, e.g. "AddOrder"
    params: dict[str, str]            # as parsed from the query string or body (nonce included)
    private: bool
    acted: bool = False               # the endpoint ran (auth and rate limits passed)
    fault: str | None = None          # the fault kind that shaped the answer, if any
    error: list[str] = attrs.Factory(list)   # Kraken errors in the answer produced (even if then lost)
    status: int | None = None         # HTTP status sent; None when the client got no answer


class CallLog:
    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._lock = threading.Lock()

    def record(self, **fields) -> Call:
        with self._lock:
            call = Call(seq=len(self._calls) + 1, **fields)
            self._calls.append(call)
            return call

    def all(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def of(self, method: str) -> list[Call]:
        return [c for c in self.all() if c.method == method]

    def count(self, method: str | None = None, *, acted: bool | None = None) -> int:
        """How many calls (of `method`) were received; `acted=True` counts only those the exchange processed."""
        return sum(
            1 for c in self.all()
            if (method is None or c.method == method) and (acted is None or c.acted == acted)
        )

    def last(self, method: str | None = None) -> Call | None:
        calls = self.all() if method is None else self.of(method)
        return calls[-1] if calls else None

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)

    def __iter__(self) -> Iterator[Call]:
        return iter(self.all())
