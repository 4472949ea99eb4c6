"""The typed helpers the core calls: batching, filtering, parsing into Decimal, errors raised not swallowed."""
from __future__ import annotations

from decimal import Decimal
from urllib.parse import parse_qsl

import pytest
from responses import matchers

from triplegain_fsm.errors import ValidationError
from triplegain_fsm.kraken import errors as E

pytestmark = pytest.mark.integration


def body(call) -> dict[str, str]:
    return dict(parse_qsl(call.request.body.decode()))


def test_query_orders_batches_of_20_merged(kx, mock, client):
    txids = [f"O{i:03d}" for i in range(45)]

    def answer(request):
        ids = dict(parse_qsl(request.body.decode()))["txid"].split(",")
        return 200, {}, __import__("json").dumps({"error": [], "result": {t: {"status": "open"} for t in ids}})

    mock.add_callback("POST", kx.private_url("QueryOrders"), callback=answer)
    result = client.query_orders(txids)
    assert list(result) == txids
    sent = [body(c) for c in mock.calls]
    assert [len(b["txid"].split(",")) for b in sent] == [20, 20, 5]
    assert all(b["trades"] == "true" for b in sent)
    assert client.query_orders([]) == {}


def test_trades_batches_of_20(kx, mock, client):
    mock.post(kx.private_url("QueryTrades"), **kx.ok({"T1": {"ordertxid": "O1", "vol": "1"}}))
    client.trades([f"T{i}" for i in range(21)])
    assert [len(body(c)["txid"].split(",")) for c in mock.calls] == [20, 1]


def test_open_and_closed_orders_pass_filters(kx, mock, client):
    mock.post(kx.private_url("OpenOrders"), **kx.ok({"open": {"OA": {"cl_ord_id": "c1"}}}))
    mock.post(kx.private_url("ClosedOrders"), **kx.ok({"closed": {"OB": {}}, "count": 1}))
    assert client.open_orders(cl_ord_id="c1") == {"OA": {"cl_ord_id": "c1"}}
    assert client.closed_orders(cl_ord_id="c1", start=1700000000, ofs=50) == {"OB": {}}
    assert body(mock.calls[0])["cl_ord_id"] == "c1"
    assert {k: v for k, v in body(mock.calls[1]).items() if k != "nonce"} == {
        "cl_ord_id": "c1", "start": "1700000000", "ofs": "50"}


def test_open_orders_shape_is_checked(kx, mock, client):
    mock.post(kx.private_url("OpenOrders"), **kx.ok({"opened": {}}))
    with pytest.raises(E.MalformedResponse):
        client.open_orders()


def test_find_order_open_then_closed_filtered_by_cl_ord_id(kx, mock, client):
    mock.post(kx.private_url("OpenOrders"), **kx.ok({"open": {"OX": {"cl_ord_id": "other"}}}))
    mock.post(kx.private_url("ClosedOrders"), **kx.ok({"closed": {
        "OOLD": {"cl_ord_id": "c1", "opentm": 1700000000.1}, "ONEW": {"cl_ord_id": "c1", "opentm": 1700000050.2}}}))
    txid, info = client.find_order("c1")
    assert txid == "ONEW"
    mock.replace("POST", kx.private_url("OpenOrders"), **kx.ok({"open": {"OA": {"cl_ord_id": "c2"}}}))
    assert client.find_order("c2")[0] == "OA"


def test_find_order_none_when_nowhere(kx, mock, client):
    mock.post(kx.private_url("OpenOrders"), **kx.ok({"open": {}}))
    mock.post(kx.private_url("ClosedOrders"), **kx.ok({"closed": {}}))
    assert client.find_order("c1") is None


def test_cancel_order_unknown_order_is_raised(kx, mock, client):
    mock.post(kx.private_url("CancelOrder"), **kx.err("EOrder:Unknown order"))
    with pytest.raises(E.UnknownOrder):
        client.cancel_order(txid="OA")
    assert len(mock.calls) == 1


def test_amend_order_with_latest_sends_the_fields_as_they_are_when_each_attempt_goes_out(kx, mock, client):
    """A retried amend reads the level again: what changed while it waited is what it sends."""
    mock.post(kx.private_url("AmendOrder"), **kx.err("EOrder:Rate limit exceeded"))  # certainly not done
    mock.post(kx.private_url("AmendOrder"), **kx.ok({"amend_id": "TAM2"}))
    levels = iter([Decimal("29000"), Decimal("29500")])
    assert client.amend_order("OA", latest=lambda: {"trigger_price": next(levels)}) == {"amend_id": "TAM2"}
    assert [body(c)["trigger_price"] for c in mock.calls] == ["29000", "29500"]
    with pytest.raises(ValidationError):
        client.amend_order("OA", latest=lambda: {"trigger_price": None})


def test_cancel_order_needs_exactly_one_id(client):
    with pytest.raises(ValidationError):
        client.cancel_order()
    with pytest.raises(ValidationError):
        client.cancel_order(txid="OA", cl_ord_id="c1")


def test_amend_order_sends_decimal_strings(kx, mock, client):
    mock.post(kx.private_url("AmendOrder"), **kx.ok({"amend_id": "TAM1"}))
    assert client.amend_order("OA", order_qty=Decimal("0.50000000"), trigger_price=Decimal("29000.0")) == {
        "amend_id": "TAM1"}
    sent = body(mock.calls[0])
    assert (sent["txid"], sent["order_qty"], sent["trigger_price"]) == ("OA", "0.5", "29000")
    assert "limit_price" not in sent
    with pytest.raises(ValidationError):
        client.amend_order("OA")
    with pytest.raises(ValidationError):
        client.amend_order("OA", limit_price=1.5)


def test_ticker_price_is_last_trade_as_decimal(kx, mock, client):
    mock.get(kx.public_url("Ticker"), match=[matchers.query_param_matcher({"pair": "XBTUSD"})],
             json={"error": [], "result": {"XXBTZUSD": {"a": ["30000.2", "1", "1.0"], "c": ["30000.10000", "0.1"]}}})
    assert client.ticker_price("BTC/USD") == Decimal("30000.1")


def test_ticker_price_malformed(kx, mock, client):
    mock.get(kx.public_url("Ticker"), **kx.ok({"XXBTZUSD": {"c": []}}))
    with pytest.raises(E.MalformedResponse):
        client.ticker_price("XBTUSD")


def test_balances_are_decimals(kx, mock, client):
    mock.post(kx.private_url("Balance"), **kx.ok({"XXBT": "0.5000000000", "ZUSD": "1000.1234"}))
    assert client.balances() == {"XXBT": Decimal("0.5"), "ZUSD": Decimal("1000.1234")}
    mock.replace("POST", kx.private_url("Balance"), **kx.ok({"ZUSD": "lots"}))
    with pytest.raises(E.MalformedResponse):
        client.balances()


def test_open_positions(kx, mock, client):
    mock.post(kx.private_url("OpenPositions"), **kx.ok({"P1": {"pair": "XXBTZUSD", "vol": "1"}}))
    assert client.open_positions(docalcs=True) == {"P1": {"pair": "XXBTZUSD", "vol": "1"}}
    assert body(mock.calls[0])["docalcs"] == "true"


def test_cancel_all_orders_after(kx, mock, client):
    mock.post(kx.private_url("CancelAllOrdersAfter"), **kx.ok({"currentTime": "a", "triggerTime": "b"}))
    client.cancel_all_orders_after(60)
    assert body(mock.calls[0])["timeout"] == "60"
    for bad in (-1, 90000, 1.5, True):
        with pytest.raises(ValidationError):
            client.cancel_all_orders_after(bad)


def test_pairs_load_lazily_from_public_asset_pairs(kx, mock, clock):
    from triplegain_fsm.kraken.client import KrakenClient
    c = KrakenClient(clock=clock, sleep=clock.sleep)
    mock.get(kx.public_url("AssetPairs"), **kx.ok(kx.ASSET_PAIRS))
    assert len(mock.calls) == 0
    assert c.pairs.resolve("DOGE/USD").altname == "XDGUSD"
    assert c.pairs.resolve("BTC/USD").altname == "XBTUSD"
    assert len(mock.calls) == 1
