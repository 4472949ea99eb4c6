"""The bot the fault matrix, the property tests and the simulator's checks drive: the public API,
with every answer classed as clear (a result, a typed refusal) or not (a bare exception)."""
from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import attrs

from triplegain_fsm import ExecutionResult, TripleGainError
from triplegain_fsm.core import ExecutionCore


@attrs.define
class Bot:
    """Calls the public API like a bot and records, per call, whether the answer was a clear one.

    Clear: a normal return, an ExecutionResult whose failure carries an error message,
    or a TripleGainError. Anything else (a KeyError, TypeError, ... from deep inside)
    is recorded as a violation and swallowed, so the rest of the scenario still runs
    and every other invariant is still checked.
    """

    core: ExecutionCore
    unclear: list[str] = attrs.field(factory=list)
    refused: list[str] = attrs.field(factory=list)     # TripleGainErrors seen (clear, but worth showing)
    results: list[ExecutionResult] = attrs.field(factory=list)

    def call(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            value = fn(*args, **kwargs)
        except TripleGainError as exc:
            self.refused.append(f"{name}: {type(exc).__name__}: {exc}")
            return exc
        except Exception as exc:  # the point of the check: anything else is not a clear error
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            self.unclear.append(f"{name} raised a bare {type(exc).__name__}({exc}) at "
                                f"{frame.filename.split('/work/main/')[-1]}:{frame.lineno} ({frame.line})")
            return exc
        if isinstance(value, ExecutionResult):
            self.results.append(value)
            if not value.success and not value.error_message:
                self.unclear.append(f"{name}: ExecutionResult(success=False) without an error_message")
        return value

    def execute(self, proposal: Any) -> Any:
        return self.call("execute_trade", self.core.orders.execute_trade, proposal)

    def poll(self) -> Any:
        return self.call("poll_once", self.core.poll_once)

    def cancel(self, order_id: str) -> Any:
        return self.call("cancel_order", self.core.orders.cancel_order, order_id)

    def close(self, position_id: str) -> Any:
        return self.call("close_position", self.core.positions.close_position, position_id, reason="bot")

    def modify(self, position_id: str, **levels: Any) -> Any:
        return self.call("modify_position", self.core.positions.modify_position, position_id, **levels)

    def sync(self) -> Any:
        return self.call("sync_with_exchange", self.core.sync_with_exchange)

    def trail(self, position_id: str, **kwargs: Any) -> Any:
        return self.call("enable_trailing_stop", self.core.positions.enable_trailing_stop_for_position,
                         position_id, **kwargs)
