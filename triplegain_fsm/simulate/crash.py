"""Crashes on cue: the process "dies" between two exchange calls or inside a unit of work.

`SimulatedCrash` is a `BaseException`, so no `except Exception` in the core can catch
it: like a killed process, it stops the core wherever it is. On the way out the
store's transaction context rolls the open SQLite transaction back (exactly what a
real death does to an uncommitted transaction), and the simulator then abandons the
core and builds a new one on the same file.

A `CrashSwitch` is armed with a countdown of exchange calls or store writes:
- `calls`: the Nth REST call from now dies, either before it is sent (the exchange
  never sees it) or after the exchange acted (the answer is never read);
- `writes`: the Nth store write from now dies inside its unit, before the commit.
The same two call points wrap a WebSocket order-entry request (`ws_entry`).

`IN_RECOVERY` is no switch kind of its own: the process dies between steps, and the
switch is armed (one of `KINDS`) for the next process's boot, so it dies again inside
its recovery (`sync_with_exchange()`, the stream's token, snapshot and resync); the
runner counts one that fired there as `during_recovery`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

BEFORE_SEND, AFTER_ACT, IN_UNIT = "before_send", "after_act", "in_unit"
KINDS = (BEFORE_SEND, AFTER_ACT, IN_UNIT)
IN_RECOVERY, DURING_RECOVERY = "in_recovery", "during_recovery"


class SimulatedCrash(BaseException):  # noqa: N818 - not an error: the process ends here
    """The simulated process died at this point."""


@attrs.define
class CrashSwitch:
    kind: str | None = None
    countdown: int = 0
    fired: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(KINDS, 0))

    def arm(self, kind: str, countdown: int) -> None:
        self.kind, self.countdown = kind, max(1, countdown)

    def disarm(self) -> None:
        self.kind, self.countdown = None, 0

    @property
    def armed(self) -> bool:
        return self.kind is not None

    def before_send(self) -> None:
        self._tick(BEFORE_SEND)

    def after_act(self) -> None:
        self._tick(AFTER_ACT)

    def _tick(self, kind: str) -> None:
        if self.kind != kind:
            return
        self.countdown -= 1
        if self.countdown <= 0:
            self.fired[kind] += 1
            self.disarm()
            raise SimulatedCrash(kind)

    def handler(self, handle: Callable[..., Any]) -> Callable[..., Any]:
        """The exchange's REST front door, with the two call crash points around it."""

        def crashing(http_method: str, path: str, headers: Any, body: bytes | None) -> Any:
            self._tick(BEFORE_SEND)                      # dies before the exchange sees the call
            reply = handle(http_method, path, headers, body)
            self._tick(AFTER_ACT)                        # the exchange acted; the answer is never read
            return reply

        return crashing

    def wrap_store(self, store: Any) -> None:
        """Every write the store makes inside a unit (rows, events, fills, work) may be the last."""
        for name in ("save_order", "save_position", "append_events", "record_fill", "put_work", "done_work"):
            original = getattr(store, name)
            setattr(store, name, self._writer(original))

    def _writer(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def write(*args: Any, **kwargs: Any) -> Any:
            self._tick(IN_UNIT)
            return original(*args, **kwargs)

        return write
