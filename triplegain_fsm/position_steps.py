"""Protective work, executed: one planned step at a time, each result persisted before the next.

`converge(position)` asks the planner (protection.py) for the next step and makes
that ONE exchange call; whatever started it (an entry fill, a leg fill, a close,
a modification, a retry, a restart) the same code finishes it. A failed step
leaves a work record with a backoff and an alert, so protection is retried until
it holds (F04, F06, F12, F16). PROTECTED is a checked fact, never an assumption:
every change of a leg re-evaluates it (`_reassess`).

Exchange work is serialised per position, and per PAIR for spot positions: their
sell legs share one balance, so two of them must never claim it at once.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

from triplegain_fsm import alerts
from triplegain_fsm.enums import LegLocation, OrderRole, OrderStatus, PositionStatus
from triplegain_fsm.kraken.errors import InsufficientFunds, KrakenError
from triplegain_fsm.models import Order, Position
from triplegain_fsm.money import ZERO
from triplegain_fsm.position_amends import LegAmends
from triplegain_fsm.position_index import CONVERGE
from triplegain_fsm.protection import CONCLUSIONS, LEG_ROLES, RESTING, Step, holds_spot_balance
from triplegain_fsm.unit import Unit

log = logging.getLogger(__name__)

MAX_STEPS = 8                      # exchange calls one converge may make before yielding
LEG_WAIT_SECONDS = 1.0             # a waiting caller looks again at least this often (float-ok: seconds)


class ProtectionSteps(LegAmends):
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

    def due_in(self) -> float | None:
        """Seconds until the earliest scheduled work is due (0 if overdue); None when nothing is."""
        with self.guard.lock:
            earliest = min(self._due.values(), default=None)
        return None if earliest is None else max(0.0, earliest - self.clock())

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
                self._leg_moved_now()

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

    def converge_for(self, position_id: str, generations: dict[OrderRole, int]) -> None:
        """Converge for a caller that asked for levels (`generations`, from `_desire`): return once the
        exchange holds them or newer ones, whoever's call took them there. Overlapping callers share
        amends, and none waits behind levels asked after its own (issue 11: latest wins). While
        another call holds the position, wait for its amends to end; once free, do the work here."""
        while True:
            with self._leg_moved:
                seen = self._leg_events
            if self._leg_settled(position_id, generations) or self.converge(position_id, wait=False) is not None:
                return
            self._await_leg_event(seen)

    def _await_leg_event(self, seen: int) -> None:
        with self._leg_moved:
            self._leg_moved.wait_for(lambda: self._leg_events != seen, timeout=LEG_WAIT_SECONDS)

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
            return self._amend_trigger(position, step.role, step.order)
        if step.action == "send":
            assert step.order is not None
            self._prepared.discard(step.order.id)
            return self._send(position, step.order)
        if step.action == "trail":
            assert step.level is not None
            return self._trail(position, step.level)
        if step.action == "crossed":
            assert step.level is not None
            return self._stop_crossed(position, step.level)
        if step.action == "dust":
            return self._dust(position)
        if step.action == "keep_local":
            with self.guard.unit() as unit:
                self._keep_take_profit_local(unit, position)
            return True
        assert step.role is not None
        if step.role is OrderRole.TAKE_PROFIT and holds_spot_balance(position) \
                and not self._coins_free_for(position, step.qty):
            with self.guard.unit() as unit:   # no AddOrder Kraken must refuse, no REJECTED row
                self._keep_take_profit_local(unit, position)
                unit.publish({"event": "take_profit_kept_locally", "position_id": position.id,
                              "reason": "the pair's available balance does not cover it beside the stops"})
            return True
        with self.guard.unit() as unit:
            order = self._new_order(unit, position, step.role, step.qty)
        return self._send(position, order)

    def _coins_free_for(self, position: Position, qty: Decimal) -> bool:
        """Spot: does BalanceEx's available base (balance - hold_trade) cover a take-profit of `qty`?

        Read fresh, right before the decision: a REST read costs no trading-counter point,
        a refused AddOrder does. Unreadable means no: the take-profit is watched locally.
        """
        try:
            available = self.client.available_balances()
        except KrakenError as exc:
            log.info("BalanceEx unreadable (%s): take-profit of %s kept local", exc, position.id)
            return False
        base = self.client.pairs.resolve(position.symbol).base
        return available.get(base, ZERO) >= qty

    def _dust(self, position: Position) -> bool:
        """A remainder Kraken would refuse to sell: closed out of the position as recorded dust."""
        amount = position.size
        with self.guard.unit() as unit:
            unit.touch(position)  # before the change: a rollback restores it
            position.close_reason = position.close_reason or f"dust: {amount} left below the minimum order"
            unit.fire(position, "dust", reason=f"remainder {amount} below the pair's minimum order")
            unit.alert(alerts.DUST_LEFT, alerts.INFO,
                       f"position {position.id}: {amount} {position.symbol.split('/')[0]} is below the pair's "
                       "minimum order and cannot be sold; left in the account as dust", position_id=position.id,
                       symbol=position.symbol, amount=amount)
            self._index(position)
            self._schedule(unit, position, reason="dust: settle")
        return True

    def _stop_crossed(self, position: Position, stop: Decimal) -> bool:
        """positions.crossed_stop: close -- the stop it would place is already beyond the market."""
        price = self.planner.price_of(position.symbol)
        reason = f"stop {stop:f} already crossed (market {price}) when it was to be placed"
        with self.guard.unit() as unit:
            unit.alert(alerts.STOP_CROSSED, alerts.CRITICAL, f"position {position.id}: {reason}; closing at market",
                       position_id=position.id, symbol=position.symbol)
            unit.touch(position)  # before the change: a rollback restores it
            position.close_reason = reason
            unit.fire(position, "begin_close", reason=reason)
            self._index(position)
            self._schedule(unit, position, reason="stop crossed: close")
        return True  # converge goes on with the close

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
