"""Order changes as Kraken WebSocket v2 execution reports: full first, sparse after.

Kraken sends an order's whole description once (`pending_new`, and in snapshots);
every later report carries only the ids, the new status and what changed -- no
`symbol`, usually no `cl_ord_id`. That sparseness has broken real clients, so the
paper exchange reproduces it on purpose, together with the known quirk that the
trade completing an order may still say `partially_filled`, with a separate
`filled` report (no `exec_id`) after it. Numbers are Decimals (written exactly by
`ws_json`); times are RFC 3339 with microseconds.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from triplegain_fsm.enums import OrderType
from triplegain_fsm.paper.fmt import quantize
from triplegain_fsm.paper.observe import AMENDED, NEW, TRADE, TRIGGERED, OrderChange, OrderView, Snapshot
from triplegain_fsm.paper.orders import TradeRecord
from triplegain_fsm.paper.pairs import SYMBOL_ALIASES, PairSpec
from triplegain_fsm.paper.params import LIMIT_TYPES, TRAILING_TYPES, TRIGGERED_TYPES

ZERO = Decimal(0)
WS_NAMES = {kraken: common for common, kraken in SYMBOL_ALIASES.items()}     # XBT -> BTC, XDG -> DOGE
ORDER_STATUS = {"closed": "filled", "canceled": "canceled", "expired": "expired"}
Report = dict[str, Any]


def ws_time(seconds: float) -> str:
    """`2023-09-21T14:15:06.954216Z`: v2's timestamp shape."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def symbol(pair: PairSpec) -> str:
    """v2's symbol: the wsname with the common asset names (`XBT/USD` -> `BTC/USD`)."""
    base, _, quote = pair.wsname.partition("/")
    return f"{WS_NAMES.get(base, base)}/{WS_NAMES.get(quote, quote)}"


def asset_name(asset_id: str, pair: PairSpec) -> str:
    """A fee asset as v2 names it (`ZUSD` -> `USD`): the quote half of the symbol."""
    return symbol(pair).partition("/")[2] if asset_id == pair.quote else asset_id


def order_status(order: OrderView) -> str:
    if order.status in ORDER_STATUS:
        return ORDER_STATUS[order.status]
    if order.status == "pending":
        return "pending_new"
    return "partially_filled" if order.vol_exec > 0 else "new"


def _cumulative(order: OrderView) -> Report:
    average = quantize(order.cost / order.vol_exec, order.pair.pair_decimals) if order.vol_exec else ZERO
    report: Report = {"cum_qty": order.vol_exec, "cum_cost": order.cost, "avg_price": average}
    if order.pair.quote == "ZUSD":
        report["fee_usd_equiv"] = order.fee
    return report


def _offset(amount: Decimal, sign: str) -> Decimal:
    return -amount if sign == "-" else amount


def triggers(order: OrderView) -> Report | None:
    if order.ordertype not in TRIGGERED_TYPES:
        return None
    block: Report = {"reference": "last", "status": "triggered" if order.triggered else "untriggered"}
    if order.ordertype in TRAILING_TYPES and order.trailing_offset is not None:
        block["price"] = order.trailing_offset.amount
        block["price_type"] = "pct" if order.trailing_offset.percent else "quote"
    else:
        block["price"], block["price_type"] = order.trigger_price, "static"
    if order.trigger_price is not None:
        block["actual_price"] = order.trigger_price
    return block


def _limit(order: OrderView) -> Report:
    if order.ordertype not in LIMIT_TYPES:
        return {}
    if order.ordertype is OrderType.TRAILING_STOP_LIMIT and not order.triggered and order.limit_offset is not None:
        offset = order.limit_offset
        return {"limit_price": _offset(offset.amount, offset.sign),
                "limit_price_type": "pct" if offset.percent else "quote"}
    return {"limit_price": order.limit_price, "limit_price_type": "static"} if order.limit_price is not None else {}


def describe(order: OrderView) -> Report:
    """Everything v2 says about an order when it first describes it."""
    report: Report = {"order_id": order.txid, "symbol": symbol(order.pair), "side": order.side.value,
                      "order_type": order.ordertype.value, "order_qty": order.vol, **_limit(order)}
    block = triggers(order)
    if block is not None:
        report["triggers"] = block
    if order.cl_ord_id is not None:
        report["cl_ord_id"] = order.cl_ord_id
    if order.userref is not None:
        report["order_userref"] = order.userref
    report.update({"time_in_force": order.timeinforce.lower(), "post_only": "post" in order.oflags,
                   "reduce_only": order.reduce_only, "margin": bool(order.leverage)})
    if order.starttm:
        report["effective_time"] = ws_time(order.starttm)
    if order.expiretm:
        report["expire_time"] = ws_time(order.expiretm)
    return report


def _fill(trade: TradeRecord) -> Report:
    return {
        "exec_id": trade.txid, "trade_id": trade.trade_id, "last_qty": trade.vol, "last_price": trade.price,
        "cost": trade.cost, "fees": [{"asset": asset_name(trade.pair.quote, trade.pair), "qty": trade.fee}],
        "liquidity_ind": "m" if trade.maker else "t",
    }


def _trade_report(change: OrderChange, completing_status: str) -> Report:
    order, trade = change.order, change.trade
    assert trade is not None
    status = order_status(order)
    if order.vol_exec >= order.vol:
        status = completing_status
    return {"exec_type": "trade", "order_status": status, "order_id": order.txid, **_fill(trade),
            **_cumulative(order), "timestamp": ws_time(change.time)}


def _amended(change: OrderChange) -> Report:
    order = change.order
    report: Report = {"exec_type": "amended", "order_status": order_status(order), "order_id": order.txid,
                      "amended": True}
    if "order_qty" in change.changed:
        report["order_qty"] = order.vol
    if "limit_price" in change.changed:
        report.update(_limit(order))
    if "trigger_price" in change.changed:
        report["triggers"] = triggers(order)
    return {**report, "timestamp": ws_time(change.time)}


def reports(change: OrderChange, *, completing_status: str = "partially_filled") -> list[Report]:
    """The v2 report(s) for one change; a new order is two: `pending_new` (full) and `new`."""
    order, stamp = change.order, ws_time(change.time)
    if change.kind == NEW:
        full = {"exec_type": "pending_new", "order_status": "pending_new", **describe(order),
                "cum_qty": ZERO, "cum_cost": ZERO, "timestamp": stamp}
        new: Report = {"exec_type": "new", "order_status": "new", "order_id": order.txid}
        if order.cl_ord_id is not None:
            new["cl_ord_id"] = order.cl_ord_id
        return [full, {**new, "timestamp": stamp}]
    if change.kind == TRADE:
        return [_trade_report(change, completing_status)]
    if change.kind == AMENDED:
        return [_amended(change)]
    base: Report = {"exec_type": change.kind, "order_status": order_status(order), "order_id": order.txid}
    if change.kind == TRIGGERED:
        return [{**base, "exec_type": "status", "triggers": triggers(order), "timestamp": stamp}]
    if change.kind == "filled":
        return [{**base, **_cumulative(order), "timestamp": stamp}]
    return [{**base, "reason": order.reason or "User requested", "cum_qty": order.vol_exec, "timestamp": stamp}]


def snapshot_reports(snapshot: Snapshot, *, orders: bool = True, trades: bool = False) -> list[Report]:
    """The `snapshot` message's data: open orders in full, then up to 50 trades (oldest first)."""
    data: list[Report] = []
    if orders:
        for order in snapshot.orders:
            data.append({"exec_type": "new", "order_status": order_status(order), **describe(order),
                         **_cumulative(order), "timestamp": ws_time(order.opentm)})
    if trades:
        for trade, order in snapshot.trades:
            data.append({"exec_type": "trade", "order_status": order_status(order), **describe(order),
                         **_fill(trade), **_cumulative(order), "timestamp": ws_time(trade.time)})
    return data
