"""AddOrder and AmendOrder against the book: Kraken's checks, in Kraken's order, then the order.

Every check runs before anything changes, so a refused request leaves no trace
but its error string. What is checked: deadline, market mode, leverage, prices
(precision, tick size, which field means what), volume precision, minimums,
client-id uniqueness among open orders, and funds (spot holds or free margin).
"""
from __future__ import annotations

from decimal import Decimal

import attrs

from triplegain_fsm.enums import OrderSide, OrderType
from triplegain_fsm.paper.errors import (
    CANNOT_OPEN_POSITION,
    COST_MINIMUM,
    DEADLINE_ELAPSED,
    DUPLICATE_ORDER,
    INSUFFICIENT_FUNDS,
    INVALID_ARGUMENTS,
    INVALID_PRICE,
    MARGIN_LEVEL_TOO_LOW,
    ORDER_MINIMUM,
    REDUCE_ONLY_NO_POSITION,
    TICK_SIZE,
    UNAVAILABLE,
    UNKNOWN_ORDER,
    KrakenRejection,
    invalid,
)
from triplegain_fsm.paper.fills import finish, required_hold, sync_hold
from triplegain_fsm.paper.fmt import decimal_places, fmt, quantize
from triplegain_fsm.paper.matching import on_entry
from triplegain_fsm.paper.orders import PaperOrder
from triplegain_fsm.paper.pairs import PairSpec
from triplegain_fsm.paper.params import (
    LIMIT_TYPES,
    TRAILING_TYPES,
    TRIGGERED_TYPES,
    Amendment,
    NewOrder,
    PriceExpr,
)
from triplegain_fsm.paper.state import State
from triplegain_fsm.paper.triggers import limit_crosses, passive_direction, resolve_price, trailing_trigger
from triplegain_fsm.paper.views import expr_text as offset_text

ZERO = Decimal(0)
POST_ONLY_REJECT = "EOrder:Post only order"
MAX_DEADLINE_SECONDS = 60


@attrs.frozen
class Prices:
    """An order's prices after relative ones are resolved, and how descr shows them."""

    limit_price: Decimal | None = None
    trigger_price: Decimal | None = None
    trailing_offset: PriceExpr | None = None
    limit_offset: PriceExpr | None = None
    price_text: str = "0"
    price2_text: str = "0"
    reference: Decimal | None = None     # the price minimums and margin are measured at
    hold_price: Decimal | None = None    # the price a spot buy reserves quote at


def no_last_price(pair: PairSpec) -> KrakenRejection:
    return KrakenRejection(f"{INVALID_ARGUMENTS}:no last price for {pair.altname} (paper exchange: set_price first)")


def check_precision(pair: PairSpec, value: Decimal) -> None:
    if decimal_places(value) > pair.pair_decimals:
        raise KrakenRejection(
            f"{INVALID_PRICE}:{pair.altname} price can only be specified up to {pair.pair_decimals} decimals."
        )
    if value % pair.tick_size:
        raise KrakenRejection(TICK_SIZE)


def to_tick(pair: PairSpec, value: Decimal) -> Decimal:
    """A computed (relative) price on the pair's tick grid, as Kraken rounds it."""
    return quantize(value / pair.tick_size, 0) * pair.tick_size


def _absolute(pair: PairSpec, expr: PriceExpr, reference: Decimal | None, direction: int) -> Decimal:
    value = resolve_price(expr, reference, direction)
    if value is None:
        raise no_last_price(pair)
    if expr.relative:
        value = to_tick(pair, value)
    else:
        check_precision(pair, value)
    if value <= 0:
        raise KrakenRejection(INVALID_PRICE)
    return value


def _check_offset(pair: PairSpec, expr: PriceExpr, field: str) -> None:
    if field == "price" and expr.amount <= 0:
        raise KrakenRejection(INVALID_PRICE)
    if not expr.percent:
        check_precision(pair, expr.amount)


def resolve_prices(pair: PairSpec, new: NewOrder, last: Decimal | None) -> Prices:
    """Apply the F01 table: which field is the limit, which the trigger, which an offset."""
    kind, direction = new.ordertype, passive_direction(new.side, new.ordertype)
    text = lambda value: fmt(value, pair.pair_decimals)  # noqa: E731
    if kind is OrderType.MARKET:
        if last is None:
            raise no_last_price(pair)
        return Prices(reference=last, hold_price=last)
    assert new.price is not None
    if kind is OrderType.LIMIT:
        limit = _absolute(pair, new.price, last, direction)
        return Prices(limit_price=limit, price_text=text(limit), reference=limit, hold_price=limit)
    if kind in (OrderType.STOP_LOSS, OrderType.TAKE_PROFIT):
        trigger = _absolute(pair, new.price, last, direction)
        return Prices(trigger_price=trigger, price_text=text(trigger), reference=trigger, hold_price=trigger)
    if kind in (OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT):
        assert new.price2 is not None
        trigger = _absolute(pair, new.price, last, direction)
        limit = _absolute(pair, new.price2, trigger, direction)   # a relative limit is an offset from the trigger
        return Prices(limit_price=limit, trigger_price=trigger, price_text=text(trigger), price2_text=text(limit),
                      reference=limit, hold_price=max(limit, trigger))
    return _trailing_prices(pair, new, new.price, last)


def _trailing_prices(pair: PairSpec, new: NewOrder, offset: PriceExpr, last: Decimal | None) -> Prices:
    """Trailing types: `price` is the offset from the best price; the first trigger is from the last price."""
    if last is None:
        raise no_last_price(pair)
    _check_offset(pair, offset, "price")
    trigger = to_tick(pair, trailing_trigger(new.side, last, offset))
    prices = Prices(trailing_offset=offset, price_text=offset_text(pair, offset), reference=last,
                    hold_price=trigger, trigger_price=trigger)
    if new.ordertype is not OrderType.TRAILING_STOP_LIMIT:
        return prices
    assert new.price2 is not None
    _check_offset(pair, new.price2, "price2")
    limit = to_tick(pair, resolve_price(new.price2, trigger, 1) or trigger)
    return attrs.evolve(prices, limit_offset=new.price2, price2_text=offset_text(pair, new.price2),
                        hold_price=max(trigger, limit))


def resolve_time(spec: str | None, now: float) -> float:
    """Kraken's starttm/expiretm: 0 = none, `+N` = N seconds from now, else a unix time."""
    if spec is None or spec == "0":
        return 0.0
    return now + float(spec[1:]) if spec.startswith("+") else float(spec)  # float-ok: time


def check_deadline(deadline: float | None, now: float) -> None:
    if deadline is None:
        return
    if now > deadline:
        raise KrakenRejection(DEADLINE_ELAPSED)
    if deadline > now + MAX_DEADLINE_SECONDS:
        raise invalid("deadline")


def _check_modes(state: State, pair: PairSpec, new: NewOrder) -> None:
    system, status = state.system_status, state.pair_status.get(pair.id, pair.status)
    if system == "maintenance":
        raise KrakenRejection(UNAVAILABLE)
    if "cancel_only" in (system, status):
        raise KrakenRejection("EService:Market in cancel_only mode")
    if "post_only" in (system, status) and not (new.ordertype is OrderType.LIMIT and "post" in new.oflags):
        raise KrakenRejection("EService:Market in post_only mode")
    if status == "limit_only" and new.ordertype is not OrderType.LIMIT:
        raise KrakenRejection("EService:Market in limit_only mode")
    if status == "reduce_only" and not new.reduce_only:
        raise KrakenRejection("EService:Market in reduce_only mode")


def _check_leverage(state: State, pair: PairSpec, new: NewOrder) -> None:
    if new.leverage is None:
        return
    if state.config.account != "margin":
        raise KrakenRejection(CANNOT_OPEN_POSITION)
    if new.leverage not in pair.allowed_leverage(new.side is OrderSide.BUY):
        raise invalid("leverage")


def _volume(state: State, pair: PairSpec, new: NewOrder, last: Decimal | None) -> Decimal:
    if "viqc" in new.oflags:
        if last is None:
            raise no_last_price(pair)
        volume = quantize(new.volume / last, pair.lot_decimals, down=True)
    elif decimal_places(new.volume) > pair.lot_decimals:
        raise invalid("volume")
    else:
        volume = new.volume
    if new.reduce_only:
        open_volume = state.positions.open_volume(pair.id, new.side.opposite)
        if open_volume == 0:
            raise KrakenRejection(REDUCE_ONLY_NO_POSITION)
        volume = open_volume if volume == 0 else min(volume, open_volume)
    if volume <= 0:
        raise invalid("volume")
    return volume


def check_minimums(pair: PairSpec, volume: Decimal, reference: Decimal | None) -> None:
    if volume < pair.ordermin:
        raise KrakenRejection(ORDER_MINIMUM)
    if reference is not None and volume * reference < pair.costmin:
        raise KrakenRejection(COST_MINIMUM)


def free_margin(state: State, quote: str) -> Decimal:
    """Collateral in `quote` not yet used: spot available + open P&L - margin of positions and orders."""
    free = state.ledger.available(quote)
    for row in state.positions.open_rows():
        if row.pair.quote == quote:
            free += row.net(state.prices.get(row.pair.id, row.entry_price)) - row.margin
    for order in state.live_orders():
        if order.leverage and not order.reduce_only and order.pair.quote == quote:
            reference = order.limit_price or order.trigger_price or state.prices.get(order.pair.id, ZERO)
            free -= order.remaining * reference / order.leverage
    return free


def _check_funds(state: State, order: PaperOrder, reference: Decimal | None) -> None:
    if order.leverage:
        required = order.vol * (reference or ZERO) / order.leverage
        if not order.reduce_only and required > free_margin(state, order.pair.quote):
            raise KrakenRejection(MARGIN_LEVEL_TOO_LOW)
        return
    asset, amount = required_hold(order)
    if asset is not None and amount > state.ledger.available(asset):
        raise KrakenRejection(INSUFFICIENT_FUNDS)


def place(state: State, new: NewOrder, *, refid: str | None = None) -> PaperOrder:
    """Check `new` and, unless it is a validate-only request, book it and trade it at once if it can.

    A validate-only request returns an unbooked order with an empty txid (for its descr).
    """
    now = state.now()
    check_deadline(new.deadline, now)
    pair = state.registry.resolve(new.pair)
    _check_modes(state, pair, new)
    _check_leverage(state, pair, new)
    last = state.prices.get(pair.id)
    prices = resolve_prices(pair, new, last)
    volume = _volume(state, pair, new, last)
    if not new.reduce_only:
        check_minimums(pair, volume, prices.reference)
    if new.cl_ord_id is not None and new.cl_ord_id in state.by_cl_ord_id:
        raise KrakenRejection(DUPLICATE_ORDER)
    starttm, expiretm = resolve_time(new.starttm, now), resolve_time(new.expiretm, now)
    if expiretm and expiretm <= now:
        raise invalid("expiretm")
    order = PaperOrder(
        txid="" if new.validate else state.ids.order_txid(), seq=state.next_seq(), pair=pair, side=new.side,
        ordertype=new.ordertype, vol=volume, opentm=now, price_text=prices.price_text,
        price2_text=prices.price2_text, leverage=new.leverage, reduce_only=new.reduce_only,
        oflags=tuple(sorted(new.oflags)), timeinforce=new.timeinforce, starttm=starttm, expiretm=expiretm,
        userref=new.userref, cl_ord_id=new.cl_ord_id, refid=refid, close=new.close,
        trigger_price=prices.trigger_price, limit_price=prices.limit_price, trailing_offset=prices.trailing_offset,
        limit_offset=prices.limit_offset, hold_price=prices.hold_price,
        status="pending" if starttm > now else "open",
    )
    _check_funds(state, order, prices.reference)
    if new.validate:
        return order
    state.register(order)
    sync_hold(state, order)
    if order.status == "open":
        activate(state, order)
    return order


def activate(state: State, order: PaperOrder) -> None:
    """Trade a newly active order against the price; an IOC order then drops what did not fill."""
    on_entry(state, order)
    if order.timeinforce == "IOC" and order.is_live and not order.awaiting_trigger:
        finish(state, order, "canceled", "Immediate or cancel")


def place_conditional_close(state: State, parent: PaperOrder) -> PaperOrder:
    """The parent filled: place its `close[...]` order (opposite side, the filled volume).

    If Kraken's checks refuse it, it is recorded as a cancelled order whose reason is the error.
    """
    assert parent.close is not None
    spec = parent.close
    new = NewOrder(pair=parent.pair.id, side=parent.side.opposite, ordertype=spec.ordertype,
                   volume=parent.vol_exec, price=spec.price, price2=spec.price2, leverage=parent.leverage,
                   userref=parent.userref)
    try:
        return place(state, new, refid=parent.txid)
    except KrakenRejection as rejection:
        now = state.now()
        order = PaperOrder(txid=state.ids.order_txid(), seq=state.next_seq(), pair=parent.pair, side=new.side,
                           ordertype=new.ordertype, vol=new.volume, opentm=now, leverage=new.leverage,
                           refid=parent.txid, status="canceled", reason=rejection.error, closetm=now)
        state.orders[order.txid] = order
        return order


def find_live(state: State, txid: str | None, cl_ord_id: str | None) -> PaperOrder:
    order = state.orders.get(txid) if txid else state.by_cl_ord_id.get(cl_ord_id or "")
    if order is None or not order.is_live:
        raise KrakenRejection(UNKNOWN_ORDER)
    return order


def _amend_limit(order: PaperOrder, expr: PriceExpr, last: Decimal | None) -> dict:
    pair = order.pair
    if order.ordertype not in LIMIT_TYPES:
        raise invalid("limit_price")
    if order.ordertype is OrderType.TRAILING_STOP_LIMIT and not order.triggered:
        if expr.sign not in ("+", "-"):
            raise invalid("limit_price")
        return {"limit_offset": expr, "price2_text": offset_text(pair, expr)}
    value = _absolute(pair, expr, last, passive_direction(order.side, order.ordertype))
    changes: dict = {"limit_price": value}
    changes["price_text" if order.ordertype is OrderType.LIMIT else "price2_text"] = fmt(value, pair.pair_decimals)
    if order.triggered:
        changes["limitprice"] = value
    return changes


def _amend_trigger(order: PaperOrder, expr: PriceExpr, last: Decimal | None) -> dict:
    pair = order.pair
    if order.ordertype not in TRIGGERED_TYPES or order.triggered:
        raise invalid("trigger_price")
    if order.ordertype in TRAILING_TYPES:
        if expr.sign != "+":
            raise invalid("trigger_price")
        _check_offset(pair, expr, "price")
        changes: dict = {"trailing_offset": expr, "price_text": offset_text(pair, expr)}
        if order.watermark is not None:
            changes["trigger_price"] = to_tick(pair, trailing_trigger(order.side, order.watermark, expr))
        return changes
    value = _absolute(pair, expr, last, passive_direction(order.side, order.ordertype))
    return {"trigger_price": value, "price_text": fmt(value, pair.pair_decimals)}


def _check_amendment(state: State, order: PaperOrder, candidate: PaperOrder, post_only: bool,
                     last: Decimal | None) -> None:
    """Refuse an amendment that would take liquidity despite post_only, or need funds the account lacks."""
    new_limit = candidate.limit_price
    if (post_only and candidate.is_limit_phase and last is not None and new_limit is not None
            and limit_crosses(order.side, new_limit, last)):
        raise KrakenRejection(POST_ONLY_REJECT)
    if candidate.vol > order.vol_exec:
        asset, need = required_hold(candidate)
        own = order.hold if order.hold_asset == asset else ZERO
        if asset is not None and need - own > state.ledger.available(asset):
            raise KrakenRejection(INSUFFICIENT_FUNDS)


def amend(state: State, amendment: Amendment) -> str:
    """Change an open order in place (same txid, fills kept); returns Kraken's amend_id.

    A new quantity at or below what has filled cancels the rest of the order.
    """
    check_deadline(amendment.deadline, state.now())
    order = find_live(state, amendment.txid, amendment.cl_ord_id)
    last = state.prices.get(order.pair.id)
    changes: dict = {}
    if amendment.limit_price is not None:
        changes.update(_amend_limit(order, amendment.limit_price, last))
    if amendment.trigger_price is not None:
        changes.update(_amend_trigger(order, amendment.trigger_price, last))
    if amendment.order_qty is not None:
        if decimal_places(amendment.order_qty) > order.pair.lot_decimals:
            raise invalid("order_qty")
        changes["vol"] = amendment.order_qty
    candidate = attrs.evolve(order, **changes)
    candidate.hold_price = candidate.limit_price or candidate.trigger_price or order.hold_price
    _check_amendment(state, order, candidate, amendment.post_only and "limit_price" in changes, last)
    changes["hold_price"] = candidate.hold_price
    if candidate.vol <= order.vol_exec:
        changes.pop("vol")
    state.touch(order)
    for name, value in changes.items():
        setattr(order, name, value)
    order.add_misc("amended")
    if candidate.vol <= order.vol_exec:
        finish(state, order, "canceled", "Order quantity amended below filled quantity")
    else:
        sync_hold(state, order)
        if order.status == "open":
            on_entry(state, order)
    return state.ids.amend_id()
