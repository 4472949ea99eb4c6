"""The executions stream without a socket: engine changes -> v2 reports -> the core's StreamLink.

The paper engine tells its observers every change (`engine.add_observer`); this turns
each batch into Kraken v2 execution reports with `paper.ws_reports` (the code the
paper WebSocket server sends) and queues it as one message. The simulator decides
when queued messages reach the core: `deliver(n)` hands the first n to the real
transport's `ExecutionStream.deliver` (its own `OrderCache` merges the sparse
reports) and so to `StreamLink._on_batch`, whose follow-up work runs at once
(`run_work`). The transport object is never started: no thread, no socket. Its
state changes go through its own `set_state`/`subscribed`, so the link resyncs over
REST and raises `stream_down`/`stream_restored` exactly as with a real socket.

Faults, as the real transport would see them:
- `gap(n)`: n messages lost; the sequence jump makes the session resubscribe on the
  same socket (down, new snapshot, connected).
- `drop()`: the connection breaks; queued messages are lost; `reconnect()` later
  fetches a fresh token over REST (which may fail) and subscribes again.
- `silence(until)`: nothing arrives; past `stale_seconds` the watchdog drops it.
- `duplicate()`: the last message again, as Kraken's unsequenced messages may be.
- `reorder(pick)`: two queued messages swap places (an order's fill may come before its
  `pending_new`/`new`), or the reports of the one queued message come in reverse, as
  Kraken sometimes sends them; the sequence numbers still count up (given at delivery).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from triplegain_fsm.kraken.stream import StreamState, Token
from triplegain_fsm.kraken.stream_session import StreamDown
from triplegain_fsm.paper.observe import OrderChange
from triplegain_fsm.paper.ws_reports import reports, snapshot_reports
from triplegain_fsm.stream_link import StreamLink

URL = "sim://executions"


def _at_once(work: Callable[[], None]) -> None:
    work()


class SimStream:
    def __init__(self, core: Any, clock: Callable[[], float], *, completing_status: str = "partially_filled") -> None:
        self.core = core
        self.engine = core.paper.engine
        self.clock = clock
        self.completing_status = completing_status
        exchange = core.config.exchange
        self.stale_seconds = exchange.stream_stale_seconds
        self.link = StreamLink(core.orders, core.positions, URL, core.client.get_websockets_token,
                               stale_seconds=exchange.stream_stale_seconds,
                               reconnect_seconds=exchange.stream_reconnect_seconds,
                               on_change=core._stream_changed, run_work=_at_once)
        core.stream = self.link
        self.transport = self.link.stream
        self.pending: list[list[dict[str, Any]]] = []
        self.last: list[dict[str, Any]] | None = None
        self.sequence = 0
        self.observing = False
        self.silent_until = 0.0
        self.last_heard = clock()
        self.delivered = 0
        self.next_attempt = 0.0               # reconnects wait out the transport's backoff
        self.token: Token | None = None       # the connection's token (order entry sends it: `ws_entry`)

    @property
    def connected(self) -> bool:
        return self.transport.state is StreamState.CONNECTED

    # -- the engine's side -------------------------------------------------------------------------
    def _observe(self, changes: list[OrderChange]) -> None:
        data = [r for change in changes for r in reports(change, completing_status=self.completing_status)]
        if data:
            self.pending.append(data)

    def _unsubscribe(self) -> None:
        if self.observing:
            self.engine.remove_observer(self._observe)
            self.observing = False
        self.pending.clear()

    # -- lifecycle ---------------------------------------------------------------------------------
    def reconnect(self) -> bool:
        """A new connection: a fresh token over REST, subscribe, snapshot, connected (and the resync)."""
        if self.connected:
            return True
        self.next_attempt = self.clock() + self.core.config.exchange.stream_reconnect_seconds
        self.transport.set_state(StreamState.CONNECTING, "simulated connect")
        try:
            self.token = self.transport.fresh_token()
        except StreamDown as down:
            self.transport.set_state(StreamState.DOWN, down.reason)
            return False
        self._subscribe()
        return True

    def _subscribe(self) -> None:
        self._unsubscribe()
        snapshot = self.engine.add_observer(self._observe)
        self.observing = True
        self.last_heard = self.clock()
        self.silent_until = 0.0
        data = snapshot_reports(snapshot, orders=True, trades=True)
        self.transport.deliver("snapshot", {"data": data}, self.sequence)
        self.transport.subscribed()

    def drop(self, reason: str = "connection dropped") -> None:
        if self.transport.state is StreamState.DOWN:
            return
        self._unsubscribe()
        self.token = None
        self.transport.set_state(StreamState.DOWN, reason)

    def gap(self, lost: int) -> None:
        """`lost` messages never arrive; the next one's sequence gives it away: resubscribe."""
        if not self.connected:
            return
        del self.pending[:lost]
        self.sequence += lost
        self.transport.set_state(StreamState.DOWN, f"gap in executions: {lost} messages lost")
        self._subscribe()

    def silence(self, until: float) -> None:
        if self.clock() >= self.silent_until:
            self.last_heard = self.clock()    # heartbeats came until now
        self.silent_until = max(self.silent_until, until)

    def duplicate(self) -> None:
        if self.connected and self.last is not None:
            self.transport.deliver("update", {"data": self.last}, None)

    def reorder(self, pick: float) -> bool:
        """Reports out of the order they were sent in; False when fewer than two are queued."""
        pending = self.pending
        if len(pending) >= 2:
            i = int(pick * (len(pending) - 1))
            pending[i], pending[i + 1] = pending[i + 1], pending[i]
            return True
        if pending and len(pending[0]) >= 2:
            pending[0] = pending[0][::-1]
            return True
        return False

    def close(self) -> None:
        """The process died: its socket is gone."""
        self._unsubscribe()

    # -- delivery ----------------------------------------------------------------------------------
    def watchdog(self) -> None:
        """Silent for longer than stale_seconds: the transport gives up on the connection; once down,
        it reconnects after its backoff."""
        now = self.clock()
        if self.connected and now < self.silent_until and now - self.last_heard > self.stale_seconds:
            self.drop(f"silent for {now - self.last_heard:.0f} s")
        elif not self.connected and now >= self.next_attempt:
            self.reconnect()

    def deliver(self, count: int | None = None) -> int:
        if not self.connected or self.clock() < self.silent_until:
            return 0
        self.last_heard = self.clock()
        taken = list(self.pending if count is None else self.pending[:count])
        del self.pending[:len(taken)]
        for message in taken:
            self.sequence += 1
            self.last = message
            self.delivered += 1
            self.transport.deliver("update", {"data": message}, self.sequence)
        return len(taken)
