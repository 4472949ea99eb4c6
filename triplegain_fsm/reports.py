"""Exchange order reports, parsed and checked at the boundary.

A QueryOrders/OpenOrders entry becomes a small immutable OrderReport before it
may touch an order; a payload with a missing or ill-typed field is refused
with a typed error and changes nothing.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import attrs

from triplegain_fsm.errors import ValidationError

KRAKEN_STATUSES = frozenset({"pending", "open", "closed", "canceled", "expired"})
TRIGGERED_TYPES = frozenset({"stop-loss", "take-profit", "stop-loss-limit", "take-profit-limit"})


class MalformedReport(ValidationError):
    """An exchange payload that cannot be trusted; nothing was applied."""


@attrs.frozen
class OrderReport:
    txid: str
    status: str
    vol: Decimal
    vol_exec: Decimal
    cost: Decimal
    fee: Decimal
    avg_price: Decimal
    reason: str | None
    trade_ids: tuple[str, ...]
    cl_ord_id: str | None
    trigger_price: Decimal | None      # a stop/take-profit's trigger as the exchange holds it
    raw: dict[str, Any] = attrs.field(eq=False, repr=False)

    @property
    def is_live(self) -> bool:
        return self.status in ("pending", "open")


def _dec(info: dict[str, Any], key: str, txid: str, default: str | None = None) -> Decimal:
    value = info.get(key, default)
    if not isinstance(value, str):  # Kraken sends every amount as a string; anything else is not Kraken
        raise MalformedReport(f"order {txid}: field {key!r} missing or not a number: {value!r}")
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise MalformedReport(f"order {txid}: field {key!r} is not a number: {value!r}") from None
    if not result.is_finite() or result < 0:
        raise MalformedReport(f"order {txid}: field {key!r} out of range: {value!r}")
    return result


def parse_order_report(txid: str, info: Any) -> OrderReport:
    if not isinstance(info, dict):
        raise MalformedReport(f"order {txid}: expected an object, got {type(info).__name__}")
    status = info.get("status")
    if not isinstance(status, str) or status not in KRAKEN_STATUSES:
        raise MalformedReport(f"order {txid}: unknown status {status!r}")
    vol = _dec(info, "vol", txid)
    vol_exec = _dec(info, "vol_exec", txid)
    if vol == 0:
        raise MalformedReport(f"order {txid}: vol is zero")
    if vol_exec > vol:
        raise MalformedReport(f"order {txid}: vol_exec {vol_exec} exceeds vol {vol}")
    trades = info.get("trades") or []
    if not isinstance(trades, list) or not all(isinstance(t, str) for t in trades):
        raise MalformedReport(f"order {txid}: trades is not a list of ids")
    cl_ord_id = info.get("cl_ord_id")
    reason = info.get("reason")
    descr = info.get("descr")
    trigger = None
    ordertype = descr.get("ordertype") if isinstance(descr, dict) else None
    if isinstance(descr, dict) and isinstance(ordertype, str) and ordertype in TRIGGERED_TYPES:
        trigger = _dec(descr, "price", txid)  # Kraken: the trigger is `price` for these types
    return OrderReport(
        txid=txid, status=status, vol=vol, vol_exec=vol_exec,
        cost=_dec(info, "cost", txid, "0"), fee=_dec(info, "fee", txid, "0"),
        avg_price=_dec(info, "price", txid, "0"),
        reason=reason if isinstance(reason, str) else None,
        trade_ids=tuple(trades), cl_ord_id=cl_ord_id if isinstance(cl_ord_id, str) else None,
        trigger_price=trigger, raw=info,
    )


@attrs.frozen
class PositionRow:
    """One OpenPositions row (margin): the open volume of one fill of one order."""

    posid: str
    pair: str
    side: str
    open_volume: Decimal
    ordertxid: str | None = None


def parse_position_row(posid: str, row: Any) -> PositionRow:
    if not isinstance(row, dict):
        raise MalformedReport(f"position {posid}: expected an object, got {type(row).__name__}")
    pair, side = row.get("pair"), row.get("type")
    if not isinstance(pair, str) or side not in ("buy", "sell"):
        raise MalformedReport(f"position {posid}: pair {pair!r} / type {side!r} missing or invalid")
    volume = _dec(row, "vol", posid) - _dec(row, "vol_closed", posid, "0")
    if volume < 0:
        raise MalformedReport(f"position {posid}: vol_closed exceeds vol")
    ordertxid = row.get("ordertxid")
    return PositionRow(posid=posid, pair=pair, side=side, open_volume=volume,
                       ordertxid=ordertxid if isinstance(ordertxid, str) else None)


def check_against(report: OrderReport, filled_size: Decimal) -> None:
    """A report can only grow what the core already saw filled; shrinking it is corruption."""
    if report.vol_exec < filled_size or report.vol < filled_size:
        raise MalformedReport(f"order {report.txid}: reports vol {report.vol} / vol_exec {report.vol_exec} "
                              f"below the {filled_size} already filled")
