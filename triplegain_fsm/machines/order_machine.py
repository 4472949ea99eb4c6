"""The life of an order, as a table you can review line by line.

A trigger's keyword arguments come from the exchange report that caused it;
guards read them (transitions passes them to conditions) and refuse a move that
would corrupt the order, e.g. a fill that does not increase the executed volume
or that exceeds the order's volume.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from triplegain_fsm.enums import OrderStatus as S
from triplegain_fsm.machines.base import Edge, MachineKind

_LIVE = (S.OPEN.value, S.PARTIALLY_FILLED.value)

ORDER_TABLE: tuple[Edge, ...] = (
    Edge("submit_unknown", S.PENDING.value, S.SUBMITTED_UNKNOWN.value,
         note="timeout / 5xx after sending: the order may exist; only a look-up settles it"),
    Edge("acknowledge", (S.PENDING.value, S.SUBMITTED_UNKNOWN.value), S.OPEN.value),
    Edge("reject", (S.PENDING.value, S.SUBMITTED_UNKNOWN.value), S.REJECTED.value,
         note="SUBMITTED_UNKNOWN: not found by client id after its deadline passed"),
    Edge("fill", _LIVE, S.FILLED.value, conditions=("fill_is_valid", "fill_completes"),
         before=("apply_fill",)),
    Edge("fill", _LIVE, S.PARTIALLY_FILLED.value, conditions=("fill_is_valid",), unless=("fill_completes",),
         before=("apply_fill",)),
    Edge("fill", S.CANCEL_PENDING.value, S.FILLED.value, conditions=("fill_is_valid", "fill_completes"),
         before=("apply_fill",), note="real world: the order filled before our cancel reached the engine"),
    Edge("fill", S.CANCEL_PENDING.value, None, conditions=("fill_is_valid",), unless=("fill_completes",),
         before=("apply_fill",), note="real world: a partial fill reported after the cancel request still counts"),
    Edge("request_cancel", _LIVE, S.CANCEL_PENDING.value),
    Edge("cancel_refused", S.CANCEL_PENDING.value, S.PARTIALLY_FILLED.value, conditions=("has_fills",)),
    Edge("cancel_refused", S.CANCEL_PENDING.value, S.OPEN.value, unless=("has_fills",)),
    Edge("cancelled", (*_LIVE, S.CANCEL_PENDING.value), S.CANCELLED.value,
         note="from OPEN/PARTIALLY_FILLED: cancelled at the exchange by a human or the dead man's switch"),
    Edge("expire", (*_LIVE, S.CANCEL_PENDING.value), S.EXPIRED.value),
)

ORDER_KIND = MachineKind(
    entity="order",
    states=[s.value for s in S],
    initial=S.PENDING.value,
    table=ORDER_TABLE,
    final_states=[S.FILLED.value, S.CANCELLED.value, S.EXPIRED.value, S.REJECTED.value],
)

class OrderMachineMixin:
    """Guards and callbacks the order table names. Pure: they only read and write the order."""

    size: Decimal
    filled_size: Decimal
    filled_cost: Decimal
    average_fill_price: Decimal | None
    fee_amount: Decimal

    def fill_is_valid(self, vol_exec: Decimal, **_: Any) -> bool:
        return self.filled_size < vol_exec <= self.size

    def fill_completes(self, vol_exec: Decimal, **_: Any) -> bool:
        return vol_exec == self.size

    def has_fills(self, **_: Any) -> bool:
        return self.filled_size > 0

    def apply_fill(self, vol_exec: Decimal, cost: Decimal, fee: Decimal, **_: Any) -> None:
        """Take the exchange's cumulative figures; the increment is derived by the caller."""
        self.filled_size = vol_exec
        self.filled_cost = cost
        self.average_fill_price = cost / vol_exec
        self.fee_amount = fee
