"""What a paper session writes beside the core's tables, so a report can redraw it later.

The core's store records orders, positions, fills and every state change, but
neither the prices the session replayed nor how a position's stop and target
moved (an AmendOrder changes the order row in place). Two small tables, written
by the session (never by the core), fill the gap:

    prices  one row per replayed tick: its index, the session-clock time, the price,
            and `last_event_seq`, the highest `events.seq` written by the end of that
            tick: an event belongs to the first tick whose last_event_seq reaches its
            seq (event times are wall-clock; the session clock is the series' pace)
    levels  a position's stop-loss / take-profit each time either changes, at the
            tick where it changed (the first row is the levels at entry)

Rows are buffered and written in batches (one transaction per `FLUSH_EVERY`
ticks, and at the end), through the store's own writer lock.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from triplegain_fsm.bus import EXECUTION, Message

FLUSH_EVERY = 500

PRICES_DDL = ("CREATE TABLE IF NOT EXISTS prices (tick INTEGER PRIMARY KEY, at TEXT NOT NULL, symbol TEXT NOT NULL,"
              " price TEXT NOT NULL, last_event_seq INTEGER NOT NULL)")
LEVELS_DDL = ("CREATE TABLE IF NOT EXISTS levels (seq INTEGER PRIMARY KEY, position_id TEXT NOT NULL,"
              " tick INTEGER NOT NULL, at TEXT NOT NULL, stop_loss TEXT, take_profit TEXT)")


def create_tables(store: Any) -> None:
    """Add the two tables to a store (idempotent); the core's own tables are untouched."""
    with store.transaction():
        store.db.execute(PRICES_DDL)
        store.db.execute(LEVELS_DDL)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat()


class SessionRecorder:
    """Buffers a session's ticks and level changes; `flush()` writes them in one transaction."""

    def __init__(self, core: Any, symbol: str) -> None:
        self.core = core
        self.symbol = symbol
        self._prices: list[tuple[Any, ...]] = []
        self._levels: list[tuple[Any, ...]] = []
        self._seen: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        self._touched: set[str] = set()
        self._dirty = True
        self._last_seq = 0
        create_tables(core.store)
        core.bus.subscribe(EXECUTION, self._on_message)

    def _on_message(self, message: Message) -> None:
        self._dirty = True
        position_id = message.payload.get("position_id")
        if isinstance(position_id, str):
            self._touched.add(position_id)

    def tick(self, index: int, now: float, price: Decimal) -> None:
        """After a tick was applied (and polled): note its price and whatever changed during it."""
        at = _iso(now)
        if self._dirty:
            self._dirty = False
            row = self.core.store._select("SELECT COALESCE(MAX(seq), 0) AS n FROM events")
            self._last_seq = int(row[0]["n"])
        self._prices.append((index, at, self.symbol, format(price, "f"), self._last_seq))
        if self._touched:
            self._note_levels(index, at, sorted(self._touched))
            self._touched.clear()
        if len(self._prices) >= FLUSH_EVERY:
            self.flush()

    def _note_levels(self, index: int, at: str, position_ids: Iterable[str]) -> None:
        for position_id in position_ids:
            position = self.core.positions.get_position(position_id)
            if position is None or position.entry_size == 0:
                continue
            levels = (position.stop_loss, position.take_profit)
            if self._seen.get(position_id) != levels:
                self._seen[position_id] = levels
                self._levels.append((position_id, index, at, _text(levels[0]), _text(levels[1])))

    def flush(self) -> None:
        if not (self._prices or self._levels):
            return
        store = self.core.store
        with store.transaction():
            store.db.conn.executemany("INSERT OR REPLACE INTO prices (tick, at, symbol, price, last_event_seq)"
                                      " VALUES (?, ?, ?, ?, ?)", self._prices)
            store.db.conn.executemany("INSERT INTO levels (position_id, tick, at, stop_loss, take_profit)"
                                      " VALUES (?, ?, ?, ?, ?)", self._levels)
        self._prices.clear()
        self._levels.clear()
