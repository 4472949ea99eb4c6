"""One WebSocket v2 connection of the execution stream: subscribe, read, check, route.

`Session.run()` runs on the stream's thread, the only reader of the socket. It
subscribes to `executions` (snapshot of orders and trades), then reads until the
connection cannot be trusted any more and raises `StreamDown` with the reason:
silence past `stale_seconds` (heartbeats count as life), no ack + snapshot within
`open_timeout`, a subscribe refused (one fresh token is tried on the same socket),
or a token refused on a trading request. A jump in `sequence` is repaired here, on
the same socket: state `down` ("gap ..."), unsubscribe, subscribe, new snapshot.
Repeated or older sequence numbers are ignored. Answers to trading requests are
handed to `PendingRequests` by req_id. What the owner (`ExecutionStream`) must
provide is the `Owner` protocol below; this module never imports it.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, Protocol

from websockets.sync.client import ClientConnection

from triplegain_fsm.kraken.errors import InvalidWsToken, PermissionDenied, class_for
from triplegain_fsm.kraken.secret import Secret
from triplegain_fsm.kraken.stream_cache import SNAPSHOT, UPDATE
from triplegain_fsm.kraken.stream_wire import PendingRequests, dumps, loads

log = logging.getLogger("triplegain_fsm.kraken.stream")
NO_PERMISSION = "the API key lacks the 'WebSocket interface' permission"
PING_SECONDS = 30.0      # Kraken drops a socket idle for about a minute: an app-level ping when we sent nothing


class StreamState(str, Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DOWN = "down"
    OFF = "off"


class StreamDown(Exception):
    """This connection or subscription cannot be trusted any more; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Token(Secret):
    """A WebSocket token that no repr, log line or traceback prints."""

    __slots__ = ()
    LABEL = "<token redacted>"


class Owner(Protocol):
    """What a session needs from its stream (all called on the stream's thread)."""

    def fresh_token(self) -> Token: ...

    def set_state(self, state: StreamState, reason: str) -> None: ...

    def deliver(self, kind: str, message: Mapping[str, Any], sequence: int | None) -> None: ...

    def subscribed(self) -> None: ...


class Session:
    """The subscription on one socket. `ws`, `token` and `send` may be used from any thread."""

    def __init__(self, owner: Owner, pending: PendingRequests, ws: ClientConnection, token: Token, *,
                 clock: Callable[[], float], stale_seconds: float, open_timeout: float) -> None:
        self.owner, self.pending, self.ws, self.token = owner, pending, ws, token
        self._clock, self._stale, self._open_timeout = clock, stale_seconds, open_timeout
        self._send_lock = threading.Lock()
        self.last_seen = self.last_sent = clock()
        self.deadline = self.last_seen + open_timeout     # ack + snapshot by then, or this attempt failed
        self.sub_req: int | None = None
        self.unsub_req: int | None = None
        self.acked = self.snapshot = False
        self.sequence: int | None = None
        self.token_refusals = 0

    @property
    def live(self) -> bool:
        return self.acked and self.snapshot

    def send(self, text: str) -> None:
        with self._send_lock:
            self.ws.send(text)
            self.last_sent = self._clock()

    def run(self) -> None:
        """Subscribe, then read and dispatch until `StreamDown` (or ConnectionClosed) ends it."""
        self._subscribe()
        while True:
            self._dispatch(self._next_message())

    # --- reading ----------------------------------------------------------------------

    def _next_message(self) -> dict[str, Any]:
        """The next JSON object, watching for silence and for a subscription that never completes;
        a ping goes out when nothing was sent for PING_SECONDS. An overdue check first looks for a
        message already waiting, so a slow callback is never mistaken for a silent exchange."""
        while True:
            now = self._clock()
            if now - self.last_sent >= PING_SECONDS:
                self.send(dumps({"method": "ping", "req_id": self.pending.next_id()}))
            overdue = self._overdue(now)
            wait = min(self.last_seen + self._stale, self.last_sent + PING_SECONDS) - now
            if not self.live:
                wait = min(wait, self.deadline - now)
            try:
                raw = self.ws.recv(timeout=0 if overdue else max(wait, 0))
            except TimeoutError:
                if overdue:
                    raise StreamDown(overdue) from None
                continue
            self.last_seen = self._clock()
            try:
                message = loads(raw)
            except ValueError:
                log.warning("unreadable WebSocket message (%d bytes) ignored", len(raw))
                continue
            if isinstance(message, dict):
                return message
            log.warning("WebSocket message is a JSON %s, not an object: ignored", type(message).__name__)

    def _overdue(self, now: float) -> str | None:
        silent = now - self.last_seen
        if silent >= self._stale:
            return f"silent for {silent:.1f} s"
        if not self.live and now >= self.deadline:
            return f"not subscribed within {self._open_timeout:g} s (ack {self.acked}, snapshot {self.snapshot})"
        return None

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        if channel == "executions":
            self._on_executions(message)
        elif channel == "status":
            self._on_status(message)
        elif channel == "heartbeat":
            return
        elif "method" in message or "req_id" in message:
            self._on_answer(message)
        else:
            log.debug("WebSocket message on channel %r ignored", channel)

    @staticmethod
    def _on_status(message: Mapping[str, Any]) -> None:
        data = message.get("data")
        status = data[0] if isinstance(data, list) and data and isinstance(data[0], Mapping) else {}
        if status.get("system") != "online":
            log.warning("Kraken WebSocket status: system %r (trading may be refused)", status.get("system"))

    # --- answers ----------------------------------------------------------------------

    def _on_answer(self, message: dict[str, Any]) -> None:
        req_id, method, error = message.get("req_id"), message.get("method"), message.get("error")
        if req_id is not None and req_id == self.sub_req:
            self._on_subscribed(message)
        elif req_id is not None and req_id == self.unsub_req:
            self._on_unsubscribed(message)
        elif method == "pong":
            return
        elif not self.pending.deliver(req_id, message):
            log.warning("answer nobody waits for (method %r, req_id %r, success %r, error %r): a timed-out "
                        "request may have been acted on", method, req_id, message.get("success"), error)
        elif isinstance(error, str) and class_for(error) is InvalidWsToken:
            raise StreamDown(f"token refused on {method}: {error}")   # the caller got it; reconnect with a new one

    def _on_subscribed(self, message: Mapping[str, Any]) -> None:
        self.sub_req = None
        if message.get("success") is True:
            self.acked = True
            self._maybe_live()
            return
        error = str(message.get("error") or "no error string")
        cls = class_for(error)
        if cls is InvalidWsToken and self.token_refusals == 0:
            self.token_refusals += 1
            log.warning("subscribe: %s; retrying with a fresh token", error)
            self.token = self.owner.fresh_token()
            self._subscribe()
            return
        if cls is PermissionDenied:
            raise StreamDown(f"{NO_PERMISSION} (subscribe: {error})")
        raise StreamDown(f"subscribe refused: {error}")

    def _on_unsubscribed(self, message: Mapping[str, Any]) -> None:
        self.unsub_req = None
        if message.get("success") is not True:
            raise StreamDown(f"unsubscribe refused: {message.get('error')}")
        self._subscribe()

    def _subscribe(self) -> None:
        self.acked = self.snapshot = False
        self.sequence = None
        self.sub_req = self.pending.next_id()
        self.send(dumps({"method": "subscribe", "req_id": self.sub_req, "params": {
            "channel": "executions", "token": self.token.reveal(), "snap_orders": True, "snap_trades": True}}))

    def _resubscribe(self, reason: str) -> None:
        """Lost messages: a new snapshot on the same socket (unsubscribe, then subscribe)."""
        self.owner.set_state(StreamState.DOWN, reason)
        self.owner.set_state(StreamState.CONNECTING, f"resubscribing after {reason}")
        self.acked = self.snapshot = False
        self.deadline = self._clock() + self._open_timeout
        self.unsub_req = self.pending.next_id()
        self.send(dumps({"method": "unsubscribe", "req_id": self.unsub_req, "params": {
            "channel": "executions", "token": self.token.reveal()}}))

    def _maybe_live(self) -> None:
        if self.live:
            self.owner.subscribed()

    # --- executions -------------------------------------------------------------------

    def _on_executions(self, message: Mapping[str, Any]) -> None:
        kind, sequence = message.get("type"), message.get("sequence")
        sequence = sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else None
        if self.unsub_req is not None:
            return                                   # the old subscription, on its way out
        if kind == SNAPSHOT:
            self.snapshot, self.sequence = True, sequence
            self.owner.deliver(SNAPSHOT, message, sequence)
            self._maybe_live()
            return
        if kind != UPDATE:
            log.warning("executions message of unknown type %r: ignored", kind)
            return
        if not self.snapshot:
            log.debug("executions update before its snapshot: ignored (the snapshot covers it)")
            return
        if sequence is None:
            log.warning("executions update without a sequence: delivered unchecked")
        elif self.sequence is not None and sequence <= self.sequence:
            log.info("executions update %d again (at %d): ignored", sequence, self.sequence)
            return
        elif self.sequence is not None and sequence != self.sequence + 1:
            self._resubscribe(f"gap in executions: expected sequence {self.sequence + 1}, got {sequence}")
            return
        self.sequence = sequence if sequence is not None else self.sequence   # a snapshot without one: from here
        self.owner.deliver(UPDATE, message, sequence)
