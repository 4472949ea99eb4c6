"""ExecutionCore: wires config, client, store, bus, machines and poller into one object.

Construction restores every unfinished order and position from the store into
its machine, in its saved state, without replaying callbacks (no HTTP). `start()`
reconciles with the exchange and starts the poller; `poll_once()` is the same
cycle for bots that run their own loop.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from triplegain_fsm import alerts, paper_account
from triplegain_fsm.bus import MessageBus
from triplegain_fsm.config import Config
from triplegain_fsm.credentials import Credentials, load_credentials
from triplegain_fsm.errors import ConfigError
from triplegain_fsm.kraken.client import KrakenClient
from triplegain_fsm.kraken.errors import KrakenError
from triplegain_fsm.kraken.ws_orders import WsOrderEntry
from triplegain_fsm.machines.order_machine import ORDER_KIND
from triplegain_fsm.machines.position_machine import POSITION_KIND
from triplegain_fsm.models import Order
from triplegain_fsm.orders import OrderExecutionManager, PollReport
from triplegain_fsm.poller import Poller
from triplegain_fsm.positions import PositionTracker
from triplegain_fsm.reconcile import Parts, Reconciler, SyncReport
from triplegain_fsm.safety import CircuitBreaker
from triplegain_fsm.store import Store
from triplegain_fsm.stream_link import StreamLink
from triplegain_fsm.telemetry import Telemetry
from triplegain_fsm.unit import AlertPolicy, StateGuard

log = logging.getLogger(__name__)


def paper_exchange(config: Config) -> Any:
    """The in-process paper exchange the config describes (the embedded default)."""
    from triplegain_fsm.paper import paper_from_config

    return paper_from_config(config)


def _no_wait(seconds: float) -> None:
    """Paper mode: the pacer's waits are bookkeeping only."""


@attrs.define
class CoreStatus:
    open_orders: int
    open_positions: int
    circuit_open: bool
    poller_running: bool
    stream: str = "off"    # connected | connecting | down (REST polling) | off (exchange.stream: poll)


class ExecutionCore:
    def __init__(self, config: Config, client: KrakenClient, store: Store, *, bus: MessageBus | None = None,
                 paper: Any = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.client = client
        self.store = store
        self.bus = bus or MessageBus()
        self.paper = paper
        self.clock = clock
        client.keep_nonces(store)
        policy = config.alerts
        notify_at = config.notifications.min_severity if config.notifications.urls else None  # the outbox
        # repeat_after_seconds on the core's clock: a fake or replay clock, not the wall's (simulate found it)
        self.guard = StateGuard(store, self.bus, AlertPolicy(policy.log_level, policy.repeat_after_seconds,
                                                             policy.persist, clock=clock, notify_at=notify_at))
        self.orders = OrderExecutionManager(self.guard, client, config, clock=clock)
        self.positions = PositionTracker(self.guard, client, config, self.orders, clock=clock)
        self.orders.positions = self.positions
        self.guard.indexes = self
        safety = config.safety
        self.circuit = CircuitBreaker(safety.circuit_failure_threshold, safety.circuit_probe_seconds,
                                      self._circuit_changed, clock=clock)
        self.orders.circuit = self.circuit
        self.reconciler = Reconciler(Parts(self.orders, self.positions, client, config, self.circuit))
        self.stream: StreamLink | None = None   # built by start() when exchange.stream is websocket
        self._ws_server: Any = None             # paper mode: the paper exchange's own WebSocket
        self._poller = Poller(self.poll_once, self._poll_interval, config.orders.poll_workers, self._use_pool,
                              due_in=self.positions.due_in)
        self._last_reconcile = 0.0
        self._last_switch_refresh = 0.0
        self.telemetry = Telemetry(self)      # metrics, notifications outbox, heartbeat (telemetry/)
        self.metrics = self.telemetry.metrics
        self.restore()

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, path: str | Path | None = None, *, environ: Mapping[str, str] = os.environ,
                    client: KrakenClient | None = None, **kwargs: Any) -> ExecutionCore:
        config = Config.load(path) if path is not None else Config.default()
        return cls.from_settings(config, environ=environ, client=client, **kwargs)

    @classmethod
    def from_settings(cls, config: Config, *, environ: Mapping[str, str] = os.environ,
                      client: KrakenClient | None = None, **kwargs: Any) -> ExecutionCore:
        paper = None
        exchange = config.exchange
        if client is None:
            extra: dict[str, Any] = {}
            if exchange.mode == "paper":
                paper_account.check(config)  # read-only: a refused start changes neither file
                paper = paper_exchange(config)
                credentials = Credentials(api_key=paper.api_key, api_secret=paper.api_secret)
                # the in-process paper exchange enforces no rate limit, so the pacer need not sleep
                extra["sleep"] = _no_wait
            else:
                loaded = load_credentials(exchange, environ=environ)
                if loaded is None:
                    raise ConfigError("exchange.mode: live needs KRAKEN_API_KEY/KRAKEN_API_SECRET or exchange.key_file")
                credentials = loaded
            client = KrakenClient(credentials.api_key, credentials.api_secret, exchange.base_url,
                                  tier=exchange.tier, timeout=exchange.timeout_seconds,
                                  user_agent=exchange.user_agent, deadline_seconds=exchange.submit_deadline_seconds,
                                  **extra)
            if paper is not None:
                paper.mount(client.session, exchange.base_url)
        try:
            store = Store(config.storage.path)
        except BaseException:
            if paper is not None:
                paper.close()
            raise
        try:
            if paper is not None:
                paper_account.adopt(store, paper)   # the store remembers which paper account it trades on
            return cls(config, client, store, paper=paper, **kwargs)
        except BaseException:   # e.g. a notification URL refused: a refused start leaves no file open
            store.close()
            if paper is not None:
                paper.close()
            raise

    def restore(self) -> None:
        """Load unfinished orders and positions into their machines, in their saved state."""
        store = self.store
        orders = store.load_orders("state NOT IN ('FILLED', 'CANCELLED', 'EXPIRED', 'REJECTED')")
        positions = store.load_positions("state != 'CLOSED'")
        self.orders.restore(orders)
        self.positions.restore(positions, store.pending_work())
        if orders or positions:
            log.info("restored %d open orders and %d open positions", len(orders), len(positions))

    # -- running ---------------------------------------------------------------------------------------
    def start(self) -> SyncReport | None:
        """Reconcile with the exchange, then poll in the background until stop()."""
        report = None
        try:
            report = self.sync_with_exchange()
        except KrakenError as exc:
            log.error("start-up reconciliation failed (%s); the poller will retry", exc)
        self.telemetry.start()
        self.start_stream()
        self._poller.start()
        return report

    def start_stream(self) -> None:
        """Connect the executions stream (exchange.stream: websocket) without the poller: for bots,
        and paper sessions, that run their own loop. `start()` calls it."""
        exchange = self.config.exchange
        if exchange.stream != "websocket" or self.stream is not None:
            return
        url = exchange.ws_url
        if self.paper is not None:   # the in-process paper exchange serves the stream itself, on loopback
            self._ws_server = self.paper.serve_ws()
            url = self._ws_server.url
        self.stream = StreamLink(self.orders, self.positions, url, self.client.get_websockets_token,
                                 stale_seconds=exchange.stream_stale_seconds,
                                 reconnect_seconds=exchange.stream_reconnect_seconds,
                                 on_change=self._stream_changed)
        if exchange.order_entry == "websocket":   # REST whenever the socket cannot take the order
            timeout = min(exchange.timeout_seconds, float(exchange.submit_deadline_seconds))  # float-ok: seconds
            self.orders.entry = WsOrderEntry(self.stream.stream, self.client, request_timeout=timeout)
        self.stream.start()

    def settle_stream(self, timeout: float = 10.0) -> bool:
        """Paper mode: wait until the stream has applied everything the paper exchange pushed, and
        its follow-up work (stops it placed) is done. A replay calls it after each tick, so a session
        on the stream is as reproducible as one on polling. False on timeout, or with no stream or
        one that is down (at once: a session on a hostile exchange must not wait for a dead socket)."""
        link, server = self.stream, self._ws_server
        if link is None or server is None or not link.healthy:
            return False     # nothing comes over a stream that is down: the poll is the source meanwhile
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            written = server.quiet()
            if written is not None and link.idle and (link.last_sequence or 0) >= written and server.quiet() == written:
                return True
            time.sleep(0.0002)
        return False

    def _stream_changed(self, state: str) -> None:
        self.metrics.stream_state(state)
        if state != "connected":
            self._poller.wake()    # fills are learnt by polling again: do not wait out the audit interval

    def _poll_interval(self) -> float:
        if self.stream is not None and self.stream.healthy:
            return self.config.exchange.stream_audit_seconds
        return self.config.orders.poll_interval_seconds

    def stop(self) -> None:
        if self.stream is not None:
            self.orders.entry = self.client
            self.stream.stop()
            self.stream = None
        self._poller.stop()
        if self._ws_server is not None:
            self._ws_server.shutdown()
            self._ws_server = None
        if self.config.safety.dead_mans_switch_seconds:
            try:
                self.client.cancel_all_orders_after(0)
            except KrakenError as exc:
                log.error("could not disarm the dead man's switch: %s", exc)
        self.telemetry.stop()

    def close(self) -> None:
        """Stop, detach this core's models from the process-wide machines, close the store."""
        self.stop()
        with self.guard.lock:
            for order in self.orders.working_orders():
                ORDER_KIND.detach(order)
            for position in self.positions.get_open_positions():
                POSITION_KIND.detach(position)
        self.store.close()
        if self.paper is not None:
            self.paper.close()   # writes the last prices of a persisted paper account

    def reindex(self, model: Any) -> None:
        """A failed unit restored this model: put it back where its state says it belongs."""
        if isinstance(model, Order):
            self.orders._index(model)
        else:
            self.positions._index(model)

    def forget(self, model: Any) -> None:
        if isinstance(model, Order):
            self.orders.forget(model)
            self.positions._prepared.discard(model.id)
        else:
            self.positions.forget(model)

    def _use_pool(self, pool: Any) -> None:
        self.orders.executor = pool

    def poll_once(self) -> PollReport:
        """One cycle: orders and protection, then reconciliation and the dead man's switch when due."""
        report = self._poll_cycle()
        if self.stream is not None:
            self.stream.after_poll(report)
        self.telemetry.poll_done(report)   # metrics and heartbeat: never raises, never waits
        return report

    def _poll_cycle(self) -> PollReport:
        if not self.circuit.allows_calls():
            return PollReport(errors=["exchange calls halted (lockout or authentication failure)"])
        self._refresh_switch()
        if self.clock() - self._last_reconcile >= self.config.safety.reconcile_interval_seconds:
            sync = self.sync_with_exchange()  # a poll cycle plus the comparisons only reconciliation makes
            assert sync.poll is not None
            return sync.poll
        return self.orders.poll_once()

    def _refresh_switch(self) -> None:
        safety = self.config.safety
        if not safety.dead_mans_switch_seconds:
            return
        now = self.clock()
        if now - self._last_switch_refresh < safety.dead_mans_switch_refresh_seconds:
            return
        try:
            self.client.cancel_all_orders_after(safety.dead_mans_switch_seconds)
            self._last_switch_refresh = now
        except KrakenError as exc:
            with self.guard.unit() as unit:
                unit.alert(alerts.CONTINGENT_ORDER_FAILURE, alerts.HIGH,
                           f"dead man's switch refresh failed: {exc}; orders may be cancelled at expiry")

    def sync_with_exchange(self) -> SyncReport:
        self._last_reconcile = self.clock()
        return self.reconciler.run()

    def price_tick(self, symbol: str, price: Decimal) -> None:
        """Feed a price to the paper exchange (if any) and to the position tracker."""
        if self.paper is not None:
            self.client.pairs.resolve(symbol)  # an unknown symbol is the bot's error, not the exchange's
            self.paper.set_price(symbol, price)
        self.positions.on_price_update(symbol, price)

    def status(self) -> CoreStatus:
        return CoreStatus(open_orders=len(self.orders.get_open_orders()),
                          open_positions=len(self.positions.get_open_positions()),
                          circuit_open=self.circuit.is_open, poller_running=self._poller.running,
                          stream=self.stream.state if self.stream is not None else "off")

    def _circuit_changed(self, opened: bool, reason: str) -> None:
        with self.guard.unit() as unit:
            if opened:
                unit.alert(alerts.CIRCUIT_OPEN, alerts.CRITICAL, f"new entries paused: {reason}")
            else:
                unit.alert(alerts.CIRCUIT_CLOSED, alerts.INFO, f"new entries allowed again: {reason}")
        self.telemetry.circuit_changed(opened)

    def __enter__(self) -> ExecutionCore:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None:
            self.telemetry.failed()   # stopping on an error: the heartbeat's URL/fail goes out on close
        self.close()
