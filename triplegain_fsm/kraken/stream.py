"""Kraken's authenticated WebSocket v2: the executions stream, and trading requests on the same socket.

Transport only: connect, subscribe, check, reconnect, route answers. What a report
MEANS is the caller's business. Modules: `stream` (this: lifecycle, reconnects,
requests), `stream_session` (one connection: subscribe, read, sequence, watchdog),
`stream_cache` (what is delivered: reports raw + merged by order_id),
`stream_wire` (exact Decimal JSON, answers waiting by req_id).

    stream = ExecutionStream(url, client.get_websockets_token, on_batch, on_state)
    stream.start()                       # returns at once; connects on the stream's thread
    stream.wait_connected(10)            # optional: block until subscribed with a snapshot
    stream.request("add_order", {...}, timeout=5)    # -> result dict, or a typed KrakenError
    stream.request_all("cancel_order", {"order_id": [a, b]}, timeout=5)   # -> one Answer per order
    stream.stop()                        # closes, joins; idempotent

API
- `ExecutionStream(url, token_source, on_batch, on_state, *, stale_seconds=10,
  reconnect_min_seconds=5, reconnect_max_seconds=60, clock=time.monotonic, open_timeout=10)`
- `start()`, `stop()`, `wait_connected(timeout) -> bool`, `state -> StreamState`
  ("connecting" | "connected" | "down" | "off"), `reason -> str`, `cached_orders -> int`.
- `on_batch(StreamBatch)`: `kind` "snapshot" | "update", `sequence`, `reports`: each a
  `MergedReport` with `raw` (this message) and `merged` (the whole order after it).
  `on_state(StreamState, reason)` on every change.
- `request(method, params, timeout) -> dict`: one answer; its result, or its error string
  raised through `errors.classify` (the one table). The token is added here.
- `request_all(method, params, timeout, *, expect=None) -> tuple[Answer, ...]`: several
  answers to one req_id (`cancel_order` naming N orders gets N; counted by default).
- Errors: `StreamNotConnected` (state not connected: NOT sent, use REST),
  `KrakenRequestError` (bad params, or called from a stream callback: NOT sent),
  `RequestTimeout` (no answer in time) and `ConnectionFailed` (connection gone
  first) -- both outcome unknown: settle by cl_ord_id; nothing is ever resent.

Behaviour
- One thread per stream owns the socket and is its only reader; requests are sent
  from the caller's thread under a lock. Callbacks run on the stream's thread, so
  they must not call `request()` (it would wait for an answer only that thread can
  read: refused at once, not sent) -- hand such work to another thread. An
  exception in a callback is logged and the stream goes on. Execution reports may
  arrive before the answer to the request that caused them: both are delivered.
- Connecting: a FRESH token from `token_source()` every time, then subscribe
  `executions` with `snap_orders` and `snap_trades`. A refused token is replaced once
  on the same socket; a key without the "WebSocket interface" permission is named in
  the reason. `connected` only after the ack AND the snapshot (delivered first).
- `sequence`: a repeated or older update is ignored; a jump means lost messages:
  `down` ("gap ..."), then unsubscribe + subscribe on the same socket (new snapshot).
- Watchdog: nothing at all (heartbeats count) for `stale_seconds` -> `down`
  ("silent for N s"), close, reconnect. Likewise drops, close frames, refused
  connects, no subscription within `open_timeout`. A ping goes out after 30 s
  without sending (Kraken drops idle sockets); `status` other than online is logged.
- Reconnects wait a capped, jittered exponential backoff (tenacity's wait
  strategies) between `reconnect_min_seconds` and `reconnect_max_seconds`, reset by
  every healthy subscription (Kraken bans IPs reconnecting > ~150 times / 10 min).
- `stop()` is bounded by `open_timeout` while connecting and by `token_source()`.
- The token never appears in logs, reprs or exceptions: websockets' own frame
  logging is switched off for these connections (it would print the subscribe).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import tenacity
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect

from triplegain_fsm.errors import ValidationError
from triplegain_fsm.kraken.errors import ConnectionFailed, KrakenRequestError, PermissionDenied, StreamNotConnected
from triplegain_fsm.kraken.stream_cache import SNAPSHOT, MergedReport, OrderCache, StreamBatch
from triplegain_fsm.kraken.stream_session import NO_PERMISSION, Session, StreamDown, StreamState, Token
from triplegain_fsm.kraken.stream_wire import Answer, PendingRequests, dumps, expected_answers

__all__ = ["Answer", "Backoff", "ExecutionStream", "MergedReport", "StreamBatch", "StreamState"]
log = logging.getLogger(__name__)
CLOSE_TIMEOUT = 1.0
MAX_MESSAGE_BYTES = 16 * 2**20          # a snapshot of many open orders plus 50 trades


class _NoFrameLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets logs every frame at DEBUG and ours carry the token: never enabled at DEBUG."""

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


_WS_LOG = _NoFrameLog(logging.getLogger("websockets.client"), {})


class Backoff:
    """Capped, jittered exponential delays: min*2^(n-1) + U(0, min/2), at most `maximum`."""

    def __init__(self, minimum: float, maximum: float) -> None:
        self._wait = tenacity.wait_exponential(multiplier=minimum, min=minimum, max=maximum) + \
            tenacity.wait_random(0, minimum / 2)
        self._maximum = maximum
        self._state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        self._state.attempt_number = self.failures
        return min(self._maximum, self._wait(self._state))

    def reset(self) -> None:
        self.failures = 0


class ExecutionStream:
    """See the module docstring. Thread-safe; callbacks run on the stream's own thread."""

    def __init__(self, url: str, token_source: Callable[[], str], on_batch: Callable[[StreamBatch], None],
                 on_state: Callable[[StreamState, str], None], *, stale_seconds: float = 10.0,
                 reconnect_min_seconds: float = 5.0, reconnect_max_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, open_timeout: float = 10.0) -> None:
        if stale_seconds <= 0 or open_timeout <= 0 or not 0 < reconnect_min_seconds <= reconnect_max_seconds:
            raise ValidationError("stale_seconds, open_timeout > 0 and 0 < reconnect_min <= reconnect_max")
        self.url = url
        self._token_source, self._on_batch, self._on_state = token_source, on_batch, on_state
        self._stale, self._open_timeout, self._clock = stale_seconds, open_timeout, clock
        self._backoff = Backoff(reconnect_min_seconds, reconnect_max_seconds)
        self._pending = PendingRequests()
        self._cache = OrderCache()
        self._lock = threading.Lock()             # state, reason, session, thread
        self._state, self._reason = StreamState.OFF, "not started"
        self._session: Session | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connected = threading.Event()

    def __repr__(self) -> str:
        return f"ExecutionStream(url={self.url!r}, state={self._state.value!r})"

    # --- public -----------------------------------------------------------------------

    @property
    def state(self) -> StreamState:
        with self._lock:
            return self._state

    @property
    def reason(self) -> str:
        with self._lock:
            return self._reason

    @property
    def cached_orders(self) -> int:
        return len(self._cache)

    def start(self) -> None:
        """Connect on the stream's own thread; returns at once. A stopped stream may be started again."""
        with self._lock:
            if self._thread is not None:
                return
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="kraken-stream", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Close the connection and join the thread (bounded by open_timeout while connecting); idempotent."""
        self._stopping.set()
        with self._lock:
            thread, session = self._thread, self._session
        if session is not None:
            session.ws.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
            with self._lock:
                self._thread = None

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def request(self, method: str, params: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """Send one trading request and return its `result`; an error answer raises its mapped class."""
        return self.request_all(method, params, timeout, expect=1)[0].unwrap()

    def request_all(self, method: str, params: Mapping[str, Any], timeout: float, *,
                    expect: int | None = None) -> tuple[Answer, ...]:
        """Send one request and collect `expect` answers (default: `expected_answers`)."""
        count = expected_answers(method, params) if expect is None else expect
        if count < 1 or timeout <= 0 or "token" in params:
            raise KrakenRequestError(f"{method}: expect >= 1, timeout > 0, and no token in params (added here)")
        if threading.current_thread() is self._thread:
            raise KrakenRequestError(f"ws {method}: request() from a stream callback would wait for an answer "
                                     "only this thread can read; hand it to another thread. NOT sent")
        with self._lock:
            session = self._session if self._state is StreamState.CONNECTED else None
            state, reason = self._state.value, self._reason
        if session is None:
            raise StreamNotConnected(f"stream {state} ({reason}): request NOT sent", endpoint=f"ws {method}")
        waiter = self._pending.open(method, count)
        try:
            text = dumps({"method": method, "params": {**params, "token": session.token.reveal()},
                          "req_id": waiter.req_id})
        except TypeError as exc:
            self._pending.discard(waiter.req_id)
            raise KrakenRequestError(f"ws {method}: {exc}; request NOT sent") from None
        try:
            session.send(text)
        except (ConnectionClosed, OSError) as exc:
            self._pending.discard(waiter.req_id)
            raise ConnectionFailed(f"connection broke while sending (req_id {waiter.req_id}): "
                                   f"{type(exc).__name__}; outcome unknown, not resent",
                                   endpoint=f"ws {method}") from None
        return self._pending.wait(waiter, timeout)

    # --- the stream's thread ----------------------------------------------------------

    def _run(self) -> None:
        reason = f"connecting to {self.url}"
        try:
            while not self._stopping.is_set():
                self.set_state(StreamState.CONNECTING, reason)
                ended = self._connection()
                self._pending.fail_all(ended)
                if self._stopping.is_set():
                    break
                self.set_state(StreamState.DOWN, ended)
                delay = self._backoff.next_delay()
                reason = f"reconnecting after {delay:.2f} s (attempt {self._backoff.failures}): {ended}"
                self._stopping.wait(delay)
        finally:
            self.set_state(StreamState.OFF, "stopped")

    def _connection(self) -> str:
        """One connection from connect to its end; returns why it ended."""
        try:
            token = self.fresh_token()
            with connect(self.url, open_timeout=self._open_timeout, close_timeout=CLOSE_TIMEOUT,
                         ping_interval=None, max_size=MAX_MESSAGE_BYTES, logger=_WS_LOG) as ws:
                session = Session(self, self._pending, ws, token, clock=self._clock, stale_seconds=self._stale,
                                  open_timeout=self._open_timeout)
                with self._lock:
                    self._session = session
                try:
                    if not self._stopping.is_set():
                        session.run()
                finally:
                    with self._lock:
                        self._session = None
        except StreamDown as down:
            return down.reason
        except ConnectionClosed as closed:
            return f"connection closed: {closed}"
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            return f"connect failed: {type(exc).__name__}: {exc}"
        except Exception as exc:   # a bug must not end the stream silently: log it, reconnect
            log.exception("stream thread: unexpected error")
            return f"internal error: {type(exc).__name__}: {exc}"
        return "stopped"

    # --- what a Session calls back (stream thread) ------------------------------------

    def fresh_token(self) -> Token:
        try:
            value = self._token_source()
        except PermissionDenied as exc:
            raise StreamDown(f"{NO_PERMISSION} (GetWebSocketsToken: {exc})") from None
        except Exception as exc:
            raise StreamDown(f"no WebSocket token: {type(exc).__name__}: {exc}") from None
        if not isinstance(value, str) or not value:
            raise StreamDown("no WebSocket token: token_source returned none")
        return Token(value)

    def deliver(self, kind: str, message: Mapping[str, Any], sequence: int | None) -> None:
        """Merge the message's reports into the cache (a snapshot replaces it) and hand the batch on."""
        if kind == SNAPSHOT:
            self._cache.clear()
        data = message.get("data")
        reports: list[MergedReport] = []
        for report in data if isinstance(data, list) else []:
            if isinstance(report, Mapping):
                reports.append(self._cache.merge(report))
            else:
                log.warning("execution report is a JSON %s, not an object: ignored", type(report).__name__)
        self._call(self._on_batch, StreamBatch(kind, tuple(reports), sequence))

    def subscribed(self) -> None:
        self._backoff.reset()
        self.set_state(StreamState.CONNECTED, f"subscribed to executions, {len(self._cache)} open orders")

    def set_state(self, state: StreamState, reason: str) -> None:
        with self._lock:
            if state is self._state:
                return
            self._state, self._reason = state, reason
            (self._connected.set if state is StreamState.CONNECTED else self._connected.clear)()
        level = logging.WARNING if state is StreamState.DOWN else logging.INFO
        log.log(level, "stream %s: %s", state.value, reason)
        self._call(self._on_state, state, reason)

    @staticmethod
    def _call(callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("stream callback %s raised; the stream goes on", getattr(callback, "__name__", callback))
