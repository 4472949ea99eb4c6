"""PositionTracker: fills become positions, and every position is kept protected.

The protective legs are driven by one idempotent step, `converge(position)`:
it compares what the position needs (legs covering its size, nothing working
once it is closing, no excess after both OCO legs filled) with the orders that
exist, and makes ONE exchange call towards it at a time, persisting each result
before the next. Whatever started it (an entry fill, a leg fill, a close, a
restart), the same code finishes it; a failed step leaves a work record with a
backoff and an alert, so protection is retried until it holds (F04, F06, F12, F16).

What to do next is decided by the pure planner (protection.py, which also
says which legs live where); this module executes its steps, keeps the
indexes, and reacts to fills and ticks. PROTECTED is a checked fact, never an
assumption: every change of a leg re-evaluates it (`_reassess`). A leg that
could not be placed at all is watched locally until it is (F09).

Exchange work is serialised per position, and per PAIR for spot positions:
their sell legs share one balance, so two of them must never claim it at once.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from triplegain_fsm import alerts
from triplegain_fsm.config import Config
from triplegain_fsm.enums import LegLocation, OrderRole, OrderStatus, PositionStatus
from triplegain_fsm.errors import IllegalTransition, NotFoundError, ProposalError
from triplegain_fsm.kraken.errors import InsufficientFunds, KrakenError, UnknownOrder
from triplegain_fsm.machines.position_machine import POSITION_KIND
from triplegain_fsm.models import Order, Position, TradeProposal
from triplegain_fsm.money import ZERO, positive, to_decimal
from triplegain_fsm.protection import (
    CONCLUSIONS,
    LEG_ROLES,
    RESTING,
    ProtectionPlanner,
    Step,
    holds_spot_balance,
)
from triplegain_fsm.ticks import HUNDRED, Bounds, compute_bounds, trailing_trigger, watched_by_core
from triplegain_fsm.unit import StateGuard, Unit

if TYPE_CHECKING:
    from triplegain_fsm.kraken.client import KrakenClient
    from triplegain_fsm.orders import OrderExecutionManager

log = logging.getLogger(__name__)

CONVERGE = "converge"
MAX_STEPS = 8                      # exchange calls one converge may make before yielding


class PositionTracker:
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
        self._op_locks: dict[str, threading.RLock] = {}
        self._prepared: set[str] = set()                 # PENDING legs created with a fill, not yet sent
        self.planner = ProtectionPlanner(orders, client.pairs, config, self._prepared, self.get_open_positions)

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

    # -- the index of positions -------------------------------------------------------------------
    def _index(self, position: Position) -> None:
        if position.state != PositionStatus.CLOSED.value:
            self._closed.pop(position.id, None)
        if position.state == PositionStatus.CLOSED.value:
            self._open.pop(position.id, None)
            self._op_locks.pop(position.id, None)
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

    # -- hooks called by the order manager (inside its unit) --------------------------------------------
    def open_for(self, unit: Unit, proposal: TradeProposal, entry: Order) -> Position:
        pos_cfg = self.config.positions
        position = Position(
            symbol=proposal.symbol, side=proposal.side, leverage=proposal.leverage,
            stop_loss=proposal.stop_loss, take_profit=proposal.take_profit, entry_order_id=entry.id,
            trailing_stop_distance_pct=pos_cfg.trailing_distance_pct,
            trailing_stop_activation_pct=pos_cfg.trailing_activation_pct, opened_at=self.orders.now(),
        )
        POSITION_KIND.attach(position)
        unit.touch(position, new=True)
        self._index(position)
        return position

    def forget(self, position: Position) -> None:
        """Drop a position whose creating transaction failed: it was never stored."""
        with self.guard.lock:
            self._open.pop(position.id, None)
            self._closed.pop(position.id, None)
            self._due.pop(position.id, None)
            self._rebuild_bounds(position.symbol)

    def on_entry_sent(self, unit: Unit, entry: Order) -> None:
        if entry.state == OrderStatus.REJECTED.value:
            self.on_order_final(unit, entry)

    def on_order_fill(self, unit: Unit, order: Order, qty: Decimal, price: Decimal, fee: Decimal,
                      cost: Decimal) -> None:
        """`cost` is the exchange's quote amount for this fill: booked as is, never via a rounded price."""
        position = self._open.get(order.position_id or "")
        if position is None:
            unit.alert(alerts.ORPHAN_ORDER, alerts.HIGH, f"fill on order {order.id} with no open position",
                       order_id=order.id, position_id=order.position_id)
            return
        if order.role is OrderRole.ENTRY:
            unit.fire(position, "entry_filled", reason=f"entry {order.id} filled {qty}", qty=qty, price=price, fee=fee,
                      cost=cost)
        elif order.role is OrderRole.FLATTEN:
            unit.fire(position, "flatten_filled", reason=f"flatten {order.id} filled {qty}", qty=qty, price=price,
                      fee=fee, cost=cost)
        else:
            overfill = qty > position.size
            unit.fire(position, "exit_filled", reason=f"{order.role.value} {order.id} filled {qty}",
                      qty=qty, price=price, fee=fee, cost=cost)
            if overfill:
                unit.alert(alerts.OCO_BOTH_FILLED, alerts.CRITICAL,
                           f"exits of position {position.id} sold {position.excess_size} more than it held; "
                           "flattening the excess", position_id=position.id, order_id=order.id,
                           excess=position.excess_size)
        self._index(position)
        self._schedule(unit, position, reason=f"{order.role.value} fill")
        self._prepare(unit, position)

    def _prepare(self, unit: Unit, position: Position) -> None:
        """Create the first protective order inside the fill's own transaction (F06).

        The fill, the position, the work record and the PENDING order commit
        together, so the request can go out right after that one commit; a
        crash before it is sent leaves a PENDING order that restart settles by
        client order id.
        """
        step = self.planner.plan(position)
        if step is not None and step.action == "place" and step.role is not None:
            order = self._new_order(unit, position, step.role, step.qty)
            self._prepared.add(order.id)

    def on_order_final(self, unit: Unit, order: Order) -> None:
        position = self._open.get(order.position_id or "")
        if position is None:
            return
        if order.role is OrderRole.ENTRY and position.state == PositionStatus.OPENING.value and order.filled_size == 0:
            unit.touch(position)  # before the change: a rollback restores it
            position.close_reason = f"entry {order.state.lower()}: {order.error_message or ''}".rstrip(": ")
            unit.fire(position, "abandon", reason=position.close_reason)
        elif order.role in LEG_ROLES and order.state != OrderStatus.FILLED.value:
            self._leg_gone(unit, position, order)
        self._index(position)
        self._schedule(unit, position, reason=f"{order.role.value} {order.state.lower()}")

    def on_order_settled(self, unit: Unit, order: Order) -> None:
        """An order whose outcome was unknown was found: its position's waiting work is due now."""
        position = self._open.get(order.position_id or "")
        if position is not None:
            self._schedule(unit, position, reason=f"{order.role.value} {order.id} found by client order id")

    def on_trigger_moved(self, unit: Unit, order: Order, trigger: Decimal) -> None:
        """The exchange holds a leg at another trigger than recorded (an amend whose answer was lost,
        or a human): the exchange is the truth, for the order and for the position's level."""
        unit.touch(order)
        old, order.stop_price = order.stop_price, trigger
        position = self._open.get(order.position_id or "")
        name = LEG_ROLES.get(order.role)
        if position is None or name is None or getattr(position, f"{name}_order_id") != order.id:
            return
        unit.touch(position)
        setattr(position, name, trigger)
        self._index(position)
        unit.alert(alerts.EXCHANGE_DRIFT, alerts.WARNING,
                   f"{name} of position {position.id} is at {trigger} at the exchange, not {old}: adopted",
                   position_id=position.id, order_id=order.id)

    def _leg_gone(self, unit: Unit, position: Position, order: Order) -> None:
        """A leg ended without filling. Expected while closing; otherwise protection was lost."""
        name = LEG_ROLES[order.role]
        if getattr(position, f"{name}_order_id") != order.id:
            return
        unit.touch(position)
        setattr(position, f"{name}_order_id", None)
        setattr(position, f"{name}_location", LegLocation.NONE)
        setattr(position, f"{name}_covered", ZERO)
        if position.state == PositionStatus.PROTECTED.value:
            unit.fire(position, "protection_lost", reason=f"{name} order {order.id} {order.state.lower()}")
            unit.alert(alerts.POSITION_UNPROTECTED, alerts.CRITICAL if name == "stop_loss" else alerts.HIGH,
                       f"{name} of position {position.id} was {order.state.lower()} at the exchange; re-protecting",
                       position_id=position.id, order_id=order.id)

    # -- work scheduling ----------------------------------------------------------------------------------
    def _schedule(self, unit: Unit, position: Position, reason: str, delay: float = 0.0,
                  error: str | None = None) -> None:
        if position.state == PositionStatus.CLOSED.value:
            unit.write(lambda store: store.done_work(position.id, CONVERGE))
            self._due.pop(position.id, None)
            return
        now = self.orders.now()
        due = now + timedelta(seconds=delay)
        attempts = self._attempts.get(position.id, 0)
        unit.write(lambda store: store.put_work(position.id, CONVERGE, {"reason": reason}, now, attempts=attempts,
                                                next_attempt_at=due, last_error=error))
        self._due[position.id] = self.clock() + delay

    def run_due_work(self) -> None:
        now = self.clock()
        with self.guard.lock:
            due = [pid for pid, at in self._due.items() if at <= now]
        for pid in due:
            self.converge(pid)

    def reprotect_idle(self) -> int:
        """Converge unprotected positions that have no retry scheduled (a retry keeps its backoff)."""
        with self.guard.lock:
            idle = [p.id for p in self._open.values()
                    if p.state == PositionStatus.UNPROTECTED.value and p.id not in self._due]
        for pid in idle:
            self.converge(pid)
        return sum(1 for pid in idle if self._open.get(pid) is not None
                   and self._open[pid].state == PositionStatus.PROTECTED.value)

    @contextmanager
    def _exclusive(self, position_id: str, blocking: bool = True) -> Iterator[bool]:
        """Serialize exchange work per position, per pair for spot positions (they share one balance).
        Never held with the state lock waiting on it."""
        with self.guard.lock:
            position = self._open.get(position_id)
            key = f"spot:{position.symbol}" if position is not None and holds_spot_balance(position) else position_id
            lock = self._op_locks.setdefault(key, threading.RLock())
        acquired = lock.acquire(blocking=blocking)
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()

    # -- converge -------------------------------------------------------------------------------------------
    def converge(self, position_id: str, wait: bool = True) -> Position | None:
        """Make the exchange match what the position needs, one persisted call at a time.

        `wait=False`: return None at once if another call is working on it (its work stays due)."""
        with self._exclusive(position_id, blocking=wait) as acquired:
            if not acquired:
                return None
            position = self._require(position_id)
            for _ in range(MAX_STEPS):
                with self.guard.unit() as unit:
                    step = self.planner.plan(position)
                    if step is None or step.action in CONCLUSIONS:
                        self._finish(unit, position, step)
                        return position
                if step.action == "wait":
                    self._wait(position, "an order of the position is in flight")
                    return position
                if not self._execute(position, step):
                    return position
            with self.guard.unit() as unit:
                self._schedule(unit, position, reason="more steps needed")
            return position

    def _finish(self, unit: Unit, position: Position, step: Step | None) -> None:
        if step is not None and step.action == "settle":
            unit.fire(position, "settle", reason=position.close_reason or "flat")
            position.closed_at = self.orders.now()
        elif step is not None and step.action == "protected":
            self._reassess(unit, position)
        was_due = self._due.pop(position.id, None) is not None
        had_attempts = self._attempts.pop(position.id, None) is not None
        if was_due or had_attempts:
            unit.write(lambda store: store.done_work(position.id, CONVERGE))
        self._index(position)

    def _reassess(self, unit: Unit, position: Position, alert: bool = True) -> None:
        """Make the state say what the legs hold: PROTECTED only while they cover the size (the stop at
        the exchange); a missing stop alerts."""
        self._refresh_coverage(unit, position)
        covered = position.legs_cover_size()
        if position.state == PositionStatus.UNPROTECTED.value and covered:
            unit.fire(position, "protected", reason="legs cover the size")
        elif position.state == PositionStatus.PROTECTED.value and not covered:
            stop_missing = position.stop_loss is not None and position.stop_loss_covered < position.size
            what = "its stop-loss is not held at the exchange" if stop_missing else "a leg does not cover its size"
            unit.fire(position, "protection_lost", reason=what)
            if alert and stop_missing:
                unit.alert(alerts.POSITION_UNPROTECTED, alerts.CRITICAL, f"position {position.id}: {what}",
                           position_id=position.id)

    def _refresh_coverage(self, unit: Unit, position: Position) -> None:
        """Record where each leg lives and how much it covers; touches the row only if that changed."""
        legs = self.planner.legs(position)
        wanted: dict[str, Any] = {}
        for role, name in LEG_ROLES.items():
            order = legs[role]
            if getattr(position, f"{name}_location") is LegLocation.LOCAL:
                wanted[f"{name}_covered"] = position.size
            elif order is not None and order.state in RESTING:
                wanted[f"{name}_location"] = LegLocation.EXCHANGE
                wanted[f"{name}_covered"] = order.remaining_size
            else:
                wanted[f"{name}_location"] = LegLocation.NONE
                wanted[f"{name}_covered"] = ZERO
        if any(getattr(position, key) != value for key, value in wanted.items()):
            unit.touch(position)
            for key, value in wanted.items():
                setattr(position, key, value)

    # -- executing one step -------------------------------------------------------------------------------------
    def _execute(self, position: Position, step: Step) -> bool:
        """Make the call; True when converge may continue, False when it must wait (work rescheduled)."""
        if step.action == "reopen":
            with self.guard.unit() as unit:
                unit.fire(position, "close_failed", reason="exit left size with no close working")
            return True
        if step.action == "cancel":
            assert step.order is not None
            self.orders.cancel_order(step.order.id, reason=f"position {position.id} closing")
            return step.order.is_final or self._wait(position, "cancel pending")
        if step.action == "amend_qty":
            return self._amend_qty(position, step)
        if step.action == "amend_trigger":
            assert step.order is not None and step.role is not None
            level = getattr(position, LEG_ROLES[step.role])
            try:
                self._amend_trigger(step.order, position, step.role, level)
            except KrakenError as exc:
                with self.guard.unit() as unit:
                    unit.alert(alerts.MODIFY_FAILED, alerts.CRITICAL if step.role is OrderRole.STOP_LOSS
                               else alerts.HIGH, f"{step.role.value} {step.order.id} rests at {step.order.stop_price}, "
                               f"not {level}: {exc}", position_id=position.id, order_id=step.order.id)
                return self._wait(position, f"trigger amend failed: {exc}")
            return True
        if step.action == "send":
            assert step.order is not None
            self._prepared.discard(step.order.id)
            return self._send(position, step.order)
        if step.action == "trail":
            assert step.level is not None
            return self._trail(position, step.level)
        if step.action == "keep_local":
            with self.guard.unit() as unit:
                self._keep_take_profit_local(unit, position)
            return True
        assert step.role is not None
        with self.guard.unit() as unit:
            order = self._new_order(unit, position, step.role, step.qty)
        return self._send(position, order)

    def _wait(self, position: Position, reason: str) -> bool:
        with self.guard.unit() as unit:
            self._schedule(unit, position, reason=reason, delay=self.config.orders.poll_interval_seconds)
        return False

    def _new_order(self, unit: Unit, position: Position, role: OrderRole, qty: Decimal) -> Order:
        """A PENDING protective/close order, linked to its position, persisted by the unit."""
        order = self.planner.leg_order(position, role, qty)
        self.orders.track(unit, order)
        if role in LEG_ROLES:
            unit.touch(position)
            setattr(position, f"{LEG_ROLES[role]}_order_id", order.id)
            sibling = "take_profit_order_id" if role is OrderRole.STOP_LOSS else "stop_loss_order_id"
            order.sibling_id = getattr(position, sibling)
        return order

    def _send(self, position: Position, order: Order) -> bool:
        role = order.role
        try:
            error = self.orders.send(order)
        except Exception as exc:  # a bug in building the request: the order is already stored as rejected
            return self._placement_failed(position, order, exc)
        if order.state == OrderStatus.REJECTED.value:
            return self._placement_failed(position, order, error or order.error_message)
        if order.state == OrderStatus.SUBMITTED_UNKNOWN.value:
            return self._wait(position, f"{role.value} outcome unknown")
        if role in LEG_ROLES:
            with self.guard.unit() as unit:
                unit.touch(position)
                name = LEG_ROLES[role]
                setattr(position, f"{name}_location", LegLocation.EXCHANGE)
                setattr(position, f"{name}_covered", order.remaining_size)
                self._index(position)
        return True

    def _placement_failed(self, position: Position, order: Order, error: Any) -> bool:
        role = order.role
        name = LEG_ROLES.get(role)
        short_of_coins = isinstance(error, InsufficientFunds) and holds_spot_balance(position)
        with self.guard.unit() as unit:
            unit.touch(position)
            if name is not None:
                setattr(position, f"{name}_order_id", None)
            if short_of_coins and role is OrderRole.TAKE_PROFIT \
                    and position.stop_loss_location is LegLocation.EXCHANGE:
                self._keep_take_profit_local(unit, position)  # the stop holds the coins: watch the target here
                return True
            if name is not None:
                setattr(position, f"{name}_location", LegLocation.NONE)
            self._reassess(unit, position, alert=False)
        if short_of_coins and role is OrderRole.STOP_LOSS and self._free_coins_for_stop(position):
            return True  # take-profits gave up the pair's coins: place the stop again now
        with self.guard.unit() as unit:
            attempts = self._attempts.get(position.id, 0) + 1
            self._attempts[position.id] = attempts
            delay = min(self.config.positions.protection_retry_base_seconds * 2 ** (attempts - 1),
                        self.config.positions.protection_retry_max_seconds)
            severity = alerts.CRITICAL if role in (OrderRole.STOP_LOSS, OrderRole.CLOSE, OrderRole.FLATTEN) \
                else alerts.HIGH
            alert_type = alerts.CONTINGENT_ORDER_FAILURE if name else alerts.CLOSE_FAILED
            unit.alert(alert_type, severity,
                       f"{role.value} for position {position.id} failed ({error}); retry {attempts} in {delay:.0f}s",
                       position_id=position.id, order_id=order.id, failed_orders=[role.value], attempts=attempts)
            if name is not None and position.state == PositionStatus.UNPROTECTED.value:
                unit.alert(alerts.POSITION_UNPROTECTED, severity,
                           f"position {position.id} lacks its {name}", position_id=position.id)
            self._schedule(unit, position, reason=f"{role.value} failed", delay=delay, error=str(error))
            self._index(position)
        self._maybe_close_unprotected(position)
        return False

    def _keep_take_profit_local(self, unit: Unit, position: Position) -> None:
        unit.touch(position)
        position.take_profit_order_id = None
        position.take_profit_location = LegLocation.LOCAL
        position.take_profit_covered = position.size
        self._index(position)

    def _free_coins_for_stop(self, position: Position) -> bool:
        """Spot: a stop was refused for coins that take-profits on the same pair hold. The stops have
        the first claim on the pair's balance: those take-profits are cancelled and watched locally.
        Runs under the pair's lock, so no other spot leg on the pair is being placed meanwhile."""
        freed: list[tuple[Position, Order]] = []
        with self.guard.unit() as unit:
            for other in [p for p in self._open.values() if p.symbol == position.symbol and holds_spot_balance(p)]:
                target = self.planner.legs(other)[OrderRole.TAKE_PROFIT]
                if target is None or target.state not in RESTING or not target.external_id:
                    continue
                self._keep_take_profit_local(unit, other)
                unit.publish({"event": "take_profit_kept_locally", "position_id": other.id, "order_id": target.id,
                              "reason": f"its coins are needed by the stop of {position.id}"})
                freed.append((other, target))
        for other, target in freed:
            if not self.orders.cancel_order(target.id, reason=f"coins needed by the stop of {position.id}") \
                    and not target.is_final:
                with self.guard.unit() as unit:  # refused: it still rests, so it is still the leg
                    unit.touch(other)
                    other.take_profit_order_id = target.id
                    self._refresh_coverage(unit, other)
                    self._index(other)
        return bool(freed)

    def _maybe_close_unprotected(self, position: Position) -> None:
        limit = self.config.positions.close_unprotected_after_seconds
        if limit is None or position.state != PositionStatus.UNPROTECTED.value:
            return
        since = position.unprotected_since or position.opened_at
        if self.clock() - since.timestamp() >= limit:  # how long it has been without protection
            self._begin_close(position, "unprotected too long")

    def _amend_qty(self, position: Position, step: Step) -> bool:
        order = step.order
        assert order is not None and order.external_id is not None
        try:
            self.client.amend_order(order.external_id, order_qty=step.qty)
        except UnknownOrder:
            self.orders.refresh([order])
            return True
        except KrakenError as exc:
            with self.guard.unit() as unit:
                unit.alert(alerts.CONTINGENT_ORDER_FAILURE, alerts.HIGH,
                           f"resizing {order.role.value} {order.id} to {step.qty} failed: {exc}",
                           position_id=position.id, order_id=order.id)
            return self._wait(position, f"amend failed: {exc}")
        with self.guard.unit() as unit:
            unit.touch(order)
            order.size = step.qty
            self._refresh_coverage(unit, position)
        return True

    # -- close ---------------------------------------------------------------------------------------------
    def close_position(self, position_id: str, reason: str = "manual", price: Any = None) -> Position:
        """Market-close the position and cancel its legs; CLOSED once the close fills (F12).

        `price` is accepted for the reviewed signature and ignored: the exit price is the fill's.
        """
        position = self._require(position_id)
        if position.state in (PositionStatus.CLOSING.value, PositionStatus.CLOSED.value):
            raise IllegalTransition("position", position.id, position.state, "begin_close",
                                    "already closing or closed")
        self._begin_close(position, reason)
        return position

    def _begin_close(self, position: Position, reason: str) -> None:
        """Start closing, unless another thread already did (checked under the lock: a tick that saw
        the position active a moment ago must not fail because a close started in between)."""
        with self.guard.unit() as unit:
            if position.state in (PositionStatus.CLOSING.value, PositionStatus.CLOSED.value):
                return
            unit.touch(position)  # before the change: a rollback restores it
            position.close_reason = reason
            unit.fire(position, "begin_close", reason=reason)
            self._index(position)
            self._schedule(unit, position, reason=f"close: {reason}")
        self.converge(position.id)

    # -- modify ------------------------------------------------------------------------------------------------
    def modify_position(self, position_id: str, stop_loss: Any = None, take_profit: Any = None) -> Position:
        """Move SL/TP at the exchange first; the local value changes only once Kraken confirmed (F08)."""
        new_sl = None if stop_loss is None else positive(stop_loss, "stop_loss")
        new_tp = None if take_profit is None else positive(take_profit, "take_profit")
        with self._exclusive(position_id):
            position = self._require(position_id)
            if position.state not in (PositionStatus.UNPROTECTED.value, PositionStatus.PROTECTED.value,
                                      PositionStatus.OPENING.value):
                raise IllegalTransition("position", position.id, position.state, "modify", "not modifiable")
            self._check_new_levels(position, new_sl, new_tp)
            if new_sl is not None:
                self._move_leg(position, OrderRole.STOP_LOSS, new_sl)
            if new_tp is not None:
                self._move_leg(position, OrderRole.TAKE_PROFIT, new_tp)
        self.converge(position.id)
        return position

    def _check_new_levels(self, position: Position, sl: Decimal | None, tp: Decimal | None) -> None:
        """A level must be on the right side of every price it will protect: the market for what is
        held, and a still-resting entry's limit price for what is yet to fill (the proposal's own check)."""
        for price, what in self._protected_prices(position):
            long = position.is_long
            if sl is not None and (sl >= price if long else sl <= price):
                raise ProposalError(f"stop_loss: {sl:f} is on the wrong side of the {what} {price:f}")
            if tp is not None and (tp <= price if long else tp >= price):
                raise ProposalError(f"take_profit: {tp:f} is on the wrong side of the {what} {price:f}")

    def _protected_prices(self, position: Position) -> list[tuple[Decimal, str]]:
        prices: list[tuple[Decimal, str]] = []
        entry = self.orders.get_order(position.entry_order_id) if position.entry_order_id else None
        if entry is not None and not entry.is_final and entry.price is not None:
            prices.append((entry.price, "resting entry's limit price"))
        market = self.fresh_price(position.symbol, self.config.orders.price_max_age_seconds)
        if market is not None and (position.entry_size > 0 or not prices):
            prices.append((market, "current price"))
        elif not prices and position.entry_price is not None:
            prices.append((position.entry_price, "entry price"))
        return prices

    def _move_leg(self, position: Position, role: OrderRole, level: Decimal) -> None:
        name = LEG_ROLES[role]
        order = self.planner.legs(position)[role]
        if order is not None and order.state in RESTING and order.external_id:
            try:
                trigger = self._amend_trigger(order, position, role, level)
            except KrakenError as exc:
                with self.guard.unit() as unit:
                    severity = alerts.CRITICAL if role is OrderRole.STOP_LOSS else alerts.HIGH
                    unit.alert(alerts.MODIFY_FAILED, severity,
                               f"moving {name} of {position.id} to {level} failed: {exc}; "
                               f"keeping {getattr(position, name)}", position_id=position.id, order_id=order.id)
                raise
            with self.guard.unit() as unit:
                unit.touch(position)
                setattr(position, name, trigger)  # what the exchange holds, to the tick
                unit.publish({"event": "position_modified", "position_id": position.id, name: trigger})
                self._index(position)
            return
        with self.guard.unit() as unit:  # kept local, not placed yet, or in flight: converge places it
            unit.touch(position)
            setattr(position, name, level)
            if order is not None and order.state == OrderStatus.PENDING.value:  # built, not sent: rebuild it
                unit.touch(order)
                _, order.stop_price, order.price = self.planner.leg_prices(position, role, level)
            unit.publish({"event": "position_modified", "position_id": position.id, name: level})
            self._reassess(unit, position)  # a level the exchange does not hold yet is not protection
            self._index(position)
            self._schedule(unit, position, reason=f"{name} moved")

    def _amend_trigger(self, order: Order, position: Position, role: OrderRole, level: Decimal) -> Decimal:
        """Move a resting leg at the exchange (trigger, and limit for -limit legs); record it once confirmed."""
        assert order.external_id is not None
        _, trigger, limit = self.planner.leg_prices(position, role, level)
        self.client.amend_order(order.external_id, trigger_price=trigger, limit_price=limit,
                                pair=self.client.pairs.resolve(position.symbol).altname)
        with self.guard.unit() as unit:
            unit.touch(order)
            order.stop_price, order.price = trigger, limit
        return trigger

    # -- trailing -------------------------------------------------------------------------------------------------
    def enable_trailing_stop_for_position(self, position_id: str, distance_pct: Any = None,
                                          activation_pct: Any = None) -> bool:
        """Thread-safe (F07): the change is one unit under the state lock."""
        distance = None if distance_pct is None else positive(distance_pct, "distance_pct")
        activation = None if activation_pct is None else to_decimal(activation_pct, "activation_pct")
        if distance is not None and distance >= HUNDRED:
            raise ProposalError("distance_pct: must be below 100")
        with self.guard.unit() as unit:
            position = self._open.get(position_id)
            if position is None:
                return False
            unit.touch(position)
            position.trailing_stop_enabled = True
            if distance is not None:
                position.trailing_stop_distance_pct = distance
            if activation is not None:
                position.trailing_stop_activation_pct = activation
            unit.publish({"event": "trailing_enabled", "position_id": position.id,
                          "distance_pct": position.trailing_stop_distance_pct})
            self._index(position)
        return True

    # -- ticks --------------------------------------------------------------------------------------------------------
    def on_price_update(self, symbol: str, price: Decimal) -> None:
        """Called on every tick. A tick that crosses no bound is a dict lookup and two comparisons (F09)."""
        if type(price) is not Decimal:
            price = positive(price, "price")  # money never arrives as float
        self._prices[symbol] = (price, self.clock())
        bounds = self._bounds.get(symbol)
        if bounds is None or not bounds.crossed(price):
            return
        self._on_crossing(symbol, price)

    def check_sl_tp_triggers(self, prices: dict[str, Decimal]) -> list[tuple[Position, str]]:
        """Positions whose core-watched stop or target the prices cross (no action taken)."""
        hits: list[tuple[Position, str]] = []
        with self.guard.lock:
            for position in self._open.values():
                price = prices.get(position.symbol)
                if price is None:
                    continue
                kind = _crossed_level(position, price)
                if kind is not None:
                    hits.append((position, kind))
        return hits

    def _on_crossing(self, symbol: str, price: Decimal) -> None:
        to_close: list[tuple[Position, str]] = []
        to_trail: list[Position] = []
        with self.guard.unit() as unit:
            for position in [p for p in self._open.values() if p.symbol == symbol]:
                kind = _crossed_level(position, price)
                if kind is not None:
                    to_close.append((position, kind))
                elif self._advance_watermark(unit, position, price):
                    self._schedule(unit, position, reason="trailing stop follows the watermark")
                    to_trail.append(position)
            self._rebuild_bounds(symbol)
        for position, kind in to_close:
            self._begin_close(position, f"{kind} hit at {price} (watched locally)")
        for position in to_trail:
            self._ratchet(position)

    def _advance_watermark(self, unit: Unit, position: Position, price: Decimal) -> bool:
        trigger = trailing_trigger(position)
        if trigger is None:
            return False
        beyond = price >= trigger if position.is_long else price <= trigger
        if not beyond:
            return False
        unit.touch(position)
        position.trailing_stop_activated = True
        position.trailing_watermark = price
        return True

    def _ratchet(self, position: Position) -> None:
        """The watermark moved: the stop follows now, or (another call holds the position) as soon as
        that call or the poller runs the work the tick recorded. Never skipped for good."""
        self.converge(position.id, wait=False)

    def _trail(self, position: Position, level: Decimal) -> bool:
        """Move the stop to the trailing level; a failure keeps the work due, with the poll interval."""
        try:
            self._move_leg(position, OrderRole.STOP_LOSS, level)
        except KrakenError as exc:
            log.warning("trailing stop of %s not moved to %s: %s", position.id, level, exc)
            return self._wait(position, f"trailing stop move failed: {exc}")
        return True

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


def _crossed_level(position: Position, price: Decimal) -> str | None:
    """Which core-watched level (stop_loss / take_profit) the price crossed, if any."""
    if position.state not in (PositionStatus.UNPROTECTED.value, PositionStatus.PROTECTED.value):
        return None
    long = position.is_long
    stop, target = position.stop_loss, position.take_profit
    if stop is not None and watched_by_core(position.stop_loss_location) and (
            (price <= stop) if long else (price >= stop)):
        return "stop_loss"
    if target is not None and watched_by_core(position.take_profit_location) and (
            (price >= target) if long else (price <= target)):
        return "take_profit"
    return None
