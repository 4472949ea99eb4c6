"""Scripted misbehaviour of the WebSocket v2 side: what real private streams do to clients.

Per-request faults are queued for the next call(s) of one v2 method (or "*"), like
`paper.faults` for REST; stream faults apply to the next execution update(s):

    drop_before_next    the connection drops when the request arrives, before the exchange acts
    drop_after_next     the exchange acts, then the connection drops unanswered  (acted)
    fail_next           answered `success: false` with a Kraken error string, not acted
    unanswered_next     the exchange acts, the answer never comes; still connected (acted)
    reorder_next        the execution reports are sent before the method's answer (acted)
    during_next         the exchange acts, then `action()` runs before the answer and reports
                        go out (the world moves while the answer travels)             (acted)
    skip_sequence       the next update's `sequence` jumps by one (nothing lost)
    drop_next_update    the next update is never sent, its sequence number is used up
    silence / resume    send nothing at all (answers, updates, heartbeats), stay connected
    drop_now            drop every open connection at once
    invalidate_tokens   every token dies: later requests get `EAPI:Invalid token` and
                        subscriptions end (no more updates or heartbeats)

Each request fault takes `where=`: a predicate on the request's params, so a fault can
wait for one particular order (`where=lambda p: p["order_type"] == "stop-loss"`).
Thread-safe: a request fault is taken atomically, first queued first served.
`met()` lists every fault that shaped something (a request taken, an update skipped
or dropped, a frame silenced), so a test can prove its fault was not left unused.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from triplegain_fsm.paper.ws_tokens import TokenBook

DROP_BEFORE = "drop_before"
DROP_AFTER = "drop_after"
FAIL = "fail"
UNANSWERED = "unanswered"
REORDER = "reorder"
DURING = "during"
ANY_METHOD = "*"
NOT_ACTED = frozenset({DROP_BEFORE, FAIL})       # the exchange never acts on the request
SKIP_SEQUENCE = "skip_sequence"
DROP_UPDATE = "drop_update"
SILENCE = "silence"


Where = Callable[[Mapping[str, Any]], bool]


@attrs.frozen
class WsFault:
    kind: str
    method: str
    error: str | None = None      # FAIL: the Kraken error string answered
    where: Where | None = None    # only requests whose params satisfy it (e.g. one order type)
    action: Callable[[], Any] | None = attrs.field(default=None, eq=False)   # DURING: what happens meanwhile
    reports_first: bool = False   # DURING: then the execution reports go out before the answer (as REORDER)

    def matches(self, method: str, params: Mapping[str, Any] | None = None) -> bool:
        if self.method not in (method, ANY_METHOD):
            return False
        return self.where is None or (params is not None and bool(self.where(params)))


def _times(times: int) -> int:
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise ValueError(f"times: a positive int, got {times!r}")
    return times


class WsFaults:
    def __init__(self, tokens: TokenBook) -> None:
        self._tokens = tokens
        self._queue: list[list] = []            # [WsFault, remaining uses]
        self._skip = 0
        self._drop_updates = 0
        self._silent = False
        self._silence_met = False
        self._met: list[WsFault] = []
        self._droppers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    # -- per request ----------------------------------------------------------------------------

    def _add(self, kind: str, method: str, times: int, error: str | None = None,
             where: Where | None = None) -> WsFault:
        return self._queued(WsFault(kind, method, error, where), times)

    def _queued(self, fault: WsFault, times: int) -> WsFault:
        if not fault.method:
            raise ValueError("method: a v2 method name like 'add_order', or '*'")
        with self._lock:
            self._queue.append([fault, _times(times)])
        return fault

    def drop_before_next(self, method: str, times: int = 1, *, where: Where | None = None) -> WsFault:
        """The connection is cut (no close frame, no answer) as the request arrives: nothing is done."""
        return self._add(DROP_BEFORE, method, times, where=where)

    def fail_next(self, method: str, error: str, times: int = 1, *, where: Where | None = None) -> WsFault:
        """Answer `success: false` with `error` (e.g. "EService:Unavailable") without acting."""
        if not isinstance(error, str) or not error.startswith(("E", "W")):
            raise ValueError(f"error: a Kraken error string like 'EService:Unavailable', got {error!r}")
        return self._add(FAIL, method, times, error, where)

    def drop_after_next(self, method: str, times: int = 1, *, where: Where | None = None) -> WsFault:
        return self._add(DROP_AFTER, method, times, where=where)

    def unanswered_next(self, method: str = "add_order", times: int = 1, *, where: Where | None = None) -> WsFault:
        return self._add(UNANSWERED, method, times, where=where)

    def reorder_next(self, method: str = "add_order", times: int = 1, *, where: Where | None = None) -> WsFault:
        return self._add(REORDER, method, times, where=where)

    def during_next(self, method: str, action: Callable[[], Any], times: int = 1, *,
                    where: Where | None = None, reports_first: bool = False) -> WsFault:
        """Run `action()` on the connection's thread after the exchange acted on the next `method`
        request and before its answer and reports are sent (`reports_first`: the reports, then the
        answer). The action must not wait for an answer on this connection (it is the thread that
        would read the request)."""
        if not callable(action):
            raise ValueError(f"action: a callable, got {action!r}")
        return self._queued(WsFault(DURING, method, where=where, action=action, reports_first=reports_first), times)

    def take(self, method: str, params: Mapping[str, Any] | None = None) -> WsFault | None:
        """The first queued fault for this request (used up by one), or None."""
        with self._lock:
            for entry in self._queue:
                if entry[0].matches(method, params):
                    entry[1] -= 1
                    if entry[1] == 0:
                        self._queue.remove(entry)
                    self._met.append(attrs.evolve(entry[0], method=method))
                    return entry[0]
            return None

    def pending(self) -> list[WsFault]:
        with self._lock:
            return [fault for fault, remaining in self._queue for _ in range(remaining)]

    # -- the stream -----------------------------------------------------------------------------

    def skip_sequence(self, times: int = 1) -> None:
        with self._lock:
            self._skip += _times(times)

    def drop_next_update(self, times: int = 1) -> None:
        with self._lock:
            self._drop_updates += _times(times)

    def take_update_fault(self) -> tuple[bool, bool]:
        """(skip a sequence number, drop this update) for the next execution update."""
        with self._lock:
            skip, drop = self._skip > 0, self._drop_updates > 0
            self._skip -= skip
            self._drop_updates -= drop
            self._met += [WsFault(kind, "executions") for kind, used in ((SKIP_SEQUENCE, skip), (DROP_UPDATE, drop))
                          if used]
            return skip, drop

    def silence(self) -> None:
        with self._lock:
            self._silent, self._silence_met = True, False

    def resume(self) -> None:
        with self._lock:
            self._silent = False

    @property
    def silent(self) -> bool:
        with self._lock:
            return self._silent

    def silenced(self, what: str) -> None:
        """A connection swallowed a frame (`what`: its channel or method) because of `silence`; the
        first one of each silence is recorded in `met()`."""
        with self._lock:
            if not self._silence_met:
                self._silence_met = True
                self._met.append(WsFault(SILENCE, what))

    def met(self) -> list[WsFault]:
        """Every fault used so far, in order (`method`: the request's, or "executions" for updates)."""
        with self._lock:
            return list(self._met)

    def drop_now(self) -> None:
        """Cut every open connection (no close frame): the client sees an abnormal closure."""
        with self._lock:
            droppers = list(self._droppers)
        for drop in droppers:
            drop()

    def invalidate_tokens(self) -> int:
        return self._tokens.invalidate_all()

    def attach(self, dropper: Callable[[], None]) -> None:
        """A server registers how to drop its connections (done by `WsServer`)."""
        with self._lock:
            self._droppers.append(dropper)

    def detach(self, dropper: Callable[[], None]) -> None:
        with self._lock:
            if dropper in self._droppers:
                self._droppers.remove(dropper)

    def clear(self) -> None:
        """Drop every queued fault and end silence (what was met stays in `met()`)."""
        with self._lock:
            self._queue.clear()
            self._skip = self._drop_updates = 0
            self._silent = False      # what was met stays on record
