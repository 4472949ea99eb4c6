"""SQLite persistence (sqlite-utils): orders, positions, events, fills, alerts, protective work.

One writer connection behind one lock. sqlite-utils 4 makes `db.atomic()` the
transaction; a shared connection without a lock let one thread's write join
another's transaction (LIBRARY-NOTES), so every write goes through
`transaction()`. Decimals are stored as TEXT (exact), timestamps as ISO-8601.
Hot paths use prepared SQL rather than upsert (which runs ~9 statements).
"""
from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import attrs
from sqlite_utils import Database

from triplegain_fsm.enums import OrderRole, OrderSide, OrderType
from triplegain_fsm.machines.base import TransitionRecord
from triplegain_fsm.models import LegLocation, Order, Position

SCHEMA_VERSION = 1

_ORDER_COLUMNS = [f.name for f in attrs.fields(Order)]
_POSITION_COLUMNS = [f.name for f in attrs.fields(Position)]
_DECIMAL_COLUMNS = {
    f.name for cls in (Order, Position) for f in attrs.fields(cls)
    if f.type in ("Decimal", "Decimal | None")
}
_DATETIME_COLUMNS = {"created_at", "updated_at", "opened_at", "closed_at", "unknown_since",
                     "unprotected_since", "placed_at"}
_ENUM_COLUMNS: dict[str, type[Enum]] = {
    "side": OrderSide, "order_type": OrderType, "role": OrderRole,
    "stop_loss_location": LegLocation, "take_profit_location": LegLocation,
}
_FILL_EXTRA = {"cost": str, "fee_asset": str, "source": str}   # added with per-trade fills
_BOOL_COLUMNS = {f.name for cls in (Order, Position) for f in attrs.fields(cls) if f.type == "bool"}
_INT_COLUMNS = {f.name for cls in (Order, Position) for f in attrs.fields(cls) if f.type == "int"}


def _to_db(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def _from_db(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _DECIMAL_COLUMNS:
        return Decimal(value)
    if name in _DATETIME_COLUMNS:
        return datetime.fromisoformat(value)
    if name in _ENUM_COLUMNS:
        return _ENUM_COLUMNS[name](value)
    if name in _BOOL_COLUMNS:
        return value not in (0, "0")
    if name in _INT_COLUMNS:
        return int(value)
    return value


def _row(obj: Any, columns: list[str]) -> list[Any]:
    return [_to_db(c, getattr(obj, c)) for c in columns]


def _insert_sql(table: str, columns: list[str]) -> str:
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    return f"INSERT OR REPLACE INTO {table} ({names}) VALUES ({marks})"


class Store:
    """The durable record. Every method that writes must run inside `transaction()`."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db = Database(conn)
        self._lock = threading.RLock()
        self._depth = 0
        with self._lock:
            if self.path != ":memory:":
                self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        self._order_sql = _insert_sql("orders", _ORDER_COLUMNS)
        self._position_sql = _insert_sql("positions", _POSITION_COLUMNS)

    # -- schema ------------------------------------------------------------
    def _migrate(self) -> None:
        db = self.db
        text_cols = {c: str for c in _ORDER_COLUMNS}
        if "orders" not in db.table_names():
            db.table("orders").create(text_cols, pk="id")
            db.table("orders").create_index(["client_order_id"], unique=True)
            db.table("orders").create_index(["external_id"])
            db.table("orders").create_index(["position_id"])
            db.table("orders").create_index(["state"])
        else:
            _add_missing(db.table("orders"), _ORDER_COLUMNS)
        if "positions" not in db.table_names():
            db.table("positions").create({c: str for c in _POSITION_COLUMNS}, pk="id")
            db.table("positions").create_index(["state"])
        else:
            _add_missing(db.table("positions"), _POSITION_COLUMNS)
        if "events" not in db.table_names():
            db.table("events").create({
                "seq": int, "entity": str, "entity_id": str, "from_state": str, "to_state": str,
                "trigger": str, "reason": str, "payload_digest": str, "at": str,
            }, pk="seq")
            db.table("events").create_index(["entity", "entity_id"])
        if "fills" not in db.table_names():   # fill_key: the exchange trade id (older fills: order:vol_exec)
            db.table("fills").create({
                "fill_key": str, "order_id": str, "txid": str, "trade_ids": str, "qty": str,
                "price": str, "fee": str, "vol_exec": str, "at": str, **_FILL_EXTRA,
            }, pk="fill_key")
            db.table("fills").create_index(["order_id"])
        else:
            _add_missing(db.table("fills"), list(_FILL_EXTRA))
        if "alerts" not in db.table_names():
            db.table("alerts").create({
                "seq": int, "alert_type": str, "severity": str, "position_id": str,
                "order_id": str, "message": str, "payload": str, "at": str,
            }, pk="seq")
        if "work" not in db.table_names():
            db.table("work").create({
                "position_id": str, "kind": str, "detail": str, "attempts": int,
                "next_attempt_at": str, "last_error": str, "created_at": str,
            }, pk=("position_id", "kind"))
        if "meta" not in db.table_names():
            db.table("meta").create({"key": str, "value": str}, pk="key")
        if "outbox" not in db.table_names():   # notifications to deliver (telemetry/notifier.py)
            db.table("outbox").create({
                "seq": int, "alert_type": str, "severity": str, "payload": str, "created_at": str,
                "delivered_to": str, "attempts": int, "last_error": str, "delivered_at": str,
            }, pk="seq")
            db.execute("CREATE INDEX IF NOT EXISTS outbox_undelivered ON outbox (seq) WHERE delivered_at IS NULL")
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    # -- transactions ----------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """One atomic unit under the writer lock; nests (inner blocks join the outer)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
                self.db.execute("COMMIT")
            finally:
                self._depth = 0

    def _require_tx(self) -> None:
        if not self._depth:
            raise RuntimeError("store writes must run inside Store.transaction()")

    # -- writes ----------------------------------------------------------------
    def save_order(self, order: Order) -> None:
        self._require_tx()
        self.db.execute(self._order_sql, _row(order, _ORDER_COLUMNS))

    def save_position(self, position: Position) -> None:
        self._require_tx()
        self.db.execute(self._position_sql, _row(position, _POSITION_COLUMNS))

    def append_events(self, records: list[TransitionRecord]) -> None:
        self._require_tx()
        self.db.conn.executemany(
            "INSERT INTO events (entity, entity_id, from_state, to_state, trigger, reason, payload_digest, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(r.entity, r.entity_id, r.from_state, r.to_state, r.trigger, r.reason, r.payload_digest,
              r.at.isoformat()) for r in records],
        )

    def record_fill(self, fill_key: str, order_id: str, txid: str | None, trade_ids: list[str],
                    qty: Decimal, price: Decimal, fee: Decimal, vol_exec: Decimal, at: datetime, *,
                    cost: Decimal | None = None, fee_asset: str | None = None, source: str | None = None) -> bool:
        """Insert a fill (one exchange trade) once. The order's booked trade ids already refuse a
        repeat; the unique key is the backstop, and hitting it means memory and store disagree:
        refuse loudly. `fee` is in `fee_asset`."""
        self._require_tx()
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO fills (fill_key, order_id, txid, trade_ids, qty, price, fee, vol_exec, at,"
            " cost, fee_asset, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [fill_key, order_id, txid, ",".join(trade_ids), format(qty, "f"), format(price, "f"),
             format(fee, "f"), format(vol_exec, "f"), at.isoformat(),
             None if cost is None else format(cost, "f"), fee_asset, source],
        )
        if cursor.rowcount != 1:
            raise RuntimeError(f"fill {fill_key} already recorded: refusing to count it twice")
        return True

    def record_alert(self, payload: dict[str, Any], at: datetime) -> None:
        self._require_tx()
        self.db.execute(
            "INSERT INTO alerts (alert_type, severity, position_id, order_id, message, payload, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [payload.get("alert_type"), payload.get("severity"), payload.get("position_id"),
             payload.get("order_id"), payload.get("message"), json.dumps(payload, default=str), at.isoformat()],
        )

    # -- notifications outbox (written in the alert's own transaction; delivered by telemetry/notifier.py)
    def enqueue_notification(self, payload: dict[str, Any], at: datetime) -> None:
        self._require_tx()
        self.db.execute(
            "INSERT INTO outbox (alert_type, severity, payload, created_at, delivered_to, attempts)"
            " VALUES (?, ?, ?, ?, '', 0)",
            [payload.get("alert_type"), payload.get("severity"), json.dumps(payload, default=str), at.isoformat()],
        )

    def undelivered_notifications(self, limit: int = 100) -> list[dict[str, Any]]:
        """The oldest notifications not yet delivered to every target, oldest first."""
        return self._select("SELECT * FROM outbox WHERE delivered_at IS NULL ORDER BY seq LIMIT ?", (limit,))

    def mark_notification(self, seq: int, delivered_to: str, done_at: datetime | None, attempts: int,
                          last_error: str | None = None) -> None:
        """Record one delivery attempt: the targets reached so far, and `done_at` once all are."""
        with self.transaction():
            self.db.execute(
                "UPDATE outbox SET delivered_to = ?, delivered_at = ?, attempts = ?, last_error = ? WHERE seq = ?",
                [delivered_to, None if done_at is None else done_at.isoformat(), attempts, last_error, seq])

    def put_work(self, position_id: str, kind: str, detail: dict[str, Any], at: datetime,
                 attempts: int = 0, next_attempt_at: datetime | None = None, last_error: str | None = None) -> None:
        """Record protective work still to do; it survives a crash and is resumed on start."""
        self._require_tx()
        self.db.execute(
            "INSERT OR REPLACE INTO work (position_id, kind, detail, attempts, next_attempt_at, last_error, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [position_id, kind, json.dumps(detail, default=str), attempts,
             (next_attempt_at or at).isoformat(), last_error, at.isoformat()],
        )

    def done_work(self, position_id: str, kind: str) -> None:
        self._require_tx()
        self.db.execute("DELETE FROM work WHERE position_id = ? AND kind = ?", [position_id, kind])

    # -- reads -------------------------------------------------------------------
    def _select(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self.db.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=False)) for row in cursor.fetchall()]

    def load_orders(self, where: str = "1=1", params: tuple[Any, ...] = ()) -> list[Order]:
        return [_build(Order, row) for row in self._select(f"SELECT * FROM orders WHERE {where}", params)]

    def load_positions(self, where: str = "1=1", params: tuple[Any, ...] = ()) -> list[Position]:
        return [_build(Position, row) for row in self._select(f"SELECT * FROM positions WHERE {where}", params)]

    def get_order(self, order_id: str) -> Order | None:
        found = self.load_orders("id = ?", (order_id,))
        return found[0] if found else None

    def events(self, entity_id: str | None = None) -> list[dict[str, Any]]:
        if entity_id is None:
            return self._select("SELECT * FROM events ORDER BY seq")
        return self._select("SELECT * FROM events WHERE entity_id = ? ORDER BY seq", (entity_id,))

    def fills(self, order_id: str | None = None) -> list[dict[str, Any]]:
        if order_id is None:
            return self._select("SELECT * FROM fills ORDER BY at, fill_key")
        return self._select("SELECT * FROM fills WHERE order_id = ? ORDER BY at, fill_key", (order_id,))

    def alerts(self) -> list[dict[str, Any]]:
        return self._select("SELECT * FROM alerts ORDER BY seq")

    def pending_work(self) -> list[dict[str, Any]]:
        rows = self._select("SELECT * FROM work ORDER BY created_at")
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows

    def get_meta(self, key: str) -> str | None:
        """A value from the `meta` table (schema_version, paper_account_id, ...); None if unset."""
        rows = self._select("SELECT value FROM meta WHERE key = ?", (key,))
        return None if not rows else rows[0]["value"]

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])

    def count(self, table: str) -> int:
        return int(self._select(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])

    def count_by_state(self, table: str) -> dict[str, int]:
        """Rows of `orders` or `positions` per state (the telemetry's starting point)."""
        return {row["state"]: int(row["n"]) for row in self._select(
            f"SELECT state, COUNT(*) AS n FROM {table} GROUP BY state")}

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()


def _add_missing(table: Any, columns: list[str]) -> None:
    existing = {c.name for c in table.columns}
    for name in columns:
        if name not in existing:
            table.add_column(name, str)


def _build(cls: type, row: dict[str, Any]) -> Any:
    names = {f.name for f in attrs.fields(cls)}
    kwargs = {k: _from_db(k, v) for k, v in row.items() if k in names and v is not None}
    return cls(**kwargs)
