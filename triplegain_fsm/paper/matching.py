"""What a price does to the book: triggers fire, crossed limits fill, market remainders fill.

Called for an order when it arrives (taker semantics: it trades against the
current price) and for every live order of a pair on each tick (a limit that
rested fills at its own price as a maker). Orders are visited in arrival order,
so with limited liquidity the oldest resting order fills first.
"""
from __future__ import annotations

from decimal import Decimal

from triplegain_fsm.enums import OrderSide, OrderType
from triplegain_fsm.paper.fills import fill, finish
from triplegain_fsm.paper.fmt import quantize
from triplegain_fsm.paper.orders import ALWAYS, PaperOrder
from triplegain_fsm.paper.params import TRAILING_TYPES
from triplegain_fsm.paper.state import State
from triplegain_fsm.paper.triggers import (
    PROFIT_FAMILY,
    better_watermark,
    limit_crosses,
    resolve_price,
    stop_triggered,
    trailing_trigger,
)

POST_ONLY_REASON = "Post only order"
NEVER: tuple[Decimal | None, Decimal | None] = (None, None)


def on_entry(state: State, order: PaperOrder) -> None:
    """An order just became active (or was amended): trigger it or trade it against the current price.

    A trailing stop starts its watermark here; an amended one keeps the one it has.
    """
    state.touch(order)
    price = state.prices.get(order.pair.id)
    if order.awaiting_trigger:
        if price is None or not _trigger_hit(order, price, first=order.watermark is None):
            order.wake = wake_levels(order)
            return
        fire(order, price)
    _execute(state, order, price, entering=True)
    order.wake = wake_levels(order)


def on_tick(state: State, pair_id: str, price: Decimal) -> None:
    for order in list(state.live[pair_id]):
        low, high = order.wake
        if (low is None or price > low) and (high is None or price < high):
            continue                       # nothing this price can do to the order
        if order.status == "open":
            state.touch(order)
            _step(state, order, price)
            order.wake = wake_levels(order)


def _step(state: State, order: PaperOrder, price: Decimal) -> None:
    entering = False
    if order.awaiting_trigger:
        if not _trigger_hit(order, price, first=False):
            return
        fire(order, price)
        entering = True
    _execute(state, order, price, entering=entering)


def wake_levels(order: PaperOrder) -> tuple[Decimal | None, Decimal | None]:
    """The prices at which a tick must look at this order again (see PaperOrder.wake)."""
    if order.status != "open":
        return NEVER
    if order.ready_tick is not None:
        return ALWAYS                      # counting down a fill latency
    buy = order.side is OrderSide.BUY
    if order.awaiting_trigger:
        trigger = order.trigger_price
        if order.ordertype in TRAILING_TYPES:
            if order.watermark is None:
                return ALWAYS
            # a new extreme moves the trigger; a retrace to it fires
            return (order.watermark, trigger) if buy else (trigger, order.watermark)
        fires_low = (order.ordertype in PROFIT_FAMILY) == buy
        return (trigger, None) if fires_low else (None, trigger)
    if order.is_limit_phase and order.posted:
        return (order.limit_price, None) if buy else (None, order.limit_price)
    return ALWAYS


def _trigger_hit(order: PaperOrder, price: Decimal, *, first: bool) -> bool:
    if order.ordertype in TRAILING_TYPES:
        assert order.trailing_offset is not None
        watermark = order.watermark
        order.watermark = price if first or watermark is None else better_watermark(order.side, watermark, price)
        trigger = trailing_trigger(order.side, order.watermark, order.trailing_offset)
        order.trigger_price = quantize(trigger, order.pair.pair_decimals)
    assert order.trigger_price is not None
    return stop_triggered(order.side, order.ordertype, order.trigger_price, price)


def fire(order: PaperOrder, price: Decimal) -> None:
    """The trigger was reached: the order becomes a market order, or a limit order at its limit."""
    order.triggered = True
    order.stopprice = order.trigger_price or price
    order.add_misc("touched" if order.ordertype in PROFIT_FAMILY else "stopped")
    if order.ordertype is OrderType.TRAILING_STOP_LIMIT:
        assert order.limit_offset is not None
        limit = resolve_price(order.limit_offset, order.stopprice, direction=1)
        order.limit_price = quantize(limit, order.pair.pair_decimals) if limit is not None else order.stopprice
    if order.is_limit_phase:
        order.limitprice = order.limit_price or price


def _ready(state: State, order: PaperOrder) -> bool:
    """With a fill latency, an order fills only that many ticks after it became marketable."""
    latency = state.config.fill_latency_ticks
    if latency == 0 or order.timeinforce == "IOC":
        return True
    tick = state.tick_count.get(order.pair.id, 0)
    if order.ready_tick is None:
        order.ready_tick = tick + latency
    return tick >= order.ready_tick


def _execute(state: State, order: PaperOrder, price: Decimal | None, *, entering: bool) -> None:
    if order.is_market_phase:
        if price is not None and _ready(state, order):
            take = state.take_liquidity(order.pair.id, order.remaining, taker=True)
            fill(state, order, take, price, maker=False)
        return
    if not order.is_limit_phase:
        return
    assert order.limit_price is not None
    if price is None or not limit_crosses(order.side, order.limit_price, price):
        order.posted = True
        order.ready_tick = None
        return
    taking = entering or not order.posted
    if taking and "post" in order.oflags:
        finish(state, order, "canceled", POST_ONLY_REASON)
        return
    if not _ready(state, order):
        return
    if taking:
        take = state.take_liquidity(order.pair.id, order.remaining, taker=True)
        fill(state, order, take, price, maker=False)
        order.posted = True
        return
    take = state.take_liquidity(order.pair.id, order.remaining, taker=False)
    fill(state, order, take, order.limit_price, maker=True)
