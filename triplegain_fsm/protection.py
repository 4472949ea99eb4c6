"""What a position needs from the exchange next: the pure half of protection.

`ProtectionPlanner.plan(position)` compares what the position needs (legs
covering its size at the right levels, nothing working once it is closing, no
excess after both OCO legs filled) with the orders that exist, and names ONE
step towards it. It reads the order index and the open positions and builds
order objects; it never calls the exchange and never changes state: the
tracker (positions.py) executes the step and persists each result before the
next. Runs under the state lock.

Which legs live where: the stop-loss always at the exchange (it must hold when
this process or its price feed is gone). The take-profit at the exchange too,
except on a spot balance: every resting sell holds coins from one balance per
pair, so the stops of ALL positions on the pair have the first claim on it and
a take-profit is kept LOCAL (fired by on_price_update) unless every stop on
the pair already holds its coins; when a stop still meets
`EOrder:Insufficient funds`, the take-profits holding the pair's coins move to
local so the stop can be placed (see PositionTracker).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from triplegain_fsm.config import Config
from triplegain_fsm.enums import LegLocation, OrderRole, OrderStatus, OrderType, PositionStatus
from triplegain_fsm.models import Order, Position
from triplegain_fsm.money import ZERO
from triplegain_fsm.ticks import HUNDRED

if TYPE_CHECKING:
    from triplegain_fsm.kraken.pairs import PairRegistry
    from triplegain_fsm.orders import OrderExecutionManager

MIN_RATCHET = Decimal("0.001")     # a trailing stop moves only for >= 0.1 %: amends cost trading budget
RESTING = frozenset({OrderStatus.OPEN.value, OrderStatus.PARTIALLY_FILLED.value})
IN_FLIGHT = frozenset({OrderStatus.PENDING.value, OrderStatus.SUBMITTED_UNKNOWN.value,
                       OrderStatus.CANCEL_PENDING.value})
LEG_ROLES = {OrderRole.STOP_LOSS: "stop_loss", OrderRole.TAKE_PROFIT: "take_profit"}
CONCLUSIONS = frozenset({"settle", "protected", "idle"})   # steps that make no exchange call


@attrs.frozen
class Step:
    """One exchange call (or conclusion) the planner decided on."""

    # place | send | amend_qty | amend_trigger | trail | keep_local | crossed | dust | cancel | reopen | wait
    # | settle | protected | idle
    action: str
    role: OrderRole | None = None
    order: Order | None = None
    qty: Decimal = ZERO
    level: Decimal | None = None


def _entry_working(working: Iterable[Order]) -> bool:
    return any(o.role is OrderRole.ENTRY for o in working)


def trailing_target(position: Position) -> Decimal | None:
    """The stop level the trailing watermark asks for, if it is tighter than the current stop by
    at least MIN_RATCHET; never a looser one."""
    if not position.trailing_stop_enabled or not position.trailing_stop_activated:
        return None
    mark = position.trailing_watermark
    if mark is None:
        return None
    distance = (position.trailing_stop_distance_pct or Decimal(0)) / HUNDRED
    target = mark * (1 - distance) if position.is_long else mark * (1 + distance)
    current = position.stop_loss
    if current is not None:
        tighter = target > current * (1 + MIN_RATCHET) if position.is_long else target < current * (1 - MIN_RATCHET)
        if not tighter:
            return None
    return target


def holds_spot_balance(position: Position) -> bool:
    """A leverage-1 position holds coins: its sell legs draw on the pair's one spot balance."""
    return position.leverage == 1


class ProtectionPlanner:
    def __init__(self, orders: OrderExecutionManager, pairs: PairRegistry, config: Config,
                 prepared: set[str], open_positions: Callable[[], Iterable[Position]],
                 price_of: Callable[[str], Decimal | None]) -> None:
        self.orders = orders
        self.price_of = price_of                 # the last fresh price of a symbol, None when unknown/stale
        self.pairs = pairs
        self.config = config
        self.prepared = prepared                 # PENDING legs created with a fill, not yet sent
        self.open_positions = open_positions

    def legs(self, position: Position) -> dict[OrderRole, Order | None]:
        legs: dict[OrderRole, Order | None] = {}
        for role, name in LEG_ROLES.items():
            order_id = getattr(position, f"{name}_order_id")
            legs[role] = self.orders.get_order(order_id) if order_id else None
        return legs

    def plan(self, position: Position) -> Step | None:
        """The next exchange call, or what to conclude."""
        state = position.state
        if state == PositionStatus.CLOSED.value:
            return None
        if state == PositionStatus.OPENING.value:
            return Step("idle")  # nothing to protect until the entry fills; its fill schedules us again
        working = self.orders.working_for_position(position.id)
        prepared = [o for o in working if o.id in self.prepared]
        if prepared:
            return Step("send", order=prepared[0])
        if any(o.state in IN_FLIGHT for o in working):
            return Step("wait")  # only a poll can say what an in-flight order became: never place twice
        if state == PositionStatus.CLOSING.value:
            return self._plan_closing(position, working)
        return self._plan_protection(position)

    def _plan_closing(self, position: Position, working: list[Order]) -> Step:
        exits = [o for o in working if o.role in (OrderRole.CLOSE, OrderRole.FLATTEN)]
        for order in working:  # cancel legs and a still-working entry first: they hold the balance
            if order.role not in (OrderRole.CLOSE, OrderRole.FLATTEN) and order.state in RESTING:
                return Step("cancel", order=order)
        if exits:
            return Step("idle")
        if position.excess_size > 0:
            return Step("place", role=OrderRole.FLATTEN, qty=position.excess_size)
        if position.size > 0:
            if position.close_reason is None:  # a leg took part of the size while closing was not asked
                return Step("reopen")
            if self.below_minimum(position):
                return Step("idle" if _entry_working(working) else "dust")
            return Step("place", role=OrderRole.CLOSE, qty=position.size)
        return Step("settle")

    def _plan_protection(self, position: Position) -> Step:
        target = trailing_target(position)
        if target is not None:  # recorded intent: the watermark moved, the stop must follow
            return Step("trail", role=OrderRole.STOP_LOSS, level=target)
        legs = self.legs(position)
        for role, name in LEG_ROLES.items():
            level = getattr(position, name)
            order = legs[role]
            location = getattr(position, f"{name}_location")
            if level is None or location is LegLocation.LOCAL:
                continue
            if order is None or order.is_final:
                if role is OrderRole.STOP_LOSS and self.config.positions.crossed_stop == "close" \
                        and self.crossed(position, level):
                    return Step("crossed", role=role, level=level)
                if role is OrderRole.TAKE_PROFIT and holds_spot_balance(position) \
                        and not self.stops_hold_pair(position.symbol):
                    return Step("keep_local", role=role)  # the pair's coins go to the stops first
                if self.below_minimum(position):   # Kraken would refuse it: wait for more fills, or it is dust
                    return Step("idle" if _entry_working(self.orders.working_for_position(position.id)) else "dust")
                return Step("place", role=role, qty=position.size)
            if order.state in RESTING and order.remaining_size != position.size:
                return Step("amend_qty", role=role, order=order, qty=order.filled_size + position.size)
            if order.state in RESTING and order.stop_price != self.leg_prices(position, role, level)[1]:
                return Step("amend_trigger", role=role, order=order)  # moved while the leg was in flight
        return Step("protected")

    def below_minimum(self, position: Position) -> bool:
        """Spot: a size no order can sell (below ordermin, or costmin at the market). With no entry
        still working that could grow it, it is dust."""
        if not holds_spot_balance(position) or position.size <= 0:
            return False
        pair = self.pairs.resolve(position.symbol)
        price = self.price_of(position.symbol) or position.entry_price or ZERO
        return position.size < pair.ordermin or (pair.costmin is not None and position.size * price < pair.costmin)

    def crossed(self, position: Position, stop: Decimal) -> bool:
        """The market is already beyond the stop: placing it would trigger (or be refused) at once."""
        price = self.price_of(position.symbol)
        if price is None:
            return False
        return price <= stop if position.is_long else price >= stop

    def stops_hold_pair(self, symbol: str) -> bool:
        """Every spot position on the pair that asks for a stop has it resting, covering its size."""
        for other in self.open_positions():
            if other.symbol != symbol or not holds_spot_balance(other) or other.size <= 0 \
                    or other.stop_loss is None or other.state == PositionStatus.CLOSING.value:
                continue
            stop = self.legs(other)[OrderRole.STOP_LOSS]
            if stop is None or stop.state not in RESTING or stop.remaining_size < other.size:
                return False
        return True

    def leg_prices(self, position: Position, role: OrderRole,
                   level: Decimal) -> tuple[OrderType, Decimal, Decimal | None]:
        """(order type, trigger, limit) a leg at `level` is sent with, rounded to the pair's tick.

        The trigger is rounded towards the current price (inside the range), so the leg
        triggers a tick early, never late; a -limit leg's limit sits limit_slippage_pct beyond.
        """
        pos_cfg = self.config.positions
        pair = self.pairs.resolve(position.symbol)
        inside_up = (role is OrderRole.STOP_LOSS) == position.is_long
        trigger = self.pairs.round_price(pair, level, up=inside_up)
        name = pos_cfg.stop_loss_order_type if role is OrderRole.STOP_LOSS else pos_cfg.take_profit_order_type
        order_type = OrderType(name)
        limit = None
        if order_type in (OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT):
            selling = position.is_long
            slip = pos_cfg.limit_slippage_pct / HUNDRED
            raw = trigger * (1 - slip) if selling else trigger * (1 + slip)
            limit = self.pairs.round_price(pair, raw, up=not selling)
        return order_type, trigger, limit

    def leg_order(self, position: Position, role: OrderRole, qty: Decimal) -> Order:
        """A new (not yet tracked) protective, close or flatten order for the position."""
        side = position.side.opposite
        margin = position.leverage > 1
        common: dict[str, Any] = dict(
            created_at=self.orders.now(), symbol=position.symbol, side=side, size=qty, role=role,
            position_id=position.id, leverage=position.leverage, reduce_only=margin, parent_id=position.entry_order_id)
        if role in (OrderRole.CLOSE, OrderRole.FLATTEN):
            if role is OrderRole.FLATTEN:
                common.update(side=position.side, reduce_only=False)
            return Order(order_type=OrderType.MARKET, **common)
        level = position.stop_loss if role is OrderRole.STOP_LOSS else position.take_profit
        assert level is not None, "a leg is only planned for a level that is set"
        order_type, trigger, limit = self.leg_prices(position, role, level)
        return Order(order_type=order_type, stop_price=trigger, price=limit, **common)
