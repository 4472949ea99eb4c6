"""Queries over a read-only store connection: positions with their books, alerts, fills, prices, event kinds.

Amounts come back as Decimal (the store keeps them as exact TEXT). Nothing here
prints; the status text, the live watch and the HTML report format these.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import attrs

from triplegain_fsm.views.readonly import rows, table_names

ZERO = Decimal(0)
FINAL_ORDER_STATES = ("FILLED", "CANCELLED", "EXPIRED", "REJECTED")
EVENT_FIELDS = ["seq", "at", "entity", "entity_id", "from_state", "to_state", "trigger", "reason", "payload_digest"]
ALERT_FIELDS = ["seq", "at", "alert_type", "severity", "position_id", "order_id", "message", "payload"]
FILL_FIELDS = ["at", "order_id", "position_id", "role", "side", "qty", "price", "fee", "vol_exec", "txid",
               "trade_ids", "fill_key"]
EXPORT_FIELDS = {"transitions": EVENT_FIELDS, "alerts": ALERT_FIELDS, "fills": FILL_FIELDS}


class UnknownEntity(LookupError):
    """--entity-id names no order or position in the store."""


def dec(value: Any) -> Decimal | None:
    return None if value is None or value == "" else Decimal(value)


@attrs.frozen
class PositionBook:
    """One position's books, as a P&L table row."""

    id: str
    symbol: str
    side: str
    state: str
    size: Decimal             # total ever filled by the entry
    entry: Decimal | None
    exit: Decimal | None      # volume-weighted over the exit fills
    stop_loss: Decimal | None
    take_profit: Decimal | None
    fees: Decimal
    pnl: Decimal
    ended_by: str
    opened_at: str
    closed_at: str | None


def orders(conn: sqlite3.Connection, *, working_only: bool = False) -> list[dict[str, Any]]:
    if not working_only:
        return rows(conn, "SELECT * FROM orders ORDER BY created_at, id")
    marks = ",".join("?" for _ in FINAL_ORDER_STATES)
    return rows(conn, f"SELECT * FROM orders WHERE state NOT IN ({marks}) ORDER BY created_at, id",
                FINAL_ORDER_STATES)


def positions(conn: sqlite3.Connection, *, open_only: bool = False) -> list[dict[str, Any]]:
    where = " WHERE state != 'CLOSED'" if open_only else ""
    return rows(conn, f"SELECT * FROM positions{where} ORDER BY opened_at, id")


def position_books(conn: sqlite3.Connection) -> list[PositionBook]:
    by_position: dict[str, list[dict[str, Any]]] = {}
    for order in orders(conn):
        by_position.setdefault(order["position_id"] or "", []).append(order)
    return [_book(p, by_position.get(p["id"], [])) for p in positions(conn)]


def _book(position: dict[str, Any], mine: Sequence[dict[str, Any]]) -> PositionBook:
    exits = [o for o in mine if o["role"] != "entry" and (dec(o["filled_size"]) or ZERO) > 0]
    qty = sum((dec(o["filled_size"]) or ZERO for o in exits), ZERO)
    cost = sum((dec(o["filled_cost"]) or ZERO for o in exits), ZERO)
    return PositionBook(
        id=position["id"], symbol=position["symbol"], side=position["side"], state=position["state"],
        size=dec(position["entry_size"]) or ZERO, entry=dec(position["entry_price"]),
        exit=cost / qty if qty else None, stop_loss=dec(position["stop_loss"]),
        take_profit=dec(position["take_profit"]), fees=dec(position["total_fees"]) or ZERO,
        pnl=dec(position["realized_pnl"]) or ZERO, ended_by=ended_by(position, exits),
        opened_at=position["opened_at"], closed_at=position["closed_at"])


def ended_by(position: dict[str, Any], exits: Iterable[dict[str, Any]]) -> str:
    """Why a position closed: which leg or close filled, with the close's reason; '-' while open."""
    if (dec(position["entry_size"]) or ZERO) == 0:
        return f"never filled ({position['close_reason'] or position['state'].lower()})"
    kinds = []
    for role in dict.fromkeys(o["role"] for o in exits):
        kinds.append(f"close: {position['close_reason'] or 'requested'}" if role == "close" else role)
    if kinds:
        trailed = " (trailed)" if position.get("trailing_stop_activated") in (1, "1") else ""
        return " + ".join(kinds) + trailed
    return "-" if position["state"] != "CLOSED" else (position["close_reason"] or "closed")


def totals(books: Iterable[PositionBook]) -> tuple[Decimal, Decimal]:
    """(fees, realized P&L) over the positions."""
    books = list(books)
    return sum((b.fees for b in books), ZERO), sum((b.pnl for b in books), ZERO)


def alert_counts(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return rows(conn, "SELECT alert_type, severity, COUNT(*) AS n FROM alerts GROUP BY alert_type, severity"
                " ORDER BY alert_type, severity")


def last_alerts(conn: sqlite3.Connection, limit: int = 8) -> list[dict[str, Any]]:
    found = rows(conn, "SELECT * FROM alerts ORDER BY seq DESC LIMIT ?", (limit,))
    return list(reversed(found))


def pending_work(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return rows(conn, "SELECT * FROM work ORDER BY created_at") if "work" in table_names(conn) else []


def meta(conn: sqlite3.Connection) -> dict[str, str]:
    if "meta" not in table_names(conn):
        return {}
    return {r["key"]: r["value"] for r in rows(conn, "SELECT key, value FROM meta ORDER BY key")}


def state_counts(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return rows(conn, "SELECT state, COUNT(*) AS n FROM orders GROUP BY state ORDER BY state")


# --------------------------------------------------------------------------- exports


def entity_ids(conn: sqlite3.Connection, entity_id: str) -> list[str]:
    """An order id, or a position id with the ids of all its orders; UnknownEntity if neither."""
    if rows(conn, "SELECT id FROM positions WHERE id = ?", (entity_id,)):
        mine = rows(conn, "SELECT id FROM orders WHERE position_id = ? ORDER BY created_at, id", (entity_id,))
        return [entity_id, *(r["id"] for r in mine)]
    if rows(conn, "SELECT id FROM orders WHERE id = ?", (entity_id,)):
        return [entity_id]
    raise UnknownEntity(entity_id)


def export_rows(conn: sqlite3.Connection, kind: str, ids: Sequence[str] | None) -> list[dict[str, Any]]:
    """The rows `events --kind KIND` writes: transitions, alerts or fills, for `ids` (None: all)."""
    marks = ",".join("?" for _ in ids or ())
    if kind == "transitions":
        where = f" WHERE entity_id IN ({marks})" if ids is not None else ""
        return rows(conn, f"SELECT {', '.join(EVENT_FIELDS)} FROM events{where} ORDER BY seq", list(ids or ()))
    if kind == "alerts":
        where = f" WHERE position_id IN ({marks}) OR order_id IN ({marks})" if ids is not None else ""
        return rows(conn, f"SELECT {', '.join(ALERT_FIELDS)} FROM alerts{where} ORDER BY seq",
                    [*(ids or ()), *(ids or ())])
    where = f" WHERE f.order_id IN ({marks})" if ids is not None else ""
    return rows(conn, "SELECT f.at, f.order_id, o.position_id, o.role, o.side, f.qty, f.price, f.fee, f.vol_exec,"
                f" f.txid, f.trade_ids, f.fill_key FROM fills f LEFT JOIN orders o ON o.id = f.order_id{where}"
                " ORDER BY f.at, f.fill_key", list(ids or ()))


# --------------------------------------------------------------------------- what a session recorded


def order_events(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every order state change (entity 'order'): one marker each on the report's chart."""
    return rows(conn, f"SELECT {', '.join(EVENT_FIELDS)} FROM events WHERE entity = 'order' ORDER BY seq")


def fills(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return rows(conn, "SELECT * FROM fills ORDER BY order_id, CAST(vol_exec AS REAL), at")


def prices(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The session's ticks (session_record's `prices` table); [] for a store without one."""
    if "prices" not in table_names(conn):
        return []
    return rows(conn, "SELECT tick, at, symbol, price, last_event_seq FROM prices ORDER BY tick")


def levels(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    if "levels" not in table_names(conn):
        return []
    return rows(conn, "SELECT * FROM levels ORDER BY seq")
