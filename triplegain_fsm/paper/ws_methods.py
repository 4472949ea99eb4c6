"""The v2 trading methods, as translations into the REST methods the paper exchange already has.

A v2 request is rewritten into REST AddOrder/AmendOrder/CancelOrder parameters and
run through the very same endpoint functions (`paper.endpoints`): the same parsing,
validation, rate counter, error strings and engine call, so the socket can never
accept an order REST would refuse or price it differently. The tables below are
the whole mapping; the one trap they encode is the price layout, which differs:
v2 puts a stop's trigger in `triggers.price` and a `*-limit` type's limit in
`limit_price`, where REST puts the trigger in `price` and the limit in `price2`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from triplegain_fsm.enums import OrderSide
from triplegain_fsm.paper import endpoints
from triplegain_fsm.paper.endpoints import Context
from triplegain_fsm.paper.errors import INVALID_ARGUMENTS, KrakenRejection, invalid
from triplegain_fsm.paper.fmt import parse_rfc3339

Params = Mapping[str, Any]
RestParams = dict[str, str]

# v2 add_order field -> REST AddOrder field, where the value carries over as it is.
ADD_ORDER_FIELDS = {
    "symbol": "pair", "side": "type", "order_type": "ordertype", "order_qty": "volume",
    "cl_ord_id": "cl_ord_id", "order_userref": "userref", "reduce_only": "reduce_only",
    "validate": "validate", "deadline": "deadline",
}
# order_type -> (REST field for `triggers.price`, REST field for `limit_price`); None = not allowed.
PRICE_LAYOUT: dict[str, tuple[str | None, str | None]] = {
    "market": (None, None),
    "limit": (None, "price"),
    "stop-loss": ("price", None),
    "take-profit": ("price", None),
    "trailing-stop": ("price", None),
    "stop-loss-limit": ("price", "price2"),
    "take-profit-limit": ("price", "price2"),
    "trailing-stop-limit": ("price", "price2"),
}
TRAILING = frozenset({"trailing-stop", "trailing-stop-limit"})
FLAGS = {"post_only": "post", "no_mpp": "nompp"}           # v2 booleans that are REST oflags
FEE_PREFERENCE = {"base": "fcib", "quote": "fciq"}
TIMES = {"effective_time": "starttm", "expire_time": "expiretm"}   # RFC 3339 -> unix seconds
IGNORED = frozenset({"token", "stp_type", "sender_sub_id"})         # accepted, no paper meaning
ADD_ORDER_KNOWN = frozenset(ADD_ORDER_FIELDS) | frozenset(FLAGS) | frozenset(TIMES) | IGNORED | {
    "limit_price", "limit_price_type", "triggers", "time_in_force", "margin", "fee_preference",
    "cash_order_qty", "conditional",
}
AMEND_FIELDS = {"order_id": "txid", "cl_ord_id": "cl_ord_id", "order_qty": "order_qty", "post_only": "post_only",
                "deadline": "deadline"}
AMEND_KNOWN = frozenset(AMEND_FIELDS) | IGNORED | {"limit_price", "limit_price_type", "trigger_price",
                                                    "trigger_price_type", "symbol"}


def text(value: Any, field: str) -> str:
    """A v2 JSON value as the REST wire string it stands for."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (int, str)):
        return str(value)
    raise invalid(field)


def price_text(value: Any, price_type: Any, field: str, *, trailing: bool = False) -> str:
    """A v2 price and its `*_price_type` as a REST price: `static` is absolute; `quote` and
    `pct` are offsets from the last price (`+5`, `-1.5%`); a trailing offset is always `+`."""
    kind = price_type or ("quote" if trailing else "static")
    if kind not in ("static", "quote", "pct"):
        raise invalid(f"{field}_type")
    amount = text(value, field)
    if kind == "static" and not trailing:
        return amount
    sign = "+" if trailing or not amount.startswith("-") else "-"
    return f"{sign}{amount.lstrip('+-')}{'%' if kind == 'pct' else ''}"


def _unknown(params: Params, known: frozenset[str]) -> None:
    for name in params:
        if name not in known:
            raise invalid(name)


def _prices(params: Params, order_type: str, prefix: str = "") -> RestParams:
    """`triggers.price` and `limit_price` into the REST fields PRICE_LAYOUT names."""
    if order_type not in PRICE_LAYOUT:
        raise invalid("order_type")
    trigger_slot, limit_slot = PRICE_LAYOUT[order_type]
    trailing = order_type in TRAILING
    rest: RestParams = {}
    triggers = params.get("triggers")
    if triggers is not None:
        if not isinstance(triggers, Mapping) or trigger_slot is None or "price" not in triggers:
            raise invalid("triggers")
        rest[f"{prefix}{trigger_slot}"] = price_text(triggers["price"], triggers.get("price_type"), "triggers.price",
                                                     trailing=trailing)
        if triggers.get("reference") is not None:
            rest["trigger"] = text(triggers["reference"], "triggers.reference")
    if params.get("limit_price") is not None:
        if limit_slot is None:
            raise invalid("limit_price")
        limit_type = params.get("limit_price_type")
        if order_type == "trailing-stop-limit" and limit_type is None:
            limit_type = "quote"
        rest[f"{prefix}{limit_slot}"] = price_text(params["limit_price"], limit_type, "limit_price")
    return rest


def _conditional(params: Params) -> RestParams:
    """v2's OTO `conditional` close as REST's `close[...]` fields, in the REST layout."""
    close = params.get("conditional")
    if close is None:
        return {}
    if not isinstance(close, Mapping) or not close.get("order_type"):
        raise invalid("conditional")
    order_type = text(close["order_type"], "conditional.order_type")
    shaped = {"limit_price": close.get("limit_price"), "limit_price_type": close.get("limit_price_type")}
    if close.get("trigger_price") is not None:
        shaped["triggers"] = {"price": close["trigger_price"], "price_type": close.get("trigger_price_type")}
    rest = _prices({k: v for k, v in shaped.items() if v is not None}, order_type, prefix="close[")
    rest = {k + "]" if k.startswith("close[") else k: v for k, v in rest.items()}
    return {"close[ordertype]": order_type, **rest}


def _leverage(ctx: Context, params: Params) -> str | None:
    """`margin: true` means the pair's maximum leverage for that side: v2 has no ratio."""
    if not params.get("margin"):
        return None
    pair = ctx.engine.registry.resolve(text(params.get("symbol", ""), "symbol"))
    allowed = pair.allowed_leverage(str(params.get("side", "")).lower() == OrderSide.BUY.value)
    if not allowed:
        raise invalid("margin")
    return str(max(allowed))


def add_order_params(ctx: Context, params: Params) -> RestParams:
    """The REST AddOrder parameters a v2 add_order stands for."""
    _unknown(params, ADD_ORDER_KNOWN)
    rest = {ADD_ORDER_FIELDS[k]: text(v, k) for k, v in params.items() if k in ADD_ORDER_FIELDS and v is not None}
    order_type = rest.get("ordertype", "")
    rest.update(_prices(params, order_type))
    oflags = [flag for name, flag in FLAGS.items() if params.get(name)]
    if params.get("fee_preference") is not None:
        if params["fee_preference"] not in FEE_PREFERENCE:
            raise invalid("fee_preference")
        oflags.append(FEE_PREFERENCE[params["fee_preference"]])
    if params.get("cash_order_qty") is not None:
        rest["volume"] = text(params["cash_order_qty"], "cash_order_qty")
        oflags.append("viqc")
    if oflags:
        rest["oflags"] = ",".join(oflags)
    if params.get("time_in_force") is not None:
        rest["timeinforce"] = text(params["time_in_force"], "time_in_force").upper()
    for name, field in TIMES.items():
        if params.get(name) is not None:
            try:
                rest[field] = str(parse_rfc3339(text(params[name], name)))
            except ValueError:
                raise invalid(name) from None
    leverage = _leverage(ctx, params)
    if leverage is not None:
        rest["leverage"] = leverage
    rest.update(_conditional(params))
    return rest


def add_order(ctx: Context, params: Params) -> dict[str, Any]:
    rest = add_order_params(ctx, params)
    placed = endpoints.add_order(ctx, rest)
    result: dict[str, Any] = {"order_id": placed["txid"][0]} if "txid" in placed else {}
    for name in ("cl_ord_id", "order_userref"):
        if params.get(name) is not None:
            result[name] = params[name]
    return result


def amend_params(params: Params) -> RestParams:
    _unknown(params, AMEND_KNOWN)
    rest = {AMEND_FIELDS[k]: text(v, k) for k, v in params.items() if k in AMEND_FIELDS and v is not None}
    for name in ("limit_price", "trigger_price"):
        if params.get(name) is not None:
            rest[name] = price_text(params[name], params.get(f"{name}_type"), name)
    return rest


def amend_order(ctx: Context, params: Params) -> dict[str, Any]:
    result = endpoints.amend_order(ctx, amend_params(params))
    ids = {k: params[k] for k in ("order_id", "cl_ord_id") if params.get(k) is not None}
    return {"amend_id": result["amend_id"], **ids}


Outcome = tuple[dict[str, Any] | None, str | None]       # (result, error): one per cancelled order


def _ids(params: Params, name: str) -> list[Any]:
    value = params.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not value:
        raise invalid(name)
    return value


def cancel_order(ctx: Context, params: Params) -> list[Outcome]:
    """One outcome per named order (Kraken answers each with its own message, same req_id)."""
    _unknown(params, IGNORED | {"order_id", "cl_ord_id", "order_userref"})
    targets = [(n, v, f) for n, f in (("order_id", "txid"), ("cl_ord_id", "cl_ord_id"), ("order_userref", "txid"))
               for v in _ids(params, n)]
    if not targets:
        raise KrakenRejection(INVALID_ARGUMENTS)
    outcomes: list[Outcome] = []
    for name, value, field in targets:
        try:
            endpoints.cancel_order(ctx, {field: text(value, name)})
            outcomes.append(({name: value}, None))
        except KrakenRejection as rejection:
            outcomes.append((None, rejection.error))
    return outcomes


def cancel_all(ctx: Context, params: Params) -> dict[str, Any]:
    _unknown(params, IGNORED)
    return endpoints.cancel_all(ctx, {})


def cancel_all_orders_after(ctx: Context, params: Params) -> dict[str, Any]:
    _unknown(params, IGNORED | {"timeout"})
    if params.get("timeout") is None or isinstance(params["timeout"], bool):
        raise invalid("timeout")
    return endpoints.cancel_all_orders_after(ctx, {"timeout": text(params["timeout"], "timeout")})


TRADING: dict[str, Callable[[Context, Params], Any]] = {
    "add_order": add_order, "amend_order": amend_order, "cancel_order": cancel_order, "cancel_all": cancel_all,
    "cancel_all_orders_after": cancel_all_orders_after,
}
