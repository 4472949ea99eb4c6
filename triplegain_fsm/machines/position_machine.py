"""The life of a position, as a reviewable table.

Quantities: `size` is the open exposure in the position's direction; `excess`
is exposure the other way, which only exists when both OCO legs filled (the
exchange sold more than we held) and is removed by a flatten order. P&L is kept
as a signed quote cash flow, so partial fills, overfills and flattens all sum
the same way: pnl(price) = cash_flow + direction * (size - excess) * price - fees.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from triplegain_fsm.enums import LegLocation
from triplegain_fsm.enums import PositionStatus as P
from triplegain_fsm.machines.base import Edge, MachineKind

_OPENING, _UNPROT, _PROT, _CLOSING, _CLOSED = (s.value for s in P)
_HOLDING = (_UNPROT, _PROT, _CLOSING)

POSITION_TABLE: tuple[Edge, ...] = (
    Edge("entry_filled", _OPENING, _UNPROT, before=("apply_entry_fill",),
         note="size exists before its protective legs do"),
    Edge("entry_filled", _PROT, _UNPROT, before=("apply_entry_fill",),
         note="a later partial fill: the legs must grow before we are protected again"),
    Edge("entry_filled", (_UNPROT, _CLOSING), None, before=("apply_entry_fill",),
         note="CLOSING: an entry fill that raced the close; the close must grow"),
    Edge("protected", _UNPROT, _PROT, conditions=("legs_cover_size",)),
    Edge("protection_lost", _PROT, _UNPROT),
    Edge("abandon", _OPENING, _CLOSED, conditions=("is_flat",),
         note="the entry ended (cancelled, rejected, expired) with nothing filled"),
    Edge("begin_close", (_OPENING, _UNPROT, _PROT), _CLOSING),
    Edge("exit_filled", (_UNPROT, _PROT), _CLOSING, conditions=("exit_flattens",), before=("apply_exit_fill",),
         note="a leg or close took the whole size: the sibling leg must go before we are closed"),
    Edge("exit_filled", (_UNPROT, _PROT), None, before=("apply_exit_fill",), note="a partial exit"),
    Edge("exit_filled", _CLOSING, None, before=("apply_exit_fill",),
         note="real world: the sibling leg filled before its cancel landed (both OCO legs filled)"),
    Edge("flatten_filled", _CLOSING, None, before=("apply_flatten_fill",)),
    Edge("settle", _CLOSING, _CLOSED, conditions=("is_flat",),
         note="flat and no order of the position still working: nothing orphaned"),
    Edge("vanish", _HOLDING, _CLOSING, before=("apply_vanish",),
         note="real world: the exchange no longer holds it (closed by hand, liquidated); legs must go"),
    Edge("dust", (_UNPROT, _PROT, _CLOSING), _CLOSING, before=("apply_dust",),
         note="a spot remainder below the pair's minimum order: no order can sell it, it is recorded as dust"),
    Edge("close_failed", _CLOSING, _UNPROT, unless=("is_flat",),
         note="the close order was rejected or cancelled: the position needs protection again"),
)

POSITION_KIND = MachineKind(
    entity="position",
    states=[s.value for s in P],
    initial=_OPENING,
    table=POSITION_TABLE,
    final_states=[_CLOSED],
)


class PositionMachineMixin:
    """Guards and fill arithmetic the position table names. Pure: no I/O."""

    size: Decimal
    excess_size: Decimal
    dust_size: Decimal
    entry_size: Decimal
    entry_price: Decimal | None
    exit_size: Decimal
    cash_flow: Decimal
    total_fees: Decimal
    realized_pnl: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    stop_loss_covered: Decimal
    take_profit_covered: Decimal
    stop_loss_location: LegLocation
    unprotected_since: datetime | None
    state: str

    @property
    def direction(self) -> int:
        return 1 if self.is_long else -1  # type: ignore[attr-defined]

    # guards
    def is_flat(self, **_: Any) -> bool:
        return self.size == 0 and self.excess_size == 0

    def legs_cover_size(self, **_: Any) -> bool:
        """Every leg the position asked for covers its whole size, and the stop does so AT THE EXCHANGE:
        the stop is the leg that must hold when this process or its price feed is gone."""
        if self.size <= 0:
            return False
        sl_ok = self.stop_loss is None or (self.stop_loss_location is LegLocation.EXCHANGE
                                           and self.stop_loss_covered >= self.size)
        tp_ok = self.take_profit is None or self.take_profit_covered >= self.size
        return sl_ok and tp_ok

    def _record_transition(self, *args: Any, **kwargs: Any) -> None:
        """Also stamp when the position last became unprotected: how long it has been is what
        `close_unprotected_after_seconds` measures, not its age."""
        super()._record_transition(*args, **kwargs)  # type: ignore[misc]
        if self.state != _UNPROT:
            self.unprotected_since = None
        elif self.unprotected_since is None:
            self.unprotected_since = self.updated_at  # type: ignore[attr-defined]

    def exit_flattens(self, qty: Decimal, **_: Any) -> bool:
        return qty >= self.size

    # fill arithmetic
    def apply_entry_fill(self, qty: Decimal, price: Decimal, fee: Decimal, cost: Decimal | None = None,
                         **_: Any) -> None:
        """`cost` (the exchange's quote amount) is booked exactly; qty * price only when it is absent."""
        value = qty * price if cost is None else cost
        old_value = (self.entry_price or 0) * self.entry_size
        self.entry_size += qty
        self.entry_price = (old_value + value) / self.entry_size
        self.size += qty
        self.cash_flow -= self.direction * value
        self.total_fees += fee
        self._update_realized()

    def apply_exit_fill(self, qty: Decimal, price: Decimal, fee: Decimal, cost: Decimal | None = None,
                        **_: Any) -> None:
        self.exit_size += qty
        self.cash_flow += self.direction * (qty * price if cost is None else cost)
        self.total_fees += fee
        if qty > self.size:
            self.excess_size += qty - self.size
            self.size = Decimal(0)
        else:
            self.size -= qty
        self._update_realized()

    def apply_flatten_fill(self, qty: Decimal, price: Decimal, fee: Decimal, cost: Decimal | None = None,
                           **_: Any) -> None:
        self.cash_flow -= self.direction * (qty * price if cost is None else cost)
        self.total_fees += fee
        self.excess_size = max(Decimal(0), self.excess_size - qty)
        self._update_realized()

    def apply_dust(self, **_: Any) -> None:
        """The coins stay in the account, unsold: realized P&L carries their cost (nothing was sold)."""
        self.dust_size += self.size
        self.size = Decimal(0)

    def apply_vanish(self, **_: Any) -> None:
        """The exchange closed it without us: no fill to price the rest, so realized P&L keeps
        only what the core saw filled (close_reason says so)."""
        self.size = Decimal(0)
        self.excess_size = Decimal(0)

    def _update_realized(self) -> None:
        """Realized = everything except the open remainder, which is marked at entry (so it counts zero)."""
        open_qty = self.size - self.excess_size
        self.realized_pnl = self.cash_flow + self.direction * open_qty * (self.entry_price or 0) - self.total_fees
