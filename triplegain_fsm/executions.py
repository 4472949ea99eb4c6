"""Execution events: what the exchange says happened to one order, whichever channel said it.

REST (QueryOrders, QueryTrades) and the WebSocket v2 `executions` stream describe
the same facts in different shapes: REST gives cumulative figures and a list of
trade ids, the stream gives one message per trade and sparse status changes. Both
are turned here into the same small immutable events, so the one mutator
(`orders.OrderExecutionManager.apply_execution`) never knows which channel spoke,
and a trade reported by both counts once: it is keyed by the exchange's trade id
(the trade txid; the stream calls it `exec_id`).

Pure: no I/O. A REST report whose new volume spans several unknown trades needs
their per-trade figures (QueryTrades); `trades_to_look_up` says which, the
caller fetches them, and `from_rest` turns the answers into trades.
"""
from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs

from triplegain_fsm.errors import ValidationError
from triplegain_fsm.models import Order
from triplegain_fsm.reports import OrderReport

ZERO = Decimal(0)
FINAL_ENDINGS = frozenset({"canceled", "expired", "closed", "filled"})


class MalformedTrade(ValidationError):
    """A trade report that cannot be trusted; nothing was applied."""


@attrs.frozen
class Trade:
    """One exchange trade of one order. `fee` is in `fee_asset` (None: the pair's quote, as fciq asks)."""

    trade_id: str
    qty: Decimal
    price: Decimal
    cost: Decimal
    fee: Decimal
    fee_asset: str | None = None
    keyed_by_volume: bool = False   # a REST increment without a trade id: keyed by the cumulative volume


@attrs.frozen
class Amended:
    """The exchange holds this quantity / trigger now (an amend, or a manual edit)."""

    qty: Decimal | None
    trigger_price: Decimal | None


@attrs.frozen
class Traded:
    trade: Trade


@attrs.frozen
class Ended:
    """The order stopped working: canceled, expired, closed short (REST) or filled (stream)."""

    status: str
    reason: str | None = None


Event = Amended | Traded | Ended


@attrs.frozen
class Execution:
    """Everything one report says about one order, in the order it must be applied."""

    txid: str
    source: str                       # "rest" | "stream"
    events: tuple[Event, ...]
    cl_ord_id: str | None = None
    cum_qty: Decimal | None = None    # the source's cumulative executed volume, when it gives one
    raw: Any = attrs.field(default=None, eq=False, repr=False)

    @property
    def trades(self) -> tuple[Trade, ...]:
        return tuple(e.trade for e in self.events if isinstance(e, Traded))


# -- REST -----------------------------------------------------------------------------------------

def booked_trade_ids(order: Order) -> frozenset[str]:
    return frozenset(filter(None, (order.trade_ids or "").split(",")))


def _keyed_by_volume(order: Order) -> bool:
    """Fills booked before trade ids were kept: only the cumulative volume says what is counted."""
    return order.filled_size > 0 and not booked_trade_ids(order)


def trades_to_look_up(report: OrderReport, order: Order) -> list[str]:
    """Trade ids whose per-trade figures are needed before `report` can be applied.

    None when the increment is exactly one new trade on top of what is booked (the
    increment IS that trade), or when the report carries no trade ids at all.
    """
    if report.vol_exec <= order.filled_size or not report.trade_ids or _keyed_by_volume(order):
        return []
    booked = booked_trade_ids(order)
    new = [t for t in report.trade_ids if t not in booked]
    if len(new) == 1 and booked <= set(report.trade_ids):
        return []
    return new


def from_rest(report: OrderReport, order: Order, looked_up: Mapping[str, Trade] | None = None) -> Execution:
    """A QueryOrders/OpenOrders/ClosedOrders entry as events, given what `order` has booked."""
    events: list[Event] = []
    if report.vol != order.size or (report.trigger_price is not None and report.trigger_price != order.stop_price):
        events.append(Amended(report.vol, report.trigger_price))
    if report.vol_exec > order.filled_size:
        events.extend(Traded(t) for t in _rest_trades(report, order, looked_up or {}))
    if report.status in ("closed", "canceled", "expired"):
        events.append(Ended(report.status, report.reason))
    return Execution(report.txid, "rest", tuple(events), cl_ord_id=report.cl_ord_id, cum_qty=report.vol_exec,
                     raw=report.raw)


def _rest_trades(report: OrderReport, order: Order, looked_up: Mapping[str, Trade]) -> list[Trade]:
    needed = trades_to_look_up(report, order)
    if needed:
        missing = [t for t in needed if t not in looked_up]
        if missing:
            raise MalformedTrade(f"order {report.txid}: no figures for trades {', '.join(missing)}")
        return [looked_up[t] for t in needed]
    qty = report.vol_exec - order.filled_size
    cost = report.cost - order.filled_cost
    fee = report.fee - order.fee_amount
    price = cost / qty if cost > 0 else report.avg_price
    if cost <= 0:
        cost = qty * price
    booked = booked_trade_ids(order)
    new = [t for t in report.trade_ids if t not in booked]
    if new and not _keyed_by_volume(order):
        return [Trade(new[0], qty, price, cost, fee)]
    if report.trade_ids and not _keyed_by_volume(order):   # the volume grew, every listed trade booked: wait
        raise MalformedTrade(f"order {report.txid}: vol_exec grew to {report.vol_exec} with no new trade id")
    return [Trade(f"{order.id}:{format(report.vol_exec, 'f')}", qty, price, cost, fee, keyed_by_volume=True)]


def parse_query_trades(result: Mapping[str, Any]) -> dict[str, Trade]:
    """QueryTrades -> trades by trade id. Kraken's REST fee is in the quote currency."""
    trades: dict[str, Trade] = {}
    for trade_id, info in result.items():
        if not isinstance(info, dict):
            raise MalformedTrade(f"trade {trade_id}: expected an object, got {type(info).__name__}")
        qty, price, cost = (_dec(info, k, trade_id) for k in ("vol", "price", "cost"))
        if qty <= 0:
            raise MalformedTrade(f"trade {trade_id}: volume {qty} is not positive")
        trades[trade_id] = Trade(trade_id, qty, price, cost, _dec(info, "fee", trade_id, "0"))
    return trades


# -- WebSocket v2 ---------------------------------------------------------------------------------

_STREAM_STATUS = {"canceled": "canceled", "expired": "expired", "filled": "filled"}


def from_stream(report: Mapping[str, Any], merged: Mapping[str, Any]) -> Execution:
    """One `executions` report (`report`: this message's fields; `merged`: the order's cached view).

    A fill is counted only from a report that carries `exec_id` (Kraken sends a
    separate `filled` status report, often without it, after the last trade).
    Unknown exec types are tolerated: they carry no event.
    """
    txid = merged.get("order_id")
    if not isinstance(txid, str) or not txid:
        raise MalformedTrade(f"execution report without order_id: {dict(report)!r}")
    exec_type = report.get("exec_type")
    events: list[Event] = []
    if exec_type in ("amended", "restated"):
        trigger = merged.get("triggers", {}).get("price") if isinstance(merged.get("triggers"), dict) else None
        events.append(Amended(_opt_dec(merged, "order_qty", txid), _as_dec(trigger, "triggers.price", txid)))
    if exec_type == "trade" and report.get("exec_id"):
        events.append(Traded(_stream_trade(report, txid)))
    status = report.get("order_status") if exec_type != "trade" else None
    if status in _STREAM_STATUS or exec_type in ("canceled", "expired"):
        ending = _STREAM_STATUS.get(str(status), str(exec_type))
        reason = report.get("reason")
        events.append(Ended(ending, reason if isinstance(reason, str) else None))
    cl_ord_id = merged.get("cl_ord_id")
    return Execution(txid, "stream", tuple(events), cl_ord_id=cl_ord_id if isinstance(cl_ord_id, str) else None,
                     cum_qty=_opt_dec(merged, "cum_qty", txid), raw=dict(report))


def _stream_trade(report: Mapping[str, Any], txid: str) -> Trade:
    trade_id = str(report["exec_id"])
    qty = _dec(report, "last_qty", trade_id)
    price = _dec(report, "last_price", trade_id)
    if qty <= 0:
        raise MalformedTrade(f"order {txid}: trade {trade_id} has volume {qty}")
    cost = _opt_dec(report, "cost", trade_id)
    fee, asset = ZERO, None
    fees = report.get("fees") or []
    if not isinstance(fees, list):
        raise MalformedTrade(f"order {txid}: trade {trade_id} fees is not a list")
    for entry in fees:   # Kraken lists one fee per asset charged; one asset is all fciq allows
        if not isinstance(entry, dict) or not isinstance(entry.get("asset"), str):
            raise MalformedTrade(f"order {txid}: trade {trade_id} fee entry {entry!r}")
        if asset is not None and entry["asset"] != asset:
            raise MalformedTrade(f"order {txid}: trade {trade_id} charged fees in two assets")
        asset = entry["asset"]
        fee += _dec(entry, "qty", trade_id)
    return Trade(trade_id, qty, price, cost if cost is not None and cost > 0 else qty * price, fee, asset)


# -- numbers --------------------------------------------------------------------------------------

def _as_dec(value: Any, key: str, ref: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise MalformedTrade(f"{ref}: field {key!r} is not a number: {value!r}")   # a float is not Kraken's
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise MalformedTrade(f"{ref}: field {key!r} is not a number: {value!r}") from None
    if not result.is_finite() or result < 0:
        raise MalformedTrade(f"{ref}: field {key!r} out of range: {value!r}")
    return result


def _opt_dec(info: Mapping[str, Any], key: str, ref: str) -> Decimal | None:
    return _as_dec(info.get(key), key, ref)


def _dec(info: Mapping[str, Any], key: str, ref: str, default: str | None = None) -> Decimal:
    value = _as_dec(info.get(key, default), key, ref)
    if value is None:
        raise MalformedTrade(f"{ref}: field {key!r} missing")
    return value
