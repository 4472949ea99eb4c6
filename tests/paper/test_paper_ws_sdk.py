"""A third-party client against the paper WebSocket: python-kraken-sdk's SpotWSClient (asyncio).

Its REST half fetches the token from the paper loopback REST server (GetWebSocketsToken,
signed by the SDK itself); its WebSocket half subscribes to executions, places and
cancels an order. The SDK's URLs are constructor arguments (`rest_url`, `auth_ws_url`;
it appends `/v2` itself). One override: the SDK waits a random 1-2 s before its first
connection (its reconnect back-off, name-mangled), which is zeroed to keep this fast.
"""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from triplegain_fsm.paper import PAPER_API_KEY, PAPER_API_SECRET, PaperExchange
from triplegain_fsm.paper.server import serve_with_ws

kraken_ws = pytest.importorskip("kraken.spot")
connectors = pytest.importorskip("kraken.spot.websocket.connectors")

pytestmark = pytest.mark.integration
TIMEOUT = 3.0


@pytest.fixture
def served():
    exchange = PaperExchange(prices={"BTC/USD": "43000"}, balances={"ZUSD": "100000"})
    rest, ws = serve_with_ws(exchange, heartbeat_interval=0.05)
    yield exchange, rest, ws
    ws.shutdown()
    rest.shutdown()


@pytest.fixture(autouse=True)
def no_initial_backoff(monkeypatch):
    monkeypatch.setattr(connectors.ConnectSpotWebsocketBase, "_ConnectSpotWebsocketBase__get_reconnect_wait",
                        lambda self, attempts: 0)


async def _next(queue: asyncio.Queue, match) -> dict[str, Any]:
    while True:
        message = await asyncio.wait_for(queue.get(), TIMEOUT)
        if match(message):
            return message


async def _scenario(rest_url: str, ws_url: str) -> dict[str, Any]:
    queue: asyncio.Queue = asyncio.Queue()

    async def on_message(message: dict) -> None:
        await queue.put(message)

    client = kraken_ws.SpotWSClient(key=PAPER_API_KEY, secret=PAPER_API_SECRET, callback=on_message,
                                    no_public=True, rest_url=rest_url, auth_ws_url=ws_url.removesuffix("/v2"))
    seen: dict[str, Any] = {}
    try:
        await asyncio.wait_for(client.start(), TIMEOUT)
        await client.subscribe(params={"channel": "executions", "snap_orders": True}, req_id=1)
        seen["ack"] = await _next(queue, lambda m: m.get("method") == "subscribe")
        seen["snapshot"] = await _next(queue, lambda m: m.get("type") == "snapshot")
        await client.send_message({"method": "add_order", "req_id": 2, "params": {
            "order_type": "limit", "side": "buy", "order_qty": 0.01, "symbol": "BTC/USD", "limit_price": 42000,
            "cl_ord_id": "sdk-1"}})
        seen["added"] = await _next(queue, lambda m: m.get("req_id") == 2)
        seen["pending"] = await _next(queue, lambda m: m.get("type") == "update")
        order_id = seen["added"]["result"]["order_id"]
        await client.send_message({"method": "cancel_order", "req_id": 3, "params": {"order_id": [order_id]}})
        seen["cancelled"] = await _next(queue, lambda m: m.get("req_id") == 3)
        seen["report"] = await _next(queue, lambda m: m.get("type") == "update")
    finally:
        await asyncio.wait_for(client.close(), TIMEOUT)
    return seen


def test_python_kraken_sdk_subscribes_places_and_cancels(served):
    exchange, rest, ws = served
    seen = asyncio.run(_scenario(rest.url, ws.url))
    assert seen["ack"]["success"] is True and seen["ack"]["result"]["channel"] == "executions"
    assert seen["snapshot"]["data"] == []
    order_id = seen["added"]["result"]["order_id"]
    assert seen["added"]["success"] is True and seen["added"]["result"]["cl_ord_id"] == "sdk-1"
    pending = seen["pending"]["data"][0]
    assert pending["exec_type"] == "pending_new" and pending["order_id"] == order_id
    assert seen["cancelled"]["success"] is True
    assert seen["report"]["data"][0]["exec_type"] == "canceled"
    assert exchange.order(order_id)["status"] == "canceled" and exchange.order(order_id)["cl_ord_id"] == "sdk-1"
    assert [c.method for c in exchange.calls] == ["GetWebSocketsToken"]     # the SDK's token call, signed
