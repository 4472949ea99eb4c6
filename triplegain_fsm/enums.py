"""The enums shared by models, machines, the Kraken client and the paper exchange.

Kept free of imports so that every layer can use them without cycles.
"""
from __future__ import annotations

from enum import Enum


class OrderSide(str, Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> OrderSide:
        return OrderSide.SELL if self is OrderSide.BUY else OrderSide.BUY


class OrderType(str, Enum):
    """Kraken's ordertype values, spelled as on the wire."""

    MARKET = "market"
    LIMIT = "limit"
    STOP_LOSS = "stop-loss"
    TAKE_PROFIT = "take-profit"
    STOP_LOSS_LIMIT = "stop-loss-limit"
    TAKE_PROFIT_LIMIT = "take-profit-limit"
    TRAILING_STOP = "trailing-stop"
    TRAILING_STOP_LIMIT = "trailing-stop-limit"


class OrderStatus(str, Enum):
    PENDING = "PENDING"                      # created and persisted, not yet sent
    SUBMITTED_UNKNOWN = "SUBMITTED_UNKNOWN"  # sent, no definite answer (timeout, 5xx)
    OPEN = "OPEN"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCEL_PENDING = "CANCEL_PENDING"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_ORDER_STATUSES


FINAL_ORDER_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.REJECTED}
)


class OrderRole(str, Enum):
    """Why the core placed an order: decides what its fills do to a position."""

    ENTRY = "entry"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    CLOSE = "close"        # a market close asked for by the bot or a trigger
    FLATTEN = "flatten"    # undoes excess volume (both OCO legs filled)


class PositionStatus(str, Enum):
    OPENING = "OPENING"          # entry order working, nothing filled
    UNPROTECTED = "UNPROTECTED"  # has size, a protective leg is missing or short
    PROTECTED = "PROTECTED"      # both legs in place for the full size
    CLOSING = "CLOSING"          # a close is working
    CLOSED = "CLOSED"


class LegLocation(str, Enum):
    """Where a protective leg lives: resting at Kraken, or watched by on_price_update."""

    NONE = "none"
    EXCHANGE = "exchange"
    LOCAL = "local"
