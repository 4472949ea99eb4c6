"""OrderRequest -> AddOrder wire fields: the ONE place that decides which price goes where.

The F01 bug (a stop's trigger sent in `price2`) lived in code like this, so the table
from kraken-api.md is written out as data below, and every price field an order type
does not use is refused instead of silently dropped or misplaced.

| ordertype           | price                    | price2                        |
|---------------------|--------------------------|-------------------------------|
| market              | -                        | -                             |
| limit               | limit price              | -                             |
| stop-loss           | trigger price            | -                             |
| take-profit         | trigger price            | -                             |
| stop-loss-limit     | trigger price            | limit price                   |
| take-profit-limit   | trigger price            | limit price                   |
| trailing-stop       | trailing offset `+...`   | -                             |
| trailing-stop-limit | trailing offset `+...`   | limit offset `+...` / `-...`  |
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs

from triplegain_fsm.enums import OrderSide, OrderType
from triplegain_fsm.kraken.errors import (
    IncompatibleFlagError,
    KrakenRequestError,
    MissingPriceError,
    PrecisionError,
    UnexpectedPriceError,
)
from triplegain_fsm.kraken.order_request import Offset, OrderRequest
from triplegain_fsm.money import to_decimal

if TYPE_CHECKING:
    from triplegain_fsm.kraken.pairs import PairInfo

# OrderRequest field -> wire field, per order type. A request field not listed for its
# type must be None. Read this table against the one in the module docstring.
PRICE_FIELDS: dict[OrderType, dict[str, str]] = {
    OrderType.MARKET: {},
    OrderType.LIMIT: {"limit_price": "price"},
    OrderType.STOP_LOSS: {"trigger_price": "price"},
    OrderType.TAKE_PROFIT: {"trigger_price": "price"},
    OrderType.STOP_LOSS_LIMIT: {"trigger_price": "price", "limit_price": "price2"},
    OrderType.TAKE_PROFIT_LIMIT: {"trigger_price": "price", "limit_price": "price2"},
    OrderType.TRAILING_STOP: {"trailing_offset": "price"},
    OrderType.TRAILING_STOP_LIMIT: {"trailing_offset": "price", "limit_offset": "price2"},
}
_ALL_PRICE_FIELDS = ("limit_price", "trigger_price", "trailing_offset", "limit_offset")
_TIME_IN_FORCE = ("GTC", "IOC")   # GTD needs expiretm, which OrderRequest does not carry
_CL_ORD_ID = re.compile(
    r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{32}|[\x21-\x7e]{1,18})$"
)


@attrs.frozen
class WireOrder:
    """AddOrder's fields as strings, in a stable order; `as_json` when the body must be JSON.

    A percentage offset (`+2%`) has failed form-encoded at Kraken, so such an order
    is sent as a JSON body instead.
    """

    params: dict[str, str]
    as_json: bool = False


def wire_decimal(value: Decimal) -> str:
    """A Decimal as Kraken expects it: plain digits, no exponent, no trailing zeros, never via float.

    Trailing zeros are stripped from the text rather than by `normalize()`, which
    would also round to the context's 28 significant digits.
    """
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def decimals_of(value: Decimal) -> int:
    """How many decimals `value` needs once trailing zeros are dropped."""
    if not value.is_finite():
        raise KrakenRequestError(f"{value} is not a finite number")
    text = wire_decimal(value)
    return len(text.split(".")[1]) if "." in text else 0


def rfc3339(moment: datetime) -> str:
    """`2024-07-21T09:53:59.050Z`: UTC, milliseconds; a naive datetime is refused (its zone is a guess)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise KrakenRequestError("deadline: must be timezone-aware")
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def add_order_params(req: OrderRequest, pair_info: PairInfo | None = None) -> WireOrder:
    """Build AddOrder's wire fields from a request, refusing anything Kraken would misread.

    With `pair_info`, the pair is sent as its altname and volume/price precision and
    leverage are checked against it; without it, `req.pair` is sent as given.
    """
    _check_identity(req)
    params: dict[str, str] = {
        "pair": _pair_name(req, pair_info),
        "type": OrderSide(req.side).value,
        "ordertype": OrderType(req.order_type).value,
        "volume": _volume(req, pair_info),
    }
    prices, as_json = _prices(req, pair_info)
    params.update(prices)
    params.update(_margin(req, pair_info))
    oflags = _oflags(req)
    if oflags:
        params["oflags"] = oflags
    if req.time_in_force is not None:
        params["timeinforce"] = _time_in_force(req.time_in_force)
    params["cl_ord_id"] = req.cl_ord_id
    if req.deadline is not None:
        params["deadline"] = rfc3339(req.deadline)
    if req.validate:
        params["validate"] = "true"
    return WireOrder(params=params, as_json=as_json)


def _check_identity(req: OrderRequest) -> None:
    if not isinstance(req.cl_ord_id, str) or not _CL_ORD_ID.match(req.cl_ord_id):
        raise KrakenRequestError(
            f"cl_ord_id: must be a UUID (with or without dashes) or 1..18 printable ASCII chars, "
            f"got {req.cl_ord_id!r}")


def _pair_name(req: OrderRequest, pair_info: PairInfo | None) -> str:
    if pair_info is None:
        return req.pair
    names = {pair_info.id, pair_info.altname, pair_info.wsname, pair_info.symbol}
    if req.pair.upper() not in {n.upper() for n in names}:
        raise KrakenRequestError(f"pair: request names {req.pair!r} but pair_info is {pair_info.altname}")
    return pair_info.altname


def _volume(req: OrderRequest, pair_info: PairInfo | None) -> str:
    volume = to_decimal(req.volume, "volume")
    closing_all = volume == 0 and req.reduce_only and (req.leverage or 1) > 1
    if volume < 0 or (volume == 0 and not closing_all):
        raise KrakenRequestError(f"volume: must be positive (0 only closes a margin position), got {volume}")
    if pair_info is not None and not req.volume_in_quote and decimals_of(volume) > pair_info.lot_decimals:
        raise PrecisionError(
            f"volume: {volume} has {decimals_of(volume)} decimals, {pair_info.altname} allows "
            f"{pair_info.lot_decimals}; round it with PairRegistry.round_volume")
    return wire_decimal(volume)


def _prices(req: OrderRequest, pair_info: PairInfo | None) -> tuple[dict[str, str], bool]:
    order_type = OrderType(req.order_type)
    used = PRICE_FIELDS[order_type]
    for name in _ALL_PRICE_FIELDS:
        if name not in used and getattr(req, name) is not None:
            raise UnexpectedPriceError(f"{name}: a {order_type.value} order does not use it")
    wire: dict[str, str] = {}
    as_json = False
    for name, wire_name in used.items():
        value = getattr(req, name)
        if value is None:
            raise MissingPriceError(f"{name}: a {order_type.value} order needs it (sent as {wire_name})")
        if isinstance(value, Offset):
            wire[wire_name] = _offset(name, value, pair_info)
            as_json = as_json or value.percent
        else:
            wire[wire_name] = _price(name, value, pair_info)
    return wire, as_json


def _price(name: str, value: Decimal, pair_info: PairInfo | None) -> str:
    price = to_decimal(value, name)
    if price <= 0:
        raise KrakenRequestError(f"{name}: must be positive, got {price}")
    _check_price_decimals(name, price, pair_info)
    return wire_decimal(price)


def _offset(name: str, offset: Offset, pair_info: PairInfo | None) -> str:
    if not isinstance(offset, Offset):
        raise KrakenRequestError(f"{name}: must be an Offset, got {type(offset).__name__}")
    amount = to_decimal(offset.amount, name)
    if amount < 0:
        raise KrakenRequestError(f"{name}: the amount is unsigned (put the direction in sign), got {amount}")
    if offset.sign not in ("+", "-"):
        raise KrakenRequestError(f"{name}: sign must be '+' or '-', got {offset.sign!r}")
    if name == "trailing_offset" and (offset.sign != "+" or amount == 0):
        raise KrakenRequestError(f"{name}: a trailing offset must be '+' and above zero, got {offset.sign}{amount}")
    if not offset.percent:
        _check_price_decimals(name, amount, pair_info)
    return f"{offset.sign}{wire_decimal(amount)}{'%' if offset.percent else ''}"


def _check_price_decimals(name: str, price: Decimal, pair_info: PairInfo | None) -> None:
    if pair_info is not None and decimals_of(price) > pair_info.pair_decimals:
        raise PrecisionError(
            f"{name}: {price} has {decimals_of(price)} decimals, {pair_info.altname} allows "
            f"{pair_info.pair_decimals}; round it with PairRegistry.round_price")


def _margin(req: OrderRequest, pair_info: PairInfo | None) -> dict[str, str]:
    leverage = 1 if req.leverage is None else req.leverage
    if isinstance(leverage, bool) or not isinstance(leverage, int) or leverage < 1:
        raise KrakenRequestError(f"leverage: must be an int >= 1 or None, got {req.leverage!r}")
    if leverage == 1:
        if req.reduce_only:
            raise IncompatibleFlagError("reduce_only: only applies to a margin order (leverage > 1)")
        return {}
    if pair_info is not None:
        allowed = pair_info.leverage_buy if OrderSide(req.side) is OrderSide.BUY else pair_info.leverage_sell
        if leverage not in allowed:
            raise IncompatibleFlagError(
                f"leverage: {leverage} is not offered on {pair_info.altname} for a {OrderSide(req.side).value} "
                f"(allowed: {list(allowed) or 'none'})")
    wire = {"leverage": str(leverage)}
    if req.reduce_only:
        wire["reduce_only"] = "true"
    return wire


def _oflags(req: OrderRequest) -> str:
    # fciq always: Kraken's default charges a sell's fee in base, which would leave the position's
    # stop asking for coins that are gone; the core's P&L and sizes assume fees in quote.
    flags = ["fciq"]
    if req.post_only:
        if OrderType(req.order_type) is not OrderType.LIMIT:
            raise IncompatibleFlagError(f"post_only: only a limit order can be post-only, not {req.order_type}")
        flags.append("post")
    if req.volume_in_quote:
        if OrderType(req.order_type) is not OrderType.MARKET or OrderSide(req.side) is not OrderSide.BUY:
            raise IncompatibleFlagError("volume_in_quote: viqc is only allowed on a market BUY")
        if (req.leverage or 1) > 1:
            raise IncompatibleFlagError("volume_in_quote: viqc is not allowed on a margin order")
        flags.append("viqc")
    return ",".join(flags)


def _time_in_force(value: str) -> str:
    tif = str(value).upper()
    if tif not in _TIME_IN_FORCE:
        raise IncompatibleFlagError(f"time_in_force: must be one of {_TIME_IN_FORCE}, got {value!r}")
    return tif
