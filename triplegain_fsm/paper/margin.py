"""Margin positions: one row per opening fill, closed first-in first-out by opposite fills.

Kraken models a leveraged order's fill as a position row (OpenPositions), not a
change of spot balance. An opposite leveraged fill closes rows of the same pair
before it opens anything new; `reduce_only` stops it at zero so it cannot flip.
Profit and loss settle into the quote balance when a row closes.
"""
from __future__ import annotations

from decimal import Decimal

import attrs

from triplegain_fsm.enums import OrderSide, OrderType
from triplegain_fsm.paper.pairs import PairSpec

ZERO = Decimal(0)


@attrs.define(eq=False)
class MarginPosition:
    posid: str
    ordertxid: str
    pair: PairSpec
    side: OrderSide
    ordertype: OrderType
    time: float
    leverage: int
    vol: Decimal
    cost: Decimal              # opening cost of the whole row
    fee: Decimal
    oflags: tuple[str, ...] = ()
    vol_closed: Decimal = ZERO
    status: str = "open"

    @property
    def remaining(self) -> Decimal:
        return self.vol - self.vol_closed

    @property
    def entry_price(self) -> Decimal:
        return self.cost / self.vol

    @property
    def margin(self) -> Decimal:
        """Initial margin still tied up by the open part."""
        return self.entry_price * self.remaining / self.leverage

    def net(self, price: Decimal) -> Decimal:
        """Unrealised profit of the open part at `price` (fees not included, as Kraken's `net`)."""
        direction = 1 if self.side is OrderSide.BUY else -1
        return direction * (price - self.entry_price) * self.remaining


@attrs.frozen
class Closure:
    position: MarginPosition
    vol: Decimal
    pnl: Decimal


class PositionBook:
    def __init__(self) -> None:
        self._rows: list[MarginPosition] = []

    def add(self, position: MarginPosition) -> None:
        self._rows.append(position)

    def all_rows(self) -> list[MarginPosition]:
        """Every row, open and closed, oldest first."""
        return list(self._rows)

    def open_rows(self, pair_id: str | None = None) -> list[MarginPosition]:
        return [r for r in self._rows if r.status == "open" and (pair_id is None or r.pair.id == pair_id)]

    def open_volume(self, pair_id: str, side: OrderSide) -> Decimal:
        return sum((r.remaining for r in self.open_rows(pair_id) if r.side is side), ZERO)

    def close_fifo(self, pair_id: str, closing_side: OrderSide, vol: Decimal, price: Decimal) -> list[Closure]:
        """Close up to `vol` of the rows a `closing_side` fill offsets, oldest first."""
        closures: list[Closure] = []
        for row in self.open_rows(pair_id):
            if vol <= 0:
                break
            if row.side is closing_side:
                continue
            take = min(vol, row.remaining)
            closures.append(Closure(row, take, row.net(price) * take / row.remaining))
            row.vol_closed += take
            if row.remaining == 0:
                row.status = "closed"
            vol -= take
        return closures
