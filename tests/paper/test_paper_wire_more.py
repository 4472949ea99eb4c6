"""The front door: JSON and form bodies, bad bodies and paths, auth edges, rate-limit costs, the loopback server.

Kraken accepts private bodies form-encoded or as JSON; both must reach the
engine as the same flat parameters, and anything undecodable must be
`EGeneral:Invalid arguments` before auth is even looked at.
"""
from __future__ import annotations

import json
import threading

import pytest
import requests

from triplegain_fsm.errors import ConfigError
from triplegain_fsm.kraken.signing import sign
from triplegain_fsm.paper import PaperExchange
from triplegain_fsm.paper import server as paper_server
from triplegain_fsm.paper.server import PaperServer, serve

pytestmark = pytest.mark.integration

BASE = "https://api.kraken.com"


def raw_post(client, method: str, body: bytes, content_type: str = "application/json") -> dict:
    """POST exactly `body`, signed over those bytes as text when they are text."""
    path = f"/0/private/{method}"
    nonce = client.nonces.next()
    try:
        signature = sign(path, nonce, body.decode("utf-8"), client.secret)
    except UnicodeDecodeError:
        signature = "unsigned"
    headers = {"API-Key": client.key, "API-Sign": signature, "Content-Type": content_type}
    return client.session.post(BASE + path, data=body, headers=headers, timeout=5).json()


# -- JSON bodies ------------------------------------------------------------------------------------

def test_json_nested_close_becomes_the_form_fields(client, exchange):
    answer = client.post("AddOrder", as_json=True, pair="XBTUSD", type="buy", ordertype="limit", price="42000",
                         volume="0.1", userref=7, close={"ordertype": "stop-loss", "price": "41000", "price2": None},
                         cl_ord_id=None).json()
    assert answer["error"] == []
    assert answer["result"]["descr"] == {"order": "buy 0.10000000 XBTUSD @ limit 42000.0",
                                         "close": "close position @ stop loss 41000.0"}
    [txid] = answer["result"]["txid"]
    assert exchange.order(txid)["userref"] == 7 and exchange.order(txid)["cl_ord_id"] is None


def test_json_booleans_numbers_and_lists(client, exchange):
    checked = client.post("AddOrder", as_json=True, pair="XBTUSD", type="buy", ordertype="limit",
                          price=42000.5, volume=0.1, validate=True).json()
    assert checked == {"error": [], "result": {"descr": {"order": "buy 0.10000000 XBTUSD @ limit 42000.5"}}}
    assert exchange.open_orders() == {}
    first = client.post("AddOrder", as_json=True, pair="XBTUSD", type="buy", ordertype="limit", price=42000,
                        volume="0.1", validate=False).json()["result"]["txid"][0]
    second = client.post("AddOrder", as_json=True, pair="XBTUSD", type="buy", ordertype="limit", price=41000,
                         volume="0.1").json()["result"]["txid"][0]
    both = client.post("QueryOrders", as_json=True, txid=[first, second], trades=False).json()
    assert both["error"] == [] and set(both["result"]) == {first, second}
    assert both["result"][first]["descr"]["price"] == "42000.0"


@pytest.mark.parametrize("body", [
    b'{"pair": "XBTUSD", "volume": ',                           # cut off
    b'["pair", "XBTUSD"]',                                       # not an object
    b'{"close": {"ordertype": {"deeper": "stop-loss"}}}',        # nested too deep
    b'{"oflags": [{"post": true}]}',                            # an object inside a list
    b'\xff\xfe{"pair": "XBTUSD"}',                              # not UTF-8
])
def test_an_undecodable_json_body_is_invalid_arguments(client, exchange, body):
    assert raw_post(client, "AddOrder", body) == {"error": ["EGeneral:Invalid arguments"], "result": {}}
    assert exchange.open_orders() == {} and exchange.calls.count("AddOrder", acted=True) == 0


def test_a_form_body_that_is_not_utf8_is_invalid_arguments(client):
    answer = raw_post(client, "Balance", b"nonce=1&pair=\xff", "application/x-www-form-urlencoded")
    assert answer["error"] == ["EGeneral:Invalid arguments"]


def test_an_empty_json_body_has_no_nonce(client):
    assert raw_post(client, "Balance", b"   ") == {"error": ["EAPI:Invalid nonce"], "result": {}}


def test_a_nonce_beyond_64_bits_is_refused(client):
    assert client.private("Balance", nonce=2**64)["error"] == ["EAPI:Invalid nonce"]
    assert client.private("Balance")["error"] == []


def test_a_secret_that_is_not_base64_is_a_config_error():
    with pytest.raises(ConfigError, match="must be base64"):
        PaperExchange(api_secret="not base64 at all!")


def test_an_unencodable_corrupted_answer_still_reaches_the_client_as_text(client, exchange):
    marker = object()
    exchange.faults.corrupt_result_next("Balance", lambda payload: {"result": marker})
    body = client.post("Balance").json()
    assert isinstance(body, str) and "object object at" in body
    assert client.ok("Balance")["ZUSD"] == "100000.0000"      # the fault was used once


# -- paths and market state -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/0/private", "/1/public/Time", "/0/secret/Balance", "/0/public/Time/extra"])
def test_a_path_that_is_not_a_kraken_method_is_a_404_page(client, path):
    response = client.session.get(BASE + path, timeout=5)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html") and b"404" in response.content


def test_maintenance_refuses_private_calls_but_answers_public_ones(client, exchange):
    exchange.set_system_status("maintenance")
    assert client.private("Balance")["error"] == ["EService:Unavailable"]
    assert client.public("SystemStatus")["result"]["status"] == "maintenance"
    assert client.public("Time")["error"] == []
    exchange.set_system_status("online")
    assert client.private("Balance")["error"] == []


def test_unknown_assets_are_refused_and_known_ones_found_by_common_name(client):
    assert client.public("Assets", asset="DOGE")["error"] == ["EQuery:Unknown asset"]
    assert set(client.public("Assets", asset="BTC,USD")["result"]) == {"XXBT", "ZUSD"}


# -- rate limits ------------------------------------------------------------------------------------

def limit(client, price="42000", **extra):
    return client.private("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price=price, volume="0.001",
                          **extra)


def test_open_order_count_per_pair_is_capped_by_the_tier(make_exchange, client_for):
    exchange = make_exchange(rate_limit_tier="intermediate")
    client = client_for(exchange)
    for _ in range(80):                      # intermediate: 80 open orders per pair
        assert limit(client)["error"] == []
    assert limit(client)["error"] == ["EOrder:Orders limit exceeded"]
    assert limit(client, validate="true")["error"] == []          # validate-only books nothing
    assert client.private("AddOrder", pair="ETHUSD", type="buy", ordertype="limit", price="2000",
                          volume="0.01")["error"] == []               # the cap is per pair
    assert len(exchange.open_orders()) == 81


def market(client) -> list[str]:
    return client.private("AddOrder", pair="XBTUSD", type="buy", ordertype="market", volume="0.001")["error"]


def test_amending_a_young_order_costs_more_than_an_old_one(make_exchange, client_for, clock):
    client = client_for(make_exchange(rate_limit_tier="starter"))     # trading counter: 60, decays 1/s
    txid = limit(client)["result"]["txid"][0]                          # 1
    assert [market(client) for _ in range(55)] == [[]] * 55            # 56
    assert client.private("AmendOrder", txid=txid, order_qty="0.002")["error"] == []    # young: 1 + 3 -> 60
    assert client.private("AmendOrder", txid=txid, order_qty="0.003")["error"] == ["EOrder:Rate limit exceeded"]
    clock.advance(300)                                                 # counter drained, the order is old
    assert [market(client) for _ in range(59)] == [[]] * 59            # 59
    assert client.private("AmendOrder", txid=txid, order_qty="0.004")["error"] == []    # old: 1 -> 60
    assert client.private("AmendOrder", txid=txid, order_qty="0.005")["error"] == ["EOrder:Rate limit exceeded"]


def test_cancelling_an_old_order_is_free_and_an_unknown_one_is_unknown(make_exchange, client_for, clock):
    client = client_for(make_exchange(rate_limit_tier="starter"))
    old = limit(client)["result"]["txid"][0]
    clock.advance(301)
    assert [market(client) for _ in range(59)] == [[]] * 59
    assert client.ok("CancelOrder", txid=old) == {"count": 1, "pending": False}    # no penalty after 300 s
    assert market(client) == []                                                     # 60 of 60
    assert market(client) == ["EOrder:Rate limit exceeded"]
    assert client.private("CancelOrder", txid="OAAAAA-BBBBB-CCCCCC")["error"] == ["EOrder:Unknown order"]


def test_an_unknown_rate_limit_tier_is_a_config_error():
    with pytest.raises(ConfigError, match="rate_limit_tier"):
        PaperExchange(rate_limit_tier="platinum")


# -- the loopback server ----------------------------------------------------------------------------

def test_localhost_server_as_a_context_manager(exchange):
    with serve(exchange, host="localhost") as server:
        assert server.url.startswith("http://127.0.0.1:")
        reply = requests.get(f"{server.url}/0/public/Time", timeout=5).json()
        assert reply["result"]["unixtime"] == int(exchange.clock())
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{server.url}/0/public/Time", timeout=5)
    server.shutdown()                                                  # a second stop is harmless


@pytest.mark.parametrize("host", ["0.0.0.0", "example.org", "10.1.2.3"])
def test_the_server_refuses_any_non_loopback_host(exchange, host):
    with pytest.raises(ValueError, match="loopback only"):
        PaperServer(exchange.api, host=host)


@pytest.mark.parametrize("with_ready", [True, False])
def test_serve_forever_serves_until_shut_down_and_then_closes(exchange, monkeypatch, with_ready):
    """The blocking form the CLI uses: `ready(url)` once bound; the socket is closed when serving ends."""
    created: list[PaperServer] = []
    bound = threading.Event()

    class Recording(PaperServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            created.append(self)
            bound.set()

    monkeypatch.setattr(paper_server, "PaperServer", Recording)
    announced: list[str] = []
    ready = announced.append if with_ready else None
    thread = threading.Thread(target=paper_server.serve_forever, args=(exchange,), kwargs={"ready": ready},
                              daemon=True)
    thread.start()
    assert bound.wait(5)
    server = created[0]
    assert announced == ([server.url] if with_ready else [])
    assert requests.get(f"{server.url}/0/public/SystemStatus", timeout=5).json()["result"]["status"] == "online"
    server.shutdown()                        # from another thread: the loop ends, serve_forever closes it again
    thread.join(5)
    assert not thread.is_alive()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{server.url}/0/public/Time", timeout=5)


def test_trades_history_time_bounds_must_be_numbers(client):
    assert client.private("TradesHistory", start="yesterday")["error"] == ["EGeneral:Invalid arguments:start"]
    assert client.private("TradesHistory", end="now")["error"] == ["EGeneral:Invalid arguments:end"]


def test_json_answers_keep_krakens_number_types(client):
    pairs = client.public("AssetPairs", pair="XBTUSD")["result"]["XXBTZUSD"]
    assert pairs["fees"][1] == [50000, 0.24] and isinstance(pairs["pair_decimals"], int)
    assert json.loads(json.dumps(pairs)) == pairs
