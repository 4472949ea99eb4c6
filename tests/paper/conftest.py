"""Fixtures for the paper exchange tests: a fake clock, an exchange, and a tiny signed client."""
from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
import requests

from triplegain_fsm.kraken.signing import NonceSource, sign
from triplegain_fsm.paper import PAPER_API_SECRET, ManualClock, PaperExchange
from triplegain_fsm.paper.params import parse_add_order

BASE = "https://api.kraken.com"


class KrakenTestClient:
    """Signs like the core's client must: build the body once, sign those bytes, send them."""

    def __init__(self, session: requests.Session, key: str = "paper-key", secret: str = PAPER_API_SECRET) -> None:
        self.session, self.key, self.secret = session, key, secret
        self.nonces = NonceSource()

    def public(self, method: str, **params: Any) -> dict[str, Any]:
        return self.session.get(f"{BASE}/0/public/{method}", params=params, timeout=5).json()

    def post(self, method: str, *, as_json: bool = False, nonce: int | None = None, sign_body: str | None = None,
             **params: Any) -> requests.Response:
        path = f"/0/private/{method}"
        nonce = self.nonces.next() if nonce is None else nonce
        data = {"nonce": nonce, **params}
        body = json.dumps(data) if as_json else urllib.parse.urlencode(data)
        headers = {
            "API-Key": self.key,
            "API-Sign": sign(path, nonce, body if sign_body is None else sign_body, self.secret),
            "Content-Type": "application/json" if as_json else "application/x-www-form-urlencoded",
        }
        return self.session.post(BASE + path, data=body, headers=headers, timeout=5)

    def private(self, method: str, **params: Any) -> dict[str, Any]:
        return self.post(method, **params).json()

    def ok(self, method: str, **params: Any) -> Any:
        """The result of a call that must succeed."""
        answer = self.private(method, **params)
        assert answer["error"] == [], answer
        return answer["result"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
def make_exchange(clock):
    def make(**kwargs: Any) -> PaperExchange:
        kwargs.setdefault("prices", {"BTC/USD": "43000"})
        kwargs.setdefault("balances", {"ZUSD": "100000", "XXBT": "2"})
        kwargs.setdefault("seed", 1)
        return PaperExchange(clock=clock, **kwargs)
    return make


@pytest.fixture
def exchange(make_exchange) -> PaperExchange:
    return make_exchange()


@pytest.fixture
def place(exchange):
    """Place an order on the engine from AddOrder wire params; returns its txid."""
    def add(ex: PaperExchange | None = None, **params: Any) -> str:
        target = ex or exchange
        params.setdefault("pair", "XBTUSD")
        result = target.engine.add_order(parse_add_order({k: str(v) for k, v in params.items()}))
        return result["txid"][0]
    return add


@pytest.fixture
def client_for():
    """A signed client whose Session is mounted on the given exchange."""
    def make(exchange: PaperExchange) -> KrakenTestClient:
        session = requests.Session()
        exchange.mount(session, BASE)
        return KrakenTestClient(session, exchange.api_key, exchange.api_secret)
    return make


@pytest.fixture
def client(exchange, client_for) -> KrakenTestClient:
    return client_for(exchange)

WS_HEARTBEAT = 0.05   # seconds: fast heartbeats keep the WebSocket tests short


@pytest.fixture
def ws_server(exchange):
    """The paper exchange's WebSocket v2 server on a free loopback port, shut down after the test."""
    server = exchange.serve_ws(heartbeat_interval=WS_HEARTBEAT)
    yield server
    server.shutdown()
