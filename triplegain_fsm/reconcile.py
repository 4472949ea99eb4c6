"""Reconciliation: find every difference between the store and the exchange (F05).

Repairs what is safe through the machines (fills and cancels we missed are
applied as reports; a leg cancelled by hand makes its position re-protect) and
alerts on the rest (orders or holdings the core does not know about).
"""
from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from triplegain_fsm import alerts
from triplegain_fsm.enums import OrderSide, OrderStatus
from triplegain_fsm.kraken.errors import KrakenError
from triplegain_fsm.orders import PollReport
from triplegain_fsm.reports import MalformedReport, parse_position_row

if TYPE_CHECKING:
    from triplegain_fsm.config import Config
    from triplegain_fsm.kraken.client import KrakenClient
    from triplegain_fsm.orders import OrderExecutionManager
    from triplegain_fsm.positions import PositionTracker
    from triplegain_fsm.safety import CircuitBreaker
    from triplegain_fsm.store import Store
    from triplegain_fsm.unit import StateGuard


REWARDS_SUFFIX = ".F"   # Kraken's balance key for the rewards-earning part of an asset
_UNSETTLED = frozenset({OrderStatus.PENDING.value, OrderStatus.SUBMITTED_UNKNOWN.value})


@attrs.define
class _Expectation:
    """What the core believes it holds, per (kind, asset), at one moment."""

    amounts: dict[tuple[str, str], Decimal] = attrs.field(factory=dict)
    owners: dict[tuple[str, str], list[Any]] = attrs.field(factory=dict)
    signature: dict[tuple[str, str], list[tuple[Any, ...]]] = attrs.field(factory=dict)
    unsettled: set[tuple[str, str]] = attrs.field(factory=set)   # an order whose outcome is not known yet
    has_spot: bool = False


@attrs.define
class SyncReport:
    orders_checked: int = 0
    orders_updated: int = 0
    unknown_settled: int = 0
    unknown_exchange_orders: list[str] = attrs.field(factory=list)
    position_drift: list[dict[str, Any]] = attrs.field(factory=list)
    positions_reprotected: int = 0
    positions_closed: list[str] = attrs.field(factory=list)
    inconclusive: list[str] = attrs.field(factory=list)   # assets not compared: they moved during the read
    poll: PollReport | None = None
    errors: list[str] = attrs.field(factory=list)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Parts:
    """What reconciliation reads and moves, handed in by the core: this module needs nothing above it."""

    orders: OrderExecutionManager
    positions: PositionTracker
    client: KrakenClient
    config: Config
    circuit: CircuitBreaker

    @property
    def guard(self) -> StateGuard:
        return self.orders.guard

    @property
    def store(self) -> Store:
        return self.orders.guard.store


class Reconciler:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def run(self) -> SyncReport:
        """One poll cycle (fills, cancels, in-flight orders, protective work), then the comparisons
        a poll does not make: orders and holdings at the exchange that the core does not know."""
        parts = self.parts
        before = {o.id: (o.state, o.filled_size) for o in parts.orders.get_open_orders()}
        poll = parts.orders.poll_once()
        report = SyncReport(orders_checked=len(before), unknown_settled=poll.settled_unknown, poll=poll)
        report.errors.extend(poll.errors)
        for order_id, (state, filled) in before.items():
            now = parts.orders.get_order(order_id)
            if now is not None and (now.state, now.filled_size) != (state, filled):
                report.orders_updated += 1
        try:
            self._unknown_orders(report)
            self._positions(report)
        except KrakenError as exc:  # reported, and counted by the circuit breaker; nothing is assumed
            parts.circuit.record_failure(exc)
            report.errors.append(f"reconcile: {exc}")
        report.positions_reprotected = parts.positions.reprotect_idle()
        return report

    def _unknown_orders(self, report: SyncReport) -> None:
        parts = self.parts
        open_at_exchange = parts.client.open_orders()
        unknown = [txid for txid in open_at_exchange if not self._opened_by_core(txid)]
        if not unknown:
            return
        report.unknown_exchange_orders = unknown
        with parts.guard.unit() as unit:
            for txid in unknown:
                info = open_at_exchange[txid]
                descr = info.get("descr", {}) if isinstance(info, dict) else {}
                unit.alert(alerts.EXCHANGE_DRIFT, alerts.HIGH,
                           f"open order {txid} at the exchange is not the core's: {descr.get('order', '?')}",
                           txid=txid)

    def _positions(self, report: SyncReport) -> None:
        """Compare what the core holds with what the exchange holds: margin positions per pair and
        direction, spot positions per base asset (the balance may hold more: other coins are not drift).

        The two sides must describe the same moment. The core's side is taken before the holdings
        are read and again after its working orders were re-queried; a key whose side changed in
        between (a fill landed during the round trips) or that has an order whose outcome the core
        does not know yet is not compared this time: the next reconciliation will. Only a key that
        held still around the read is compared, in both directions, and only that can close a
        position as gone.
        """
        parts = self.parts
        before = self._expectation()
        held: dict[tuple[str, str], Decimal] = {}
        ids: dict[tuple[str, str], dict[str, list[str]]] = {}
        try:  # whatever the config says (F05): a margin position opened by hand is drift on any account
            held.update(self._margin_exposure(ids))
        except KrakenError as exc:
            if parts.config.exchange.account == "margin":
                raise
            report.errors.append(f"OpenPositions (read on a spot account too): {exc}")
        except MalformedReport as exc:  # never close or adopt anything on data we cannot read
            report.errors.append(str(exc))
            with parts.guard.unit() as unit:
                unit.alert(alerts.MALFORMED_REPORT, alerts.HIGH, f"OpenPositions unreadable, not compared: {exc}")
            return
        if before.has_spot:
            held.update(self._spot_holdings())
        requery = PollReport()
        parts.orders.refresh([o for o in parts.orders.working_orders() if o.external_id and o.position_id], requery)
        after = self._expectation()
        if requery.errors:  # the core's side may be stale: comparing it could invent a vanished position
            report.errors.extend(requery.errors)
            report.inconclusive = sorted({k[1] for k in (*after.amounts, *held)})
            return
        drift = []
        for key in sorted(set(after.amounts) | {k for k, v in held.items() if v and k[0] == "margin"}):
            if key in after.unsettled or before.signature.get(key) != after.signature.get(key):
                report.inconclusive.append(key[1])
                continue
            want, have = after.amounts.get(key, Decimal(0)), held.get(key, Decimal(0))
            if (have < want) if key[0] == "spot" and want > 0 else (have != want):
                owners = after.owners.get(key, [])
                drift.append({"asset": key[1], "kind": key[0], "core": _text(want), "exchange": _text(have),
                              "position_ids": [p.id for p in owners], **ids.get(key, {}),
                              "txids": self._txids(owners)})
        if drift:
            report.position_drift = drift
            self._act_on_drift(report, drift, after.owners)

    def _act_on_drift(self, report: SyncReport, drift: list[dict[str, Any]],
                      owners: dict[tuple[str, str], list[Any]]) -> None:
        parts = self.parts
        gone = []
        with parts.guard.unit() as unit:
            for item in drift:
                unit.alert(alerts.EXCHANGE_DRIFT, alerts.CRITICAL,
                           f"{item['kind']} {item['asset']}: core holds {item['core']}, exchange {item['exchange']}",
                           **item)
                have, want = Decimal(item["exchange"]), Decimal(item["core"])
                # Kraken nets margin per pair: a net the other way means no position of the core's side is left
                netted = item["kind"] == "margin" and have * want < 0
                if have != 0 and not netted:
                    continue
                how = ("netted away by a margin order the other way on the pair that was not the core's"
                       if netted else "closed outside the core")
                for position in owners.get((item["kind"], item["asset"]), []):
                    held = position.size
                    unit.touch(position)  # before the change: a rollback restores it
                    position.close_reason = f"gone from the exchange ({how}); P&L incomplete"
                    unit.fire(position, "vanish", reason=position.close_reason)
                    unit.alert(alerts.POSITION_VANISHED, alerts.CRITICAL,
                               f"position {position.id} ({position.symbol} {held}) is no longer held at "
                               f"the exchange ({how}): closed in the core, its legs cancelled",
                               position_id=position.id, symbol=position.symbol)
                    gone.append(position.id)
        report.positions_closed = gone
        for pid in gone:
            parts.positions.converge(pid)  # cancels its legs: nothing is left orphaned

    def _expectation(self) -> _Expectation:
        """The core's side of the comparison, read under the state lock so it is one moment."""
        parts = self.parts
        expectation = _Expectation()
        with parts.guard.lock:
            positions = parts.positions.get_open_positions()
            for position in positions:
                if position.entry_size == 0:
                    continue
                key = self._key(position)
                sign = 1 if position.side is OrderSide.BUY else -1
                amounts = expectation.amounts
                amounts[key] = amounts.get(key, Decimal(0)) + sign * (position.size - position.excess_size)
                expectation.owners.setdefault(key, []).append(position)
                expectation.signature.setdefault(key, []).append(
                    (position.id, position.size, position.excess_size, position.entry_size, position.exit_size))
                if any(o.state in _UNSETTLED for o in parts.orders.working_for_position(position.id)):
                    expectation.unsettled.add(key)
            expectation.has_spot = any(p.leverage == 1 and p.entry_size for p in positions)
        return expectation

    def _key(self, position: Any) -> tuple[str, str]:
        pair = self.parts.client.pairs.resolve(position.symbol)
        return ("margin", pair.altname) if position.leverage > 1 else ("spot", pair.base)

    def _txids(self, positions: list[Any]) -> list[str]:
        """The Kraken txids of these positions' orders: what a person looks up on the website."""
        orders = [o for p in positions for o in self.parts.orders.get_orders_for_position(p.id)]
        return [o.external_id for o in orders if o.external_id]

    def _spot_holdings(self) -> dict[tuple[str, str], Decimal]:
        """Balances by asset; a rewards balance (`XXBT.F`, `XBT.F`) is the same coins, earning."""
        names = {}
        for pair in self.parts.client.pairs.all():
            names[pair.base] = pair.base
            names[pair.wsname.split("/")[0]] = pair.base
        held: dict[tuple[str, str], Decimal] = {}
        for asset, amount in self.parts.client.balances().items():
            root = asset[:-len(REWARDS_SUFFIX)] if asset.endswith(REWARDS_SUFFIX) else asset
            key = ("spot", names.get(root, root))
            held[key] = held.get(key, Decimal(0)) + amount
        return held

    def _margin_exposure(self, ids: dict[tuple[str, str], dict[str, list[str]]]) -> dict[tuple[str, str], Decimal]:
        """Net open margin volume per pair; `ids` gets the posids and order txids behind each."""
        exposure: dict[tuple[str, str], Decimal] = {}
        pairs = self.parts.client.pairs
        rows = self.parts.client.open_positions()
        if not isinstance(rows, dict):
            raise MalformedReport(f"OpenPositions: expected an object, got {type(rows).__name__}")
        foreign: dict[str, list[str]] = {}   # pair altname -> posids no order of the core opened
        for posid, raw in rows.items():
            row = parse_position_row(posid, raw)
            key = ("margin", pairs.resolve(row.pair).altname)
            sign = 1 if row.side == "buy" else -1
            exposure[key] = exposure.get(key, Decimal(0)) + sign * row.open_volume
            named = ids.setdefault(key, {"posids": [], "ordertxids": []})
            named["posids"].append(posid)
            if row.ordertxid and row.ordertxid not in named["ordertxids"]:
                named["ordertxids"].append(row.ordertxid)
            if not self._opened_by_core(row.ordertxid):
                foreign.setdefault(key[1], []).append(posid)
        self.parts.positions.note_foreign_margin(foreign)
        return exposure

    def _opened_by_core(self, txid: str | None) -> bool:
        if not txid:
            return False
        return self.parts.orders.order_by_txid(txid) is not None \
            or bool(self.parts.store.load_orders("external_id = ?", (txid,)))


def _text(amount: Decimal) -> str:
    """An amount as a person reads it: 0.1, not 0.10000000 or 1E-1."""
    return format(amount.normalize(), "f")
