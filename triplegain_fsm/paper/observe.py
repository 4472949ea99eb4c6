"""What changed in the book, told to whoever listens: the engine's one hook for push transports.

The engine stays a pure matching engine: it knows nothing of sockets. Its lock is an
`ObservedLock`; when the outermost holder lets go, a `ChangeTracker` compares the
orders and trades with what it reported last and hands the observers a list of
immutable `OrderChange`s, in the order Kraken would tell them (placed, triggered or
amended, each trade, then the order's end right after its last trade). Because this
runs before the lock is released, every observer sees every operation's changes in
the engine's own order, whichever thread (REST, WebSocket, a price tick) caused them.
With no observer the hook costs a counter. Observers run under the engine's lock:
they must only copy data and queue it, never call back into the engine.
"""
from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import attrs

from triplegain_fsm.enums import OrderSide, OrderType
from triplegain_fsm.paper.orders import PaperOrder, TradeRecord
from triplegain_fsm.paper.pairs import PairSpec
from triplegain_fsm.paper.params import TRAILING_TYPES, PriceExpr
from triplegain_fsm.paper.state import State

log = logging.getLogger(__name__)
SNAPSHOT_TRADES = 50
# kinds of OrderChange
NEW, TRIGGERED, AMENDED, TRADE = "new", "triggered", "amended", "trade"
ENDINGS = {"closed": "filled", "canceled": "canceled", "expired": "expired"}


@attrs.frozen
class OrderView:
    """An order as it stood at one moment: a copy, safe to read from any thread."""

    txid: str
    pair: PairSpec
    side: OrderSide
    ordertype: OrderType
    vol: Decimal
    status: str
    opentm: float
    vol_exec: Decimal
    cost: Decimal
    fee: Decimal
    cl_ord_id: str | None = None
    userref: int | None = None
    limit_price: Decimal | None = None
    trigger_price: Decimal | None = None
    trailing_offset: PriceExpr | None = None
    limit_offset: PriceExpr | None = None
    triggered: bool = False
    timeinforce: str = "GTC"
    leverage: int | None = None
    reduce_only: bool = False
    oflags: tuple[str, ...] = ()
    starttm: float = 0.0
    expiretm: float = 0.0
    reason: str | None = None
    closetm: float | None = None

    @classmethod
    def of(cls, order: PaperOrder, **override: Any) -> OrderView:
        fields = {f.name: getattr(order, f.name) for f in attrs.fields(cls)}
        return cls(**{**fields, **override})


@attrs.frozen
class OrderChange:
    """One thing that happened to one order. `trade` is set for kind "trade"; the order's
    cumulative figures (vol_exec, cost, fee) are as of this change, not as of now."""

    kind: str                     # new, triggered, amended, trade, filled, canceled, expired
    order: OrderView
    time: float
    trade: TradeRecord | None = None
    changed: frozenset[str] = frozenset()   # amended: which of order_qty, limit_price, trigger_price


@attrs.frozen
class Snapshot:
    """Open orders, and the last trades with the order each belongs to, taken atomically."""

    orders: list[OrderView]
    trades: list[tuple[TradeRecord, OrderView]]


Observer = Callable[[list[OrderChange]], None]


def _terms(order: PaperOrder) -> dict[str, Any]:
    """The fields an amendment can change (a trailing stop's moving trigger is not one)."""
    trigger = None if order.ordertype in TRAILING_TYPES else order.trigger_price
    limit = None if order.ordertype is OrderType.TRAILING_STOP_LIMIT else order.limit_price
    return {"order_qty": order.vol, "limit_price": (limit, order.limit_offset),
            "trigger_price": (trigger, order.trailing_offset)}


@attrs.define
class _Seen:
    """What was last reported of a live order."""

    triggered: bool
    terms: dict[str, Any]
    vol_exec: Decimal
    cost: Decimal
    fee: Decimal


class ChangeTracker:
    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}
        self._orders = 0
        self._trades = 0

    def prime(self, state: State) -> None:
        """Take the book as it is as already reported."""
        self._seen = {o.txid: _seen(o) for o in state.live_orders()}
        self._orders, self._trades = len(state.orders), len(state.trades)

    def collect(self, state: State) -> list[OrderChange]:
        if len(state.orders) < self._orders or len(state.trades) < self._trades:
            self.prime(state)          # the state was replaced (e.g. restored): start afresh
            return []
        now = state.now()
        fresh = _newest(state.orders, len(state.orders) - self._orders)
        trades = _newest(state.trades, len(state.trades) - self._trades)
        changes: list[OrderChange] = []
        touched = [state.orders[t] for t in self._seen] + [o for o in fresh if o.txid not in self._seen]
        for order in fresh:
            seen = self._seen[order.txid] = _Seen(False, _terms(order), Decimal(0), Decimal(0), Decimal(0))
            changes.append(OrderChange(NEW, _view(order, seen, status="open"), order.opentm))
        for order in touched:
            changes.extend(self._restated(order, now))
        last_trade = {t.ordertxid: t.txid for t in trades}
        ended: set[str] = set()
        for trade in trades:
            order = state.orders[trade.ordertxid]
            seen = self._seen[order.txid]
            seen.vol_exec, seen.cost, seen.fee = seen.vol_exec + trade.vol, seen.cost + trade.cost, seen.fee + trade.fee
            changes.append(OrderChange(TRADE, _view(order, seen, status="open"), trade.time, trade=trade))
            if last_trade[order.txid] == trade.txid and order.status in ENDINGS:
                changes.append(_ending(order, now))
                ended.add(order.txid)
        changes.extend(_ending(o, now) for o in touched if o.status in ENDINGS and o.txid not in ended)
        self._orders, self._trades = len(state.orders), len(state.trades)
        self._seen = {t: s for t, s in self._seen.items() if state.orders[t].is_live}
        return changes

    def _restated(self, order: PaperOrder, now: float) -> list[OrderChange]:
        seen = self._seen[order.txid]
        result = []
        if order.triggered and not seen.triggered:
            seen.triggered = True
            result.append(OrderChange(TRIGGERED, _view(order, seen, status="open"), now))
        terms = _terms(order)
        changed = frozenset(k for k, v in terms.items() if seen.terms[k] != v)
        if order.ordertype is OrderType.TRAILING_STOP_LIMIT and order.triggered:
            changed -= {"limit_price"}     # the limit a trailing-stop-limit gets when it fires
        seen.terms = terms
        if changed:
            result.append(OrderChange(AMENDED, _view(order, seen, status="open"), now, changed=changed))
        return result


def _seen(order: PaperOrder) -> _Seen:
    return _Seen(order.triggered, _terms(order), order.vol_exec, order.cost, order.fee)


def _view(order: PaperOrder, seen: _Seen, status: str) -> OrderView:
    return OrderView.of(order, status=status, vol_exec=seen.vol_exec, cost=seen.cost, fee=seen.fee,
                        triggered=seen.triggered, reason=None, closetm=None)


def _ending(order: PaperOrder, now: float) -> OrderChange:
    return OrderChange(ENDINGS[order.status], OrderView.of(order), order.closetm or now)


def _newest(records: dict[str, Any], count: int) -> list[Any]:
    """The last `count` values of an insertion-ordered dict, oldest first."""
    return list(reversed(list(itertools.islice(reversed(records.values()), count)))) if count > 0 else []


def snapshot(state: State) -> Snapshot:
    trades = _newest(state.trades, min(SNAPSHOT_TRADES, len(state.trades)))
    return Snapshot([OrderView.of(o) for o in state.live_orders()],
                    [(t, OrderView.of(state.orders[t.ordertxid])) for t in trades])


class ObservedLock:
    """The engine's re-entrant lock; releasing it from the outermost level reports the changes."""

    def __init__(self, state_of: Callable[[], State]) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self._state_of = state_of
        self._tracker = ChangeTracker()
        self._observers: list[Observer] = []

    def __enter__(self) -> ObservedLock:
        self._lock.acquire()
        self._depth += 1
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            if self._depth == 1 and self._observers:
                self._report()
        finally:
            self._depth -= 1
            self._lock.release()

    def _report(self) -> None:
        try:
            changes = self._tracker.collect(self._state_of())
        except Exception:  # noqa: BLE001 - a reporting bug must never break trading
            log.exception("order change tracking failed; starting afresh")
            self._tracker.prime(self._state_of())
            return
        for observer in list(self._observers) if changes else ():
            try:
                observer(changes)
            except Exception:  # noqa: BLE001 - one bad listener must not stop the others
                log.exception("order change observer %r failed", observer)

    def add_observer(self, observer: Observer) -> Snapshot:
        with self:
            if not self._observers:
                self._tracker.prime(self._state_of())
            self._observers.append(observer)
            return snapshot(self._state_of())

    def remove_observer(self, observer: Observer) -> None:
        with self:
            if observer in self._observers:
                self._observers.remove(observer)
