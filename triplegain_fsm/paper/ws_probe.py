"""A bare synchronous v2 client for poking the paper WebSocket in tests and by hand.

Not the core's stream client (that lives in `triplegain_fsm.kraken`): no reconnects,
no caching, no opinions -- it sends what it is told, reads with a bounded wait,
and parses numbers as Decimal, so a test sees exactly what the wire carried.

    with WsProbe(server.url) as probe:
        probe.recv()                                   # the status message
        probe.request("ping", req_id=1)                # -> {"method": "pong", "req_id": 1, ...}
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from websockets.sync.client import ClientConnection, connect

from triplegain_fsm.paper.ws_json import dumps, loads

Message = dict[str, Any]
DEFAULT_TIMEOUT = 2.0


class WsProbe:
    def __init__(self, url: str, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        # entered by hand: websockets >= 17.1 warns about a bare connect() outside `with`
        self.ws: ClientConnection = connect(url, open_timeout=timeout, close_timeout=timeout).__enter__()
        self.token = token
        self.timeout = timeout
        self.seen: list[Message] = []        # everything received, in order
        self.skipped: list[Message] = []     # what the last wait_for passed over
        self._req_ids = itertools.count(1)

    def send(self, method: str, params: dict[str, Any] | None = None, *, req_id: int | None = None,
             token: bool = True) -> int:
        """Send a request (the probe's token added to params unless token=False); returns its req_id."""
        req_id = next(self._req_ids) if req_id is None else req_id
        message: Message = {"method": method, "req_id": req_id}
        if params is not None or (token and self.token is not None):
            message["params"] = {**(params or {}), **({"token": self.token} if token and self.token else {})}
        self.ws.send(dumps(message))
        return req_id

    def recv(self, timeout: float | None = None) -> Message:
        message = loads(self.ws.recv(timeout=self.timeout if timeout is None else timeout))
        self.seen.append(message)
        return message

    def wait_for(self, match: Callable[[Message], bool], timeout: float | None = None) -> Message:
        """The next message that matches, within `timeout` in all (heartbeats do not extend it);
        the others are kept in `seen` and `skipped`. TimeoutError when none came in time."""
        self.skipped = []
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching message in time")
            message = self.recv(left)
            if match(message):
                return message
            self.skipped.append(message)

    def answer(self, req_id: int, timeout: float | None = None) -> Message:
        return self.wait_for(lambda m: m.get("req_id") == req_id and "channel" not in m, timeout)

    def request(self, method: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Message:
        return self.answer(self.send(method, params, **kwargs))

    def executions(self, timeout: float | None = None) -> Message:
        """The next executions message (snapshot or update), skipping heartbeats and answers."""
        return self.wait_for(lambda m: m.get("channel") == "executions", timeout)

    def subscribe(self, **params: Any) -> tuple[Message, Message | None]:
        """Subscribe to executions: (ack, snapshot or None when no snapshot was asked for)."""
        ack = self.request("subscribe", {"channel": "executions", **params})
        if not ack.get("success") or not ack["result"].get("snapshot"):
            return ack, None
        return ack, self.executions()

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> WsProbe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
