"""Placement and amendment edges: market modes, prices that cannot be resolved, conditional closes
that Kraken refuses, margin kept per quote currency, and amending each kind of order."""
from __future__ import annotations

from decimal import Decimal

import pytest

from triplegain_fsm.errors import ValidationError
from triplegain_fsm.paper import KrakenRejection
from triplegain_fsm.paper.params import parse_add_order

pytestmark = pytest.mark.integration

NO_ETH_PRICE = "EGeneral:Invalid arguments:no last price for ETHUSD (paper exchange: set_price first)"


def rejected(exchange, **params) -> str:
    params.setdefault("pair", "XBTUSD")
    with pytest.raises(KrakenRejection) as info:
        exchange.engine.add_order(parse_add_order({k: str(v) for k, v in params.items()}))
    return info.value.error


def add(client, **params):
    return client.private("AddOrder", **{"pair": "XBTUSD", "volume": "0.1", **params})


# -- market modes ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "plain_limit", "post_only_limit", "market"), [
    ("cancel_only", "EService:Market in cancel_only mode", "EService:Market in cancel_only mode",
     "EService:Market in cancel_only mode"),
    ("post_only", "EService:Market in post_only mode", None, "EService:Market in post_only mode"),
    ("limit_only", None, None, "EService:Market in limit_only mode"),
    ("reduce_only", "EService:Market in reduce_only mode", "EService:Market in reduce_only mode",
     "EService:Market in reduce_only mode"),
    ("online", None, None, None),
])
def test_pair_status_decides_which_orders_are_accepted(client, exchange, status, plain_limit, post_only_limit,
                                                       market):
    exchange.set_pair_status("XBT/USD", status)
    assert client.public("AssetPairs", pair="XBTUSD")["result"]["XXBTZUSD"]["status"] == status
    answers = [
        add(client, type="buy", ordertype="limit", price="42000")["error"],
        add(client, type="buy", ordertype="limit", price="42000", oflags="post")["error"],
        add(client, type="buy", ordertype="market")["error"],
    ]
    assert answers == [[e] if e else [] for e in (plain_limit, post_only_limit, market)]
    assert client.public("AssetPairs", pair="ETHUSD")["result"]["XETHZUSD"]["status"] == "online"


def test_system_post_only_and_cancel_only_apply_to_every_pair(client, exchange):
    exchange.set_system_status("post_only")
    assert add(client, type="buy", ordertype="market")["error"] == ["EService:Market in post_only mode"]
    assert add(client, type="buy", ordertype="limit", price="42000", oflags="post")["error"] == []
    exchange.set_system_status("cancel_only")
    assert add(client, type="buy", ordertype="limit", price="42000", oflags="post")["error"] == \
        ["EService:Market in cancel_only mode"]
    assert client.ok("CancelAll") == {"count": 1}


def test_maintenance_refuses_orders_even_inside_the_engine(exchange):
    exchange.set_system_status("maintenance")
    assert rejected(exchange, type="buy", ordertype="market", volume="0.1") == "EService:Unavailable"


def test_reduce_only_mode_lets_a_reduce_only_order_through_to_the_position_check(make_exchange):
    exchange = make_exchange(account="margin")
    exchange.set_pair_status("XBTUSD", "reduce_only")
    assert rejected(exchange, type="sell", ordertype="market", volume="0.1", leverage="2", reduce_only="true") == \
        "EOrder:Reduce only:No position exists"


def test_unknown_statuses_are_refused(exchange):
    with pytest.raises(ValidationError, match="status"):
        exchange.set_pair_status("XBTUSD", "closed")
    with pytest.raises(ValidationError, match="status"):
        exchange.set_system_status("offline")
    assert exchange.engine.system_status == "online"


# -- prices ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("params", "error"), [
    ({"pair": "ETHUSD", "type": "buy", "ordertype": "limit", "price": "-5"}, NO_ETH_PRICE),
    ({"pair": "ETHUSD", "type": "buy", "ordertype": "market"}, NO_ETH_PRICE),
    ({"pair": "ETHUSD", "type": "sell", "ordertype": "trailing-stop", "price": "+5"}, NO_ETH_PRICE),
    ({"pair": "ETHUSD", "type": "buy", "ordertype": "market", "oflags": "viqc", "volume": "100"}, NO_ETH_PRICE),
    ({"type": "buy", "ordertype": "limit", "price": "0"}, "EOrder:Invalid price"),
    ({"type": "buy", "ordertype": "limit", "price": "-100%"}, "EOrder:Invalid price"),
    ({"type": "sell", "ordertype": "trailing-stop", "price": "+0"}, "EOrder:Invalid price"),
    ({"type": "sell", "ordertype": "trailing-stop-limit", "price": "+100", "price2": "-0.05"},
     "EOrder:Invalid price:XBTUSD price can only be specified up to 1 decimals."),
    ({"type": "buy", "ordertype": "market", "oflags": "viqc", "volume": "0.0001"},
     "EGeneral:Invalid arguments:volume"),                          # 0.0001 USD buys no whole lot
])
def test_prices_that_cannot_be_resolved_or_are_not_positive(exchange, params, error):
    params.setdefault("volume", "0.1")
    assert rejected(exchange, **params) == error
    assert exchange.open_orders() == {} and exchange.trades() == {}


def test_a_percent_trailing_limit_offset_is_shown_as_written(exchange, place):
    txid = place(type="sell", ordertype="trailing-stop-limit", price="+1%", price2="-0.5%", volume="0.1")
    descr = exchange.order(txid)["descr"]
    assert (descr["price"], descr["price2"]) == ("+1%", "-0.5%")
    assert descr["order"] == "sell 0.10000000 XBTUSD @ trailing stop +1% -> limit -0.5%"


def test_fee_currency_flags_are_reported_as_sent(exchange, place):
    txid = place(type="buy", ordertype="limit", price="42000", volume="0.1", oflags="fcib,post")
    assert exchange.order(txid)["oflags"] == "fcib,post"
    plain = place(type="buy", ordertype="limit", price="42000", volume="0.1")
    assert exchange.order(plain)["oflags"] == "fciq"


# -- conditional closes ---------------------------------------------------------------------------

def test_a_conditional_close_the_market_refuses_is_recorded_as_cancelled(exchange, client):
    parent = client.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="42000", volume="0.1",
                       userref="5", **{"close[ordertype]": "stop-loss", "close[price]": "41000"})["txid"][0]
    exchange.set_pair_status("XBTUSD", "limit_only")       # a stop-loss is no longer accepted
    [trade] = exchange.set_price("XBTUSD", "41900")
    assert trade["ordertxid"] == parent
    assert client.ok("OpenOrders")["open"] == {}
    closed = client.ok("ClosedOrders")
    [close] = [o for o in closed["closed"].values() if o["refid"] == parent]
    assert (close["status"], close["reason"]) == ("canceled", "EService:Market in limit_only mode")
    assert (close["descr"]["type"], close["descr"]["ordertype"], close["vol"]) == ("sell", "stop-loss", "0.10000000")
    assert close["vol_exec"] == "0.00000000" and exchange.balances()["XXBT"] == Decimal("2.1")   # kept, unprotected


# -- margin ---------------------------------------------------------------------------------------

def test_free_margin_is_counted_per_quote_currency(make_exchange, client_for):
    """A loss on a EUR position does not eat the USD collateral a USD order needs."""
    exchange = make_exchange(account="margin", prices={"BTC/USD": "43000", "BCH/EUR": "250"},
                             balances={"ZUSD": "5000", "ZEUR": "1000"})
    client = client_for(exchange)
    assert add(client, pair="BCHEUR", type="buy", ordertype="market", volume="10", leverage="3")["error"] == []
    exchange.set_price("BCH/EUR", "200")                    # -500 EUR open
    [row] = client.ok("OpenPositions").values()
    assert (row["pair"], row["net"]) == ("BCHEUR", "-500.00000")
    assert add(client, type="buy", ordertype="market", volume="0.2", leverage="2")["error"] == []   # 4300 USD
    assert add(client, type="buy", ordertype="market", volume="0.05", leverage="2")["error"] == \
        ["EOrder:Margin level too low"]                    # USD is used up now
    eur = client.ok("TradeBalance", asset="ZEUR")
    assert (eur["m"], eur["n"]) == ("833.3333", "-500.0000")    # the USD position has no EUR price path


def test_a_reduce_only_close_partly_closes_the_oldest_row_first(make_exchange, client_for):
    exchange = make_exchange(account="margin")
    client = client_for(exchange)
    for _ in range(2):
        assert add(client, type="buy", ordertype="market", volume="0.1", leverage="2")["error"] == []
    assert add(client, type="sell", ordertype="market", volume="0.05", leverage="2", reduce_only="true")["error"] == []
    rows = sorted(client.ok("OpenPositions").values(), key=lambda r: r["time"])
    assert [(r["vol"], r["vol_closed"]) for r in rows] == [("0.10000000", "0.05000000"), ("0.10000000", "0.00000000")]
    [closing] = [t for t in exchange.trades().values() if t["type"] == "sell"]
    assert closing["misc"] == "closing" and closing["vol"] == "0.05000000"


def test_a_reduce_only_order_is_cancelled_when_another_order_closed_the_position(make_exchange, client_for):
    exchange = make_exchange(account="margin", liquidity_per_tick="0.2")
    client = client_for(exchange)
    assert add(client, type="buy", ordertype="market", volume="0.5", leverage="2")["error"] == []
    exit_order = add(client, type="sell", ordertype="limit", price="45000", volume="0.5", leverage="2",
                     reduce_only="true")["result"]["txid"][0]
    assert add(client, type="sell", ordertype="market", volume="0.3", leverage="2")["error"] == []   # closes 0.3
    exchange.set_price("XBTUSD", "45100")                   # the resting exit fills the 0.2 still open
    order = exchange.order(exit_order)
    assert (order["status"], order["reason"]) == ("canceled", "Reduce only order: position closed")
    assert order["vol_exec"] == "0.20000000" and exchange.positions() == {}


# -- fills ----------------------------------------------------------------------------------------

def test_a_buy_stop_that_gaps_past_the_funds_it_held_is_cancelled(make_exchange, place):
    exchange = make_exchange(balances={"ZUSD": "5000"})
    txid = place(exchange, type="buy", ordertype="stop-loss", price="44000", volume="0.1")
    assert exchange.holds()["ZUSD"] > 4400
    assert exchange.set_price("XBTUSD", "60000") == []       # 6000 USD + fee > 5000
    order = exchange.order(txid)
    assert (order["status"], order["reason"], order["vol_exec"]) == ("canceled", "Insufficient funds", "0.00000000")
    assert exchange.balances()["ZUSD"] == 5000 and exchange.holds()["ZUSD"] == 0


def test_a_tick_without_liquidity_fills_nothing(exchange, place):
    txid = place(type="buy", ordertype="limit", price="42000", volume="0.1")
    assert exchange.set_price("XBTUSD", "41900", liquidity="0") == []
    assert exchange.order(txid)["vol_exec"] == "0.00000000"
    [trade] = exchange.set_price("XBTUSD", "41800", liquidity="0.04")
    assert trade["vol"] == "0.04000000" and exchange.order(txid)["status"] == "open"


# -- amendments -----------------------------------------------------------------------------------

def amend(client, **params):
    return client.private("AmendOrder", **params)


def test_amending_a_stop_loss_limit_after_it_triggered_moves_its_resting_limit(exchange, client, place):
    txid = place(type="sell", ordertype="stop-loss-limit", price="41500", price2="41400", volume="0.1")
    assert exchange.set_price("XBTUSD", "41300") == []       # triggered, limit 41400 not reachable: rests
    assert exchange.order(txid)["limitprice"] == "41400.0"
    assert amend(client, txid=txid, limit_price="41350")["error"] == []
    order = exchange.order(txid)
    assert (order["limitprice"], order["descr"]["price2"], order["misc"]) == ("41350.0", "41350.0", "stopped,amended")
    assert amend(client, txid=txid, trigger_price="41000")["error"] == ["EGeneral:Invalid arguments:trigger_price"]
    [trade] = exchange.set_price("XBTUSD", "41360")
    assert (trade["price"], trade["maker"]) == ("41350.0", True)


def test_amending_a_trailing_offset_moves_the_trigger_from_the_best_price(exchange, client, place):
    txid = place(type="sell", ordertype="trailing-stop", price="+500", volume="0.1")
    exchange.set_price("XBTUSD", "43600")                   # best 43600: trigger 43100
    assert amend(client, txid=txid, trigger_price="-300")["error"] == ["EGeneral:Invalid arguments:trigger_price"]
    assert amend(client, txid=txid, trigger_price="+300")["error"] == []      # trigger 43300
    assert exchange.order(txid)["descr"]["price"] == "+300.0"
    assert exchange.set_price("XBTUSD", "43350") == []
    [trade] = exchange.set_price("XBTUSD", "43290")
    assert exchange.order(txid)["stopprice"] == "43300.0" and trade["price"] == "43290.0"


def test_amending_the_limit_offset_of_an_untriggered_trailing_stop_limit(exchange, client, place):
    txid = place(type="sell", ordertype="trailing-stop-limit", price="+500", price2="-100", volume="0.1")
    assert amend(client, txid=txid, limit_price="42000")["error"] == ["EGeneral:Invalid arguments:limit_price"]
    assert amend(client, txid=txid, limit_price="-50")["error"] == []
    assert exchange.order(txid)["descr"]["order"] == "sell 0.10000000 XBTUSD @ trailing stop +500.0 -> limit -50.0"
    [trade] = exchange.set_price("XBTUSD", "42480")          # fires at 42500, limit 42450
    assert exchange.order(txid)["limitprice"] == "42450.0" and trade["price"] == "42480.0"


@pytest.mark.parametrize(("ordertype", "params", "amendment", "error"), [
    ("stop-loss", {"price": "40000"}, {"limit_price": "39000"}, "EGeneral:Invalid arguments:limit_price"),
    ("limit", {"price": "42000"}, {"trigger_price": "41000"}, "EGeneral:Invalid arguments:trigger_price"),
    ("limit", {"price": "42000"}, {"order_qty": "0.123456789"}, "EGeneral:Invalid arguments:order_qty"),
    ("limit", {"price": "42000"}, {"limit_price": "-100%"}, "EOrder:Invalid price"),
])
def test_amendments_that_do_not_fit_the_order(exchange, client, place, ordertype, params, amendment, error):
    side = "sell" if ordertype == "stop-loss" else "buy"
    txid = place(type=side, ordertype=ordertype, volume="0.1", **params)
    before = exchange.order(txid)
    assert amend(client, txid=txid, **amendment)["error"] == [error]
    assert exchange.order(txid) == before


def test_amending_an_order_that_has_not_started_does_not_trade_it(exchange, client, place, clock):
    txid = place(type="buy", ordertype="limit", price="42000", volume="0.1", starttm="+60")
    assert amend(client, txid=txid, limit_price="44000", order_qty="0.2")["error"] == []   # now marketable
    order = exchange.order(txid)
    assert (order["status"], order["vol"], order["vol_exec"]) == ("pending", "0.20000000", "0.00000000")
    assert exchange.holds()["ZUSD"] > 0 and exchange.trades() == {}
    clock.advance(61)
    exchange.process_time()
    assert exchange.order(txid)["status"] == "closed"
