"""The REST API through a real requests.Session with the paper adapter mounted."""
from __future__ import annotations

import json

import pytest

from triplegain_fsm.kraken.signing import sign

pytestmark = pytest.mark.integration

KRAKEN_VECTOR_SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="


def limit(client, **extra):
    params = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "42000", "volume": "0.1", **extra}
    return client.ok("AddOrder", **params)["txid"][0]


# -- authentication -------------------------------------------------------------------------------

def test_kraken_documented_signature_vector_is_accepted(make_exchange):
    exchange = make_exchange(api_secret=KRAKEN_VECTOR_SECRET)
    body = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
    status, payload = exchange.dispatch("POST", "/0/private/AddOrder", {
        "API-Key": "paper-key", "Content-Type": "application/x-www-form-urlencoded",
        "API-Sign": "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==",
    }, body.encode())
    answer = json.loads(payload)
    assert status == 200 and answer["error"] == [] and answer["result"]["descr"]["order"].startswith("buy 1.25")


def test_bad_key_signature_and_nonce_are_refused(client, exchange):
    client.key = "someone-else"
    assert client.private("Balance")["error"] == ["EAPI:Invalid key"]
    client.key = "paper-key"
    assert client.post("Balance", sign_body="nonce=1").json()["error"] == ["EAPI:Invalid signature"]
    assert client.ok("Balance")
    used = client.nonces.next()
    assert client.private("Balance", nonce=used)["error"] == []
    assert client.private("Balance", nonce=used)["error"] == ["EAPI:Invalid nonce"]
    assert client.private("Balance", nonce=used - 5)["error"] == ["EAPI:Invalid nonce"]
    assert exchange.calls.count("Balance", acted=True) == 2


def test_signature_covers_the_exact_body_bytes(client):
    """Signing one encoding and sending another (here: reordered fields) must fail, as at Kraken."""
    nonce = client.nonces.next()
    sent = f"volume=0.1&nonce={nonce}&pair=XBTUSD"
    signed = f"nonce={nonce}&pair=XBTUSD&volume=0.1"
    response = client.session.post("https://api.kraken.com/0/private/Balance", data=sent, headers={
        "API-Key": "paper-key", "API-Sign": sign("/0/private/Balance", nonce, signed, client.secret)})
    assert response.json()["error"] == ["EAPI:Invalid signature"]


def test_json_bodies_are_accepted(client, exchange):
    result = client.post("AddOrder", as_json=True, pair="XBTUSD", type="sell", ordertype="trailing-stop",
                         price="+2%", volume="0.5").json()
    assert result["error"] == []
    order = exchange.order(result["result"]["txid"][0])
    assert order["descr"]["price"] == "+2%"


def test_every_answer_is_an_envelope_with_http_200(client):
    response = client.post("AddOrder", pair="NOPE", type="buy", ordertype="market", volume="1")
    assert response.status_code == 200
    assert response.json() == {"error": ["EQuery:Unknown asset pair"], "result": {}}
    assert client.private("NoSuchMethod")["error"] == ["EGeneral:Unknown method"]


# -- public endpoints -----------------------------------------------------------------------------

def test_public_time_status_and_ticker(client, clock):
    assert client.public("Time")["result"]["unixtime"] == int(clock())
    assert client.public("SystemStatus")["result"]["status"] == "online"
    ticker = client.public("Ticker", pair="XBTUSD")["result"]["XXBTZUSD"]
    assert ticker["c"][0] == "43000.0" and len(ticker["a"]) == 3 and len(ticker["b"]) == 3
    assert client.public("Ticker", pair="NOPE")["error"] == ["EQuery:Unknown asset pair"]


def test_asset_pairs_uses_krakens_field_names(client):
    pairs = client.public("AssetPairs")["result"]
    assert set(pairs) >= {"XXBTZUSD", "XETHZUSD", "XXRPXETH", "BCHEUR"}
    xbt = client.public("AssetPairs", pair="XBTUSD")["result"]["XXBTZUSD"]
    expected = {"altname": "XBTUSD", "wsname": "XBT/USD", "base": "XXBT", "quote": "ZUSD", "pair_decimals": 1,
                "lot_decimals": 8, "cost_decimals": 5, "ordermin": "0.0001", "costmin": "0.5", "tick_size": "0.1",
                "leverage_buy": [2, 3, 4, 5], "leverage_sell": [2, 3, 4, 5], "status": "online"}
    assert {k: xbt[k] for k in expected} == expected
    assert xbt["fees"][0] == [0, 0.26] and xbt["fees_maker"][0] == [0, 0.16]
    assert client.public("Assets", asset="XBT")["result"]["XXBT"]["decimals"] == 10


# -- orders ---------------------------------------------------------------------------------------

def test_add_query_and_trades(client, exchange):
    txid = client.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="market", volume="0.1")["txid"][0]
    info = client.ok("QueryOrders", txid=txid, trades="true")[txid]
    for field in ("status", "vol", "vol_exec", "cost", "fee", "price", "stopprice", "limitprice", "descr", "misc",
                  "oflags", "reason", "opentm", "closetm", "userref", "cl_ord_id", "trades"):
        assert field in info, field
    assert set(info["descr"]) == {"pair", "type", "ordertype", "price", "price2", "leverage", "order", "close"}
    [trade_id] = info["trades"]
    trade = client.ok("QueryTrades", txid=trade_id)[trade_id]
    assert (trade["ordertxid"], trade["pair"], trade["vol"]) == (txid, "XXBTZUSD", "0.10000000")
    history = client.ok("TradesHistory")
    assert history["count"] == 1 and trade_id in history["trades"]
    assert client.private("QueryOrders", txid="OAAAAA-BBBBB-CCCCCC")["error"] == ["EOrder:Invalid order"]
    assert client.private("QueryOrders", txid="garbage")["error"] == ["EGeneral:Invalid arguments:txid"]


def test_look_up_by_cl_ord_id_in_open_then_closed_orders(client):
    limit(client, cl_ord_id="find-me")
    limit(client, cl_ord_id="other")
    assert [o["cl_ord_id"] for o in client.ok("OpenOrders", cl_ord_id="find-me")["open"].values()] == ["find-me"]
    assert client.ok("CancelOrder", cl_ord_id="find-me") == {"count": 1, "pending": False}
    assert client.ok("OpenOrders", cl_ord_id="find-me")["open"] == {}
    closed = client.ok("ClosedOrders", cl_ord_id="find-me")
    assert closed["count"] == 1
    assert [o["status"] for o in closed["closed"].values()] == ["canceled"]
    assert client.private("CancelOrder", cl_ord_id="find-me")["error"] == ["EOrder:Unknown order"]


def test_closed_orders_pages_by_fifty_newest_first(client, clock):
    txids = []
    for _ in range(60):
        clock.advance(1)
        txids.append(client.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="market", volume="0.001")["txid"][0])
    first = client.ok("ClosedOrders")
    assert first["count"] == 60 and len(first["closed"]) == 50
    assert list(first["closed"])[0] == txids[-1]
    second = client.ok("ClosedOrders", ofs=50)
    assert list(second["closed"]) == list(reversed(txids[:10]))
    window = client.ok("ClosedOrders", start=str(int(clock()) - 5), end=str(int(clock())))
    assert window["count"] == 5


def test_amend_and_cancel_all_over_rest(client, exchange):
    txid = limit(client, cl_ord_id="amend-rest")
    assert "amend_id" in client.ok("AmendOrder", cl_ord_id="amend-rest", limit_price="41000", order_qty="0.2")
    assert exchange.order(txid)["vol"] == "0.20000000"
    limit(client)
    assert client.ok("CancelAll") == {"count": 2}


def test_cancel_all_orders_after(client, exchange, clock):
    limit(client)
    answer = client.ok("CancelAllOrdersAfter", timeout="60")
    assert answer["triggerTime"] != "0"
    clock.advance(61)
    assert client.ok("OpenOrders")["open"] == {}
    assert client.ok("CancelAllOrdersAfter", timeout="0")["triggerTime"] == "0"
    assert client.private("CancelAllOrdersAfter")["error"] == ["EGeneral:Invalid arguments:timeout"]


def test_balances_and_positions(make_exchange, client_for):
    client = client_for(make_exchange(account="margin"))
    client.ok("AddOrder", pair="XBTUSD", type="sell", ordertype="limit", price="45000", volume="0.5")
    assert client.ok("Balance")["XXBT"] == "2.0000000000"
    assert client.ok("BalanceEx")["XXBT"] == {"balance": "2.0000000000", "hold_trade": "0.5000000000"}
    client.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="market", volume="0.1", leverage="3")
    [row] = client.ok("OpenPositions", docalcs="true").values()
    assert {"ordertxid", "posstatus", "pair", "time", "type", "ordertype", "cost", "fee", "vol", "vol_closed",
            "margin", "value", "net", "misc", "oflags"} <= set(row)
    balance = client.ok("TradeBalance", asset="ZUSD")
    assert {"eb", "tb", "m", "n", "c", "v", "e", "mf"} <= set(balance)


def test_rate_limit_counter_decays_by_the_clock(make_exchange, client_for, clock):
    client = client_for(make_exchange(rate_limit_tier="starter"))
    for _ in range(15):
        client.ok("Balance")
    assert client.private("Balance")["error"] == ["EAPI:Rate limit exceeded"]
    clock.advance(4)                                   # 0.33/s: room for one more call
    assert client.private("Balance")["error"] == []
    assert client.private("TradesHistory")["error"] == ["EAPI:Rate limit exceeded"]   # costs 2
    assert client.private("AddOrder", pair="XBTUSD", type="buy", ordertype="market", volume="0.001")["error"] == []


def test_trading_counter_per_pair(make_exchange, client_for):
    client = client_for(make_exchange(rate_limit_tier="starter"))
    txid = limit(client)
    for _ in range(6):                               # +1 each, and cancelling at once costs +8
        limit(client)
    client.ok("CancelOrder", txid=txid)
    errors = set()
    for _ in range(60):
        errors.update(client.private("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="40000",
                                     volume="0.001")["error"])
    assert errors == {"EOrder:Rate limit exceeded"}
    assert client.private("AddOrder", pair="ETHUSD", type="buy", ordertype="limit", price="2000",
                          volume="0.01")["error"] == []


def test_form_encoded_close_fields(client, exchange):
    body = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "42000", "volume": "0.1",
            "close[ordertype]": "take-profit", "close[price]": "45000"}
    txid = client.ok("AddOrder", **body)["txid"][0]
    assert exchange.order(txid)["descr"]["close"] == "close position @ take profit 45000.0"
