"""v2 add_order for every order type, checked against what the engine holds: the v2 price layout
(trigger in `triggers.price`, a `*-limit`'s limit in `limit_price`) must land where REST puts it."""
from __future__ import annotations

from decimal import Decimal

import pytest

from triplegain_fsm.paper.ws_probe import WsProbe

pytestmark = pytest.mark.integration
D = Decimal


@pytest.fixture
def probe_for():
    servers, probes = [], []

    def make(exchange) -> WsProbe:
        server = exchange.serve_ws(heartbeat_interval=0.05)
        servers.append(server)
        probe = WsProbe(server.url, exchange.ws_tokens.issue()["token"])
        probe.recv()
        probes.append(probe)
        return probe
    yield make
    for probe in probes:
        probe.close()
    for server in servers:
        server.shutdown()


@pytest.fixture
def probe(exchange, probe_for) -> WsProbe:
    return probe_for(exchange)


def add(probe: WsProbe, **params) -> dict:
    return probe.request("add_order", {"symbol": "BTC/USD", "order_qty": D("0.01"), **params})


# (v2 params, descr.price, descr.price2): REST's layout is price = trigger (or limit), price2 = limit
LAYOUTS = [
    ({"order_type": "limit", "side": "buy", "limit_price": D("42000")}, "42000.0", "0"),
    ({"order_type": "stop-loss", "side": "sell", "triggers": {"price": D("40000")}}, "40000.0", "0"),
    ({"order_type": "take-profit", "side": "sell", "triggers": {"price": D("45000")}}, "45000.0", "0"),
    ({"order_type": "stop-loss-limit", "side": "sell", "triggers": {"price": D("40000")},
      "limit_price": D("39900")}, "40000.0", "39900.0"),
    ({"order_type": "take-profit-limit", "side": "sell", "triggers": {"price": D("45000")},
      "limit_price": D("44900")}, "45000.0", "44900.0"),
    ({"order_type": "trailing-stop", "side": "sell", "triggers": {"price": D("150"), "price_type": "quote"}},
     "+150.0", "0"),
    ({"order_type": "trailing-stop-limit", "side": "sell", "triggers": {"price": D("2"), "price_type": "pct"},
      "limit_price": D("-10"), "limit_price_type": "quote"}, "+2%", "-10.0"),
    ({"order_type": "stop-loss", "side": "sell", "triggers": {"price": D("-5"), "price_type": "pct"}},
     "40850.0", "0"),
]


@pytest.mark.parametrize(("params", "price", "price2"), LAYOUTS, ids=[p[0]["order_type"] for p in LAYOUTS])
def test_each_order_type_lands_in_the_engine_as_rest_would_place_it(exchange, probe, params, price, price2):
    answer = add(probe, **params)
    assert answer["success"] is True, answer
    order = exchange.order(answer["result"]["order_id"])
    assert order["status"] == "open" and order["descr"]["ordertype"] == params["order_type"]
    assert (order["descr"]["price"], order["descr"]["price2"]) == (price, price2)
    assert order["descr"]["type"] == params["side"] and order["vol"] == "0.01000000"


def test_market_order_fills_and_cl_ord_id_is_echoed(exchange, probe):
    both = add(probe, order_type="market", side="buy", cl_ord_id="mk-1", order_userref=7)
    assert both["error"] == "EGeneral:Invalid arguments:cl_ord_id"         # mutually exclusive, as on REST
    answer = add(probe, order_type="market", side="buy", cl_ord_id="mk-1")
    assert answer["result"] == {"order_id": answer["result"]["order_id"], "cl_ord_id": "mk-1"}
    order = exchange.order(answer["result"]["order_id"])
    assert order["status"] == "closed" and order["cl_ord_id"] == "mk-1"


def test_flags_time_in_force_and_validate(exchange, probe):
    post = add(probe, order_type="limit", side="buy", limit_price=D("42000"), post_only=True)
    assert "post" in exchange.order(post["result"]["order_id"])["oflags"]
    crossing = add(probe, order_type="limit", side="buy", limit_price=D("44000"), post_only=True)
    assert exchange.order(crossing["result"]["order_id"])["reason"] == "Post only order"
    ioc = add(probe, order_type="limit", side="buy", limit_price=D("42000"), time_in_force="ioc")
    assert exchange.order(ioc["result"]["order_id"])["status"] == "canceled"
    before = len(exchange.engine.open_orders()["open"])
    checked = add(probe, order_type="limit", side="buy", limit_price=D("42000"), validate=True)
    assert checked["success"] is True and "order_id" not in checked["result"]
    assert len(exchange.engine.open_orders()["open"]) == before


def test_margin_true_means_the_pairs_maximum_leverage(make_exchange, probe_for):
    exchange = make_exchange(account="margin")
    probe = probe_for(exchange)
    answer = add(probe, order_type="limit", side="buy", limit_price=D("42000"), margin=True)
    assert exchange.order(answer["result"]["order_id"])["descr"]["leverage"] == "5:1"


def test_margin_on_a_spot_account_is_refused_like_rest(probe):
    answer = add(probe, order_type="limit", side="buy", limit_price=D("42000"), margin=True)
    assert answer["success"] is False and answer["error"] == "EOrder:Cannot open position"


@pytest.mark.parametrize(("params", "error"), [
    ({"order_type": "market", "side": "buy", "limit_price": D("1")}, "EGeneral:Invalid arguments:limit_price"),
    ({"order_type": "limit", "side": "buy", "limit_price": D("42000"), "triggers": {"price": D("1")}},
     "EGeneral:Invalid arguments:triggers"),
    ({"order_type": "stop-loss-limit", "side": "sell", "triggers": {"price": D("40000")}},
     "EGeneral:Invalid arguments:price2"),
    ({"order_type": "limit", "side": "buy", "limit_price": D("42000"), "order_qty": D("100")},
     "EOrder:Insufficient funds"),
    ({"order_type": "limit", "side": "buy", "limit_price": D("42000.05")},
     "EOrder:Invalid price:XBTUSD price can only be specified up to 1 decimals."),
    ({"order_type": "limit", "side": "buy", "limit_price": D("42000"), "symbol": "NOPE/USD"},
     "EQuery:Unknown asset pair"),
    ({"order_type": "limit", "side": "buy", "limit_price": D("42000"), "leverage": 2},
     "EGeneral:Invalid arguments:leverage"),
    ({"order_type": "bogus", "side": "buy"}, "EGeneral:Invalid arguments:order_type"),
])
def test_rejections_use_the_rest_error_strings(exchange, probe, params, error):
    answer = add(probe, **params)
    assert answer["success"] is False and answer["error"] == error and answer["method"] == "add_order"
    assert exchange.open_orders() == {}


def test_duplicate_cl_ord_id_among_open_orders_is_refused(exchange, probe):
    add(probe, order_type="limit", side="buy", limit_price=D("42000"), cl_ord_id="dup")
    again = add(probe, order_type="limit", side="buy", limit_price=D("41000"), cl_ord_id="dup")
    assert again["error"] == "EOrder:Duplicate order"


def test_rate_counter_is_shared_with_rest(make_exchange, probe_for, client_for):
    exchange = make_exchange(rate_limit_tier="starter")       # 60 per pair; the manual clock stops decay
    probe = probe_for(exchange)
    assert probe.subscribe()[0]["result"]["maxratecount"] == 60
    client = client_for(exchange)
    for _ in range(30):
        client.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="market", volume="0.01")
    for _ in range(30):
        assert add(probe, order_type="market", side="buy")["success"] is True
    assert add(probe, order_type="market", side="buy")["error"] == "EOrder:Rate limit exceeded"
