"""An in-process `requests` transport: a mounted Session talks to the paper exchange, no socket.

The core sends all its HTTP through one `requests.Session`, so mounting this
adapter on that session for Kraken's base URL swaps the real exchange for the
paper one without touching the client. A lost response surfaces as
`requests.exceptions.ReadTimeout`, exactly what the client sees from a real
timeout; HTTP error statuses come back as ordinary responses.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from triplegain_fsm.paper.api import Reply
from triplegain_fsm.paper.errors import LostResponse

Handler = Callable[[str, str, Mapping[str, str], bytes], Reply]
REASONS = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout", 520: "Unknown Error", 521: "Web Server Is Down", 522: "Connection Timed Out"}


def _body_bytes(body: bytes | str | None) -> bytes:
    if body is None:
        return b""
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


class PaperAdapter(BaseAdapter):
    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self._handler = handler

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout=None, verify=True, cert=None,
             proxies=None) -> requests.Response:
        url = urlsplit(request.url or "")
        path = url.path + (f"?{url.query}" if url.query else "")
        try:
            reply = self._handler(request.method or "GET", path, dict(request.headers), _body_bytes(request.body))
        except LostResponse as lost:
            raise requests.exceptions.ReadTimeout(str(lost), request=request) from None
        response = requests.Response()
        response.status_code = reply.status
        response.reason = REASONS.get(reply.status, "")
        response.headers = CaseInsensitiveDict({"Content-Type": reply.content_type,
                                                "Content-Length": str(len(reply.body))})
        response._content = reply.body
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        """Nothing to release: there is no connection pool."""


def mount(session: requests.Session, base_url: str, handler: Handler) -> requests.Session:
    """Route every request `session` makes under `base_url` to the paper exchange."""
    session.mount(base_url.rstrip("/") + "/", PaperAdapter(handler))
    return session
