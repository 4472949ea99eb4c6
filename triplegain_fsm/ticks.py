"""Per-symbol trigger bounds, so the common price tick costs O(1).

For each symbol we keep the highest price at or below which some position has
something to do (a local stop of a long, a local target or trailing watermark
of a short) and the lowest price at or above which some position has something
to do. A tick strictly between the two touches no position: one dict lookup and
two comparisons. The bounds are rebuilt only when a position's levels change,
never on a tick.
"""
from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import attrs

from triplegain_fsm.enums import LegLocation, PositionStatus
from triplegain_fsm.models import Position

_ACTIVE = frozenset({PositionStatus.UNPROTECTED.value, PositionStatus.PROTECTED.value})
HUNDRED = Decimal(100)


@attrs.frozen
class Bounds:
    low: Decimal | None = None    # price <= low  -> check the symbol's positions
    high: Decimal | None = None   # price >= high -> check the symbol's positions

    def crossed(self, price: Decimal) -> bool:
        return (self.low is not None and price <= self.low) or (self.high is not None and price >= self.high)


def watched_by_core(location: LegLocation) -> bool:
    """A leg the exchange does not hold is the core's to fire (kept local, or missing: F04/F09)."""
    return location is not LegLocation.EXCHANGE


def trailing_trigger(position: Position) -> Decimal | None:
    """The price beyond which the trailing stop must move (or activate)."""
    if not position.trailing_stop_enabled or position.entry_price is None:
        return None
    if position.trailing_stop_activated and position.trailing_watermark is not None:
        return position.trailing_watermark
    pct = position.trailing_stop_activation_pct or Decimal(0)
    factor = 1 + pct / HUNDRED if position.is_long else 1 - pct / HUNDRED
    return position.entry_price * factor


def levels(position: Position) -> tuple[list[Decimal], list[Decimal]]:
    """(prices that matter on the way down, prices that matter on the way up) for one position."""
    down: list[Decimal] = []
    up: list[Decimal] = []
    if position.state not in _ACTIVE:
        return down, up
    stop_side, target_side = (down, up) if position.is_long else (up, down)
    if position.stop_loss is not None and watched_by_core(position.stop_loss_location):
        stop_side.append(position.stop_loss)
    if position.take_profit is not None and watched_by_core(position.take_profit_location):
        target_side.append(position.take_profit)
    trail = trailing_trigger(position)
    if trail is not None:
        target_side.append(trail)
    return down, up


def compute_bounds(positions: Iterable[Position]) -> Bounds:
    downs: list[Decimal] = []
    ups: list[Decimal] = []
    for position in positions:
        down, up = levels(position)
        downs.extend(down)
        ups.extend(up)
    return Bounds(low=max(downs) if downs else None, high=min(ups) if ups else None)
