"""OrderRequest -> WebSocket v2 `add_order` / `amend_order` / `cancel_order` params: the F01 table in WS form.

The WS form is a TRANSLATION of the REST wire that `params.add_order_params` builds:
every check (which price a type needs, precision, flags, leverage, cl_ord_id,
deadline) and every number (Decimal, same digits) comes from the REST builder, so
the two channels can never disagree about an order; only the layout differs. The
layout is the trap (F01 again): WS puts a stop's trigger in `triggers.price` and a
`*-limit` type's limit in `limit_price`, where REST puts the trigger in `price` and
the limit in `price2`.

| order_type          | REST `price`  | REST `price2` | WS `triggers.price` | WS `limit_price` |
|---------------------|---------------|---------------|---------------------|------------------|
| market              | -             | -             | -                   | -                |
| limit               | limit price   | -             | -                   | limit price      |
| stop-loss           | trigger price | -             | trigger price       | -                |
| take-profit         | trigger price | -             | trigger price       | -                |
| stop-loss-limit     | trigger price | limit price   | trigger price       | limit price      |
| take-profit-limit   | trigger price | limit price   | trigger price       | limit price      |
| trailing-stop       | `+offset`     | -             | REST only (below)   |                  |
| trailing-stop-limit | `+offset`     | `+/-offset`   | REST only (below)   |                  |

`triggers` is always `{reference: "last", price, price_type: "static"}` (REST's
default trigger reference is `last` too).

What WS v2 cannot say, and so goes by REST (`RestOnlyOrder`, raised before anything
is sent):
- margin with a leverage below the pair's maximum: WS has only `margin: true`, which
  means the pair's MAXIMUM leverage for that side (there is no ratio on WS);
- `volume = 0` (close a whole margin position): documented for REST only;
- trailing stops: WS expresses their offsets through `price_type` `quote`/`pct`, which
  the core does not use (it trails by amending a plain stop) and which is not checked
  against Kraken here, so they are kept on the one layout that is.

Other fields: REST `oflags` become WS booleans/fields by `OFLAG_FIELDS` (`fciq`, sent
on every order, is WS `fee_preference: "quote"`; `viqc` makes the quantity
`cash_order_qty`); `timeinforce` GTC/IOC becomes `time_in_force` gtc/ioc; `deadline` is
the same RFC 3339 string; `reduce_only`, `post_only`, `validate` are JSON booleans;
`symbol` is the pair as Kraken's v2 names it (`BTC/USD`, not REST's `XBTUSD` or the
v1 wsname `XBT/USD`). Numbers are Decimal (the stream writes them as exact JSON
numbers, never through a float).
"""
from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from triplegain_fsm.enums import OrderSide, OrderType
from triplegain_fsm.errors import ValidationError
from triplegain_fsm.kraken.errors import IncompatibleFlagError, KrakenRequestError
from triplegain_fsm.kraken.order_request import OrderRequest
from triplegain_fsm.kraken.pairs import PairInfo
from triplegain_fsm.kraken.params import PRICE_FIELDS, add_order_params, wire_decimal
from triplegain_fsm.money import to_decimal

TRIGGER = "triggers.price"
LIMIT = "limit_price"

# OrderRequest field -> WS add_order field, per order type; None = this type goes by REST.
# Read it against PRICE_FIELDS (the REST table, kraken/params.py) and the module docstring.
WS_PRICE_FIELDS: dict[OrderType, dict[str, str] | None] = {
    OrderType.MARKET: {},
    OrderType.LIMIT: {"limit_price": LIMIT},
    OrderType.STOP_LOSS: {"trigger_price": TRIGGER},
    OrderType.TAKE_PROFIT: {"trigger_price": TRIGGER},
    OrderType.STOP_LOSS_LIMIT: {"trigger_price": TRIGGER, "limit_price": LIMIT},
    OrderType.TAKE_PROFIT_LIMIT: {"trigger_price": TRIGGER, "limit_price": LIMIT},
    OrderType.TRAILING_STOP: None,
    OrderType.TRAILING_STOP_LIMIT: None,
}
TRIGGER_REFERENCE = "last"
TRIGGER_PRICE_TYPE = "static"

# REST oflag -> (WS field, value). `viqc` is not a flag on WS: it makes the quantity cash_order_qty.
OFLAG_FIELDS: dict[str, tuple[str, Any]] = {
    "fciq": ("fee_preference", "quote"),
    "fcib": ("fee_preference", "base"),
    "post": ("post_only", True),
    "nompp": ("no_mpp", True),
}
VOLUME_IN_QUOTE = "viqc"


class RestOnlyOrder(IncompatibleFlagError):
    """This order cannot be said in WS v2 `add_order` (see the module docstring): send it by REST.

    Raised before anything is sent; `kraken.ws_orders.WsOrderEntry` routes such orders to REST itself.
    """


def add_order_ws_params(req: OrderRequest, pair_info: PairInfo) -> dict[str, Any]:
    """WS v2 `add_order` params for `req` (without `token`: the stream adds it).

    Raises what `add_order_params` raises for a bad request, and `RestOnlyOrder` for an
    order WS cannot express.
    """
    order_type = OrderType(req.order_type)
    layout = WS_PRICE_FIELDS[order_type]
    if layout is None:
        raise RestOnlyOrder(f"order_type: a {order_type.value} goes by REST (its offsets are not sent on WS here)")
    rest = add_order_params(req, pair_info).params
    flags = rest["oflags"].split(",") if rest.get("oflags") else []
    volume = Decimal(rest["volume"])
    if volume == 0:
        raise RestOnlyOrder("volume: 0 (close the whole margin position) is REST's; send this order by REST")
    params: dict[str, Any] = {
        "order_type": rest["ordertype"],
        "side": rest["type"],
        ("cash_order_qty" if VOLUME_IN_QUOTE in flags else "order_qty"): volume,
        "symbol": pair_info.symbol,
    }
    params.update(_prices(order_type, layout, rest))
    if "timeinforce" in rest:
        params["time_in_force"] = rest["timeinforce"].lower()
    params.update(_margin(req, pair_info))
    if rest.get("reduce_only") == "true":
        params["reduce_only"] = True
    for flag in flags:
        if flag != VOLUME_IN_QUOTE:
            name, value = OFLAG_FIELDS[flag]
            params[name] = value
    params["cl_ord_id"] = rest["cl_ord_id"]
    if "deadline" in rest:
        params["deadline"] = rest["deadline"]
    if rest.get("validate") == "true":
        params["validate"] = True
    return params


def _prices(order_type: OrderType, layout: Mapping[str, str], rest: Mapping[str, str]) -> dict[str, Any]:
    """Each price the REST builder placed (checked, with the pair's decimals) moved to its WS field."""
    rest_fields = PRICE_FIELDS[order_type]   # the same request fields (a test holds the two tables together)
    ws: dict[str, Any] = {}
    for name, ws_field in layout.items():
        value = Decimal(rest[rest_fields[name]])
        if ws_field == TRIGGER:
            ws["triggers"] = {"reference": TRIGGER_REFERENCE, "price": value, "price_type": TRIGGER_PRICE_TYPE}
        else:
            ws[ws_field] = value
    return {k: ws[k] for k in (LIMIT, "triggers") if k in ws}   # a stable order: limit_price, then triggers


def _margin(req: OrderRequest, pair_info: PairInfo) -> dict[str, Any]:
    """`margin: true` only when the request asks for exactly the pair's maximum leverage (REST checked the rest)."""
    leverage = req.leverage or 1
    if leverage == 1:
        return {}
    side = OrderSide(req.side)
    allowed = pair_info.leverage_buy if side is OrderSide.BUY else pair_info.leverage_sell
    top = max(allowed)
    if leverage != top:
        raise RestOnlyOrder(
            f"leverage: {leverage} is below {pair_info.altname}'s maximum {top} for a {side.value}; WS add_order "
            "has only margin=true (the maximum), so this order must go by REST")
    return {"margin": True}


def amend_order_ws_params(order_id: str | None = None, order_qty: Decimal | None = None,
                          limit_price: Decimal | None = None, trigger_price: Decimal | None = None, *,
                          cl_ord_id: str | None = None) -> dict[str, Any]:
    """WS v2 `amend_order` params: the order by `order_id` (txid) or `cl_ord_id`, and what changes.

    Amounts are Decimal with exactly the digits REST AmendOrder would send (`wire_decimal`);
    the trigger is `trigger_price` (static) on both channels, so there is no layout trap here.
    """
    params = _one_id("amend_order", order_id, cl_ord_id, as_list=False)
    changes = {"order_qty": order_qty, "limit_price": limit_price, "trigger_price": trigger_price}
    for name, value in changes.items():
        if value is None:
            continue
        amount = Decimal(wire_decimal(to_decimal(value, name)))
        if amount <= 0:
            raise KrakenRequestError(f"{name}: must be positive, got {amount}")
        params[name] = amount
    if len(params) == 1:
        raise ValidationError("amend_order: nothing to change")
    return params


def cancel_order_ws_params(order_id: str | None = None, cl_ord_id: str | None = None) -> dict[str, Any]:
    """WS v2 `cancel_order` params for ONE order (the method takes lists: one answer per named order)."""
    return _one_id("cancel_order", order_id, cl_ord_id, as_list=True)


def cancel_all_orders_after_ws_params(timeout: int) -> dict[str, Any]:
    """The dead man's switch, as REST's CancelAllOrdersAfter: seconds 0..86400, 0 disarms."""
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 <= timeout <= 86400:
        raise ValidationError(f"timeout: must be an int of seconds in 0..86400, got {timeout!r}")
    return {"timeout": timeout}


def _one_id(method: str, order_id: str | None, cl_ord_id: str | None, *, as_list: bool) -> dict[str, Any]:
    if (order_id is None) == (cl_ord_id is None):
        raise ValidationError(f"{method}: give exactly one of order_id (txid) or cl_ord_id")
    name, value = ("order_id", order_id) if order_id is not None else ("cl_ord_id", cl_ord_id)
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{method}: {name} must be a non-empty string, got {value!r}")
    return {name: [value] if as_list else value}
