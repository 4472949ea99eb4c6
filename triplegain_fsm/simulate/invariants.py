"""What must hold between the core, its store and the paper exchange, whatever went wrong on the way.

Used by the simulator (`triplegain_fsm.simulate`), the fault matrix (tests/faults) and the
property tests (tests/properties). Every check returns a list of violations (plain sentences) instead of asserting at
the first one, so a failing cell shows everything that is wrong with it at once.

The exchange side is read from the paper exchange's own books (its engine), never
from the core: an order the core lost track of is still there to be found.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from decimal import Decimal
from typing import Any

from triplegain_fsm import OrderRole, OrderStatus, PositionStatus
from triplegain_fsm.core import ExecutionCore
from triplegain_fsm.enums import LegLocation
from triplegain_fsm.models import Order, Position
from triplegain_fsm.protection import trailing_target
from triplegain_fsm.simulate.bot import Bot  # also reached as inv.Bot by the matrix and the properties

ZERO = Decimal(0)
ORDER_STATES = frozenset(s.value for s in OrderStatus)
POSITION_STATES = frozenset(s.value for s in PositionStatus)
LIVE = frozenset({OrderStatus.OPEN.value, OrderStatus.PARTIALLY_FILLED.value, OrderStatus.CANCEL_PENDING.value})
UNSETTLED = frozenset({OrderStatus.PENDING.value, OrderStatus.SUBMITTED_UNKNOWN.value})
# alerts that tell a human a position may be (or have been) left without protection
PROTECTION_ALERTS = frozenset({"contingent_order_failure", "position_unprotected", "order_outcome_unknown",
                               "close_failed"})
LEG_ROLES = {OrderRole.STOP_LOSS: "stop_loss", OrderRole.TAKE_PROFIT: "take_profit"}


# -- the exchange's own books ------------------------------------------------------------------------

def exchange_orders(core: ExecutionCore) -> dict[str, dict[str, Any]]:
    """Every order the paper exchange ever accepted (open and finished), by txid, in Kraken's shape."""
    engine = core.paper.engine
    found = dict(engine.open_orders(trades=True)["open"])
    offset = 0
    while True:
        page = engine.closed_orders(trades=True, ofs=offset)
        found.update(page["closed"])
        offset += len(page["closed"])
        if not page["closed"] or offset >= page["count"]:
            return found


def traded_volume(core: ExecutionCore) -> dict[str, Decimal]:
    """Base volume the exchange filled per order txid, summed over its trades."""
    volume: dict[str, Decimal] = {}
    for trade in core.paper.trades().values():
        volume[trade["ordertxid"]] = volume.get(trade["ordertxid"], ZERO) + Decimal(trade["vol"])
    return volume


def placed_add_orders(core: ExecutionCore) -> Counter[str]:
    """Orders the exchange placed (acted on without refusing), per cl_ord_id, over REST AddOrder and
    WebSocket add_order together (from its two call logs)."""
    ws_calls = getattr(core.paper, "ws_calls", None)   # the WebSocket's call log, where the exchange has one
    sent = [*core.paper.calls.of("AddOrder"), *(ws_calls.of("add_order") if ws_calls is not None else ())]
    return Counter(c.params.get("cl_ord_id", "?") for c in sent if c.acted and not c.error)


def stored_orders(core: ExecutionCore) -> list[Order]:
    return core.store.load_orders()


def stored_positions(core: ExecutionCore) -> list[Position]:
    return core.store.load_positions()


# -- the checks ------------------------------------------------------------------------------------------

def check_no_duplicates(core: ExecutionCore, entries_expected: int | None = 1,
                        foreign: Collection[str] = ()) -> list[str]:
    """At most one exchange order per client order id; every exchange order is one of the core's
    (but the `foreign` txids: orders a human placed at the exchange)."""
    problems = []
    orders = {txid: info for txid, info in exchange_orders(core).items() if txid not in foreign}
    by_client = Counter(info.get("cl_ord_id") for info in orders.values())
    problems += [f"{n} exchange orders carry cl_ord_id {cid}" for cid, n in by_client.items() if n > 1]
    problems += [f"{n} AddOrders were placed with cl_ord_id {cid}" for cid, n in placed_add_orders(core).items()
                 if n > 1]
    stored = {o.client_order_id: o for o in stored_orders(core)}
    problems += [f"exchange order {txid} ({info['descr']['order']}) is not in the core's store"
                 for txid, info in orders.items() if info.get("cl_ord_id") not in stored]
    if entries_expected is not None:
        entries = sum(1 for info in orders.values()
                      if (o := stored.get(str(info.get("cl_ord_id")))) is not None and o.role is OrderRole.ENTRY)
        if entries != entries_expected:
            problems.append(f"{entries} entry orders reached the exchange, expected {entries_expected}")
    return problems


def check_fills(core: ExecutionCore) -> list[str]:
    """No lost fill: each core order's filled size is what the exchange traded for its txid."""
    problems = []
    traded = traded_volume(core)
    by_client = {info.get("cl_ord_id"): (txid, info) for txid, info in exchange_orders(core).items()}
    for order in stored_orders(core):
        at_exchange = by_client.get(order.client_order_id)
        if order.external_id is None:
            if at_exchange is not None:
                problems.append(f"{order.role.value} {order.id} ({order.state}) has no txid but the exchange holds "
                                f"it as {at_exchange[0]} ({at_exchange[1]['status']})")
            continue
        if at_exchange is not None and at_exchange[0] != order.external_id:
            problems.append(f"{order.role.value} {order.id} has txid {order.external_id}, the exchange "
                            f"{at_exchange[0]}")
        exchange_filled = traded.get(order.external_id, ZERO)
        if order.filled_size != exchange_filled:
            problems.append(f"{order.role.value} {order.id} ({order.state}) filled {order.filled_size} in the core, "
                            f"{exchange_filled} at the exchange")
    return problems


def check_sizes_and_states(core: ExecutionCore) -> list[str]:
    """Legal states only; 0 <= filled <= size; no negative position."""
    problems = []
    for order in stored_orders(core):
        if order.state not in ORDER_STATES:
            problems.append(f"order {order.id} in unknown state {order.state}")
        if not ZERO <= order.filled_size <= order.size:
            problems.append(f"order {order.id}: filled {order.filled_size} outside 0..{order.size}")
        if order.size <= 0:
            problems.append(f"order {order.id}: size {order.size}")
    for position in stored_positions(core):
        if position.state not in POSITION_STATES:
            problems.append(f"position {position.id} in unknown state {position.state}")
        if position.size < 0 or position.excess_size < 0:
            problems.append(f"position {position.id}: size {position.size}, excess {position.excess_size}")
        if position.state == PositionStatus.CLOSED.value and (position.size or position.excess_size):
            problems.append(f"position {position.id} CLOSED with size {position.size} / excess "
                            f"{position.excess_size}")
    return problems


def _related(alert: dict[str, Any], position: Position, order_ids: set[str]) -> bool:
    return alert.get("position_id") == position.id or alert.get("order_id") in order_ids


def resting_volume(open_at_exchange: dict[str, dict[str, Any]], orders: Iterable[Order], role: OrderRole) -> Decimal:
    """Volume the exchange still holds unfilled for the given orders of one role."""
    total = ZERO
    for order in orders:
        info = open_at_exchange.get(order.external_id or "")
        if order.role is role and info is not None:
            total += Decimal(info["vol"]) - Decimal(info["vol_exec"])
    return total


def check_leg_volume(core: ExecutionCore) -> list[str]:
    """No protective leg rests more at the exchange than the position it protects holds."""
    problems = []
    open_at_exchange = core.paper.open_orders()
    for position in core.positions.get_open_positions():
        orders = core.orders.get_orders_for_position(position.id)
        for role, name in LEG_ROLES.items():
            resting = resting_volume(open_at_exchange, orders, role)
            if resting > position.size:
                problems.append(f"{name} legs of {position.id} rest {resting} at the exchange for a position of "
                                f"{position.size} ({position.state})")
    return problems


def check_protection(core: ExecutionCore, alerts: Iterable[Any]) -> list[str]:
    """Every position holding size is PROTECTED, or an alert about it told a human it might not be.

    PROTECTED must also be true at the exchange: each leg the core says the exchange
    holds is open there and covers the size, and no leg covers more than the size.
    """
    problems = []
    payloads = [a.payload if hasattr(a, "payload") else a for a in alerts]
    open_at_exchange = core.paper.open_orders()
    for position in core.positions.get_open_positions():
        orders = core.orders.get_orders_for_position(position.id)
        order_ids = {o.id for o in orders}
        if position.size > 0 and position.state != PositionStatus.PROTECTED.value:
            told = [a for a in payloads
                    if a.get("alert_type") in PROTECTION_ALERTS and _related(a, position, order_ids)]
            if not told:
                legs = {o.role.value: o.state for o in orders}
                problems.append(f"position {position.id} holds {position.size} in state {position.state} "
                                f"(orders {legs}) and no alert said so")
        for role, name in LEG_ROLES.items():
            resting = resting_volume(open_at_exchange, orders, role)
            if resting > position.size:
                problems.append(f"{name} orders of {position.id} rest {resting} at the exchange, more than its size "
                                f"{position.size}")
            if position.state != PositionStatus.PROTECTED.value or getattr(position, name) is None:
                continue
            location = getattr(position, f"{name}_location")
            if location is LegLocation.EXCHANGE and resting < position.size:
                problems.append(f"position {position.id} is PROTECTED but its {name} rests only {resting} of "
                                f"{position.size} at the exchange")
            if location is LegLocation.NONE:
                problems.append(f"position {position.id} is PROTECTED with no {name} anywhere")
    return problems


def check_trailing(core: ExecutionCore) -> list[str]:
    """A trailing stop follows its watermark: no recorded new high is left without its stop move."""
    problems = []
    for position in core.positions.get_open_positions():
        if position.state not in (PositionStatus.UNPROTECTED.value, PositionStatus.PROTECTED.value):
            continue
        target = trailing_target(position)
        if target is not None:
            problems.append(f"position {position.id}: watermark {position.trailing_watermark} asks for a stop at "
                            f"{target:f}, the stop is still at {position.stop_loss}")
    return problems


_ORDER_FIELDS = ("state", "size", "filled_size", "external_id", "stop_price", "price", "fee_amount")
_POSITION_FIELDS = ("state", "size", "excess_size", "stop_loss", "take_profit", "stop_loss_order_id",
                    "take_profit_order_id", "total_fees", "realized_pnl")


def check_store_matches(core: ExecutionCore, foreign: Collection[str] = ()) -> list[str]:
    """The store says what memory says, and both agree with the exchange about what is still working
    (and holds: margin exposure beside what the `foreign` txids, a human's own orders, traded)."""
    problems = []
    open_at_exchange = core.paper.open_orders()
    known = set()
    for stored in stored_orders(core):
        live = core.orders.get_order(stored.id)
        if live is None:
            problems.append(f"order {stored.id} is in the store but not in memory")
            continue
        diff = {f: (getattr(stored, f), getattr(live, f)) for f in _ORDER_FIELDS
                if getattr(stored, f) != getattr(live, f)}
        if diff:
            problems.append(f"order {stored.id}: store != memory {diff}")
        if live.state in UNSETTLED:
            problems.append(f"{live.role.value} {live.id} still {live.state} after the settling polls")
        if live.external_id is None:
            continue
        known.add(live.external_id)
        working = live.state in LIVE
        resting = live.external_id in open_at_exchange
        if live.state == OrderStatus.CANCEL_PENDING.value and resting:
            problems.append(f"{live.role.value} {live.id} is still CANCEL_PENDING after the settling polls while "
                            "the exchange holds it open: no cancel is in flight any more")
        if working != resting:
            problems.append(f"{live.role.value} {live.id} is {live.state} in the core but "
                            f"{'open' if resting else core.paper.order(live.external_id)['status']} at the exchange")
        if resting:
            info = open_at_exchange[live.external_id]
            if Decimal(info["vol"]) != live.size:
                problems.append(f"{live.role.value} {live.id}: size {live.size} in the core, {info['vol']} at the "
                                "exchange")
            if live.stop_price is not None and Decimal(info["descr"]["price"]) != live.stop_price:
                problems.append(f"{live.role.value} {live.id}: trigger {live.stop_price:f} in the core, "
                                f"{info['descr']['price']} at the exchange")
    for row in stored_positions(core):
        position = core.positions.get_position(row.id)
        diff = {f: (getattr(row, f), getattr(position, f)) for f in _POSITION_FIELDS
                if getattr(row, f) != getattr(position, f)}
        if diff:
            problems.append(f"position {row.id}: store != memory {diff}")
        if position is None or position.stop_loss is None or position.state != PositionStatus.PROTECTED.value:
            continue
        leg = core.orders.get_order(position.stop_loss_order_id) if position.stop_loss_order_id else None
        if leg is not None and leg.stop_price is not None and leg.stop_price != position.stop_loss:
            problems.append(f"position {position.id}: stop_loss {position.stop_loss:f}, its stop order triggers at "
                            f"{leg.stop_price:f} (at the exchange: {_exchange_trigger(core, leg)})")
    problems += _check_event_log(core)
    if core.config.exchange.account == "margin":
        problems += _check_margin_exposure(core, foreign)
    else:
        problems += _check_spot_holdings(core)
    return problems


def _check_spot_holdings(core: ExecutionCore) -> list[str]:
    """Every coin the core's positions bought and still hold is held at the exchange, and no more, and
    every coin a sell entry sold is missing there until it is bought back: a position closed in the core
    while the exchange still holds (or lacks) its coins is money left unprotected."""
    start = {asset: Decimal(str(amount)) for asset, amount in core.config.paper.balances.items()}
    held = core.paper.balances().get("XXBT", ZERO) - start.get("XXBT", start.get("XBT", ZERO))
    expected = sum(((1 if p.is_long else -1) * (p.size - p.excess_size) for p in core.positions.get_open_positions()
                    if p.symbol == "BTC/USD" and p.leverage == 1), ZERO)
    if held == expected:
        return []
    return [f"the exchange holds {held} BTC bought by the core, its open positions {expected}"]


def _exchange_trigger(core: ExecutionCore, order: Order) -> str:
    if order.external_id is None:
        return "not placed"
    return core.paper.order(order.external_id)["descr"]["price"]


def _check_event_log(core: ExecutionCore) -> list[str]:
    """The append-only log replays to the stored state: each move starts where the last one ended."""
    problems = []
    chains: dict[str, list[dict[str, Any]]] = {}
    for event in core.store.events():
        chains.setdefault(event["entity_id"], []).append(event)
    rows: list[Any] = [*stored_orders(core), *stored_positions(core)]
    for row in rows:
        chain = chains.get(row.id, [])
        for before, after in zip(chain, chain[1:], strict=False):
            if before["to_state"] != after["from_state"]:
                problems.append(f"{row.id}: event log jumps from {before['to_state']} to {after['from_state']}")
        if chain and chain[-1]["to_state"] != row.state:
            problems.append(f"{row.id}: stored state {row.state}, last logged move to {chain[-1]['to_state']}")
    return problems


def foreign_margin(trades: dict[str, dict[str, Any]], foreign: Collection[str]) -> dict[str, Decimal]:
    """Net margin volume per pair that a human's own leveraged orders (the `foreign` txids) traded."""
    held: dict[str, Decimal] = {}
    for trade in trades.values():
        if trade["ordertxid"] in foreign and trade.get("leverage"):
            sign = 1 if trade["type"] == "buy" else -1
            held[trade["pair"]] = held.get(trade["pair"], ZERO) + sign * Decimal(trade["vol"])
    return held


def _check_margin_exposure(core: ExecutionCore, foreign: Collection[str] = ()) -> list[str]:
    """Per pair: the exchange's net margin volume is the core's positions' plus what foreign orders traded
    (margin positions opened by hand net with the core's rows, as Kraken's do; the core adopts none)."""
    registry = core.paper.engine.registry
    held: dict[str, Decimal] = {}
    for row in core.paper.positions().values():
        sign = 1 if row["type"] == "buy" else -1
        held[row["pair"]] = held.get(row["pair"], ZERO) + sign * (Decimal(row["vol"]) - Decimal(row["vol_closed"]))
    by_hand = foreign_margin(core.paper.trades(), foreign)
    ours: dict[str, Decimal] = {}
    for p in core.positions.get_open_positions():
        pair = registry.resolve(p.symbol).id
        ours[pair] = ours.get(pair, ZERO) + (1 if p.is_long else -1) * (p.size - p.excess_size)
    problems = []
    for pair in sorted({*held, *by_hand, *ours}):
        have, mine, theirs = held.get(pair, ZERO), ours.get(pair, ZERO), by_hand.get(pair, ZERO)
        if have != mine + theirs:
            problems.append(f"the exchange holds a net {have} {pair} of margin positions, the core {mine}"
                            + (f" and foreign orders traded {theirs}" if theirs else ""))
    return problems


def all_problems(core: ExecutionCore, alerts: Iterable[Any], bot: Bot | None = None,
                 entries_expected: int | None = 1, foreign: Collection[str] = ()) -> list[str]:
    alerts = list(alerts)
    problems = []
    problems += check_no_duplicates(core, entries_expected, foreign)
    problems += check_fills(core)
    problems += check_sizes_and_states(core)
    problems += check_protection(core, alerts)
    problems += check_trailing(core)
    problems += check_store_matches(core, foreign)
    if bot is not None:
        problems += bot.unclear
    return problems
