"""OrderExecutionManager: proposals in, orders followed to their end.

Every order is persisted (PENDING) before it is sent, so a failed order is in
the store with its error (F11) and a crash after sending leaves a record the
restart can settle by client order id. Exchange reports are parsed at the
boundary (reports.py) and applied through the order machine; fills are
derived from the exchange's cumulative figures, so a repeated poll can never
count a fill twice (F03).
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from triplegain_fsm import alerts
from triplegain_fsm.config import Config
from triplegain_fsm.enums import OrderRole, OrderSide, OrderStatus, OrderType
from triplegain_fsm.errors import (
    CircuitOpenError,
    IllegalTransition,
    NotFoundError,
    PositionLimitError,
    ProposalError,
)
from triplegain_fsm.kraken.errors import KrakenError, KrakenRequestError, UnknownOrder
from triplegain_fsm.kraken.order_request import OrderRequest
from triplegain_fsm.kraken.params import add_order_params
from triplegain_fsm.kraken.ws_orders import OrderEntry
from triplegain_fsm.machines.order_machine import ORDER_KIND
from triplegain_fsm.models import ExecutionResult, Order, TradeProposal
from triplegain_fsm.order_sync import LIVE_STATES, UNKNOWN, OrderSyncMixin, PollReport, PositionHooks, chunks
from triplegain_fsm.unit import StateGuard, Unit

if TYPE_CHECKING:
    from triplegain_fsm.kraken.client import KrakenClient
    from triplegain_fsm.safety import CircuitBreaker

log = logging.getLogger(__name__)

_LIVE = LIVE_STATES
_UNKNOWN = UNKNOWN
__all__ = ["OrderExecutionManager", "PollReport", "chunks"]


class OrderExecutionManager(OrderSyncMixin):
    def __init__(self, guard: StateGuard, client: KrakenClient, config: Config,
                 clock: Callable[[], float] = time.time) -> None:
        self.guard = guard
        self.client = client
        self.config = config
        self.clock = clock
        self.positions: PositionHooks | None = None      # wired by ExecutionCore
        self.circuit: CircuitBreaker | None = None          # wired by ExecutionCore
        self.executor: Executor | None = None               # the poller's pool while started
        self.entry: OrderEntry = client                     # where orders go: REST, or the stream's socket
        self._live: dict[str, Order] = {}                   # not final: the poller's working set
        self._history: OrderedDict[str, Order] = OrderedDict()  # final, bounded by config
        self._by_txid: dict[str, Order] = {}
        self._backfill: dict[str, Order] = {}               # orders a report asked REST about

    def age(self, order: Order) -> float | None:
        """Seconds since the exchange acknowledged the order; None when not known (priced as the youngest)."""
        return None if order.placed_at is None else max(0.0, self.clock() - order.placed_at.timestamp())

    def now(self) -> datetime:
        """Timestamps come from the core's clock, so deadlines and ages compare like with like."""
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    # -- reads (one index, one lock: an order is never between two maps, F15) --------
    def get_order(self, order_id: str) -> Order | None:
        with self.guard.lock:
            found = self._live.get(order_id) or self._history.get(order_id)
        return found if found is not None else self.guard.store.get_order(order_id)

    def get_open_orders(self) -> list[Order]:
        with self.guard.lock:
            return [o for o in self._live.values() if o.state in _LIVE or o.state == _UNKNOWN]

    def get_orders_for_position(self, position_id: str) -> list[Order]:
        with self.guard.lock:
            known = {o.id: o for o in (*self._history.values(), *self._live.values()) if o.position_id == position_id}
        for order in self.guard.store.load_orders("position_id = ?", (position_id,)):
            known.setdefault(order.id, order)
        return sorted(known.values(), key=lambda o: o.created_at)

    def working_orders(self) -> list[Order]:
        """Every unfinished order, PENDING ones included."""
        with self.guard.lock:
            return list(self._live.values())

    def working_for_position(self, position_id: str) -> list[Order]:
        """The position's unfinished orders, from memory (every unfinished order is indexed there)."""
        with self.guard.lock:
            return [o for o in self._live.values() if o.position_id == position_id]

    def order_by_txid(self, txid: str) -> Order | None:
        with self.guard.lock:
            return self._by_txid.get(txid)

    # -- registration ------------------------------------------------------------------
    def track(self, unit: Unit, order: Order) -> Order:
        """Bind a new or restored order to its machine and the index; persisted by the unit."""
        if not ORDER_KIND.is_attached(order) and not order.is_final:
            ORDER_KIND.attach(order)
        unit.touch(order, new=True)
        self._index(order)
        return order

    def forget(self, order: Order) -> None:
        """Drop an order whose creating transaction failed: it was never stored."""
        with self.guard.lock:
            self._live.pop(order.id, None)
            self._history.pop(order.id, None)
            if order.external_id:
                self._by_txid.pop(order.external_id, None)

    def _index(self, order: Order) -> None:
        if order.is_final:
            self._live.pop(order.id, None)
        else:
            self._history.pop(order.id, None)
        if order.external_id:
            self._by_txid[order.external_id] = order
        if order.is_final:
            self._live.pop(order.id, None)
            self._history[order.id] = order
            self._history.move_to_end(order.id)
            while len(self._history) > self.config.orders.history_size:
                _, old = self._history.popitem(last=False)
                self._by_txid.pop(old.external_id or "", None)
        else:
            self._live[order.id] = order

    # -- execute_trade -------------------------------------------------------------------
    def execute_trade(self, proposal: TradeProposal) -> ExecutionResult:
        """Validate, size, persist, send. Bad input raises a ProposalError and changes nothing."""
        if not isinstance(proposal, TradeProposal):
            raise ProposalError(f"execute_trade needs a TradeProposal, got {type(proposal).__name__}")
        if self.circuit is not None and not self.circuit.allows_entries():
            raise CircuitOpenError("new entries are paused: the exchange circuit breaker is open")
        assert self.positions is not None
        pair = self.client.pairs.resolve(proposal.symbol)
        symbol_cfg = self.config.symbol(proposal.symbol)
        if not symbol_cfg.enabled:
            raise ProposalError(f"symbol: {proposal.symbol} is disabled in the config")
        self._check_leverage(proposal, pair, symbol_cfg.max_leverage)
        if proposal.stop_loss is None and self.config.positions.require_stop_loss:
            raise ProposalError("stop_loss: positions.require_stop_loss refuses a trade without a stop-loss")
        order_type = proposal.effective_order_type
        limit_entry = order_type is OrderType.LIMIT and proposal.entry_price is not None
        reference = proposal.entry_price if limit_entry else self._market_price(proposal.symbol)
        assert reference is not None
        proposal.check_levels(reference, "entry price" if limit_entry else "market price")
        volume = self.client.pairs.round_volume(pair, proposal.size_usd / reference)
        if volume <= 0:
            raise ProposalError(f"size_usd: {proposal.size_usd} buys nothing at {reference}")
        self.client.pairs.check_minimums(pair, volume, reference)
        limit = self.config.limits.max_order_usd
        if limit is not None and volume * reference > limit:
            raise ProposalError(f"size_usd: {volume * reference} exceeds limits.max_order_usd {limit}")
        price = None
        if order_type is OrderType.LIMIT:
            price = self.client.pairs.round_price(pair, reference, up=proposal.side is OrderSide.SELL)
            if price <= 0:
                raise ProposalError(f"entry_price: {reference} rounds to {price} at {pair.altname}'s tick")
        order = Order(symbol=proposal.symbol, side=proposal.side, order_type=order_type, size=volume,
                      price=price, leverage=proposal.leverage, proposal_id=proposal.id, created_at=self.now())
        try:  # bad input raises here, before anything is stored (a price that rounds to nothing, ...)
            add_order_params(self.request_for(order), pair)
        except KrakenRequestError as exc:
            raise ProposalError(f"order cannot be built: {exc}") from None
        with self.guard.unit() as unit:
            self._check_position_limits(proposal)
            position = self.positions.open_for(unit, proposal, order)
            order.position_id = position.id
            self.track(unit, order)
            if proposal.stop_loss is None:
                unit.alert(alerts.NO_STOP_LOSS, alerts.HIGH,
                           f"position {position.id} ({proposal.symbol} {proposal.side.value}) opens without a "
                           "stop-loss: nothing at the exchange limits its loss", position_id=position.id)
        try:
            self.send(order)
        finally:  # whatever send() met, a rejected entry closes its position (never an OPENING leftover)
            with self.guard.unit() as unit:
                self.positions.on_entry_sent(unit, order)
        rate = symbol_cfg.fee_pct if order_type is OrderType.MARKET else symbol_cfg.maker_fee_pct
        return ExecutionResult(
            success=order.state not in (OrderStatus.REJECTED.value, _UNKNOWN),
            order=order, position_id=order.position_id, error_message=order.error_message,
            estimated_fee=volume * reference * rate / 100,
            error_type=("outcome_unknown" if order.state == _UNKNOWN
                        else "rejected" if order.state == OrderStatus.REJECTED.value else None),
        )

    def _check_leverage(self, proposal: TradeProposal, pair: Any, configured_max: int) -> None:
        account = self.config.exchange.account
        if proposal.leverage > 1:
            if account != "margin":
                raise ProposalError("leverage: leverage above 1 needs exchange.account: margin")
            allowed = self.client.pairs.max_leverage(pair, proposal.side.value)
            if proposal.leverage > min(allowed, configured_max):
                raise ProposalError(
                    f"leverage: {proposal.leverage} not allowed for {proposal.symbol} "
                    f"(pair allows {allowed}, config allows {configured_max})")
        elif proposal.side is OrderSide.SELL:
            raise ProposalError("side: a short needs a margin account and leverage >= 2")

    def _check_position_limits(self, proposal: TradeProposal) -> None:
        assert self.positions is not None
        symbol = proposal.symbol
        open_positions = self.positions.get_open_positions()
        if proposal.leverage > 1:
            opposite = [p.id for p in open_positions if p.symbol == symbol and p.leverage > 1
                        and p.side is not proposal.side]
            if opposite:  # Kraken nets margin positions per pair: this entry would close them instead
                raise ProposalError(
                    f"side: a margin {proposal.side.value} on {symbol} would be netted by Kraken against the "
                    f"open margin position(s) {', '.join(opposite)}; close those first")
            foreign = self.positions.foreign_margin_on(self.client.pairs.resolve(symbol).altname)
            if foreign:
                raise ProposalError(
                    f"symbol: the exchange holds margin position(s) {', '.join(foreign)} on {symbol} that the core "
                    "did not open; Kraken nets margin orders per pair, so this entry would trade against them. "
                    "Close them at the exchange or trade another pair")
        limits = self.config.limits
        if len(open_positions) >= limits.max_open_positions:
            raise PositionLimitError(f"limits.max_open_positions: {limits.max_open_positions} already open")
        if sum(1 for p in open_positions if p.symbol == symbol) >= limits.max_positions_per_symbol:
            raise PositionLimitError(
                f"limits.max_positions_per_symbol: {limits.max_positions_per_symbol} already open for {symbol}")

    def _market_price(self, symbol: str) -> Decimal:
        """F02: a market order is sized from a fresh price, never from the USD amount."""
        assert self.positions is not None
        cached = self.positions.fresh_price(symbol, self.config.orders.price_max_age_seconds)
        if cached is not None:
            return cached
        price = self.client.ticker_price(symbol)
        self.positions.remember_price(symbol, price)
        return price

    # -- sending -----------------------------------------------------------------------------
    def request_for(self, order: Order) -> OrderRequest:
        pair = self.client.pairs.resolve(order.symbol)
        limit_price = trigger = None
        if order.order_type is OrderType.LIMIT:
            limit_price = order.price
        elif order.order_type in (OrderType.STOP_LOSS, OrderType.TAKE_PROFIT):
            trigger = order.stop_price
        elif order.order_type in (OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT):
            trigger, limit_price = order.stop_price, order.price
        elif order.order_type is not OrderType.MARKET:
            raise ProposalError(f"order_type: the core does not place {order.order_type.value} orders")
        return OrderRequest(
            pair=pair.altname, side=order.side, order_type=order.order_type, volume=order.size,
            cl_ord_id=order.client_order_id, limit_price=limit_price, trigger_price=trigger,
            leverage=order.leverage if order.leverage > 1 else None, reduce_only=order.reduce_only,
        )

    def send(self, order: Order) -> KrakenError | None:
        """Send a persisted PENDING order; every outcome ends in a persisted state. Returns the exchange error."""
        try:
            ack = self.entry.add_order(self.request_for(order))
        except KrakenError as exc:
            self._record_failure(exc)
            with self.guard.unit() as unit:
                if order.state != OrderStatus.PENDING.value:
                    return exc   # the stream reported the order while the answer was lost: it is placed
                if exc.outcome_unknown:
                    unit.fire(order, "submit_unknown", reason=str(exc))
                    unit.touch(order)  # before the change: a rollback restores it
                    order.error_message = f"outcome unknown: {exc}"
                    order.unknown_since = self.now()  # its last deadline was set before this moment
                    unit.alert(alerts.ORDER_OUTCOME_UNKNOWN, alerts.HIGH,
                               f"order {order.id} may or may not be at the exchange; settling by client id",
                               order_id=order.id, position_id=order.position_id,
                               client_order_id=order.client_order_id)
                else:
                    unit.touch(order)  # before the change: a rollback restores it
                    order.error_message = str(exc)
                    unit.fire(order, "reject", reason=str(exc))
                self._index(order)
            return exc
        except Exception as exc:  # our own bug or bad data: the order still ends rejected and stored
            with self.guard.unit() as unit:
                unit.touch(order)  # before the change: a rollback restores it
                order.error_message = f"not sent: {exc}"
                unit.fire(order, "reject", reason=order.error_message)
                self._index(order)
            raise
        self._record_success()
        with self.guard.unit() as unit:   # the stream may have reported it first: acknowledged once
            self.acknowledge(unit, order, ack.txid, "recovered by client order id" if ack.recovered else "accepted")
        return None

    def _record_failure(self, exc: KrakenError) -> None:
        if self.circuit is not None:
            self.circuit.record_failure(exc)

    def _record_success(self) -> None:
        if self.circuit is not None:
            self.circuit.record_success()

    # -- cancel ----------------------------------------------------------------------------------
    def cancel_order(self, order_id: str, reason: str = "cancel requested") -> bool:
        """True when the order is (or already was) no longer working; raises for an unknown id."""
        order = self.get_order(order_id)
        if order is None:
            raise NotFoundError(f"no order {order_id}")
        with self.guard.unit() as unit:
            if order.is_final:
                return True
            if order.state == _UNKNOWN or order.external_id is None:
                raise IllegalTransition("order", order.id, order.state, "request_cancel",
                                        "outcome unknown: settle it first (poll_once)")
            if order.state != OrderStatus.CANCEL_PENDING.value:
                unit.fire(order, "request_cancel", reason=reason)
        if not self._send_cancel(order):
            return False
        self.refresh([order])
        return order.is_final

    def _send_cancel(self, order: Order) -> bool:
        """Ask the exchange to cancel; False when it definitely refused (the order is working again).

        An unknown outcome leaves the order CANCEL_PENDING: the next poll either sees
        it gone or still open, and then asks again (a cancel is safe to repeat).
        """
        assert order.external_id is not None
        try:
            age = self.age(order)
            self.entry.cancel_order(txid=order.external_id, pair=self.client.pairs.resolve(order.symbol).altname,
                                     order_age=age)
        except UnknownOrder:
            log.info("cancel of %s: exchange does not know it as open; looking it up", order.id)
        except KrakenError as exc:
            self._record_failure(exc)
            if not exc.outcome_unknown:
                with self.guard.unit() as unit:
                    if order.state == OrderStatus.CANCEL_PENDING.value:
                        unit.fire(order, "cancel_refused", reason=str(exc))
                return False
        return True

    # -- restart -----------------------------------------------------------------------------------
    def restore(self, orders: Iterable[Order]) -> int:
        """Re-attach stored unfinished orders in their saved state (no callbacks replayed)."""
        count = 0
        with self.guard.unit() as unit:
            for order in orders:
                if order.is_final:
                    continue
                ORDER_KIND.attach(order)
                if order.state == OrderStatus.PENDING.value:  # it may have left before the crash
                    unit.fire(order, "submit_unknown", reason="restart: may have been sent; settling by client id")
                    order.unknown_since = self.now()  # it was sent (if at all) before now, not at creation
                    unit.alert(alerts.ORDER_OUTCOME_UNKNOWN, alerts.HIGH,
                               f"{order.role.value} order {order.id} was being sent when the process stopped; "
                               "settling it by client order id", order_id=order.id, position_id=order.position_id,
                               client_order_id=order.client_order_id)
                    if order.role in (OrderRole.STOP_LOSS, OrderRole.CLOSE, OrderRole.FLATTEN):
                        unit.alert(alerts.POSITION_UNPROTECTED, alerts.CRITICAL,
                                   f"position {order.position_id} has no confirmed {order.role.value} order until "
                                   f"{order.id} is settled", order_id=order.id, position_id=order.position_id)
                self._index(order)
                count += 1
        return count
