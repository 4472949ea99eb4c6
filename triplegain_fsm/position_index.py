"""The open positions in memory: the index, the per-symbol tick bounds, the last prices, restore.

The lowest layer of the position tracker (PositionIndex <- ProtectionSteps <-
PositionTracker): it holds what the others read and never calls the exchange.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from triplegain_fsm.config import Config
from triplegain_fsm.enums import OrderRole, PositionStatus
from triplegain_fsm.errors import NotFoundError
from triplegain_fsm.kraken.errors import KrakenError
from triplegain_fsm.machines.position_machine import POSITION_KIND
from triplegain_fsm.models import Position
from triplegain_fsm.money import ZERO
from triplegain_fsm.protection import ProtectionPlanner
from triplegain_fsm.ticks import Bounds, compute_bounds
from triplegain_fsm.unit import StateGuard

if TYPE_CHECKING:
    from triplegain_fsm.kraken.client import KrakenClient
    from triplegain_fsm.orders import OrderExecutionManager

CONVERGE = "converge"   # the kind of the work records that make a position's protective work due


class PositionIndex:
    def __init__(self, guard: StateGuard, client: KrakenClient, config: Config,
                 orders: OrderExecutionManager, clock: Callable[[], float] = time.time) -> None:
        self.guard = guard
        self.client = client
        self.config = config
        self.orders = orders
        self.clock = clock
        self._open: dict[str, Position] = {}
        self._closed: OrderedDict[str, Position] = OrderedDict()
        self._prices: dict[str, tuple[Decimal, float]] = {}
        self._bounds: dict[str, Bounds] = {}
        self._due: dict[str, float] = {}                 # position id -> when its work is due
        self._attempts: dict[str, int] = {}
        self._sent_triggers: dict[str, set[Decimal]] = {}   # order id -> triggers our amends sent, unconfirmed
        self._op_locks: dict[str, threading.RLock] = {}
        self._amend_errors: dict[tuple[str, OrderRole], tuple[Decimal | None, KrakenError]] = {}  # last failure
        # Generations of each leg's desired level: the newest asked for, the newest an acknowledged
        # amend carried, the newest a failed amend carried. A caller waits for its own generation,
        # not for levels asked after it (position_amends.LegAmends, ProtectionSteps.converge_for).
        self._leg_wanted: dict[tuple[str, OrderRole], int] = {}
        self._leg_held: dict[tuple[str, OrderRole], int] = {}
        self._leg_failed: dict[tuple[str, OrderRole], int] = {}
        self._leg_moved = threading.Condition(threading.Lock())   # an amend ended, or a position's lock freed
        self._leg_events = 0
        self._prepared: set[str] = set()                 # PENDING legs created with a fill, not yet sent
        self._foreign_margin: dict[str, tuple[str, ...]] = {}   # pair altname -> posids the core did not open
        self.planner = ProtectionPlanner(
            orders, client.pairs, config, self._prepared, self.get_open_positions,
            lambda symbol: self.fresh_price(symbol, config.orders.price_max_age_seconds))

    # -- reads ------------------------------------------------------------------------------
    def get_position(self, position_id: str) -> Position | None:
        with self.guard.lock:
            found = self._open.get(position_id) or self._closed.get(position_id)
        if found is not None:
            return found
        stored = self.guard.store.load_positions("id = ?", (position_id,))
        return stored[0] if stored else None

    def get_open_positions(self) -> list[Position]:
        with self.guard.lock:
            return list(self._open.values())

    def _require(self, position_id: str) -> Position:
        position = self.get_position(position_id)
        if position is None:
            raise NotFoundError(f"no position {position_id}")
        return position

    # -- prices ------------------------------------------------------------------------------
    def remember_price(self, symbol: str, price: Decimal) -> None:
        self._prices[symbol] = (price, self.clock())

    def fresh_price(self, symbol: str, max_age: float) -> Decimal | None:
        cached = self._prices.get(symbol)
        if cached is None or self.clock() - cached[1] > max_age:
            return None
        return cached[0]

    # -- margin positions at the exchange that are not the core's ----------------------------------
    def note_foreign_margin(self, by_pair: dict[str, list[str]]) -> None:
        """What the last OpenPositions read held that no order of the core opened, per pair altname.

        Kraken nets margin orders per pair: on a pair where someone else holds a margin
        position, a core entry would trade against it (close it, or stack onto it and have
        its reduce-only legs capped by the netted total). Admission refuses such entries.
        """
        with self.guard.lock:
            self._foreign_margin = {pair: tuple(posids) for pair, posids in by_pair.items() if posids}

    def foreign_margin_on(self, altname: str) -> tuple[str, ...]:
        with self.guard.lock:
            return self._foreign_margin.get(altname, ())

    # -- the index of positions -------------------------------------------------------------------
    def _index(self, position: Position) -> None:
        if position.state != PositionStatus.CLOSED.value:
            self._closed.pop(position.id, None)
        if position.state == PositionStatus.CLOSED.value:
            self._open.pop(position.id, None)
            self._op_locks.pop(position.id, None)
            for role in (OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT):
                for generations in (self._leg_wanted, self._leg_held, self._leg_failed):
                    generations.pop((position.id, role), None)
            self._closed[position.id] = position
            while len(self._closed) > self.config.orders.history_size:
                self._closed.popitem(last=False)
            self._due.pop(position.id, None)
        else:
            self._open[position.id] = position
        self._rebuild_bounds(position.symbol)

    def _rebuild_bounds(self, symbol: str) -> None:
        self._bounds[symbol] = compute_bounds(p for p in self._open.values() if p.symbol == symbol)

    def restore(self, positions: list[Position], work: list[dict[str, Any]]) -> int:
        with self.guard.lock:
            for position in positions:
                if position.state == PositionStatus.CLOSED.value:
                    continue
                POSITION_KIND.attach(position)
                self._index(position)
            for row in work:
                if row["kind"] == CONVERGE and row["position_id"] in self._open:
                    self._due[row["position_id"]] = datetime.fromisoformat(row["next_attempt_at"]).timestamp()
                    self._attempts[row["position_id"]] = int(row["attempts"] or 0)
            return len(self._open)

    def forget(self, position: Position) -> None:
        """Drop a position whose creating transaction failed: it was never stored."""
        with self.guard.lock:
            self._open.pop(position.id, None)
            self._closed.pop(position.id, None)
            self._due.pop(position.id, None)
            self._rebuild_bounds(position.symbol)

    # -- reporting ----------------------------------------------------------------------------------------------------
    def fee_summary(self) -> dict[str, Any]:
        """Fees paid, by symbol and by UTC day, from the fill records (the durable truth)."""
        rows = self.guard.store._select(
            "SELECT o.symbol AS symbol, substr(f.at, 1, 10) AS day, f.fee AS fee "
            "FROM fills f JOIN orders o ON o.id = f.order_id")
        by_symbol: dict[str, Decimal] = {}
        by_day: dict[str, dict[str, Decimal]] = {}
        total = ZERO
        for row in rows:
            fee = Decimal(row["fee"])
            total += fee
            by_symbol[row["symbol"]] = by_symbol.get(row["symbol"], ZERO) + fee
            day = by_day.setdefault(row["day"], {})
            day[row["symbol"]] = day.get(row["symbol"], ZERO) + fee
        return {"total": total, "by_symbol": by_symbol, "by_day": by_day}
