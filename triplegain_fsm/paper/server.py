"""The paper exchange on a loopback HTTP port, for clients that cannot take a mounted Session.

Stdlib `ThreadingHTTPServer`, bound to loopback only (this fake accepts a fixed
paper key, so it must never be reachable from the network). `serve()` runs it on
a background thread for tests; `serve_forever()` blocks, for the CLI. A lost
response closes the connection without an answer: the client sees a dropped
connection (requests raises ConnectionError), the socket-level equivalent of the
in-process adapter's ReadTimeout.

Beside Kraken's paths the same port answers `/admin/price` (`paper.admin`: set a price,
loopback clients only) when the server is given the exchange's `Admin`. `on_request`,
if given, hears of every request once it is answered (`RequestRecord`: the CLI's
`--verbose` log); it must not raise.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import attrs

from triplegain_fsm.paper.admin import Admin, is_admin_path
from triplegain_fsm.paper.api import JSON, KrakenApi, Reply
from triplegain_fsm.paper.errors import LostResponse
from triplegain_fsm.paper.loopback import check_loopback

if TYPE_CHECKING:
    from triplegain_fsm.paper import PaperExchange
    from triplegain_fsm.paper.ws_server import WsServer

log = logging.getLogger(__name__)
POLL_INTERVAL = 0.05


@attrs.frozen
class RequestRecord:
    """One answered request, as `--verbose` prints it."""

    client: str
    http_method: str
    path: str
    status: int | None            # None: no answer (a scripted lost response)
    errors: tuple[str, ...]       # Kraken's `error` list of the answer
    millis: float

    def line(self) -> str:
        outcome = "no answer (lost response)" if self.status is None else str(self.status)
        errors = f" {', '.join(self.errors)}" if self.errors else ""
        return f"{self.client} {self.http_method} {self.path} -> {outcome}{errors} ({self.millis:.1f} ms)"


def _errors_of(reply: Reply) -> tuple[str, ...]:
    if reply.content_type != JSON or not reply.body.startswith(b"{"):
        return ()
    try:
        errors = json.loads(reply.body).get("error") or ()
    except (ValueError, AttributeError):
        return ()
    return (errors,) if isinstance(errors, str) else tuple(str(e) for e in errors)


OnRequest = Callable[[RequestRecord], None]


def _handler_class(api: KrakenApi, admin: Admin | None = None,
                   on_request: OnRequest | None = None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "paper-kraken/1"

        def _serve(self) -> None:
            began = time.perf_counter()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            reply: Reply | None = None
            try:
                if admin is not None and is_admin_path(self.path):
                    reply = admin.handle(self.command, self.path, body, self.client_address[0])
                else:
                    reply = api.handle(self.command, self.path, dict(self.headers.items()), body)
            except LostResponse:
                self.close_connection = True
                return
            finally:
                if on_request is not None:
                    on_request(RequestRecord(self.client_address[0], self.command, self.path,
                                             None if reply is None else reply.status,
                                             () if reply is None else _errors_of(reply),
                                             (time.perf_counter() - began) * 1000))
            assert reply is not None
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = _serve
        do_POST = _serve

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
            log.debug("%s - %s", self.address_string(), format % args)

    return Handler


class PaperServer:
    """A running loopback server: `.url` to point a client at, `.shutdown()` to stop it."""

    def __init__(self, api: KrakenApi, host: str = "127.0.0.1", port: int = 0, *, admin: Admin | None = None,
                 on_request: OnRequest | None = None) -> None:
        check_loopback(host)
        self._httpd = ThreadingHTTPServer((host, port), _handler_class(api, admin, on_request))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._serving = False
        self._closed = False
        bound_host, self.port = str(self._httpd.server_address[0]), int(self._httpd.server_address[1])
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{self.port}"

    def start(self) -> PaperServer:
        """Serve on a background (daemon) thread."""
        self._thread = threading.Thread(target=self.serve_forever, name=f"paper-exchange-{self.port}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until `shutdown()` is called from another one."""
        self._serving = True
        try:
            self._httpd.serve_forever(poll_interval=POLL_INTERVAL)
        finally:
            self._serving = False

    def shutdown(self) -> None:
        """Stop serving (from any other thread) and close the socket; safe to call twice."""
        if self._serving:
            self._httpd.shutdown()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self._closed:
            self._closed = True
            self._httpd.server_close()

    def __enter__(self) -> PaperServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()


def serve(exchange: PaperExchange, host: str = "127.0.0.1", port: int = 0, *, admin: bool = True,
          on_request: OnRequest | None = None) -> PaperServer:
    """Start serving `exchange` on a background thread; port 0 picks a free port. `admin`: answer /admin/price."""
    return PaperServer(exchange.api, host, port, admin=Admin(exchange) if admin else None,
                       on_request=on_request).start()


def serve_forever(exchange: PaperExchange, port: int = 0, host: str = "127.0.0.1",
                  ready: Callable[[str], None] | None = None) -> None:
    """Serve in the calling thread until interrupted (Ctrl-C propagates after the socket is closed).

    `ready(url)` is called once the socket is bound, e.g. to print where to connect.
    """
    server = PaperServer(exchange.api, host, port)
    if ready is not None:
        ready(server.url)
    try:
        server.serve_forever()
    finally:
        server.shutdown()


def serve_with_ws(exchange: PaperExchange, host: str = "127.0.0.1", port: int = 0, ws_port: int = 0,
                  heartbeat_interval: float = 1.0) -> tuple[PaperServer, WsServer]:
    """REST and WebSocket v2 on background threads, both onto the same engine; shut both down."""
    rest = serve(exchange, host, port)
    try:
        return rest, exchange.serve_ws(host, ws_port, heartbeat_interval=heartbeat_interval)
    except BaseException:
        rest.shutdown()
        raise


def serve_forever_with_ws(exchange: PaperExchange, port: int = 0, ws_port: int = 0, host: str = "127.0.0.1",
                          ready: Callable[[str, str], None] | None = None, *, admin: bool = True,
                          on_request: OnRequest | None = None) -> None:
    """REST (and /admin/price unless `admin` is False) in the calling thread and WebSocket v2 beside it,
    until interrupted (both then closed).

    `ready(rest_url, ws_url)` is called once both sockets are bound.
    """
    server = PaperServer(exchange.api, host, port, admin=Admin(exchange) if admin else None, on_request=on_request)
    try:
        ws = exchange.serve_ws(host, ws_port)
    except BaseException:
        server.shutdown()
        raise
    try:
        if ready is not None:
            ready(server.url, ws.url)
        server.serve_forever()
    finally:
        server.shutdown()
        ws.shutdown()
