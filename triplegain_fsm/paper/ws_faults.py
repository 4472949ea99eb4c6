"""Scripted misbehaviour of the WebSocket v2 side: what real private streams do to clients.

Per-request faults are queued for the next call(s) of one v2 method (or "*"), like
`paper.faults` for REST; stream faults apply to the next execution update(s):

    drop_after_next     the exchange acts, then the connection drops unanswered  (acted)
    unanswered_next     the exchange acts, the answer never comes; still connected (acted)
    reorder_next        the execution reports are sent before the method's answer (acted)
    skip_sequence       the next update's `sequence` jumps by one (nothing lost)
    drop_next_update    the next update is never sent, its sequence number is used up
    silence / resume    send nothing at all (answers, updates, heartbeats), stay connected
    drop_now            drop every open connection at once
    invalidate_tokens   every token dies: later requests get `EAPI:Invalid token` and
                        subscriptions end (no more updates or heartbeats)

Thread-safe: a request fault is taken atomically, first queued first served.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import attrs

from triplegain_fsm.paper.ws_tokens import TokenBook

DROP_AFTER = "drop_after"
UNANSWERED = "unanswered"
REORDER = "reorder"
ANY_METHOD = "*"


@attrs.frozen
class WsFault:
    kind: str
    method: str

    def matches(self, method: str) -> bool:
        return self.method in (method, ANY_METHOD)


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
        self._droppers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    # -- per request ----------------------------------------------------------------------------

    def _add(self, kind: str, method: str, times: int) -> WsFault:
        if not method:
            raise ValueError("method: a v2 method name like 'add_order', or '*'")
        fault = WsFault(kind, method)
        with self._lock:
            self._queue.append([fault, _times(times)])
        return fault

    def drop_after_next(self, method: str, times: int = 1) -> WsFault:
        return self._add(DROP_AFTER, method, times)

    def unanswered_next(self, method: str = "add_order", times: int = 1) -> WsFault:
        return self._add(UNANSWERED, method, times)

    def reorder_next(self, method: str = "add_order", times: int = 1) -> WsFault:
        return self._add(REORDER, method, times)

    def take(self, method: str) -> WsFault | None:
        with self._lock:
            for entry in self._queue:
                if entry[0].matches(method):
                    entry[1] -= 1
                    if entry[1] == 0:
                        self._queue.remove(entry)
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
            return skip, drop

    def silence(self) -> None:
        with self._lock:
            self._silent = True

    def resume(self) -> None:
        with self._lock:
            self._silent = False

    @property
    def silent(self) -> bool:
        with self._lock:
            return self._silent

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
        with self._lock:
            self._queue.clear()
            self._skip = self._drop_updates = 0
            self._silent = False
