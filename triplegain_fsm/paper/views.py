"""The engine's records in Kraken's response shapes, numbers as strings with Kraken's decimals.

One renderer per record type, shared by the REST API and the Python facade, so a
test that inspects the exchange directly sees exactly what a client would parse.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from triplegain_fsm.enums import OrderType
from triplegain_fsm.paper.fmt import fmt, timestamp
from triplegain_fsm.paper.margin import MarginPosition
from triplegain_fsm.paper.orders import PaperOrder, TradeRecord
from triplegain_fsm.paper.pairs import PairSpec
from triplegain_fsm.paper.params import CloseSpec, PriceExpr

_PHRASES = {
    OrderType.MARKET: "market", OrderType.LIMIT: "limit", OrderType.STOP_LOSS: "stop loss",
    OrderType.TAKE_PROFIT: "take profit", OrderType.STOP_LOSS_LIMIT: "stop loss",
    OrderType.TAKE_PROFIT_LIMIT: "take profit", OrderType.TRAILING_STOP: "trailing stop",
    OrderType.TRAILING_STOP_LIMIT: "trailing stop",
}
_WITH_LIMIT = frozenset({OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT, OrderType.TRAILING_STOP_LIMIT})


def _phrase(ordertype: OrderType, price: str, price2: str) -> str:
    """`limit 37500.0`, `stop loss 27000.0 -> limit 26900.0`, `market`: how Kraken words an order."""
    if ordertype is OrderType.MARKET:
        return "market"
    text = f"{_PHRASES[ordertype]} {price}"
    return f"{text} -> limit {price2}" if ordertype in _WITH_LIMIT else text


def _leverage_text(leverage: int | None) -> str:
    return f"{leverage}:1" if leverage else "none"


def expr_text(pair: PairSpec, expr: PriceExpr | None) -> str:
    """A trailing or relative price as descr shows it: `+150.0`, `+2%`."""
    if expr is None:
        return "0"
    if expr.percent:
        return f"{expr.sign}{expr.amount.normalize():f}%"
    return f"{expr.sign}{fmt(expr.amount, pair.pair_decimals)}"


def close_text(pair: PairSpec, close: CloseSpec | None) -> str:
    if close is None:
        return ""
    return f"close position @ {_phrase(close.ordertype, expr_text(pair, close.price), expr_text(pair, close.price2))}"


def order_text(order: PaperOrder) -> str:
    pair = order.pair
    text = f"{order.side.value} {fmt(order.vol, pair.lot_decimals)} {pair.altname} @ "
    text += _phrase(order.ordertype, order.price_text, order.price2_text)
    return f"{text} with {order.leverage}:1 leverage" if order.leverage else text


def descr(order: PaperOrder) -> dict[str, str]:
    return {
        "pair": order.pair.altname, "type": order.side.value, "ordertype": order.ordertype.value,
        "price": order.price_text, "price2": order.price2_text, "leverage": _leverage_text(order.leverage),
        "order": order_text(order), "close": close_text(order.pair, order.close),
    }


def add_order_result(order: PaperOrder, validate: bool) -> dict[str, Any]:
    text = {"order": order_text(order)}
    if order.close is not None:
        text["close"] = close_text(order.pair, order.close)
    return {"descr": text} if validate else {"descr": text, "txid": [order.txid]}


def _oflags(order: PaperOrder) -> str:
    flags = list(order.oflags)
    if "fcib" not in flags and "fciq" not in flags:
        flags.append("fciq")   # fees are always charged in quote here, and Kraken says so
    return ",".join(flags)


def order_info(order: PaperOrder, *, trades: bool = False) -> dict[str, Any]:
    pair = order.pair
    info: dict[str, Any] = {
        "refid": order.refid, "userref": order.userref, "cl_ord_id": order.cl_ord_id, "status": order.status,
        "reason": order.reason, "opentm": timestamp(order.opentm), "starttm": timestamp(order.starttm),
        "expiretm": timestamp(order.expiretm), "descr": descr(order),
        "vol": fmt(order.vol, pair.lot_decimals), "vol_exec": fmt(order.vol_exec, pair.lot_decimals),
        "cost": fmt(order.cost, pair.cost_decimals), "fee": fmt(order.fee, pair.cost_decimals),
        "price": fmt(order.average_price, pair.pair_decimals), "stopprice": fmt(order.stopprice, pair.pair_decimals),
        "limitprice": fmt(order.limitprice, pair.pair_decimals), "misc": ",".join(order.misc),
        "oflags": _oflags(order), "trigger": "last", "margin": bool(order.leverage),
    }
    if order.closetm is not None:
        info["closetm"] = timestamp(order.closetm)
    if trades and order.trades:
        info["trades"] = list(order.trades)
    return info


def trade_info(trade: TradeRecord) -> dict[str, Any]:
    pair = trade.pair
    info: dict[str, Any] = {
        "ordertxid": trade.ordertxid, "postxid": trade.postxid, "pair": pair.id, "time": timestamp(trade.time),
        "type": trade.side.value, "ordertype": trade.ordertype.value, "price": fmt(trade.price, pair.pair_decimals),
        "cost": fmt(trade.cost, pair.cost_decimals), "fee": fmt(trade.fee, pair.cost_decimals),
        "vol": fmt(trade.vol, pair.lot_decimals), "margin": fmt(trade.margin, pair.cost_decimals),
        "leverage": str(trade.leverage or 0), "misc": trade.misc, "trade_id": trade.trade_id, "maker": trade.maker,
    }
    if trade.posstatus is not None:
        info["posstatus"] = trade.posstatus
    return info


def position_info(row: MarginPosition, last: Decimal | None) -> dict[str, Any]:
    pair = row.pair
    price = row.entry_price if last is None else last
    return {
        "ordertxid": row.ordertxid, "posstatus": row.status, "pair": pair.id, "time": timestamp(row.time),
        "type": row.side.value, "ordertype": row.ordertype.value, "cost": fmt(row.cost, pair.cost_decimals),
        "fee": fmt(row.fee, pair.cost_decimals), "vol": fmt(row.vol, pair.lot_decimals),
        "vol_closed": fmt(row.vol_closed, pair.lot_decimals), "margin": fmt(row.margin, pair.cost_decimals),
        "value": fmt(price * row.remaining, pair.cost_decimals), "net": fmt(row.net(price), pair.cost_decimals),
        "terms": "0.0000% per 4 hours", "rollovertm": str(int(row.time) + 4 * 3600), "misc": "",
        "oflags": ",".join(row.oflags), "leverage": str(row.leverage),
    }
