"""The records the bot sees: proposals, orders, positions, results.

Order and Position are plain attrs classes that a shared `transitions` machine
drives (see machines/). They need `slots=False` (transitions sets trigger methods
on the model) and `eq=False` (a shared machine skips a second model that compares
equal to the first, so two identical orders would silently lose their triggers).
Their `state` attribute belongs to the machine; nothing else assigns it.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from triplegain_fsm.enums import (
    LegLocation,
    OrderRole,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionStatus,
)
from triplegain_fsm.errors import ProposalError
from triplegain_fsm.machines import base as _machine_base
from triplegain_fsm.machines.base import MachineModel
from triplegain_fsm.machines.order_machine import OrderMachineMixin
from triplegain_fsm.machines.position_machine import PositionMachineMixin
from triplegain_fsm.money import ZERO, optional_decimal, positive

# Where ids come from: uuid4. The simulator (triplegain_fsm.simulate) swaps in a seeded source
# for the length of a run, so a seed names its orders the same on every run.
NEW_UUID: Callable[[], uuid.UUID] = uuid.uuid4


def utcnow() -> datetime:
    return _machine_base.utcnow()   # the one clock of model timestamps (machines.base.WALL_CLOCK)


def new_id(prefix: str) -> str:
    return f"{prefix}-{NEW_UUID().hex[:12]}"


def _side(value: Any) -> OrderSide:
    try:
        return OrderSide(str(value).lower())
    except ValueError:
        raise ProposalError(f"side: must be 'buy' or 'sell', got {value!r}") from None


def _order_type(value: Any) -> OrderType | None:
    if value is None or isinstance(value, OrderType):
        return value
    try:
        return OrderType(str(value).lower())
    except ValueError:
        raise ProposalError(f"order_type: unknown order type {value!r}") from None


def _leverage(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProposalError(f"leverage: must be an int, got {value!r}")
    if value < 1:
        raise ProposalError(f"leverage: must be >= 1, got {value}")
    return value


@attrs.frozen
class TradeProposal:
    """What the bot wants: validated on construction, so a bad proposal never exists."""

    symbol: str
    side: OrderSide = attrs.field(converter=_side)
    size_usd: Decimal = attrs.field(converter=lambda v: positive(v, "size_usd"))
    entry_price: Decimal | None = attrs.field(default=None, converter=lambda v: optional_decimal(v, "entry_price"))
    stop_loss: Decimal | None = attrs.field(default=None, converter=lambda v: optional_decimal(v, "stop_loss"))
    take_profit: Decimal | None = attrs.field(default=None, converter=lambda v: optional_decimal(v, "take_profit"))
    leverage: int = attrs.field(default=1, converter=_leverage)
    order_type: OrderType | None = attrs.field(default=None, converter=_order_type)
    id: str = attrs.field(factory=lambda: new_id("prop"))

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.id, str) or not 0 < len(self.id) <= 64:
            raise ProposalError(f"id: a non-empty string of at most 64 characters, got {self.id!r}")
        if not isinstance(self.symbol, str) or "/" not in self.symbol:
            raise ProposalError(f"symbol: expected BASE/QUOTE like 'BTC/USD', got {self.symbol!r}")
        for name in ("entry_price", "stop_loss", "take_profit"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ProposalError(f"{name}: must be positive, got {value}")
        if self.order_type not in (None, OrderType.MARKET, OrderType.LIMIT):
            raise ProposalError(f"order_type: an entry is market or limit, got {self.order_type.value}")
        if self.order_type is OrderType.LIMIT and self.entry_price is None:
            raise ProposalError("entry_price: a limit entry needs an entry_price")
        if self.entry_price is not None:
            self.check_levels(self.entry_price, "entry_price")

    @property
    def effective_order_type(self) -> OrderType:
        if self.order_type is not None:
            return self.order_type
        return OrderType.MARKET if self.entry_price is None else OrderType.LIMIT

    def check_levels(self, reference: Decimal, what: str) -> None:
        """Stop below and target above a long's reference price (mirrored for a short)."""
        long = self.side is OrderSide.BUY
        if self.stop_loss is not None and (self.stop_loss >= reference if long else self.stop_loss <= reference):
            raise ProposalError(
                f"stop_loss: {self.stop_loss} is on the wrong side of the {what} {reference} "
                f"for a {self.side.value}"
            )
        if self.take_profit is not None and (self.take_profit <= reference if long else self.take_profit >= reference):
            raise ProposalError(
                f"take_profit: {self.take_profit} is on the wrong side of the {what} {reference} "
                f"for a {self.side.value}"
            )


@attrs.define(slots=False, eq=False)
class Order(OrderMachineMixin, MachineModel):
    ENTITY = "order"

    symbol: str
    side: OrderSide
    order_type: OrderType
    size: Decimal
    role: OrderRole = OrderRole.ENTRY
    price: Decimal | None = None          # limit price
    stop_price: Decimal | None = None     # trigger price (stop-loss / take-profit)
    leverage: int = 1
    reduce_only: bool = False
    id: str = attrs.field(factory=lambda: new_id("ord"))
    client_order_id: str = attrs.field(factory=lambda: str(NEW_UUID()))
    external_id: str | None = None        # Kraken txid
    filled_size: Decimal = ZERO
    average_fill_price: Decimal | None = None
    filled_cost: Decimal = ZERO           # cumulative quote cost of the fills (exchange figure)
    fee_amount: Decimal = ZERO
    fee_currency: str = ""                # the asset the exchange actually charged (from its fill reports)
    trade_ids: str = ""                   # the exchange trade ids booked, comma-separated: a trade counts once
    position_id: str | None = None
    parent_id: str | None = None
    sibling_id: str | None = None
    proposal_id: str | None = None
    error_message: str | None = None
    created_at: datetime = attrs.field(factory=utcnow)
    updated_at: datetime = attrs.field(factory=utcnow)
    unknown_since: datetime | None = None  # when its outcome became unknown: the look-up deadline counts from here
    placed_at: datetime | None = None      # when the exchange acknowledged it (its age prices amends and cancels)
    state: str = OrderStatus.PENDING.value

    @property
    def status(self) -> OrderStatus:
        return OrderStatus(self.state)

    @property
    def remaining_size(self) -> Decimal:
        return self.size - self.filled_size

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @property
    def filled_price(self) -> Decimal | None:
        """Name kept from the reviewed code: the average fill price."""
        return self.average_fill_price


@attrs.define(slots=False, eq=False)
class Position(PositionMachineMixin, MachineModel):
    ENTITY = "position"

    symbol: str
    side: OrderSide
    leverage: int = 1
    size: Decimal = ZERO                  # currently held (entry fills minus exit fills)
    entry_price: Decimal | None = None    # volume-weighted over entry fills
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    entry_order_id: str | None = None
    stop_loss_order_id: str | None = None
    take_profit_order_id: str | None = None
    stop_loss_location: LegLocation = LegLocation.NONE
    take_profit_location: LegLocation = LegLocation.NONE
    trailing_stop_enabled: bool = False
    trailing_stop_distance_pct: Decimal | None = None
    trailing_stop_activation_pct: Decimal | None = None
    trailing_stop_activated: bool = False
    trailing_watermark: Decimal | None = None   # best price seen since trailing was enabled
    entry_size: Decimal = ZERO            # total ever filled by the entry
    exit_size: Decimal = ZERO             # total ever filled by exits (legs, closes)
    excess_size: Decimal = ZERO           # overfilled exposure (both OCO legs filled), until flattened
    dust_size: Decimal = ZERO             # a spot remainder below the pair's minimum order, left unsold
    stop_loss_covered: Decimal = ZERO     # volume the stop-loss leg protects (local legs cover all)
    take_profit_covered: Decimal = ZERO
    cash_flow: Decimal = ZERO             # signed quote flow of all fills: + sells, - buys
    total_fees: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    close_reason: str | None = None
    id: str = attrs.field(factory=lambda: new_id("pos"))
    opened_at: datetime = attrs.field(factory=utcnow)
    updated_at: datetime = attrs.field(factory=utcnow)
    closed_at: datetime | None = None
    unprotected_since: datetime | None = None   # when it last entered UNPROTECTED (None: not unprotected)
    state: str = PositionStatus.OPENING.value

    @property
    def status(self) -> PositionStatus:
        return PositionStatus(self.state)

    @property
    def is_long(self) -> bool:
        return self.side is OrderSide.BUY

    def calculate_pnl(self, current_price: Any) -> tuple[Decimal, Decimal]:
        """(P&L, P&L % of margin) if everything open were closed at `current_price`, net of all fees.

        In quote currency. Leverage does not change the amount (it is already in
        the size); it shrinks the margin, so it scales the percentage.
        """
        price = positive(current_price, "current_price")
        if self.entry_price is None or self.entry_size == 0:
            return ZERO, ZERO
        pnl = self.cash_flow + self.direction * (self.size - self.excess_size) * price - self.total_fees
        margin = self.entry_size * self.entry_price / self.leverage
        return pnl, pnl / margin * 100


@attrs.frozen
class ExecutionResult:
    success: bool
    order: Order | None = None
    error_message: str | None = None
    position_id: str | None = None
    stop_loss_order_id: str | None = None
    take_profit_order_id: str | None = None
    error_type: str | None = None
    estimated_fee: Decimal | None = None   # from the configured fee rate; P&L books the exchange's actual fee

