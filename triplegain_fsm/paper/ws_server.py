"""Kraken's authenticated WebSocket v2 on a loopback port: another front door onto the same engine.

`websockets.sync.server` with one thread per connection (no asyncio here). Only
the path `/v2` is served, like `wss://ws-auth.kraken.com/v2`; anything else gets
HTTP 404. Bound to loopback only, as the REST server is: the paper exchange takes
fixed credentials. `shutdown()` closes every connection and joins every thread,
so tests leak neither threads nor ports.
"""
from __future__ import annotations

import itertools
import logging
import threading
from urllib.parse import urlsplit

from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from triplegain_fsm.paper.loopback import check_loopback
from triplegain_fsm.paper.ws_connection import Connection, WsSettings

log = logging.getLogger(__name__)
PATH = "/v2"
CLOSE_TIMEOUT = 1.0


class WsServer:
    """A running v2 server: `.url` (`ws://127.0.0.1:PORT/v2`) to connect to, `.shutdown()` to stop."""

    def __init__(self, settings: WsSettings, host: str = "127.0.0.1", port: int = 0) -> None:
        check_loopback(host)
        if settings.heartbeat_interval <= 0:
            raise ValueError(f"heartbeat_interval: seconds > 0, got {settings.heartbeat_interval}")
        self.settings = settings
        self._connections: dict[Connection, threading.Thread] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: Server = serve(self._handle, host, port, process_request=_check_path, ping_interval=None,
                                     close_timeout=CLOSE_TIMEOUT)
        bound_host, self.port = self._server.socket.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        self.url = f"ws://{shown}:{self.port}{PATH}"
        self._thread: threading.Thread | None = None
        self._closed = False
        settings.faults.attach(self.drop_all)

    def start(self) -> WsServer:
        self._thread = threading.Thread(target=self.serve_forever, name=f"paper-ws-{self.port}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def _handle(self, ws: ServerConnection) -> None:
        connection = Connection(ws, self.settings, next(self._ids))
        with self._lock:
            self._connections[connection] = threading.current_thread()
        try:
            connection.run()
        finally:
            with self._lock:
                self._connections.pop(connection, None)

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def quiet(self) -> int | None:
        """The highest sequence written to a subscriber once every connection has written all it
        queued; None while anything is still on its way (see `Connection.quiet`)."""
        with self._lock:
            connections = list(self._connections)
        sequences = [c.quiet() for c in connections]
        written = [s for s in sequences if s is not None]
        return None if len(written) < len(sequences) else max(written, default=0)

    def drop_all(self) -> None:
        """Cut every open connection (no close frame), as a network failure would."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.drop()

    def shutdown(self) -> None:
        """Close the listening socket and every connection, and wait for their threads; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.settings.faults.detach(self.drop_all)
        self._server.shutdown()
        # websockets < 15 (the newest on Python 3.10) leaves open connections open on shutdown:
        # close ours whatever the version, then wait for their handler threads.
        with self._lock:
            open_now = dict(self._connections)
        for connection, handler in open_now.items():
            connection.ws.close(1001, "server shutting down")
            handler.join()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> WsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def _check_path(connection: ServerConnection, request: Request) -> Response | None:
    if urlsplit(request.path).path.rstrip("/") != PATH:
        return connection.respond(404, "Not Found: the paper exchange serves Kraken's WebSocket v2 at /v2\n")
    return None
