"""A paper session's result: each position's P&L from both ledgers (the core's and the exchange's trades).

`SessionSummary.ok` is the session's verdict: nothing open anywhere, and the
core's books equal the ones recomputed from the paper exchange's own trades, to
the cent, per position and in total.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs

from triplegain_fsm.enums import OrderRole, OrderSide
from triplegain_fsm.models import Order, Position
from triplegain_fsm.money import ZERO

CENT = Decimal("0.01")


@attrs.frozen
class PositionResult:
    """One position at the end of a session, with its P&L from both ledgers."""

    id: str
    ref: str | None
    symbol: str
    side: str
    state: str
    entry_size: Decimal
    entry_price: Decimal | None
    exit_price: Decimal | None
    stop_loss: Decimal | None
    take_profit: Decimal | None
    exit_by: str
    trailing: bool
    fees: Decimal
    core_pnl: Decimal
    exchange_pnl: Decimal

    @property
    def pnl_matches(self) -> bool:
        return abs(self.core_pnl - self.exchange_pnl) < CENT


@attrs.frozen
class ActionOutcome:
    tick: int
    action: str
    outcome: str


@attrs.frozen
class ChaosOutcome:
    """What a `--chaos` session injected and whether the simulator's invariants held through it."""

    seed: int
    lines: tuple[str, ...]
    problems: tuple[str, ...] = ()


@attrs.frozen
class SessionSummary:
    symbol: str
    ticks: int
    elapsed_seconds: float
    store_path: str
    orders: tuple[Order, ...]
    positions: tuple[PositionResult, ...]
    actions: tuple[ActionOutcome, ...]
    orders_by_status: Mapping[str, int]
    partially_filled_orders: int
    total_fees: Decimal
    exchange_fees: Decimal
    core_pnl: Decimal
    exchange_pnl: Decimal
    open_exchange_orders: int
    open_positions: int
    alerts_by_type: Mapping[str, int]
    critical_alerts: Mapping[str, int] = attrs.field(factory=dict)   # alert type -> count, severity critical
    never_protected: tuple[str, ...] = ()                            # positions that held size, never PROTECTED
    chaos: ChaosOutcome | None = None                                # a --chaos session's incidents and invariants

    @property
    def refused_actions(self) -> tuple[ActionOutcome, ...]:
        return tuple(a for a in self.actions if a.outcome.startswith(("not placed", "skipped")))

    @property
    def nothing_traded(self) -> bool:
        """Entries were scheduled and not one of them was placed."""
        entries = [a for a in self.actions if a.outcome.startswith(("not placed", "position "))]
        return bool(entries) and all(a.outcome.startswith("not placed") for a in entries)

    @property
    def ticks_per_second(self) -> float:
        return self.ticks / self.elapsed_seconds if self.elapsed_seconds > 0 else math.inf

    @property
    def pnl_mismatches(self) -> list[PositionResult]:
        return [p for p in self.positions if not p.pnl_matches]

    @property
    def ok(self) -> bool:
        """Clean end: nothing open anywhere, both ledgers agree to the cent, no critical alert (a position
        left without its stop raises one; under --chaos: every invariant held instead), and the schedule
        traded at all. Positions closed before their
        stop was placed are reported (`never_protected`), not failed: a close may rightly come first."""
        return not self.problems()

    def problems(self) -> list[str]:
        found = []
        if self.open_exchange_orders:
            found.append(f"{self.open_exchange_orders} order(s) still open on the paper exchange")
        if self.open_positions:
            found.append(f"{self.open_positions} position(s) still open in the core")
        for p in self.pnl_mismatches:
            found.append(f"position {p.id}: core P&L {p.core_pnl} != exchange P&L {p.exchange_pnl}")
        if abs(self.core_pnl - self.exchange_pnl) >= CENT:
            found.append(f"total P&L: core {self.core_pnl} != exchange {self.exchange_pnl}")
        if abs(self.total_fees - self.exchange_fees) >= CENT:
            found.append(f"fees: core {self.total_fees} != exchange {self.exchange_fees}")
        if self.chaos is not None:
            # on a hostile exchange critical alerts are the core telling the truth; the invariants decide
            found.extend(self.chaos.problems)
        elif self.critical_alerts:
            found.append("critical alerts: " + ", ".join(f"{n} {kind}" for kind, n in self.critical_alerts.items()))
        if self.nothing_traded:
            found.append("no entry of the schedule was placed")
        return found


@attrs.frozen
class _Trade:
    ordertxid: str
    side: str
    cost: Decimal
    fee: Decimal


def trade_rows(trades: Mapping[str, Mapping[str, Any]]) -> Iterable[_Trade]:
    """The paper exchange's trades (Kraken's TradesHistory shape) as the four fields P&L needs."""
    for info in trades.values():
        yield _Trade(str(info["ordertxid"]), str(info["type"]), Decimal(info["cost"]), Decimal(info["fee"]))


def position_result(position: Position, ref: str | None, orders: Sequence[Order],
                     trades: Sequence[_Trade]) -> PositionResult:
    mine = [o for o in orders if o.position_id == position.id]
    txids = {o.external_id for o in mine if o.external_id}
    exchange_pnl = ZERO
    for trade in trades:
        if trade.ordertxid in txids:
            exchange_pnl += (trade.cost if trade.side == OrderSide.SELL.value else -trade.cost) - trade.fee
    exits = [o for o in mine if o.role is not OrderRole.ENTRY and o.filled_size > 0]
    exit_qty = sum((o.filled_size for o in exits), ZERO)
    exit_cost = sum((o.filled_cost for o in exits), ZERO)
    return PositionResult(
        id=position.id, ref=ref, symbol=position.symbol, side=position.side.value, state=position.state,
        entry_size=position.entry_size, entry_price=position.entry_price,
        exit_price=exit_cost / exit_qty if exit_qty else None,
        stop_loss=position.stop_loss, take_profit=position.take_profit,
        exit_by=_exit_by(position, exits), trailing=position.trailing_stop_activated,
        fees=position.total_fees, core_pnl=position.realized_pnl, exchange_pnl=exchange_pnl,
    )


def _exit_by(position: Position, exits: Sequence[Order]) -> str:
    """How the position ended, in words: which leg or close filled, and why a close was sent."""
    if position.entry_size == 0:
        return f"never filled ({position.close_reason or position.state.lower()})"
    kinds = []
    for role in dict.fromkeys(o.role for o in exits):
        if role is OrderRole.CLOSE:
            kinds.append(f"close: {position.close_reason or 'requested'}")
        else:
            kinds.append(f"{role.value} order")
    return " + ".join(kinds) or position.state.lower()
