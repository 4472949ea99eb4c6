"""The loopback server, driven by a third-party client (krakenex) as a real program would."""
from __future__ import annotations

import krakenex
import pytest
import requests

from triplegain_fsm.kraken.signing import NonceSource
from triplegain_fsm.paper import PAPER_API_SECRET, PaperExchange
from triplegain_fsm.paper.server import serve

pytestmark = pytest.mark.integration


@pytest.fixture
def served():
    exchange = PaperExchange(prices={"BTC/USD": "43000"}, balances={"ZUSD": "100000"})
    server = serve(exchange, port=0)
    yield exchange, server
    server.shutdown()


def krakenex_client(url: str) -> krakenex.API:
    api = krakenex.API(key="paper-key", secret=PAPER_API_SECRET)
    api.uri = url                  # krakenex has no constructor argument for the base URL
    api._nonce = NonceSource().next   # its own millisecond nonce repeats when calls are this fast
    return api


def test_krakenex_places_queries_and_cancels(served):
    exchange, server = served
    assert server.url.startswith("http://127.0.0.1:")
    api = krakenex_client(server.url)
    assert api.query_public("Time")["result"]["unixtime"] > 0
    placed = api.query_private("AddOrder", {"pair": "XBTUSD", "type": "buy", "ordertype": "limit",
                                            "price": "42000", "volume": "0.01", "cl_ord_id": "kx-1"})
    assert placed["error"] == []
    txid = placed["result"]["txid"][0]
    assert api.query_private("QueryOrders", {"txid": txid})["result"][txid]["status"] == "open"
    assert api.query_private("CancelOrder", {"txid": txid})["result"] == {"count": 1, "pending": False}
    assert exchange.order(txid)["status"] == "canceled"
    assert [c.method for c in exchange.calls] == ["Time", "AddOrder", "QueryOrders", "CancelOrder"]
    api.close()


def test_lost_response_over_a_socket_drops_the_connection(served):
    exchange, server = served
    exchange.faults.lose_next_response("AddOrder")
    api = krakenex_client(server.url)
    with pytest.raises(requests.exceptions.ConnectionError):
        api.query_private("AddOrder", {"pair": "XBTUSD", "type": "buy", "ordertype": "market", "volume": "0.01"})
    assert len(exchange.trades()) == 1
    api.close()


def test_binds_to_loopback_only():
    with pytest.raises(ValueError):
        serve(PaperExchange(), host="0.0.0.0")

