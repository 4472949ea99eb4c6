"""What the HTML report draws, computed from a store: the price series, one marker per order event, level lines.

An *order event* is one row of the `events` table with `entity = 'order'`: one
state change of one order (placed and acknowledged, partly filled, filled,
rejected, cancel requested, cancelled, expired...). Each gets exactly one
marker. It is placed at the tick during which it was written (the session's
`prices.last_event_seq`, see session_record) and at the price it concerns: the
fill's price for a fill, the leg's level at that tick for a stop-loss or
take-profit, the limit for a limit entry, else the tick's price.

Pure: no matplotlib here, so the placement is testable and cheap.
"""
from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from triplegain_fsm.views import store_views as sv

LEG_ROLES = ("stop_loss", "take_profit")


@attrs.frozen
class Tick:
    index: int
    at: datetime
    price: Decimal
    last_event_seq: int


@attrs.frozen
class Marker:
    seq: int
    kind: str          # "entry fill", "partial fill", "stop_loss placed", "rejected", ...
    tick: int
    at: datetime
    price: Decimal
    order_id: str
    role: str
    side: str
    text: str          # the event's reason


@attrs.frozen
class LevelLine:
    """A position's stop-loss or take-profit over time: (time, level) steps, each until the next."""

    position_id: str
    leg: str
    points: tuple[tuple[datetime, Decimal], ...]
    end: datetime


@attrs.frozen
class ReportData:
    symbol: str | None
    ticks: tuple[Tick, ...]
    markers: tuple[Marker, ...]
    lines: tuple[LevelLine, ...]
    moves: tuple[tuple[int, datetime, Decimal, str], ...]   # (levels.seq, time, new stop or target, leg)
    books: tuple[sv.PositionBook, ...]
    alert_counts: tuple[dict[str, Any], ...]
    order_event_count: int


def load(conn: sqlite3.Connection) -> ReportData:
    ticks = tuple(Tick(int(r["tick"]), datetime.fromisoformat(r["at"]), Decimal(r["price"]),
                       int(r["last_event_seq"])) for r in sv.prices(conn))
    orders = {o["id"]: o for o in sv.orders(conn)}
    level_rows = sv.levels(conn)
    events = sv.order_events(conn)
    markers = tuple(_markers(events, orders, sv.fills(conn), level_rows, ticks)) if ticks else ()
    books = tuple(sv.position_books(conn))
    symbol = ticks and sv.prices(conn)[0]["symbol"] or (books[0].symbol if books else None)
    return ReportData(symbol=symbol or None, ticks=ticks, markers=markers,
                      lines=tuple(_lines(level_rows, books, ticks)) if ticks else (),
                      moves=tuple(_moves(level_rows)), books=books,
                      alert_counts=tuple(sv.alert_counts(conn)), order_event_count=len(events))


def tick_of(seq: int, ticks: Sequence[Tick]) -> Tick:
    """The tick during which event `seq` was written (the last tick for events after the series)."""
    keys = [t.last_event_seq for t in ticks]
    return ticks[min(bisect.bisect_left(keys, seq), len(ticks) - 1)]


def kind_of(event: dict[str, Any], role: str) -> str:
    trigger, to_state = event["trigger"], event["to_state"]
    if trigger == "fill":
        return "partial fill" if to_state == "PARTIALLY_FILLED" else f"{role} fill"
    if trigger == "acknowledge":
        return f"{role} placed"
    return {"reject": "rejected", "request_cancel": "cancel requested", "cancelled": "cancelled",
            "expire": "expired"}.get(trigger, str(trigger))


def _markers(events: Sequence[dict[str, Any]], orders: dict[str, dict[str, Any]], fills: Sequence[dict[str, Any]],
             level_rows: Sequence[dict[str, Any]], ticks: Sequence[Tick]) -> list[Marker]:
    fill_prices: dict[str, list[Decimal]] = {}
    for fill in fills:
        fill_prices.setdefault(fill["order_id"], []).append(Decimal(fill["price"]))
    used: dict[str, int] = {}
    found = []
    for event in events:
        order = orders.get(event["entity_id"], {})
        role = order.get("role") or "order"
        tick = tick_of(int(event["seq"]), ticks)
        price = None
        if event["trigger"] == "fill":
            n = used.get(event["entity_id"], 0)
            used[event["entity_id"]] = n + 1
            mine = fill_prices.get(event["entity_id"], [])
            price = mine[n] if n < len(mine) else sv.dec(order.get("average_fill_price"))
        elif role in LEG_ROLES:
            price = _level_at(level_rows, order.get("position_id"), role, tick.index) or sv.dec(order.get("stop_price"))
        elif order.get("order_type") == "limit":
            price = sv.dec(order.get("price"))
        found.append(Marker(seq=int(event["seq"]), kind=kind_of(event, role), tick=tick.index, at=tick.at,
                            price=price or tick.price, order_id=event["entity_id"], role=role,
                            side=order.get("side") or "", text=event["reason"] or ""))
    return found


def _level_at(level_rows: Sequence[dict[str, Any]], position_id: Any, leg: str, tick: int) -> Decimal | None:
    """The leg's level recorded at or before `tick` (the first recorded one if the leg came earlier)."""
    mine = [r for r in level_rows if r["position_id"] == position_id and r[leg] is not None]
    before = [r for r in mine if r["tick"] <= tick]
    chosen = before[-1] if before else (mine[0] if mine else None)
    return None if chosen is None else Decimal(chosen[leg])


def _lines(level_rows: Sequence[dict[str, Any]], books: Sequence[sv.PositionBook],
           ticks: Sequence[Tick]) -> list[LevelLine]:
    ends = {b.id: _end_time(b, ticks) for b in books}
    lines = []
    for position_id in dict.fromkeys(r["position_id"] for r in level_rows):
        mine = [r for r in level_rows if r["position_id"] == position_id]
        for leg in LEG_ROLES:
            points = tuple((datetime.fromisoformat(r["at"]), Decimal(r[leg])) for r in mine if r[leg] is not None)
            if points:
                lines.append(LevelLine(position_id, leg, points, ends.get(position_id, ticks[-1].at)))
    return lines


def _end_time(book: sv.PositionBook, ticks: Sequence[Tick]) -> datetime:
    if book.closed_at is None:
        return ticks[-1].at
    return min(max(datetime.fromisoformat(book.closed_at), ticks[0].at), ticks[-1].at)


def _moves(level_rows: Sequence[dict[str, Any]]) -> list[tuple[int, datetime, Decimal, str]]:
    """Each change of a level after the position's first record: a stop or target moved."""
    last: dict[str, dict[str, Any]] = {}
    moves = []
    for row in level_rows:
        before = last.get(row["position_id"])
        last[row["position_id"]] = row
        if before is None:
            continue
        for leg in LEG_ROLES:
            if row[leg] is not None and row[leg] != before[leg]:
                moves.append((int(row["seq"]), datetime.fromisoformat(row["at"]), Decimal(row[leg]), leg))
    return moves
