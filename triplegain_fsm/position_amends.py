"""Moving resting legs: desired levels, latest wins, and resizing -- the amend half of protection.

A stop or take-profit level is a desired value recorded first (`_desire`); the exchange is
moved towards it by AmendOrder with at most one amend in flight per leg, reading the newest
level right before it is sent, so callers that overlap share the next amend. The triggers
an amend sent are remembered until it is answered: the stream may report the amend first,
and that report is ours, not drift (positions.on_trigger_moved).
"""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from triplegain_fsm import alerts
from triplegain_fsm.enums import OrderRole, OrderStatus
from triplegain_fsm.kraken.errors import KrakenError, UnknownOrder
from triplegain_fsm.models import Order, Position
from triplegain_fsm.position_index import PositionIndex
from triplegain_fsm.protection import LEG_ROLES, Step
from triplegain_fsm.unit import Unit


class LegAmends(PositionIndex):
    """Provided by ProtectionSteps, which builds on this class."""

    _wait: Callable[[Position, str], bool]
    _refresh_coverage: Callable[[Unit, Position], None]

    def _amend_qty(self, position: Position, step: Step) -> bool:
        order = step.order
        assert order is not None and order.external_id is not None
        try:
            self.orders.entry.amend_order(order.external_id, order_qty=step.qty)
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

    def _desire(self, unit: Unit, position: Position, role: OrderRole, level: Decimal) -> Decimal:
        """Record a leg's desired level, to the tick, before any exchange call. Converge moves the
        exchange there: one amend in flight per leg, always carrying the newest level (latest wins)."""
        name = LEG_ROLES[role]
        _, trigger, limit = self.planner.leg_prices(position, role, level)
        unit.touch(position)
        setattr(position, name, trigger)
        key = (position.id, role)
        self._leg_wanted[key] = self._leg_wanted.get(key, 0) + 1
        order = self.planner.legs(position)[role]
        if order is not None and order.state == OrderStatus.PENDING.value:  # built, not sent: rebuild it
            unit.touch(order)
            order.stop_price, order.price = trigger, limit
        unit.publish({"event": "position_modified", "position_id": position.id, name: trigger})
        self._index(position)
        return trigger

    def _amend_trigger(self, position: Position, role: OrderRole, order: Order) -> bool:
        """Move a resting leg to its newest desired level. The level is read when the call is sent --
        after any wait for trading budget -- so every level asked for meanwhile shares this one amend."""
        assert order.external_id is not None
        name = LEG_ROLES[role]
        sent: dict[str, Any] = {}

        key = (position.id, role)

        def latest() -> dict[str, Decimal | None]:
            with self.guard.lock:
                level = getattr(position, name)
                sent["generation"] = self._leg_wanted.get(key, 0)
            _, trigger, limit = self.planner.leg_prices(position, role, level)
            sent.update(level=level, trigger=trigger, limit=limit)
            with self.guard.lock:   # its report may come before its answer: known as ours, not drift
                self._sent_triggers.setdefault(order.id, set()).add(trigger)
            return {"trigger_price": trigger, "limit_price": limit}

        try:
            self.orders.entry.amend_order(order.external_id, pair=self.client.pairs.resolve(position.symbol).altname,
                                          order_age=self.orders.age(order), latest=latest)
        except UnknownOrder:  # it filled or was cancelled meanwhile: learn which, then plan again
            self.orders.refresh([order])
            self._leg_moved_now()
            return True
        except KrakenError as exc:
            self._leg_failed[key] = max(self._leg_failed.get(key, 0), sent.get("generation", 0))
            try:
                return self._amend_failed(position, role, order, sent.get("level"), exc)
            finally:
                self._leg_moved_now()
        with self.guard.unit() as unit:
            unit.touch(order)
            order.stop_price, order.price = sent["trigger"], sent["limit"]
            self._sent_triggers.pop(order.id, None)
        self._amend_errors.pop(key, None)
        self._leg_held[key] = max(self._leg_held.get(key, 0), sent["generation"])
        self._leg_moved_now()
        return True

    def _leg_moved_now(self) -> None:
        """Wake the callers waiting for a leg's level: an amend ended, or a position's lock is free."""
        with self._leg_moved:
            self._leg_events += 1
            self._leg_moved.notify_all()

    def _leg_settled(self, position_id: str, generations: dict[OrderRole, int]) -> bool:
        """Every level asked (by generation) is at the exchange, or an amend carrying it or a newer
        one has ended in failure (the caller then reads `_amend_errors`)."""
        return all(max(self._leg_held.get((position_id, role), 0), self._leg_failed.get((position_id, role), 0))
                   >= generation for role, generation in generations.items())

    def _amend_failed(self, position: Position, role: OrderRole, order: Order, level: Decimal | None,
                      exc: KrakenError) -> bool:
        """A refusal (the exchange will never take this level) puts the desired level back to what the
        exchange holds; a transient failure keeps it and retries after the poll interval."""
        name = LEG_ROLES[role]
        self._amend_errors[(position.id, role)] = (level, exc)
        refused = not (exc.retry_safe or exc.outcome_unknown)
        with self.guard.unit() as unit:
            unit.alert(alerts.MODIFY_FAILED, alerts.CRITICAL if role is OrderRole.STOP_LOSS else alerts.HIGH,
                       f"{role.value} {order.id} rests at {order.stop_price}, not {level}: {exc}"
                       + ("; it stays there" if refused else "; retrying"),
                       position_id=position.id, order_id=order.id)
            if refused and getattr(position, name) == level and order.stop_price is not None:
                unit.touch(position)
                setattr(position, name, order.stop_price)
                self._index(position)
        return True if refused else self._wait(position, f"trigger amend failed: {exc}")

    def _trail(self, position: Position, level: Decimal) -> bool:
        """The trailing stop's new level is one more desired level; the next step amends towards it."""
        with self.guard.unit() as unit:
            self._desire(unit, position, OrderRole.STOP_LOSS, level)
        return True
