"""Kraken's REST front door: (HTTP method, path, headers, body) in, (status, JSON bytes) out.

Transport-agnostic so the in-process adapter and the loopback server share it.
Order of work for each request: log it; apply a fault that answers without
acting; for private calls check key, signature and nonce, then the REST rate
counter; run the endpoint; apply a fault that spoils the answer after acting.
Every answer is `{"error": [...], "result": {...}}` with HTTP 200, as Kraken's.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from triplegain_fsm.paper.auth import Authenticator, header
from triplegain_fsm.paper.calllog import Call, CallLog
from triplegain_fsm.paper.endpoints import PRIVATE, PUBLIC, Context
from triplegain_fsm.paper.engine import Engine
from triplegain_fsm.paper.errors import UNAVAILABLE, UNKNOWN_METHOD, KrakenRejection, LostResponse
from triplegain_fsm.paper.faults import CORRUPT, DURING, ERROR, HTTP_STATUS, MALFORMED, Fault, Faults
from triplegain_fsm.paper.ratelimit import RateLimiter
from triplegain_fsm.paper.wire import encode, envelope, parse_body, parse_form
from triplegain_fsm.paper.ws_tokens import TokenBook

JSON = "application/json"
HTML = "text/html; charset=utf-8"
MALFORMED_BODY = b'{"error":[],"result":{"descr":{"order":"'   # a body cut off mid-stream


class Reply(NamedTuple):
    status: int
    body: bytes
    content_type: str = JSON


def _error_page(status: int) -> bytes:
    return (f"<html><head><title>{status}</title></head><body><center><h1>{status} Error</h1></center>"
            "<hr><center>cloudflare</center></body></html>").encode()


class KrakenApi:
    def __init__(
        self,
        engine: Engine,
        *,
        api_key: str,
        api_secret: str,
        faults: Faults | None = None,
        calls: CallLog | None = None,
        rate_limiter: RateLimiter | None = None,
        tokens: TokenBook | None = None,
    ) -> None:
        self.engine = engine
        self.auth = Authenticator(api_key, api_secret)
        self.faults = faults if faults is not None else Faults()
        self.calls = calls if calls is not None else CallLog()
        self.rate_limiter = rate_limiter
        self.tokens = tokens if tokens is not None else TokenBook(engine.now)
        self._context = Context(engine, rate_limiter, self.tokens)

    def dispatch(
        self, http_method: str, path: str, headers: Mapping[str, str], body: bytes | None
    ) -> tuple[int, bytes]:
        """(status, body bytes); raises LostResponse when the client must see a timeout."""
        reply = self.handle(http_method, path, headers, body)
        return reply.status, reply.body

    def handle(self, http_method: str, path: str, headers: Mapping[str, str], body: bytes | None) -> Reply:
        body = body or b""
        url = urlsplit(path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "0" or parts[1] not in ("public", "private"):
            return Reply(404, _error_page(404), HTML)
        private, method = parts[1] == "private", parts[2]
        early_error: str | None = None
        try:
            params = parse_form(url.query) if not private else {}
            if body and (private or http_method.upper() == "POST"):
                params.update(parse_body(body, header(headers, "Content-Type")))
        except KrakenRejection as rejection:
            params, early_error = {}, rejection.error
        call = self.calls.record(time=self.engine.now(), http_method=http_method.upper(), path=url.path,
                                 method=method, params=params, private=private)
        fault = self.faults.take(method)
        if fault is not None:
            call.fault = fault.kind
            if not fault.acts_first:
                return self._finish(call, self._spoil(call, fault, None))
        payload = envelope(errors=[early_error]) if early_error else self._answer(call, url.path, headers, body, params)
        call.error = list(payload["error"])
        reply = self._spoil(call, fault, payload) if fault is not None else Reply(200, encode(payload))
        return self._finish(call, reply)

    def _finish(self, call: Call, reply: Reply) -> Reply:
        call.status = reply.status
        return reply

    def _answer(self, call: Call, path: str, headers: Mapping[str, str], body: bytes,
                params: dict[str, str]) -> dict[str, Any]:
        handler = (PRIVATE if call.private else PUBLIC).get(call.method)
        if handler is None:
            return envelope(errors=[UNKNOWN_METHOD])
        try:
            if call.private:
                self.auth.check(path, headers, body, params)
                if self.engine.system_status == "maintenance":
                    raise KrakenRejection(UNAVAILABLE)
                if self.rate_limiter is not None:
                    self.rate_limiter.charge_rest(self.auth.api_key, call.method)
            call.acted = True
            return envelope(handler(self._context, params))
        except KrakenRejection as rejection:
            return envelope(errors=[rejection.error])

    def _spoil(self, call: Call, fault: Fault, payload: dict[str, Any] | None) -> Reply:
        """The answer a fault turns this request into (payload is None when the exchange did not act)."""
        if fault.kind == ERROR:
            assert fault.error is not None
            call.error = [fault.error]
            return Reply(200, encode(envelope(errors=[fault.error])))
        if fault.kind == HTTP_STATUS:
            assert fault.status is not None
            return Reply(fault.status, _error_page(fault.status), HTML)
        if fault.kind == MALFORMED:
            return Reply(200, MALFORMED_BODY)
        if fault.kind == DURING:
            assert fault.action is not None and payload is not None
            fault.action()
            return Reply(200, encode(payload))
        if fault.kind == CORRUPT:
            assert fault.mutate is not None and payload is not None
            damaged = copy.deepcopy(payload)
            replaced = fault.mutate(damaged)
            return Reply(200, _encode_any(damaged if replaced is None else replaced))
        call.status = None
        raise LostResponse(call.method, acted=payload is not None)


def _encode_any(payload: Any) -> bytes:
    """A corrupted answer may be anything, even something JSON cannot hold: then send its repr."""
    try:
        return encode(payload)
    except (TypeError, ValueError):
        return json.dumps(repr(payload)).encode()
