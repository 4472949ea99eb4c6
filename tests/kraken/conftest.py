"""Fakes and fixtures for the Kraken client tests: a fake clock, a strict HTTP mock, pair data.

Nothing here sleeps or touches the network: the clock only moves when the client
"sleeps", and any request that matches no registered mock fails the test at once
(responses would otherwise raise ConnectionError, which the client would retry).
The WebSocket stream fixtures at the end are the exception: they run the real
stream client against the paper exchange's v2 server on a loopback port.
The suite runs with --import-mode=importlib, so tests reach the helpers below through
the `kx` fixture rather than by importing this module.
"""
from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
import responses

from triplegain_fsm.kraken import retry
from triplegain_fsm.kraken.client import KrakenClient
from triplegain_fsm.kraken.pairs import PairRegistry
from triplegain_fsm.kraken.stream import ExecutionStream
from triplegain_fsm.paper import ManualClock, PaperExchange
from triplegain_fsm.paper.params import parse_add_order

API = "https://api.kraken.com"
API_KEY = "TESTKEY-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
API_SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
START = 1_700_000_000.0


def _pair(altname, wsname, base, quote, pair_decimals, lot_decimals, ordermin, costmin, tick,
          lev_buy=(), lev_sell=(), status="online"):
    return {
        "altname": altname, "wsname": wsname, "aclass_base": "currency", "base": base,
        "aclass_quote": "currency", "quote": quote, "lot": "unit", "cost_decimals": 5,
        "pair_decimals": pair_decimals, "lot_decimals": lot_decimals, "lot_multiplier": 1,
        "leverage_buy": list(lev_buy), "leverage_sell": list(lev_sell),
        "fees": [[0, 0.26], [50000, 0.24]], "fees_maker": [[0, 0.16], [50000, 0.14]],
        "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
        "ordermin": ordermin, "costmin": costmin, "tick_size": tick, "status": status,
    }


ASSET_PAIRS = {
    "XXBTZUSD": _pair("XBTUSD", "XBT/USD", "XXBT", "ZUSD", 1, 8, "0.0001", "0.5", "0.1",
                      (2, 3, 4, 5), (2, 3, 4, 5)),
    "XETHZUSD": _pair("ETHUSD", "ETH/USD", "XETH", "ZUSD", 2, 8, "0.002", "0.5", "0.01", (2, 3), (2, 3)),
    "XETHXXBT": _pair("ETHXBT", "ETH/XBT", "XETH", "XXBT", 5, 8, "0.002", "0.00002", "0.00001"),
    "XDGUSD": _pair("XDGUSD", "XDG/USD", "XXDG", "ZUSD", 7, 8, "13", "0.5", "0.0000001"),
    "XXRPZUSD": _pair("XRPUSD", "XRP/USD", "XXRP", "ZUSD", 5, 8, "2", "0.5", "0.00001"),
    "SOLUSD": _pair("SOLUSD", "SOL/USD", "SOL", "ZUSD", 2, 8, "0.02", "0.5", "0.01"),
}


class FakeClock:
    """Unix time that advances only when the code under test sleeps; records every sleep."""

    def __init__(self, start: float = START) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class UnmatchedRequest(AssertionError):
    """A request no mock was registered for: an error in the test, never something to retry."""


class StrictRequestsMock(responses.RequestsMock):
    def _on_request(self, adapter, request, **kwargs):
        try:
            return super()._on_request(adapter, request, **kwargs)
        except requests.ConnectionError as exc:
            if "Connection refused by Responses" in str(exc):
                raise UnmatchedRequest(f"unexpected request: {request.method} {request.url}") from None
            raise


def ok(result) -> dict:
    return {"json": {"error": [], "result": result}}


def err(*errors: str) -> dict:
    return {"json": {"error": list(errors)}}


def form(request) -> dict[str, str]:
    """A form-encoded (or JSON) request body as a flat dict of strings."""
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    if request.headers.get("Content-Type", "").startswith("application/json"):
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in json.loads(body).items()}
    return dict(parse_qsl(body, keep_blank_values=True))


def private_url(method: str) -> str:
    return f"{API}/0/private/{method}"


def public_url(method: str) -> str:
    return f"{API}/0/public/{method}"


@pytest.fixture(autouse=True)
def _real_waiting_by_default() -> Iterator[None]:
    """Global test mode is opt-in per test and always reset (stamina's autouse pattern)."""
    retry.set_testing(False)
    yield
    retry.set_testing(False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mock() -> Iterator[StrictRequestsMock]:
    with StrictRequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def registry() -> PairRegistry:
    return PairRegistry.from_result(ASSET_PAIRS)


@pytest.fixture
def client(clock: FakeClock, registry: PairRegistry) -> KrakenClient:
    c = KrakenClient(API_KEY, API_SECRET, clock=clock, sleep=clock.sleep)
    c.pairs = registry
    return c


@pytest.fixture
def kx():
    """This module: ok(), err(), form(), private_url(), public_url(), API_KEY, ASSET_PAIRS, ..."""
    return sys.modules[__name__]


# --- the WebSocket v2 stream, against the real paper exchange over loopback -------------------

WS_HEARTBEAT = 0.05      # seconds: fast heartbeats keep the stream tests short
FAST_STREAM = {"stale_seconds": 0.5, "reconnect_min_seconds": 0.05, "reconnect_max_seconds": 0.2,
               "open_timeout": 2.0}


class StreamRecorder:
    """What an ExecutionStream delivered, in order. Tests wait on it with bounded timeouts, never sleep.

    `hooks[state]` runs on the stream's thread when that state is entered (before anything
    else happens), which lets a test change the exchange at an exact point of the lifecycle.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.batches: list[Any] = []
        self.states: list[tuple[Any, str]] = []
        self.hooks: dict[str, Callable[[], None]] = {}
        self.tokens: Any = None           # the stream's token source (set by open_stream)

    def on_batch(self, batch) -> None:
        with self._cond:
            self.batches.append(batch)
            self._cond.notify_all()

    def on_state(self, state, reason: str) -> None:
        hook = self.hooks.pop(state.value, None)
        if hook is not None:
            hook()
        with self._cond:
            self.states.append((state, reason))
            self._cond.notify_all()

    def wait(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
        with self._cond:
            result = self._cond.wait_for(predicate, timeout)
            assert result, f"timed out waiting for {what}; states: {self.states}"
            return result

    def stays(self, predicate: Callable[[], Any], seconds: float) -> bool:
        """True when `predicate` did NOT become true within `seconds` (a bounded wait for an absence)."""
        with self._cond:
            return not self._cond.wait_for(predicate, seconds)

    def reports(self) -> list[Any]:
        with self._cond:
            return [r for b in self.batches for r in b.reports]

    def report(self, match: Callable[[Any], bool], timeout: float = 5.0) -> Any:
        """The first delivered report that matches (waiting for it if needed)."""
        def found():
            return next((r for b in self.batches for r in b.reports if match(r)), None)
        return self.wait(found, timeout, "a matching report")

    def snapshots(self) -> list[Any]:
        with self._cond:
            return [b for b in self.batches if b.kind == "snapshot"]

    def state_count(self, state: str) -> int:
        with self._cond:
            return sum(1 for s, _ in self.states if s.value == state)

    def wait_state(self, state: str, count: int = 1, timeout: float = 5.0) -> str:
        """Wait until `state` was entered `count` times; returns the reason of the last time."""
        def seen():
            reasons = [r for s, r in self.states if s.value == state]
            return reasons[count - 1] if len(reasons) >= count else None
        return self.wait(seen, timeout, f"state {state} #{count}")


class TokenSource:
    """GetWebSocketsToken through the real KrakenClient, mounted on the paper exchange; records each token."""

    def __init__(self, exchange: Any) -> None:
        session = exchange.mount(requests.Session())
        self.client = KrakenClient(exchange.api_key, exchange.api_secret, session=session)
        self.tokens: list[str] = []
        self.before: list[Callable[[], str | None]] = []   # scripted answers first (None = the real one)

    def __call__(self) -> str:
        scripted = self.before.pop(0)() if self.before else None
        token = scripted if scripted is not None else self.client.get_websockets_token()
        self.tokens.append(token)
        return token


@pytest.fixture
def make_paper():
    """A paper exchange (BTC/USD at 43000, 100k USD, 2 BTC) on a manual clock; kwargs as PaperExchange."""
    def make(**kwargs: Any) -> PaperExchange:
        kwargs.setdefault("prices", {"BTC/USD": "43000"})
        kwargs.setdefault("balances", {"ZUSD": "100000", "XXBT": "2"})
        kwargs.setdefault("seed", 1)
        return PaperExchange(clock=ManualClock(START), **kwargs)
    return make


@pytest.fixture
def paper(make_paper) -> PaperExchange:
    return make_paper()


@pytest.fixture
def paper_ws(paper):
    server = paper.serve_ws(heartbeat_interval=WS_HEARTBEAT)
    yield server
    server.shutdown()


@pytest.fixture
def paper_place(paper):
    """Place an order straight on the paper engine from REST AddOrder params; returns its txid."""
    def place(exchange: PaperExchange | None = None, **params: Any) -> str:
        params.setdefault("pair", "XBTUSD")
        result = (exchange or paper).engine.add_order(parse_add_order({k: str(v) for k, v in params.items()}))
        return result["txid"][0]
    return place


@pytest.fixture
def open_stream(paper, paper_ws):
    """open_stream(**kwargs) -> (stream, recorder): started (not yet connected), stopped after the test."""
    streams: list[ExecutionStream] = []

    def make(exchange: PaperExchange | None = None, server: Any = None, tokens: Any = None,
             recorder: StreamRecorder | None = None, **kwargs: Any):
        recorder = recorder or StreamRecorder()
        tokens = tokens or TokenSource(exchange or paper)
        stream = ExecutionStream((server or paper_ws).url, tokens, recorder.on_batch, recorder.on_state,
                                 **{**FAST_STREAM, **kwargs})
        recorder.tokens = tokens
        streams.append(stream)
        stream.start()
        return stream, recorder

    yield make
    for stream in streams:
        stream.stop()


@pytest.fixture
def connected(open_stream):
    """A stream connected to the default paper exchange: (stream, recorder)."""
    stream, recorder = open_stream()
    assert stream.wait_connected(5), recorder.states
    return stream, recorder
