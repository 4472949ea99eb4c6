"""The WebSocket v2 wire for the stream client: exact JSON, and requests waiting for their answers.

JSON: Kraken's v2 sends amounts as JSON numbers at full precision, so they are read
with `parse_float=Decimal` (NaN/Infinity refused), and a Decimal is written as its
own digits (`0.00012345`), never through a float. A float in a request is refused:
money is Decimal, counts are int.

Requests: every request carries a `req_id`; `PendingRequests` hands out the ids and
lets the caller's thread wait for the answer(s) the reader thread routes to it.
`cancel_order` naming several orders is answered once per order with the same
`req_id`, so a waiter collects `expect` answers. An answer that never comes is
outcome unknown (`RequestTimeout`), a connection lost while waiting too
(`ConnectionFailed`); nothing here ever resends.
"""
from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from triplegain_fsm.kraken.errors import ConnectionFailed, MalformedResponse, RequestTimeout, classify
from triplegain_fsm.kraken.params import wire_decimal

_string = json.JSONEncoder(ensure_ascii=False).encode
CANCEL_ID_FIELDS = ("order_id", "cl_ord_id", "order_userref")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number Kraken sends")


def loads(text: str | bytes) -> Any:
    """One v2 message: floats as Decimal, ints as int, NaN/Infinity refused (ValueError)."""
    return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)


def dumps(value: Any) -> str:
    """JSON text with Decimals as exact numbers; a float raises TypeError."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else ("true" if value else "false")
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"not a JSON number: {value}")
        return wire_decimal(value)
    if isinstance(value, float):
        raise TypeError("a float in a WebSocket request: use Decimal for money, int for counts")
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_string(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} cannot be sent on the WebSocket")


def expected_answers(method: str, params: Mapping[str, Any]) -> int:
    """How many answers a request gets: one per named order for `cancel_order`, else one."""
    if method != "cancel_order":
        return 1
    count = sum(len(v) for name in CANCEL_ID_FIELDS if isinstance(v := params.get(name), (list, tuple)))
    return max(count, 1)


@attrs.frozen
class Answer:
    """One answer to a request: `result` on success, Kraken's `error` string otherwise."""

    method: str
    success: bool
    result: Mapping[str, Any] | None = None
    error: str | None = None

    @classmethod
    def of(cls, method: str, message: Mapping[str, Any]) -> Answer:
        result = message.get("result")
        error = message.get("error")
        return cls(method, message.get("success") is True, result if isinstance(result, Mapping) else None,
                   error if isinstance(error, str) else None)

    def unwrap(self) -> dict[str, Any]:
        """The result, or the error raised through the one error table (`errors.classify`)."""
        if self.success:
            return dict(self.result or {})
        if not self.error:
            raise MalformedResponse("success is false and there is no error string", endpoint=f"ws {self.method}")
        raise classify([self.error], endpoint=f"ws {self.method}")


class Waiter:
    """One request's place in the table: `req_id`, and the answers routed to it so far."""

    __slots__ = ("answers", "done", "expect", "lost", "method", "req_id")

    def __init__(self, req_id: int, method: str, expect: int) -> None:
        self.req_id, self.method, self.expect = req_id, method, expect
        self.answers: list[Answer] = []
        self.done = threading.Event()
        self.lost: str | None = None


class PendingRequests:
    """req_id -> the thread waiting for its answer(s). Thread-safe."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._waiting: dict[int, Waiter] = {}
        self._lock = threading.Lock()

    def next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def open(self, method: str, expect: int) -> Waiter:
        """Register a waiter BEFORE sending, so a fast answer is never missed."""
        with self._lock:
            waiter = Waiter(next(self._ids), method, expect)
            self._waiting[waiter.req_id] = waiter
            return waiter

    def discard(self, req_id: int) -> None:
        with self._lock:
            self._waiting.pop(req_id, None)

    def deliver(self, req_id: Any, message: Mapping[str, Any]) -> bool:
        """Route an answer to its waiter (reader thread); False when nobody waits for this req_id."""
        with self._lock:
            waiter = self._waiting.get(req_id) if isinstance(req_id, int) else None
            if waiter is None:
                return False
            waiter.answers.append(Answer.of(waiter.method, message))
            if len(waiter.answers) >= waiter.expect:
                del self._waiting[req_id]
                waiter.done.set()
            return True

    def fail_all(self, reason: str) -> int:
        """The connection is gone: every waiter wakes up with `reason`. Returns how many there were."""
        with self._lock:
            waiters, self._waiting = list(self._waiting.values()), {}
        for waiter in waiters:
            waiter.lost = reason
            waiter.done.set()
        return len(waiters)

    def wait(self, waiter: Waiter, timeout: float) -> tuple[Answer, ...]:
        """The waiter's answers, or an outcome-unknown error (the request is never resent)."""
        answered = waiter.done.wait(timeout)
        req_id = waiter.req_id
        with self._lock:
            self._waiting.pop(req_id, None)
            answers, lost = tuple(waiter.answers), waiter.lost
        endpoint = f"ws {waiter.method}"
        if len(answers) >= waiter.expect:
            return answers
        got = f"{len(answers)} of {waiter.expect} answer(s)"
        if answered and lost is not None:
            raise ConnectionFailed(f"connection lost after sending (req_id {req_id}, {got}): {lost}; "
                                   "outcome unknown, not resent", endpoint=endpoint)
        raise RequestTimeout(f"no answer within {timeout:g} s (req_id {req_id}, {got}); outcome unknown, "
                             "not resent", endpoint=endpoint)
