"""Request parameters as Kraken reads them: wire strings in, typed requests out.

Only what can be checked without the book happens here (required fields, types,
flag combinations, price syntax); checks that need the pair or the account
(decimals, minimums, funds) belong to the engine. A request that fails here
never reaches the engine, exactly like Kraken's `EGeneral:Invalid arguments`.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal

import attrs

from triplegain_fsm.enums import OrderSide, OrderType
from triplegain_fsm.paper.errors import INVALID_ARGUMENTS, KrakenRejection, invalid
from triplegain_fsm.paper.fmt import parse_number, parse_rfc3339

OFLAGS = frozenset({"post", "fcib", "fciq", "nompp", "viqc"})
TIME_IN_FORCE = frozenset({"GTC", "IOC", "GTD"})
TRIGGERED_TYPES = frozenset({
    OrderType.STOP_LOSS, OrderType.TAKE_PROFIT, OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT,
    OrderType.TRAILING_STOP, OrderType.TRAILING_STOP_LIMIT,
})
LIMIT_TYPES = frozenset({
    OrderType.LIMIT, OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT, OrderType.TRAILING_STOP_LIMIT,
})
TRAILING_TYPES = frozenset({OrderType.TRAILING_STOP, OrderType.TRAILING_STOP_LIMIT})
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_TXID = re.compile(r"^[A-Z0-9]{6}-[A-Z0-9]{5}-[A-Z0-9]{6}$")
INT32 = (-(2**31), 2**31 - 1)


@attrs.frozen
class PriceExpr:
    """A price as sent: absolute (`37500`) or relative to the last price (`+5`, `-1.5%`, `#10`)."""

    text: str
    amount: Decimal
    sign: str = ""        # "", "+", "-" or "#"
    percent: bool = False

    @property
    def relative(self) -> bool:
        return bool(self.sign)


@attrs.frozen
class CloseSpec:
    """AddOrder's one conditional close (`close[ordertype]`, `close[price]`, `close[price2]`)."""

    ordertype: OrderType
    price: PriceExpr | None = None
    price2: PriceExpr | None = None


@attrs.frozen
class NewOrder:
    pair: str
    side: OrderSide
    ordertype: OrderType
    volume: Decimal
    price: PriceExpr | None = None
    price2: PriceExpr | None = None
    leverage: int | None = None          # None = spot; 2..5 = margin
    reduce_only: bool = False
    oflags: frozenset[str] = frozenset()
    timeinforce: str = "GTC"
    starttm: str | None = None
    expiretm: str | None = None
    cl_ord_id: str | None = None
    userref: int | None = None
    deadline: float | None = None        # unix seconds
    validate: bool = False
    close: CloseSpec | None = None
    trigger: str = "last"


@attrs.frozen
class Amendment:
    txid: str | None
    cl_ord_id: str | None
    order_qty: Decimal | None = None
    limit_price: PriceExpr | None = None
    trigger_price: PriceExpr | None = None
    post_only: bool = False
    deadline: float | None = None


def parse_bool(params: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise invalid(name)


def parse_int(params: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise invalid(name) from None


def parse_txids(text: str | None, name: str = "txid", limit: int = 50) -> list[str]:
    """A comma list of ids; Kraken answers a malformed or oversized list with invalid arguments."""
    ids = [part.strip() for part in (text or "").split(",") if part.strip()]
    if not ids or len(ids) > limit:
        raise invalid(name)
    return ids


def looks_like_txid(text: str) -> bool:
    return bool(_TXID.match(text))


def parse_price(text: str, field: str) -> PriceExpr:
    stripped = text.strip()
    sign = stripped[:1] if stripped[:1] in ("+", "-", "#") else ""
    body = stripped[len(sign):]
    percent = body.endswith("%")
    if percent:
        body = body[:-1]
        if not sign:
            raise invalid(field)
    amount = parse_number(body, f"{INVALID_ARGUMENTS}:{field}")
    if amount < 0:
        raise invalid(field)
    return PriceExpr(stripped, amount, sign, percent)


def _optional_price(params: Mapping[str, str], key: str, field: str) -> PriceExpr | None:
    value = params.get(key)
    return None if value is None or value == "" else parse_price(value, field)


def _leverage(value: str | None) -> int | None:
    if value is None or value.strip().lower() in ("", "none"):
        return None
    text = value.strip()
    if text.endswith(":1"):
        text = text[:-2]
    try:
        leverage = int(text)
    except ValueError:
        raise invalid("leverage") from None
    if leverage < 1:
        raise invalid("leverage")
    return None if leverage == 1 else leverage


def _oflags(value: str | None) -> frozenset[str]:
    flags = frozenset(part.strip() for part in (value or "").split(",") if part.strip())
    if not flags <= OFLAGS or {"fcib", "fciq"} <= flags:
        raise invalid("oflags")
    return flags


def check_cl_ord_id(value: str) -> str:
    """A UUID (with or without dashes) or at most 18 printable ASCII characters."""
    if _UUID.match(value) or (0 < len(value) <= 18 and value.isascii() and value.isprintable()):
        return value
    raise invalid("cl_ord_id")


def _userref(params: Mapping[str, str]) -> int | None:
    userref = parse_int(params, "userref")
    if userref is not None and not INT32[0] <= userref <= INT32[1]:
        raise invalid("userref")
    return userref


def _time_spec(params: Mapping[str, str], name: str) -> str | None:
    """`0`, `+<seconds>` or a unix timestamp; resolved against the clock by the engine."""
    value = params.get(name)
    if value is None or value == "":
        return None
    parse_number(value.lstrip("+"), f"{INVALID_ARGUMENTS}:{name}")
    return value.strip()


def parse_deadline(params: Mapping[str, str]) -> float | None:
    value = params.get("deadline")
    if value is None or value == "":
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        raise invalid("deadline") from None


def _order_type(value: str, field: str) -> OrderType:
    try:
        return OrderType(value.strip().lower())
    except ValueError:
        raise invalid(field) from None


def _check_prices(ordertype: OrderType, price: PriceExpr | None, price2: PriceExpr | None,
                  field: Callable[[str], str] = str) -> None:
    """The F01 table: which price field each order type needs, and in which form.

    `field` names a field in an error (a conditional close's are `close[price]`)."""
    if ordertype is not OrderType.MARKET and price is None:
        raise invalid(field("price"))
    if ordertype in (LIMIT_TYPES - {OrderType.LIMIT}) and price2 is None:
        raise invalid(field("price2"))
    if ordertype in TRAILING_TYPES and price is not None and price.sign != "+":
        raise invalid(field("price"))
    if ordertype is OrderType.TRAILING_STOP_LIMIT and price2 is not None and price2.sign not in ("+", "-"):
        raise invalid(field("price2"))


def _close(params: Mapping[str, str]) -> CloseSpec | None:
    ordertype = params.get("close[ordertype]")
    if not ordertype:
        return None
    close = CloseSpec(
        _order_type(ordertype, "close[ordertype]"),
        _optional_price(params, "close[price]", "close[price]"),
        _optional_price(params, "close[price2]", "close[price2]"),
    )
    _check_prices(close.ordertype, close.price, close.price2, field=lambda name: f"close[{name}]")
    return close


def _order_flags(
    params: Mapping[str, str], side: OrderSide, ordertype: OrderType, leverage: int | None
) -> frozenset[str]:
    """oflags, with Kraken's limits: viqc only on spot market buys, post only on limits."""
    oflags = _oflags(params.get("oflags"))
    if "viqc" in oflags and (ordertype is not OrderType.MARKET or side is OrderSide.SELL or leverage):
        raise invalid("viqc")
    if "post" in oflags and ordertype is not OrderType.LIMIT:
        raise invalid("post")
    return oflags


def _time_in_force(params: Mapping[str, str]) -> str:
    timeinforce = (params.get("timeinforce") or "GTC").upper()
    if timeinforce not in TIME_IN_FORCE:
        raise invalid("timeinforce")
    if timeinforce == "GTD" and not params.get("expiretm"):
        raise invalid("expiretm")
    return timeinforce


def parse_add_order(params: Mapping[str, str]) -> NewOrder:
    if any(not params.get(name) for name in ("pair", "type", "ordertype", "volume")):
        raise KrakenRejection(INVALID_ARGUMENTS)
    try:
        side = OrderSide(params["type"].strip().lower())
    except ValueError:
        raise invalid("type") from None
    ordertype = _order_type(params["ordertype"], "ordertype")
    volume = parse_number(params["volume"], f"{INVALID_ARGUMENTS}:volume")
    if volume < 0:
        raise invalid("volume")
    price = _optional_price(params, "price", "price")
    price2 = _optional_price(params, "price2", "price2")
    _check_prices(ordertype, price, price2)
    leverage = _leverage(params.get("leverage"))
    reduce_only = parse_bool(params, "reduce_only")
    if reduce_only and leverage is None:
        raise invalid("reduce_only")
    oflags = _order_flags(params, side, ordertype, leverage)
    timeinforce = _time_in_force(params)
    cl_ord_id = params.get("cl_ord_id") or None
    userref = _userref(params)
    close = _close(params)
    if cl_ord_id is not None:
        check_cl_ord_id(cl_ord_id)
        if userref is not None or close is not None:
            raise invalid("cl_ord_id")
    trigger = (params.get("trigger") or "last").lower()
    if trigger not in ("last", "index"):
        raise invalid("trigger")
    if volume == 0 and not reduce_only:
        raise invalid("volume")
    return NewOrder(
        pair=params["pair"], side=side, ordertype=ordertype, volume=volume, price=price, price2=price2,
        leverage=leverage, reduce_only=reduce_only, oflags=oflags, timeinforce=timeinforce,
        starttm=_time_spec(params, "starttm"), expiretm=_time_spec(params, "expiretm"), cl_ord_id=cl_ord_id,
        userref=userref, deadline=parse_deadline(params), validate=parse_bool(params, "validate"), close=close,
        trigger=trigger,
    )


def parse_amend(params: Mapping[str, str]) -> Amendment:
    txid = params.get("txid") or None
    cl_ord_id = params.get("cl_ord_id") or None
    if (txid is None) == (cl_ord_id is None):
        raise KrakenRejection(INVALID_ARGUMENTS)
    order_qty = None
    if params.get("order_qty"):
        order_qty = parse_number(params["order_qty"], f"{INVALID_ARGUMENTS}:order_qty")
        if order_qty <= 0:
            raise invalid("order_qty")
    amendment = Amendment(
        txid=txid, cl_ord_id=cl_ord_id, order_qty=order_qty,
        limit_price=_optional_price(params, "limit_price", "limit_price"),
        trigger_price=_optional_price(params, "trigger_price", "trigger_price"),
        post_only=parse_bool(params, "post_only"), deadline=parse_deadline(params),
    )
    if amendment.order_qty is None and amendment.limit_price is None and amendment.trigger_price is None:
        raise KrakenRejection(INVALID_ARGUMENTS)
    return amendment
