"""Fakes and fixtures for the Kraken client tests: a fake clock, a strict HTTP mock, pair data.

Nothing here sleeps or touches the network: the clock only moves when the client
"sleeps", and any request that matches no registered mock fails the test at once
(responses would otherwise raise ConnectionError, which the client would retry).
The suite runs with --import-mode=importlib, so tests reach the helpers below through
the `kx` fixture rather than by importing this module.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from urllib.parse import parse_qsl

import pytest
import requests
import responses

from triplegain_fsm.kraken import retry
from triplegain_fsm.kraken.client import KrakenClient
from triplegain_fsm.kraken.pairs import PairRegistry

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
