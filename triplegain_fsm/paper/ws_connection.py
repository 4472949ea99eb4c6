"""One v2 client connection: a reader that answers requests, a writer that owns the socket's output.

Threads: the websockets handler thread is the only reader; everything sent goes
through one outbox drained by one writer thread, which also stamps `sequence` on
execution messages, sends a heartbeat when nothing else went out for an interval,
and applies the stream faults. Execution reports caused by a request are held
until its answer is queued, so by default the answer comes first; the `reorder`
fault releases them first instead. The engine's observer only queues frames, so a
slow client never holds up the engine.
"""
from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
from decimal import Decimal
from typing import Any

import attrs
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection

from triplegain_fsm.paper.calllog import CallLog
from triplegain_fsm.paper.endpoints import Context
from triplegain_fsm.paper.engine import Engine
from triplegain_fsm.paper.errors import INVALID_ARGUMENTS, UNAVAILABLE, UNKNOWN_METHOD, KrakenRejection, invalid
from triplegain_fsm.paper.observe import OrderChange
from triplegain_fsm.paper.ws_faults import DROP_AFTER, DROP_BEFORE, NOT_ACTED, REORDER, UNANSWERED, WsFault, WsFaults
from triplegain_fsm.paper.ws_json import dumps, loads
from triplegain_fsm.paper.ws_methods import TRADING
from triplegain_fsm.paper.ws_reports import reports, snapshot_reports, ws_time
from triplegain_fsm.paper.ws_tokens import TokenBook

log = logging.getLogger(__name__)
INVALID_TOKEN = "EAPI:Invalid token"
ALREADY_SUBSCRIBED = "Already subscribed"
DEFAULT_MAX_RATE_COUNT = 180
_STOP = object()
Frame = dict[str, Any]


@attrs.frozen
class WsSettings:
    """What every connection of one server shares."""

    engine: Engine
    context: Context
    tokens: TokenBook
    faults: WsFaults
    heartbeat_interval: float = 1.0
    completing_trade_status: str = "partially_filled"    # Kraken's quirk; "filled" to switch it off
    calls: CallLog = attrs.field(factory=CallLog)         # every trading request, as `paper.calls` for REST


@attrs.define(eq=False)
class Subscription:
    token: str
    sequence: int = 0        # written by the writer thread only
    sent: int = 0            # the last sequence number actually sent (a dropped update uses one up unsent)
    ended: bool = False


class Connection:
    def __init__(self, ws: ServerConnection, settings: WsSettings, connection_id: int) -> None:
        self.ws = ws
        self.settings = settings
        self.connection_id = connection_id
        self._outbox: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()          # holding, held, subscription
        self._holding = False
        self._held: list[Any] = []
        self._subscription: Subscription | None = None
        self._writer = threading.Thread(target=self._write_loop, name=f"paper-ws-writer-{connection_id}", daemon=True)

    # -- lifecycle --------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until the client goes away (called on the handler thread)."""
        self._writer.start()
        self._put(("status", None, {"channel": "status", "type": "update", "data": [{
            "api_version": "v2", "connection_id": self.connection_id,
            "system": self.settings.engine.system_status, "version": "2.0.10"}]}))
        try:
            for raw in self.ws:
                self._handle(raw)
        except ConnectionClosed as closed:
            log.debug("connection %s closed by the peer: %s", self.connection_id, closed)
        finally:
            self._end_subscription()
            self._outbox.put(_STOP)
            self._writer.join()

    def drop(self) -> None:
        """Cut the TCP connection without a close frame."""
        with contextlib.suppress(OSError):
            self.ws.socket.shutdown(socket.SHUT_RDWR)

    # -- output -----------------------------------------------------------------------------------

    def _put(self, *items: Any) -> None:
        with self._lock:
            for item in items:
                (self._held.append if self._holding else self._outbox.put)(item)

    def _hold(self) -> None:
        with self._lock:
            self._holding = True

    def _release(self, answers: list[Frame], *, reports_first: bool = False) -> None:
        """Queue the answers and the held reports (answers first unless `reports_first`)."""
        replies = [("reply", None, a) for a in answers]
        with self._lock:
            held, self._held, self._holding = self._held, [], False
            for item in (held + replies) if reports_first else (replies + held):
                self._outbox.put(item)

    def _discard_held(self) -> None:
        with self._lock:
            self._held, self._holding = [], False

    def _write_loop(self) -> None:
        while True:
            try:
                item = self._outbox.get(timeout=self.settings.heartbeat_interval)
            except queue.Empty:
                if self._subscribed():
                    self._emit({"channel": "heartbeat"})
                continue
            try:
                if not self._write(item):
                    return
            finally:
                self._outbox.task_done()   # `quiet()` counts what is still on its way

    def _write(self, item: Any) -> bool:
        """One queued item out; False when the connection is over."""
        if item is _STOP:
            return False
        kind, subscription, frame = item
        if subscription is not None:
            if subscription.ended:
                return True
            frame = self._sequenced(kind, subscription, frame)
            if frame is None:
                return True
        return self._emit(frame)

    def quiet(self) -> int | None:
        """The last sequence number written, once nothing is queued, held or being written; else None.
        A paper session waits for the client to have applied up to it before its next tick. An update
        lost on purpose is not waited for: like Kraken's client, ours learns of it from the next one."""
        with self._lock:
            if self._holding or self._held or self._outbox.unfinished_tasks:
                return None
            subscription = self._subscription
        return subscription.sent if subscription is not None else 0

    def _sequenced(self, kind: str, subscription: Subscription, frame: Frame) -> Frame | None:
        if kind == "snapshot":
            subscription.sequence = 1
        else:
            skip, drop = self.settings.faults.take_update_fault()
            subscription.sequence += 2 if skip else 1
            if drop:
                return None
        subscription.sent = subscription.sequence
        return {**frame, "sequence": subscription.sequence}

    def _emit(self, frame: Frame) -> bool:
        """Send, unless silenced (then the frame is swallowed and noted); False once the socket is gone."""
        if self.settings.faults.silent:
            self.settings.faults.silenced(str(frame.get("channel") or frame.get("method")))
            return True
        return self._send(frame)

    def _send(self, frame: Frame) -> bool:
        try:
            self.ws.send(dumps(frame))
            return True
        except (ConnectionClosed, OSError):
            return False

    # -- the executions subscription --------------------------------------------------------------

    def _subscribed(self) -> bool:
        with self._lock:
            subscription = self._subscription
        if subscription is None or subscription.ended:
            return False
        if not self.settings.tokens.is_valid(subscription.token):
            self._end_subscription()
            return False
        return True

    def _on_changes(self, changes: list[OrderChange]) -> None:
        """The engine's observer (runs under the engine's lock: only builds and queues)."""
        subscription = self._subscription
        if subscription is None or subscription.ended:
            return
        if not self.settings.tokens.is_valid(subscription.token):
            self._end_subscription()
            return
        status = self.settings.completing_trade_status
        data = [r for change in changes for r in reports(change, completing_status=status)]
        self._put(("update", subscription, {"channel": "executions", "type": "update", "data": data}))

    def _end_subscription(self) -> None:
        with self._lock:
            subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.ended = True
            self.settings.engine.remove_observer(self._on_changes)

    def _subscribe(self, params: Frame) -> Frame:
        if params.get("channel") != "executions":
            raise invalid("channel")
        token = params.get("token")
        if not isinstance(token, str) or not self.settings.tokens.use(token):
            raise KrakenRejection(INVALID_TOKEN)
        if self._subscription is not None:
            raise KrakenRejection(ALREADY_SUBSCRIBED)
        snap_orders = params.get("snap_orders", params.get("snapshot", True)) is not False
        snap_trades = params.get("snap_trades", False) is True
        subscription = Subscription(token)
        with self._lock:
            self._subscription = subscription
        snapshot = self.settings.engine.add_observer(self._on_changes)   # reports from here on are held
        if snap_orders or snap_trades:
            data = snapshot_reports(snapshot, orders=snap_orders, trades=snap_trades)
            with self._lock:
                self._held.insert(0, ("snapshot", subscription, {"channel": "executions", "type": "snapshot",
                                                                 "data": data}))
        limiter = self.settings.context.limiter
        max_rate = limiter.tier.trade_max if limiter is not None else DEFAULT_MAX_RATE_COUNT
        return {"channel": "executions", "maxratecount": Decimal(str(max_rate)).normalize(),
                "snapshot": snap_orders or snap_trades}

    # -- requests ---------------------------------------------------------------------------------

    def _handle(self, raw: str | bytes) -> None:
        time_in = self.settings.engine.now()
        try:
            message = loads(raw)
        except ValueError:
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            self._release([{"error": INVALID_ARGUMENTS, "success": False, **self._times(time_in)}])
            return
        method, req_id = message["method"], message.get("req_id")
        params = message.get("params") if message.get("params") is not None else {}
        head = {"method": method, **({"req_id": req_id} if req_id is not None else {})}
        if method == "ping":
            self._release([{**head, "method": "pong", **self._times(time_in)}])
            return
        if not isinstance(params, dict):
            self._release([{**head, "error": INVALID_ARGUMENTS, "success": False, **self._times(time_in)}])
            return
        self._hold()
        fault = self.settings.faults.take(method, params) if method in TRADING else None
        if fault is not None and fault.kind in NOT_ACTED:
            self._refuse(fault, method, params, head, time_in)
            return
        outcomes = self._outcomes(method, params, fault)
        self._reply(fault, [self._answer(head, result, error, time_in) for result, error in outcomes])

    def _refuse(self, fault: WsFault, method: str, params: Frame, head: Frame, time_in: float) -> None:
        """A fault that keeps the exchange from acting: the connection cut, or an error answer."""
        self._log(method, params, fault, acted=False, errors=[fault.error] if fault.error else [])
        if fault.kind == DROP_BEFORE:
            self._discard_held()
            self.drop()
        else:
            self._release([self._answer(head, None, fault.error, time_in)])

    def _reply(self, fault: WsFault | None, answers: list[Frame]) -> None:
        """Send the answers and held reports of an acted request, as its fault (if any) shapes them."""
        kind = fault.kind if fault is not None else None
        if kind == DROP_AFTER:
            self._discard_held()
            self.drop()
            return
        if kind == UNANSWERED:
            self._release([])
            return
        if fault is not None and fault.action is not None:
            self._meanwhile(fault.action)
        self._release(answers, reports_first=kind == REORDER or (fault is not None and fault.reports_first))

    @staticmethod
    def _meanwhile(action: Any) -> None:
        try:
            action()
        except Exception:   # the test's action failing must not kill the connection
            log.exception("ws during_next action failed")

    def _log(self, method: str, params: Frame, fault: WsFault | None, *, acted: bool, errors: list[str]) -> None:
        self.settings.calls.record(time=self.settings.engine.now(), http_method="WS", path="/v2", method=method,
                                   params={k: _wire(v) for k, v in params.items() if k != "token"}, private=True,
                                   acted=acted, fault=fault.kind if fault is not None else None, error=errors)

    def _outcomes(self, method: str, params: Frame, fault: WsFault | None) -> list[tuple[Any, str | None]]:
        try:
            if method == "subscribe":
                return [(self._subscribe(params), None)]
            if method == "unsubscribe":
                if params.get("channel") != "executions" or self._subscription is None:
                    raise invalid("channel")
                self._end_subscription()
                return [({"channel": "executions"}, None)]
            if method not in TRADING:
                raise KrakenRejection(UNKNOWN_METHOD)
        except KrakenRejection as rejection:
            return [(None, rejection.error)]
        return self._trade(method, params, fault)

    def _trade(self, method: str, params: Frame, fault: WsFault | None) -> list[tuple[Any, str | None]]:
        """Run one trading method (token and system status first) and log the call."""
        acted = False
        try:
            if not self.settings.tokens.use(params.get("token")):
                raise KrakenRejection(INVALID_TOKEN)
            if self.settings.engine.system_status == "maintenance":
                raise KrakenRejection(UNAVAILABLE)
            acted = True
            result = TRADING[method](self.settings.context, params)
            outcomes = result if isinstance(result, list) else [(result, None)]
        except KrakenRejection as rejection:
            outcomes = [(None, rejection.error)]
        self._log(method, params, fault, acted=acted, errors=[e for _, e in outcomes if e])
        return outcomes

    def _answer(self, head: Frame, result: Any, error: str | None, time_in: float) -> Frame:
        if error is not None:
            return {**head, "error": error, "success": False, **self._times(time_in)}
        return {**head, "result": result, "success": True, **self._times(time_in)}

    def _times(self, time_in: float) -> Frame:
        return {"time_in": ws_time(time_in), "time_out": ws_time(self.settings.engine.now())}


def _wire(value: Any) -> str:
    """A v2 JSON value as a call-log string (lists comma-joined, like REST's txid lists)."""
    if isinstance(value, list):
        return ",".join(_wire(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return format(value, "f") if isinstance(value, Decimal) else str(value)
