"""Prometheus metrics of one core (prometheus_client), in its own registry.

What costs what: nothing here runs on the tick path. Gauges of state (orders and
positions by state, outcome-unknown orders, rate-counter headroom) are computed when
Prometheus scrapes, by a custom collector that reads the core's memory under its
lock. The rest is fed from what the core already publishes: the bus (`execution`
events, `risk_alerts`), the end of each poll cycle, and a `requests` response hook on
the client's session (one HTTP answer, one count). A tick that crosses no level
publishes nothing, so `on_price_update` pays nothing.

`triplegain_unprotected_position_seconds_total{symbol}` is the time integral of held
volume (base asset) not covered by a resting stop-loss at the exchange (while a position
is closing, its working exit order counts as cover): each position's uncovered volume is
re-read when an event names it, so the integral is exact at event boundaries; a scrape
advances it to the scrape's time, and once a minute a poll cycle re-reads every position
as a backstop. Time is the core's clock.

`triplegain_fill_to_stop_seconds` observes, once per entry, the time from the first
fill of the entry being seen to its stop-loss being acknowledged by the exchange.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer

from triplegain_fsm.bus import EXECUTION, RISK_ALERTS, Message
from triplegain_fsm.enums import OrderRole, OrderStatus, PositionStatus

if TYPE_CHECKING:
    from triplegain_fsm.core import ExecutionCore
    from triplegain_fsm.models import Position

log = logging.getLogger(__name__)

FILL_TO_STOP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
ORDER_STATES = tuple(s.value for s in OrderStatus)
POSITION_STATES = tuple(s.value for s in PositionStatus)
_FINAL_ORDERS = frozenset(s.value for s in OrderStatus if s.is_final)
_CLOSED = PositionStatus.CLOSED.value
_CLOSING = PositionStatus.CLOSING.value
_EXITS = frozenset({OrderRole.CLOSE, OrderRole.FLATTEN})
RESYNC_SECONDS = 60.0   # a full re-read of every position's cover at most this often (core clock)
_RESTING = frozenset({OrderStatus.OPEN.value, OrderStatus.PARTIALLY_FILLED.value})
_UNACKED = frozenset({OrderStatus.PENDING.value, OrderStatus.SUBMITTED_UNKNOWN.value})
_CATEGORY = re.compile(r"^[EW][A-Za-z]{1,20}$")


def call_outcome(response: Any) -> str:
    """ok, a Kraken error category (EOrder, EAPI, EService...), http_429 / http_4xx / http_5xx, or malformed.

    Reads the body once more (plain json, tens of microseconds beside the HTTP round trip)."""
    status = response.status_code
    if status != 200:
        return "http_5xx" if status >= 500 else "http_429" if status == 429 else "http_4xx"
    try:
        errors = json.loads(response.content).get("error")
    except (ValueError, AttributeError):
        return "malformed"
    if not isinstance(errors, list):
        return "malformed"
    if not errors:
        return "ok"
    category = str(errors[0]).split(":", 1)[0]
    return category if _CATEGORY.match(category) else "error"


class Metrics:
    """`registry` holds every metric of this core; `serve()` exposes it on 127.0.0.1."""

    def __init__(self, core: ExecutionCore, port: int | None = None) -> None:
        self.registry = CollectorRegistry()
        self.configured_port = port
        self._core = core
        self._clock: Callable[[], float] = core.clock
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        registry = self.registry
        self.exchange_calls = Counter(
            "triplegain_exchange_calls", "HTTP calls to the exchange by Kraken method and outcome (ok, a Kraken "
            "error category, http_4xx/http_429/http_5xx, malformed; no answer at all: timeout, "
            "connection_failed, transport_error)",
            ("method", "outcome"), registry=registry)
        self.alerts = Counter("triplegain_alerts", "Risk alerts raised (after the repeat policy)",
                              ("alert_type", "severity"), registry=registry)
        self.fill_to_stop = Histogram(
            "triplegain_fill_to_stop_seconds", "First fill of an entry seen -> its stop-loss acknowledged by "
            "the exchange (core clock)", buckets=FILL_TO_STOP_BUCKETS, registry=registry)
        self.last_poll = Gauge("triplegain_last_poll_timestamp_seconds",
                               "Unix time (core clock) at the end of the last poll cycle without errors",
                               registry=registry)
        self.poll_cycles = Counter("triplegain_poll_cycles", "Completed poll cycles, by outcome (ok, errors)",
                                   ("outcome",), registry=registry)
        self.stream = Gauge("triplegain_stream_state", "1 for the WebSocket stream's current state, 0 for the "
                            "states it was in before", ("state",), registry=registry)
        self.notifications_delivered = Counter("triplegain_notifications_delivered",
                                               "Notifications delivered to one target", registry=registry)
        self.notification_failures = Counter("triplegain_notification_failures",
                                             "Failed notification delivery attempts", registry=registry)
        self.notifications_pending = Gauge("triplegain_notifications_pending",
                                           "Outbox rows not yet delivered to every target", registry=registry)
        self.heartbeats = Counter("triplegain_heartbeats", "Heartbeat pings by kind (ping, fail) and outcome",
                                  ("kind", "outcome"), registry=registry)
        self._stream_state: str | None = None
        # scrape-time state
        counts = core.store.count_by_state("orders")
        self._final_orders = {state: counts.get(state, 0) for state in _FINAL_ORDERS}
        self._closed_positions = core.store.count_by_state("positions").get(_CLOSED, 0)
        self._fill_seen: dict[str, float] = {}      # position id -> when its entry's first fill was seen
        self._stop_seen: set[str] = set()           # positions whose fill-to-stop was observed
        self._uncovered: dict[str, tuple[str, float]] = {}   # position id -> (symbol, uncovered volume)
        self._totals: dict[str, float] = {}         # symbol -> uncovered volume now
        self._since: dict[str, float] = {}          # symbol -> clock of the last integration step
        self._integral: dict[str, float] = {}       # symbol -> volume-seconds
        self._last_resync: float | None = None
        registry.register(_StateCollector(self))
        core.bus.subscribe(EXECUTION, self._on_execution)
        core.bus.subscribe(RISK_ALERTS, self._on_alert)
        core.client.session.hooks["response"].append(self._on_response)
        core.client.on_unanswered.append(self._on_unanswered)

    # -- the HTTP endpoint --------------------------------------------------------------------------
    @property
    def port(self) -> int | None:
        """The port /metrics is served on (the OS's choice for a configured 0); None when not serving."""
        return None if self._server is None else int(self._server.server_port)

    def serve(self) -> None:
        """Start the /metrics server on 127.0.0.1 (idempotent; nothing when no port is configured)."""
        if self.configured_port is None or self._server is not None:
            return
        # prometheus_client's start_http_server, with a short poll so that shutdown() returns at once
        # (its serve_forever polls every 0.5 s, which every stop() would wait out)
        server = make_server("127.0.0.1", self.configured_port, make_wsgi_app(self.registry), ThreadingWSGIServer,
                             handler_class=_QuietHandler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="triplegain-metrics", daemon=True)
        self._thread.start()
        log.info("metrics on http://127.0.0.1:%d/metrics", self.port)

    def shutdown(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5.0)

    # -- fed by the core -----------------------------------------------------------------------------
    def stream_state(self, state: str) -> None:
        """The stream integration reports its state (connecting, live, down, ...): it becomes the 1."""
        with self._lock:
            previous, self._stream_state = self._stream_state, state
        if previous is not None and previous != state:
            self.stream.labels(previous).set(0)
        self.stream.labels(state).set(1)

    def poll_done(self, healthy: bool) -> None:
        self.poll_cycles.labels("ok" if healthy else "errors").inc()
        now = self._clock()
        if healthy:
            self.last_poll.set(now)
        if self._last_resync is None or now - self._last_resync >= RESYNC_SECONDS:
            self.resync()

    def _on_alert(self, message: Message) -> None:
        payload = message.payload
        self.alerts.labels(str(payload.get("alert_type")), str(payload.get("severity"))).inc()

    def _on_response(self, response: Any, *args: Any, **kwargs: Any) -> None:
        """requests' response hook: runs in the calling thread for every HTTP answer; never raises."""
        try:
            method = response.request.path_url.split("?", 1)[0].rsplit("/", 1)[-1] or "?"
            self.exchange_calls.labels(method, call_outcome(response)).inc()
        except Exception:  # a metrics bug must never fail an exchange call
            log.debug("could not count an exchange call", exc_info=True)

    def _on_unanswered(self, method: str, outcome: str) -> None:
        self.exchange_calls.labels(method, outcome).inc()

    def _on_execution(self, message: Message) -> None:
        payload = message.payload
        event = payload.get("event")
        position_id: str = payload.get("position_id") or ""
        now = self._clock()
        if event == "order_fill":
            if payload.get("role") == "entry" and position_id:
                with self._lock:
                    if position_id not in self._stop_seen:
                        self._fill_seen.setdefault(position_id, now)
        elif event == "order_transition":
            self._order_moved(payload, position_id, now)
        elif event == "position_transition" and payload.get("to_state") == _CLOSED \
                and payload.get("from_state") != _CLOSED:
            with self._lock:
                self._closed_positions += 1
                self._fill_seen.pop(position_id, None)
                self._stop_seen.discard(position_id)
        if position_id:
            self._refresh(position_id, now)

    def _order_moved(self, payload: dict[str, Any], position_id: str, now: float) -> None:
        to_state, from_state = payload.get("to_state"), payload.get("from_state")
        waited = None
        with self._lock:
            if to_state in _FINAL_ORDERS and from_state not in _FINAL_ORDERS:
                self._final_orders[to_state] += 1
            if payload.get("role") == "stop_loss" and to_state == OrderStatus.OPEN.value \
                    and from_state in _UNACKED and position_id:
                seen = self._fill_seen.pop(position_id, None)
                if seen is not None:
                    self._stop_seen.add(position_id)
                    waited = max(0.0, now - seen)
        if waited is not None:
            self.fill_to_stop.observe(waited)

    # -- unprotected volume ----------------------------------------------------------------------------
    def _uncovered_volume(self, position: Position | None) -> float:
        """Held volume not covered by a resting stop-loss, or, while closing, by the working exit
        order that is taking it out (call under the core's lock)."""
        if position is None or position.state == _CLOSED or position.size <= 0:
            return 0.0
        orders = self._core.orders
        covered = Decimal(0)
        if position.stop_loss_order_id:
            stop = orders.get_order(position.stop_loss_order_id)
            if stop is not None and stop.state in _RESTING:
                covered = stop.remaining_size
        if position.state == _CLOSING:
            covered += sum((o.remaining_size for o in orders.working_for_position(position.id)
                            if o.role in _EXITS), Decimal(0))
        return float(max(Decimal(0), position.size - covered))  # float-ok: a metric, never money

    def _refresh(self, position_id: str, now: float) -> None:
        core = self._core
        with core.guard.lock:   # held while recording too: two threads' reads land in the order they were made
            position = core.positions.get_position(position_id)
            if position is None:
                return
            volume = self._uncovered_volume(position)
            with self._lock:
                self._advance(position.symbol, now)
                _, old = self._uncovered.pop(position_id, (position.symbol, 0.0))
                if volume > 0:
                    self._uncovered[position_id] = (position.symbol, volume)
                self._totals[position.symbol] = max(0.0, self._totals.get(position.symbol, 0.0) + volume - old)

    def _advance(self, symbol: str, now: float) -> None:
        """Integrate `symbol`'s uncovered volume up to `now` (call under self._lock)."""
        since = self._since.get(symbol)
        self._integral.setdefault(symbol, 0.0)
        if since is not None and now > since:
            self._integral[symbol] += self._totals.get(symbol, 0.0) * (now - since)
        if since is None or now > since:
            self._since[symbol] = now

    def resync(self) -> None:
        """Re-read every open position's uncovered volume: a backstop for a change no event named (and
        the positions a restart restored). O(positions) under the core's lock: at most every RESYNC_SECONDS."""
        core = self._core
        now = self._clock()
        self._last_resync = now
        with core.guard.lock:
            fresh = {p.id: (p.symbol, self._uncovered_volume(p)) for p in core.positions.get_open_positions()}
            with self._lock:
                for symbol in {*self._totals, *(symbol for symbol, _ in fresh.values())}:
                    self._advance(symbol, now)
                self._uncovered = {pid: entry for pid, entry in fresh.items() if entry[1] > 0}
                self._totals = dict.fromkeys(self._totals, 0.0)
                for symbol, volume in self._uncovered.values():
                    self._totals[symbol] = self._totals.get(symbol, 0.0) + volume

    # -- scrape ------------------------------------------------------------------------------------------
    def state_families(self) -> Iterator[Metric]:
        core = self._core
        if self._last_resync is None:
            self.resync()
        now = self._clock()
        with core.guard.lock:
            working = [o.state for o in core.orders.working_orders()]
            open_positions = [p.state for p in core.positions.get_open_positions()]
        with self._lock:
            for symbol in list(self._integral):
                self._advance(symbol, now)   # up to this scrape, at the cover the last event left
            orders = dict.fromkeys(ORDER_STATES, 0) | self._final_orders
            positions = dict.fromkeys(POSITION_STATES, 0)
            positions[_CLOSED] = self._closed_positions
            integral = dict(self._integral)
        for state in working:
            orders[state] += 1
        for state in open_positions:
            positions[state] += 1
        yield _gauge("triplegain_orders", "Orders by state (final states: all in the store)", "state", orders)
        yield _gauge("triplegain_positions", "Positions by state (CLOSED: all in the store)", "state", positions)
        unknown = GaugeMetricFamily("triplegain_outcome_unknown_orders",
                                    "Orders sent with no definite answer yet (SUBMITTED_UNKNOWN)")
        unknown.add_metric([], orders[OrderStatus.SUBMITTED_UNKNOWN.value])
        yield unknown
        unprotected = CounterMetricFamily(
            "triplegain_unprotected_position_seconds", "Time integral of held volume (base asset) not covered "
            "by a resting stop-loss, volume x seconds on the core clock", labels=["symbol"])
        for symbol, value in sorted(integral.items()):
            unprotected.add_metric([symbol], value)
        yield unprotected
        budget = core.client.pacer.budget()
        # float-ok: rate-counter points for a gauge, not money
        headroom = {"rest": float(budget["rest"]), "public": float(budget["public"])}  # type: ignore[arg-type]  # float-ok
        trading: dict[str, float] = budget["trading"]  # type: ignore[assignment]
        headroom.update({f"trading:{pair}": value for pair, value in trading.items()})
        yield _gauge("triplegain_rate_counter_headroom", "Cost that can be spent now without waiting, per "
                     "rate counter (rest, public, trading:<pair>)", "counter", headroom)


def _gauge(name: str, documentation: str, label: str, values: dict[str, Any]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:   # noqa: A002  (the base class's name)
        """A scrape every few seconds is not worth a log line."""


class _StateCollector:
    """Registered in the core's registry: computes the state gauges when Prometheus scrapes."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._metrics.state_families()
        except Exception:  # a scrape must never take the core down; the family is missing, and logged
            log.exception("metrics: reading the core's state failed")
