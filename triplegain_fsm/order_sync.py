"""Keeping orders in step with the exchange: polling, settling unknown outcomes, and the ONE mutator.

Every exchange report -- a QueryOrders entry read by the poller or by
reconciliation, an `executions` message pushed by the WebSocket stream -- is
parsed into `executions.Execution` events and applied by `apply_execution`,
and nowhere else. Fills are keyed by the exchange's trade id: a trade seen by
the stream and again by a poll, or replayed by a snapshot, is applied once
(the order remembers its trade ids; the fills table's unique key backs it).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from triplegain_fsm import alerts
from triplegain_fsm.config import Config
from triplegain_fsm.enums import OrderSide, OrderStatus
from triplegain_fsm.errors import ValidationError
from triplegain_fsm.executions import (
    Amended,
    Ended,
    Execution,
    Trade,
    Traded,
    booked_trade_ids,
    from_rest,
    parse_query_trades,
    trades_to_look_up,
)
from triplegain_fsm.kraken.errors import KrakenError, UnknownOrder
from triplegain_fsm.models import Order, Position, TradeProposal
from triplegain_fsm.reports import MalformedReport, OrderReport, check_against, parse_order_report
from triplegain_fsm.unit import StateGuard, Unit

if TYPE_CHECKING:
    from triplegain_fsm.kraken.client import KrakenClient

log = logging.getLogger(__name__)

LIVE_STATES = frozenset({OrderStatus.OPEN.value, OrderStatus.PARTIALLY_FILLED.value,
                         OrderStatus.CANCEL_PENDING.value})
UNKNOWN = OrderStatus.SUBMITTED_UNKNOWN.value
_AWAITING_ACK = frozenset({OrderStatus.PENDING.value, UNKNOWN})


@attrs.define
class PollReport:
    orders_polled: int = 0
    api_calls: int = 0
    fills: int = 0
    settled_unknown: int = 0
    errors: list[str] = attrs.field(factory=list)


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start:start + size] for start in range(0, len(items), size)]


class PositionHooks(Protocol):
    """What the order layer tells the position layer (positions.PositionTracker implements it).

    The order layer knows only this interface, never the position module: imports run
    one way (positions -> orders), and a position reacts to the order events it is handed.
    """

    def open_for(self, unit: Unit, proposal: TradeProposal, order: Order) -> Position: ...
    def on_entry_sent(self, unit: Unit, order: Order) -> None: ...
    def get_open_positions(self) -> list[Position]: ...
    def foreign_margin_on(self, altname: str) -> tuple[str, ...]: ...
    def fresh_price(self, symbol: str, max_age: float) -> Decimal | None: ...
    def remember_price(self, symbol: str, price: Decimal) -> None: ...
    def run_due_work(self) -> None: ...
    def on_order_fill(self, unit: Unit, order: Order, qty: Decimal, price: Decimal, fee: Decimal,
                      cost: Decimal) -> None: ...
    def on_order_final(self, unit: Unit, order: Order) -> None: ...
    def on_order_settled(self, unit: Unit, order: Order) -> None: ...
    def on_trigger_moved(self, unit: Unit, order: Order, trigger: Decimal) -> None: ...
    def on_leg_resized(self, unit: Unit, order: Order, shrunk: bool) -> None: ...


class OrderSyncMixin:
    """The reading half of OrderExecutionManager (which provides these attributes)."""

    guard: StateGuard
    client: KrakenClient
    config: Config
    positions: PositionHooks | None
    executor: Executor | None
    _live: dict[str, Order]
    _by_txid: dict[str, Order]
    _backfill: dict[str, Order]
    now: Callable[[], datetime]
    clock: Callable[[], float]
    _index: Callable[[Order], None]
    _record_failure: Callable[[KrakenError], None]
    _record_success: Callable[[], None]
    _send_cancel: Callable[[Order], bool]

    # -- polling ----------------------------------------------------------------------------------
    def poll_once(self) -> PollReport:
        """One synchronous cycle: batch-query live orders, settle unknown ones, run due position work."""
        report = PollReport()
        with self.guard.lock:
            live = [o for o in self._live.values() if o.state in LIVE_STATES and o.external_id]
            unknown = [o for o in self._live.values() if o.state == UNKNOWN]
        report.orders_polled = len(live)
        self.refresh(live, report)
        for order in [o for o in live if o.state == OrderStatus.CANCEL_PENDING.value]:
            self._send_cancel(order)  # still open after a cancel whose answer was lost: ask again
        for order in unknown:
            self._settle_unknown(order, report)
        if self.positions is not None:
            self.positions.run_due_work()
        return report

    def refresh(self, orders: list[Order], report: PollReport | None = None) -> None:
        """Query these orders (≤ batch size per call, in the pool when started) and apply what changed."""
        report = report if report is not None else PollReport()
        txids = [o.external_id for o in orders if o.external_id]
        batches = chunks(txids, self.config.orders.query_batch_size)
        report.api_calls += len(batches)
        mapper = self.executor.map if self.executor is not None else map
        for batch, outcome in zip(batches, mapper(self._query_batch, batches), strict=False):
            if isinstance(outcome, UnknownOrder) and len(batch) > 1:
                self._split(batch, report)   # one forgotten order must not hide the others
                continue
            if isinstance(outcome, Exception):
                report.errors.append(f"QueryOrders {len(batch)} orders: {outcome}")
                continue
            self.apply_results(outcome, report)

    def _split(self, batch: list[str], report: PollReport) -> None:
        """Kraken refuses a whole QueryOrders when one txid is unknown to it: ask for each half
        again, down to the forgotten order(s), which are reported (reconcile --resolve settles them)."""
        for half in (batch[:len(batch) // 2], batch[len(batch) // 2:]):
            report.api_calls += 1
            outcome = self._query_batch(half)
            if isinstance(outcome, UnknownOrder) and len(half) > 1:
                self._split(half, report)
            elif isinstance(outcome, Exception):
                report.errors.append(f"QueryOrders {', '.join(half)}: {outcome}")
            else:
                self.apply_results(outcome, report)

    def _query_batch(self, txids: list[str]) -> dict[str, Any] | Exception:
        try:
            result = self.client.query_orders(txids, trades=True)
        except KrakenError as exc:
            self._record_failure(exc)
            log.warning("QueryOrders failed for %d orders: %s", len(txids), exc)
            return exc
        self._record_success()
        return result

    def apply_results(self, results: dict[str, Any], report: PollReport) -> None:
        for txid, info in results.items():
            order = self.order_by_txid(txid)
            if order is not None:
                self._apply_rest(order, txid, info, report)

    def order_by_txid(self, txid: str) -> Order | None:
        with self.guard.lock:
            return self._by_txid.get(txid)

    def _apply_rest(self, order: Order, txid: str, info: Any, report: PollReport) -> None:
        """One REST order entry: parsed, its unknown trades looked up (outside the lock), applied."""
        try:
            parsed = parse_order_report(txid, info)
            check_against(parsed, order.filled_size)
            looked_up = self._look_up_trades(parsed, order)
        except (MalformedReport, ValidationError) as exc:
            self._malformed(report, order, exc)
            return
        except KrakenError as exc:   # QueryTrades failed: the fill waits for the next cycle, nothing guessed
            self._record_failure(exc)
            report.errors.append(f"QueryTrades for {order.id}: {exc}")
            return
        with self.guard.unit() as unit:
            try:
                execution = from_rest(parsed, order, looked_up)
            except ValidationError as exc:   # the order moved on while we looked: next cycle sees it
                report.errors.append(str(exc))
                return
            report.fills += self.apply_execution(unit, order, execution)

    def _look_up_trades(self, parsed: OrderReport, order: Order) -> dict[str, Trade]:
        with self.guard.lock:
            needed = trades_to_look_up(parsed, order)
        if not needed:
            return {}
        return parse_query_trades(self.client.trades(needed))

    def _malformed(self, report: PollReport, order: Order, exc: Exception) -> None:
        report.errors.append(str(exc))
        with self.guard.unit() as unit:
            unit.alert(alerts.MALFORMED_REPORT, alerts.WARNING, str(exc), order_id=order.id)

    def _settle_unknown(self, order: Order, report: PollReport) -> None:
        """Find a SUBMITTED_UNKNOWN order by client order id; never assume either way."""
        try:
            found = self.client.find_order(order.client_order_id)
        except KrakenError as exc:
            self._record_failure(exc)
            report.errors.append(f"look-up of {order.client_order_id}: {exc}")
            return
        report.api_calls += 2
        if found is None:
            since = order.unknown_since or order.created_at
            deadline = since.timestamp() + self.config.exchange.submit_deadline_seconds + 60
            if self.clock() < deadline:
                return
            with self.guard.unit() as unit:
                if order.state != UNKNOWN:   # the stream settled it while we looked
                    return
                unit.touch(order)  # before the change: a rollback restores it
                order.error_message = "not at the exchange after its deadline: never placed"
                unit.fire(order, "reject", reason=order.error_message)
                self._index(order)
                if self.positions is not None:
                    self.positions.on_order_final(unit, order)
            report.settled_unknown += 1
            return
        txid, info = found
        with self.guard.unit() as unit:
            if self.acknowledge(unit, order, txid, "found by client order id"):
                report.settled_unknown += 1
        self._apply_rest(order, txid, info, report)

    def acknowledge(self, unit: Unit, order: Order, txid: str | None, reason: str) -> bool:
        """The exchange holds `order` as `txid`: bind it, once, whichever answer came first."""
        if order.state not in _AWAITING_ACK:
            return False
        unit.touch(order)  # before the change: a rollback restores it
        order.external_id = txid
        order.placed_at = order.unknown_since or self.now()  # it reached the exchange before it was unknown
        unit.fire(order, "acknowledge", reason=reason)
        self._index(order)
        if self.positions is not None and reason != "accepted":  # its position waited for this answer
            self.positions.on_order_settled(unit, order)
        return True

    # -- the one mutator ----------------------------------------------------------------------------
    def apply_execution(self, unit: Unit, order: Order, execution: Execution) -> int:
        """Apply one report's events to one order; returns the number of new fills."""
        fills = 0
        for event in execution.events:
            if order.is_final:
                break
            if isinstance(event, Amended):
                self._apply_amended(unit, order, event)
            elif isinstance(event, Traded):
                fills += self._apply_trade(unit, order, event.trade, execution)
            elif isinstance(event, Ended):
                self._apply_end(unit, order, event, execution)
        self._index(order)
        return fills

    def _apply_amended(self, unit: Unit, order: Order, event: Amended) -> None:
        if event.qty is not None and event.qty != order.size and event.qty >= order.filled_size:
            unit.touch(order)
            shrunk, order.size = event.qty < order.size, event.qty  # the exchange is the truth
            if self.positions is not None:   # (an amend, a manual edit, a reduce-only cap)
                self.positions.on_leg_resized(unit, order, shrunk)
        trigger = event.trigger_price
        if (trigger is not None and order.stop_price is not None and trigger != order.stop_price
                and self.positions is not None):
            self.positions.on_trigger_moved(unit, order, trigger)  # an amend whose answer we never saw

    def _apply_trade(self, unit: Unit, order: Order, trade: Trade, execution: Execution) -> int:
        if trade.trade_id in booked_trade_ids(order):
            return 0                                  # the other channel (or a snapshot) reported it first
        vol_exec = order.filled_size + trade.qty
        if vol_exec > order.size:
            unit.alert(alerts.MALFORMED_REPORT, alerts.WARNING,
                       f"order {order.id}: trade {trade.trade_id} of {trade.qty} would fill {vol_exec} of "
                       f"{order.size}; not applied", order_id=order.id)
            return 0
        pair = self.client.pairs.resolve(order.symbol)
        asset = trade.fee_asset or pair.quote
        in_base = _is_asset(asset, pair.base, pair.wsname, 0)
        fee_quote = trade.fee * trade.price if in_base else trade.fee
        now = self.now()
        unit.write(lambda store: store.record_fill(
            trade.trade_id, order.id, execution.txid, [] if trade.keyed_by_volume else [trade.trade_id],
            trade.qty, trade.price, trade.fee, vol_exec, now, cost=trade.cost, fee_asset=asset,
            source=execution.source))
        unit.touch(order)
        if not trade.keyed_by_volume:
            order.trade_ids = ",".join(filter(None, (order.trade_ids, trade.trade_id)))
        order.fee_currency = asset
        unit.fire(order, "fill", reason=f"filled {trade.qty} @ {trade.price}", payload=execution.raw,
                  vol_exec=vol_exec, cost=order.filled_cost + trade.cost, fee=order.fee_amount + fee_quote)
        self._index(order)
        unit.publish({"event": "order_fill", "order_id": order.id, "position_id": order.position_id,
                      "symbol": order.symbol, "role": order.role.value, "qty": trade.qty, "price": trade.price,
                      "fee": trade.fee, "fee_asset": asset, "trade_id": trade.trade_id,
                      "source": execution.source, "filled_size": order.filled_size, "size": order.size})
        if self.positions is not None:
            qty, cost, fee = _held_change(order.side, trade, in_base)
            self.positions.on_order_fill(unit, order, qty, trade.price, fee, cost)
        return 1

    def _apply_end(self, unit: Unit, order: Order, event: Ended, execution: Execution) -> None:
        if event.status == "filled":
            if order.filled_size < order.size:   # the stream says filled, but a trade is missing: look it up
                self.request_backfill(order, "filled without every trade seen")
            return
        if event.status == "closed":
            unit.fire(order, "cancelled", reason="closed short of its volume", payload=execution.raw)
        elif event.status == "canceled":
            unit.fire(order, "cancelled", reason=event.reason or "canceled at the exchange", payload=execution.raw)
        elif event.status == "expired":
            unit.fire(order, "expire", reason=event.reason or "expired", payload=execution.raw)
        self._index(order)
        if order.is_final and self.positions is not None:
            self.positions.on_order_final(unit, order)

    def request_backfill(self, order: Order, why: str) -> None:
        """A report says something its events do not cover: REST is asked about the order next."""
        log.info("order %s: %s; REST will be asked", order.id, why)
        self._backfill[order.id] = order

    def take_backfill(self) -> list[Order]:
        """The orders a report asked REST about since the last call (the caller refreshes them)."""
        with self.guard.lock:
            orders, self._backfill = list(self._backfill.values()), {}
        return [o for o in orders if o.external_id and not o.is_final]

    # -- the stream's entry ---------------------------------------------------------------------------
    def apply_stream(self, execution: Execution) -> int:
        """One pushed report: matched by txid, or by client order id before the add_order answer came."""
        with self.guard.unit() as unit:
            order = self._by_txid.get(execution.txid) or self._awaiting(execution.cl_ord_id)
            if order is None:
                return 0   # not ours (a foreign order is reconciliation's business), or long forgotten
            if order.state in _AWAITING_ACK:
                self.acknowledge(unit, order, execution.txid, "reported by the stream")
            if order.filled_size > 0 and not booked_trade_ids(order) and execution.trades:
                self.request_backfill(order, "fills booked before trade ids were kept")  # never a double count
                execution = attrs.evolve(execution, events=tuple(
                    e for e in execution.events if not isinstance(e, Traded)))
            return self.apply_execution(unit, order, execution)

    def _awaiting(self, cl_ord_id: str | None) -> Order | None:
        if cl_ord_id is None:
            return None
        return next((o for o in self._live.values()
                     if o.state in _AWAITING_ACK and o.client_order_id == cl_ord_id), None)


def _is_asset(asset: str, code: str, wsname: str, side: int) -> bool:
    """Kraken names one asset several ways (`XXBT`, `XBT`); the pair's wsname carries the short ones."""
    parts = wsname.split("/")
    return asset == code or (len(parts) == 2 and asset == parts[side])


def _held_change(side: OrderSide, trade: Trade, fee_in_base: bool) -> tuple[Decimal, Decimal, Decimal]:
    """(qty, cost, fee in quote) as the position must book them.

    A fee charged in base changes the coins held: a buy yields qty - fee, a sell
    spends qty + fee. The position books what is held, so its stop never asks for
    more coins than there are; the fee's quote value moves out of cost into fees,
    so P&L is unchanged.
    """
    if not fee_in_base:
        return trade.qty, trade.cost, trade.fee
    fee_value = trade.fee * trade.price
    if side is OrderSide.BUY:
        return trade.qty - trade.fee, trade.cost - fee_value, fee_value
    return trade.qty + trade.fee, trade.cost + fee_value, fee_value


