"""PositionTracker: fills become positions, and every position is kept protected.

Three layers, each a module, each reading only the ones below it:
- position_index.PositionIndex: the open positions, their tick bounds, prices, restore;
- position_steps.ProtectionSteps: converge, which executes the pure planner's steps
  (protection.py decides what a position needs and which legs live where);
- this module: what the rest of the core and the bot call -- the order manager's hooks
  (fills, final orders), close, modify, trailing, and the price ticks.
"""
from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from triplegain_fsm import alerts
from triplegain_fsm.enums import LegLocation, OrderRole, OrderStatus, PositionStatus
from triplegain_fsm.errors import IllegalTransition, ProposalError
from triplegain_fsm.machines.position_machine import POSITION_KIND
from triplegain_fsm.models import Order, Position, TradeProposal
from triplegain_fsm.money import ZERO, positive, to_decimal
from triplegain_fsm.position_steps import ProtectionSteps
from triplegain_fsm.protection import LEG_ROLES
from triplegain_fsm.ticks import HUNDRED, trailing_trigger, watched_by_core
from triplegain_fsm.unit import Unit

log = logging.getLogger(__name__)


class PositionTracker(ProtectionSteps):
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
        self._sent_triggers.pop(order.id, None)
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
        or a human): the exchange is the truth, for the order and for the position's level.

        A trigger one of our own amends sent is not drift: its report simply came before its
        answer. The order holds it; the position keeps its desired level (maybe newer: latest wins)."""
        unit.touch(order)
        old, order.stop_price = order.stop_price, trigger
        if trigger in self._sent_triggers.get(order.id, ()):
            mine = self._open.get(order.position_id or "")
            if mine is not None:   # converge compares it with the newest desired level
                self._schedule(unit, mine, reason="own amend reported")
            return
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

    def on_leg_resized(self, unit: Unit, order: Order, shrunk: bool) -> None:
        """The exchange holds a leg at another size than recorded (our own amend reported, a human's
        edit, or Kraken capping a reduce-only leg at a position netted with someone else's): the
        position's state says what the legs now cover, and a leg that no longer covers the size is
        said and worked on (converge resizes it where the exchange lets it). Only a leg made smaller
        than the position is drift: one that has not grown yet with a new fill is just behind."""
        position = self._open.get(order.position_id or "")
        name = LEG_ROLES.get(order.role)
        if position is None or name is None or getattr(position, f"{name}_order_id") != order.id:
            return
        self._reassess(unit, position)
        if shrunk and order.remaining_size < position.size:
            unit.alert(alerts.EXCHANGE_DRIFT, alerts.CRITICAL if order.role is OrderRole.STOP_LOSS else alerts.HIGH,
                       f"{name} of position {position.id} covers {order.remaining_size} at the exchange, the "
                       f"position holds {position.size}", position_id=position.id, order_id=order.id)
            self._schedule(unit, position, reason=f"{name} resized at the exchange")

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

    # -- modify ------------------------------------------------------------------------------------------------
    def modify_position(self, position_id: str, stop_loss: Any = None, take_profit: Any = None) -> Position:
        """Move SL/TP, at the exchange too (F08).

        A level is a desired value, recorded (to the tick) before any exchange call; converge moves
        the exchange to the newest one with at most one amend in flight per leg, so callers that
        overlap share amends (latest wins). Returns once the exchange holds this level or a newer
        one. When the exchange refuses the level, the position keeps what the exchange holds and
        the refusal is raised; a transient failure is raised too, and the level is retried.
        """
        new_sl = None if stop_loss is None else positive(stop_loss, "stop_loss")
        new_tp = None if take_profit is None else positive(take_profit, "take_profit")
        wanted: dict[OrderRole, Decimal] = {}
        with self.guard.unit() as unit:
            position = self._require(position_id)
            if position.state not in (PositionStatus.UNPROTECTED.value, PositionStatus.PROTECTED.value,
                                      PositionStatus.OPENING.value):
                raise IllegalTransition("position", position.id, position.state, "modify", "not modifiable")
            self._check_new_levels(position, new_sl, new_tp)
            for role, level in ((OrderRole.STOP_LOSS, new_sl), (OrderRole.TAKE_PROFIT, new_tp)):
                if level is not None:
                    wanted[role] = self._desire(unit, position, role, level)
            generations = {role: self._leg_wanted[(position.id, role)] for role in wanted}
            self._reassess(unit, position)  # a level the exchange does not hold yet is not protection
            self._schedule(unit, position, reason="levels moved")
        self.converge_for(position.id, generations)
        for role, level in wanted.items():
            failed = self._amend_errors.get((position.id, role))
            if failed is not None and failed[0] == level:
                raise failed[1]
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
            # a tighter distance on an activated trail asks for a tighter stop now, not at the next extreme
            self._schedule(unit, position, reason="trailing stop changed")
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
