"""The simulator's invariants, named, from the exchange's records and the store.

`always(...)` holds after every step, whatever is in flight: no order twice for one
intent, never more booked than the exchange filled, legal sizes and states.
`settled(...)` holds once the world has been calm for a while (faults cleared, the
stream back, polls past every deadline): every fill booked exactly once, fees and
P&L equal the exchange's to the cent, no orphan protective order for a closed
position, protective volume never above the held size, store == memory ==
exchange (the fault matrix's checks, `invariants.all_problems`; margin exposure beside
what a human's own orders, the `foreign` txids, traded), and a margin position a human
opened is reported as drift by the core's reconciliation.
`ExposureMeter` measures, after every step, each position whose filled volume (at
the exchange) is not covered by a resting stop: position-seconds and the longest
window; a window longer than `bound` without a protection alert is a violation.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from decimal import Decimal
from typing import Any

import attrs

from triplegain_fsm.core import ExecutionCore
from triplegain_fsm.enums import OrderRole, PositionStatus
from triplegain_fsm.models import Order, Position
from triplegain_fsm.simulate import invariants as inv

ZERO = Decimal(0)
CENT = Decimal("0.01")
LEGS = (OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT)
Problem = tuple[str, str]    # (invariant, what is wrong)


@attrs.define
class Ledger:
    """The exchange's records and the store, read once per check."""

    trades: dict[str, dict[str, Any]]
    open_orders: dict[str, dict[str, Any]]
    orders: list[Order]
    positions: list[Position]
    by_position: dict[str, list[Order]]
    per_txid: dict[str, list[dict[str, Any]]]

    @classmethod
    def read(cls, core: ExecutionCore) -> Ledger:
        orders = core.store.load_orders()
        grouped: dict[str, list[Order]] = defaultdict(list)
        for order in orders:
            if order.position_id:
                grouped[order.position_id].append(order)
        trades = core.paper.trades()
        per_txid: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for trade in trades.values():
            per_txid[trade["ordertxid"]].append(trade)
        return cls(trades, core.paper.open_orders(), orders, core.store.load_positions(), grouped, per_txid)

    def trades_of(self, txid: str | None) -> list[dict[str, Any]]:
        return [] if txid is None else self.per_txid.get(txid, [])

    def traded(self, txid: str | None) -> Decimal:
        return sum((Decimal(t["vol"]) for t in self.trades_of(txid)), ZERO)

    def held(self, position: Position) -> Decimal:
        """Base volume the exchange filled for this position and not yet closed: its entries minus its exits."""
        total: Decimal = ZERO
        for order in self.by_position.get(position.id, []):
            volume = self.traded(order.external_id)
            total += volume if order.side is position.side else -volume
        return total

    def resting(self, position: Position, role: OrderRole) -> Decimal:
        return inv.resting_volume(self.open_orders, self.by_position.get(position.id, []), role)


def always(core: ExecutionCore, ledger: Ledger, foreign: Collection[str]) -> list[Problem]:
    problems: list[Problem] = [("no_order_twice", p) for p in inv.check_no_duplicates(core, None, foreign)]
    fills: dict[str, Decimal] = defaultdict(Decimal)
    for row in core.store.fills():
        fills[row["order_id"]] += Decimal(row["qty"])
    for order in ledger.orders:
        traded = ledger.traded(order.external_id)
        if order.filled_size > traded or fills[order.id] > traded:
            problems.append(("fills_booked_once", f"{order.role.value} {order.id} booked {order.filled_size} "
                             f"(fills table {fills[order.id]}), the exchange traded {traded}"))
    problems += [("sizes_and_states", p) for p in inv.check_sizes_and_states(core)]
    return problems


def settled(core: ExecutionCore, ledger: Ledger, alerts: Iterable[Any], foreign: Collection[str]) -> list[Problem]:
    alerts = list(alerts)
    problems: list[Problem] = [("no_order_twice", p) for p in inv.check_no_duplicates(core, None, foreign)]
    problems += [("fills_booked_once", p) for p in inv.check_fills(core)]
    problems += [("sizes_and_states", p) for p in inv.check_sizes_and_states(core)]
    problems += [("protected_or_alerted", p) for p in inv.check_protection(core, alerts)]
    problems += [("protective_volume_within_size", p) for p in inv.check_leg_volume(core)]
    problems += [("trailing_follows", p) for p in inv.check_trailing(core)]
    problems += [("store_matches_exchange", p) for p in inv.check_store_matches(core, foreign)]
    problems += [("fees_and_pnl", p) for p in fees_and_pnl(ledger)]
    problems += [("no_orphan_protective_order", p) for p in orphans(ledger)]
    problems += [("foreign_position_reported", p) for p in foreign_reported(core, ledger, alerts, foreign)]
    return problems


def foreign_reported(core: ExecutionCore, ledger: Ledger, alerts: list[Any], foreign: Collection[str]) -> list[str]:
    """A margin position a human holds makes the exchange's net differ from the core's: after the calm
    phase's reconciliations an exchange_drift alert about that pair must have been raised since the human's
    holding last began (the core adopts none: `store_matches_exchange` says so)."""
    registry = core.paper.engine.registry
    problems = []
    for pair, (held, since) in _foreign_holdings(ledger.trades, foreign).items():
        asset = registry.resolve(pair).altname
        told = any(a.get("alert_type") == "exchange_drift" and a.get("kind") == "margin" and a.get("asset") == asset
                   and a.get("_at", 0.0) >= since - 1e-9 for a in alerts)
        if not told:
            problems.append(f"a human holds {held} {asset} of margin positions (since {since:.0f}) and no "
                            "exchange_drift alert said so")
    return problems


def _foreign_holdings(trades: dict[str, dict[str, Any]], foreign: Collection[str]) -> dict[str, tuple[Decimal, float]]:
    """Per pair, what a human's leveraged trades still hold and when that holding last began."""
    held: dict[str, Decimal] = defaultdict(Decimal)
    since: dict[str, float] = {}
    ordered = sorted((t for t in trades.values() if t["ordertxid"] in foreign and t.get("leverage")),
                     key=lambda t: (t["time"], t["trade_id"]))
    for trade in ordered:
        pair, before = trade["pair"], held[trade["pair"]]
        held[pair] += (1 if trade["type"] == "buy" else -1) * Decimal(trade["vol"])
        if not before and held[pair]:
            since[pair] = trade["time"]
    return {pair: (amount, since[pair]) for pair, amount in held.items() if amount}


def _near(core: Decimal, exchange: Decimal) -> bool:
    """Equal to the cent: the core may carry more decimals (an average price), never a cent more or less."""
    return abs(core - exchange) < CENT


def fees_and_pnl(ledger: Ledger) -> list[str]:
    """Each order's fee, each position's fees, cash flow and (closed) realized P&L, as the exchange's trades say."""
    problems = []
    for order in ledger.orders:
        fee = sum((Decimal(t["fee"]) for t in ledger.trades_of(order.external_id)), ZERO)
        if not _near(order.fee_amount, fee):
            problems.append(f"{order.role.value} {order.id}: fee {order.fee_amount} in the core, {fee} at the exchange")
    for position in ledger.positions:
        fees, cash = ZERO, ZERO
        for order in ledger.by_position.get(position.id, []):
            for trade in ledger.trades_of(order.external_id):
                fees += Decimal(trade["fee"])
                cash += Decimal(trade["cost"]) * (1 if trade["type"] == "sell" else -1)
        if not (_near(position.total_fees, fees) and _near(position.cash_flow, cash)):
            problems.append(f"position {position.id}: fees {position.total_fees} / cash flow {position.cash_flow} in "
                            f"the core, {fees} / {cash} at the exchange")
        closed_flat = position.state == PositionStatus.CLOSED.value and not position.excess_size
        if closed_flat and not _near(position.realized_pnl, cash - fees):
            problems.append(f"position {position.id}: realized P&L {position.realized_pnl} in the core, "
                            f"{cash - fees} from the exchange's trades")
    return problems


def orphans(ledger: Ledger) -> list[str]:
    """No protective order still working at the exchange for a position that is closed."""
    problems = []
    for position in ledger.positions:
        if position.state != PositionStatus.CLOSED.value:
            continue
        for order in ledger.by_position.get(position.id, []):
            if order.role in LEGS and order.external_id in ledger.open_orders:
                problems.append(f"{order.role.value} {order.id} ({order.external_id}) still works at the exchange "
                                f"for CLOSED position {position.id}")
    return problems


@attrs.define
class ExposureMeter:
    """Unprotected position-seconds: filled volume at the exchange with no resting stop covering it."""

    bound: float
    position_seconds: float = 0.0
    worst: float = 0.0
    worst_position: str | None = None
    since: dict[str, float] = attrs.field(factory=dict)
    last: float | None = None

    def measure(self, ledger: Ledger, now: float, alerts: list[dict[str, Any]]) -> list[Problem]:
        dt = 0.0 if self.last is None else now - self.last
        self.last = now
        problems: list[Problem] = []
        uncovered = set()
        for position in ledger.positions:
            held = ledger.held(position)
            if held <= 0 or ledger.resting(position, OrderRole.STOP_LOSS) >= held:
                continue
            uncovered.add(position.id)
            start = self.since.setdefault(position.id, now - dt)
            self.position_seconds += dt
            window = now - start
            if window > self.worst:
                self.worst, self.worst_position = window, position.id
            if window > self.bound and not self._alerted(position, ledger, alerts, start):
                problems.append(("unprotected_window", f"position {position.id} holds {held} at the exchange with "
                                 f"no resting stop covering it for {window:.0f} s (> {self.bound:.0f} s) and no "
                                 "alert said so"))
        for pid in set(self.since) - uncovered:
            del self.since[pid]
        return problems

    @staticmethod
    def _alerted(position: Position, ledger: Ledger, alerts: list[dict[str, Any]], start: float) -> bool:
        order_ids = {o.id for o in ledger.by_position.get(position.id, [])}
        return any(a.get("alert_type") in inv.PROTECTION_ALERTS
                   and (a.get("position_id") == position.id or a.get("order_id") in order_ids)
                   and a.get("_at", 0.0) >= start - 1e-9 for a in alerts)
