"""When an order fires, and at what price: pure functions of side, type and the last price.

Kraken's rule, which the F01-class bugs get wrong: a SELL stop-loss triggers when
the price falls to the trigger (price <= trigger), a SELL take-profit when it rises
to it (price >= trigger); BUY orders mirror both. A trailing stop follows the best
price since placement and fires when the price gives back the offset.
"""
from __future__ import annotations

from decimal import Decimal

from triplegain_fsm.enums import OrderSide, OrderType
from triplegain_fsm.paper.params import PriceExpr

STOP_FAMILY = frozenset({OrderType.STOP_LOSS, OrderType.STOP_LOSS_LIMIT})
PROFIT_FAMILY = frozenset({OrderType.TAKE_PROFIT, OrderType.TAKE_PROFIT_LIMIT})


def passive_direction(side: OrderSide, ordertype: OrderType) -> int:
    """+1 or -1: the side of the last price where this order neither fills nor fires at once.

    Used for Kraken's `#` prefix ("add or subtract as appropriate").
    """
    buy = side is OrderSide.BUY
    if ordertype in STOP_FAMILY:
        return 1 if buy else -1
    return -1 if buy else 1


def offset_amount(expr: PriceExpr, reference: Decimal) -> Decimal:
    return reference * expr.amount / 100 if expr.percent else expr.amount


def resolve_price(expr: PriceExpr, reference: Decimal | None, direction: int) -> Decimal | None:
    """An absolute price from an expression; None when it is relative and there is no reference."""
    if not expr.relative:
        return expr.amount
    if reference is None:
        return None
    delta = offset_amount(expr, reference)
    sign = {"+": 1, "-": -1, "#": direction}[expr.sign]
    return reference + sign * delta


def stop_triggered(side: OrderSide, ordertype: OrderType, trigger: Decimal, price: Decimal) -> bool:
    buy = side is OrderSide.BUY
    if ordertype in PROFIT_FAMILY:
        return price <= trigger if buy else price >= trigger
    return price >= trigger if buy else price <= trigger


def better_watermark(side: OrderSide, watermark: Decimal, price: Decimal) -> Decimal:
    """A sell trailing stop protects a long: it follows the highest price. A buy follows the lowest."""
    return min(watermark, price) if side is OrderSide.BUY else max(watermark, price)


def trailing_trigger(side: OrderSide, watermark: Decimal, offset: PriceExpr) -> Decimal:
    distance = offset_amount(offset, watermark)
    return watermark + distance if side is OrderSide.BUY else watermark - distance


def limit_crosses(side: OrderSide, limit: Decimal, price: Decimal) -> bool:
    """A buy limit is reachable at or below its price, a sell at or above."""
    return price <= limit if side is OrderSide.BUY else price >= limit
