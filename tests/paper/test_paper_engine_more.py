"""The engine's own edges: construction, liquidity per pair, the clock, queries and their filters,
ClosedOrders windows, TradeBalance conversions, and the scripted-data helpers' argument checks."""
from __future__ import annotations

from decimal import Decimal

import pytest

from triplegain_fsm.errors import NotFoundError, ValidationError
from triplegain_fsm.paper import PaperExchange
from triplegain_fsm.paper.feeds import Tick, flash_crash_series
from triplegain_fsm.paper.pairs import PairSpec

pytestmark = pytest.mark.integration


# -- construction and ticks -----------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "match"), [
    ({"account": "futures"}, "account: 'spot' or 'margin'"),
    ({"fill_latency_ticks": -1}, "fill_latency_ticks"),
    ({"fill_latency_ticks": True}, "fill_latency_ticks"),
    ({"fill_latency_ticks": "2"}, "fill_latency_ticks"),
])
def test_engine_settings_are_checked(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        PaperExchange(**kwargs)


@pytest.mark.parametrize("price", ["0", "-5", "0.04"])      # 0.04 rounds to 0.0 at XBTUSD's 1 decimal
def test_a_tick_must_be_a_positive_price(exchange, price):
    with pytest.raises(ValidationError, match="price: must be positive"):
        exchange.set_price("XBTUSD", price)
    assert exchange.last_price("XBTUSD") == Decimal("43000.0")


def test_liquidity_can_be_set_per_pair(make_exchange, place):
    exchange = make_exchange(liquidity_per_tick={"XBT/USD": "0.2"}, prices={"BTC/USD": "43000", "ETH/USD": "2300"})
    xbt = place(exchange, type="buy", ordertype="limit", price="42000", volume="0.5")
    eth = place(exchange, pair="ETHUSD", type="buy", ordertype="limit", price="2200", volume="5")
    assert [t["vol"] for t in exchange.set_price("XBTUSD", "41900")] == ["0.20000000"]
    assert [t["vol"] for t in exchange.set_price("ETHUSD", "2190")] == ["5.00000000"]     # no limit for ETH
    assert exchange.order(xbt)["status"] == "open" and exchange.order(eth)["status"] == "closed"


# -- the clock ------------------------------------------------------------------------------------

def test_a_pending_order_ignores_ticks_until_it_starts(exchange, place, clock):
    txid = place(type="buy", ordertype="limit", price="42000", volume="0.1", starttm="+30")
    assert exchange.set_price("XBTUSD", "41000") == []       # marketable, but not started
    assert exchange.order(txid)["status"] == "pending"
    clock.advance(31)
    exchange.set_price("XBTUSD", "41000")                    # started first, then trades at the last price
    [trade] = exchange.trades().values()
    assert (trade["ordertxid"], trade["price"]) == (txid, "41000.0")
    assert exchange.order(txid)["status"] == "closed"


def test_a_cancelled_gtd_order_does_not_expire_later(exchange, place, clock):
    txid = place(type="buy", ordertype="limit", price="42000", volume="0.1", timeinforce="GTD", expiretm="+60")
    assert exchange.engine.cancel_order(txid=txid) == 1
    clock.advance(120)
    exchange.process_time()
    order = exchange.order(txid)
    assert (order["status"], order["reason"]) == ("canceled", "User requested")


def test_dead_mans_switch_timeout_is_bounded(client):
    assert client.private("CancelAllOrdersAfter", timeout="86401")["error"] == ["EGeneral:Invalid arguments:timeout"]
    assert client.private("CancelAllOrdersAfter", timeout="-1")["error"] == ["EGeneral:Invalid arguments:timeout"]
    assert client.ok("CancelAllOrdersAfter", timeout="86400")["triggerTime"] != "0"


# -- cancel and query -----------------------------------------------------------------------------

def limit(client, **extra):
    params = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "42000", "volume": "0.1", **extra}
    return client.ok("AddOrder", **params)["txid"][0]


def test_cancel_order_needs_an_id(client):
    limit(client)
    assert client.private("CancelOrder")["error"] == ["EGeneral:Invalid arguments"]
    assert len(client.ok("OpenOrders")["open"]) == 1


def test_query_orders_filters_by_userref(client):
    first, second = limit(client, userref="1"), limit(client, userref="2")
    assert set(client.ok("QueryOrders", txid=f"{first},{second}", userref="1")) == {first}
    assert set(client.ok("QueryOrders", txid=f"{first},{second}")) == {first, second}
    assert set(client.ok("OpenOrders", userref="2")["open"]) == {second}


def test_unknown_ids_in_the_python_facade_and_query_trades(exchange, client):
    with pytest.raises(NotFoundError, match="no paper order"):
        exchange.order("OAAAAA-BBBBB-CCCCCC")
    assert client.private("QueryTrades", txid="TAAAAA-BBBBB-CCCCCC")["error"] == ["EGeneral:Invalid arguments:txid"]


# -- ClosedOrders windows -------------------------------------------------------------------------

@pytest.fixture
def history(client, exchange, clock):
    """Three orders: A opened at t0 and cancelled at t0+100; B opened and filled at t0+50; C open since t0+60."""
    t0 = clock()
    a = limit(client)
    clock.advance(50)
    b = client.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="market", volume="0.01")["txid"][0]
    clock.advance(10)
    c = limit(client)
    clock.advance(40)
    client.ok("CancelOrder", txid=a)
    return t0, a, b, c


def closed(client, **params) -> list[str]:
    return list(client.ok("ClosedOrders", **params)["closed"])


def test_closed_orders_window_by_open_or_close_time(client, history):
    t0, a, b, _ = history
    assert closed(client) == [a, b]                                          # newest close first
    assert closed(client, start=str(t0 + 40), closetime="open") == [b]       # A opened before the window
    assert closed(client, start=str(t0 + 40), closetime="close") == [a, b]   # ...but closed inside it
    assert closed(client, start=str(t0 + 40)) == [a, b]                      # both: either time counts
    assert closed(client, end=str(t0 + 50), closetime="close") == [b]


def test_closed_orders_window_bounded_by_a_txid(client, history):
    _, a, b, c = history
    assert closed(client, start=b, closetime="close") == [a]                 # after B closed (t0+50)
    assert closed(client, end=b, closetime="open") == [a, b]                 # opened up to B's open time
    assert closed(client, start=c) == [a]                                    # C is live: its open time
    assert client.private("ClosedOrders", closetime="sometime")["error"] == ["EGeneral:Invalid arguments:closetime"]
    assert client.private("ClosedOrders", start="last week")["error"] == ["EGeneral:Invalid arguments:start"]


# -- TradeBalance ---------------------------------------------------------------------------------

def test_trade_balance_converts_through_the_pairs_that_have_a_price(make_exchange, client_for):
    exchange = make_exchange(balances={"ZUSD": "100000", "XXBT": "2", "XETH": "10", "ZEUR": "500"})
    client = client_for(exchange)
    usd = client.ok("TradeBalance")
    assert usd["eb"] == "186000.0000"                  # USD + 2 BTC at 43000; ETH has no price, EUR no path
    assert "ml" not in usd and usd["m"] == "0.0000"   # spot: no margin level
    btc = client.ok("TradeBalance", asset="XBT")
    assert btc["eb"] == "4.3256"                       # 100000 / 43000 + 2
    exchange.set_price("ETHUSD", "2000")
    assert client.ok("TradeBalance")["eb"] == "206000.0000"


# -- data helpers ---------------------------------------------------------------------------------

def test_flash_crash_series_must_fit_its_crash_inside_the_series():
    with pytest.raises(ValueError, match="must fit inside ticks"):
        flash_crash_series(ticks=100, crash_at=90, crash_ticks=5, recovery_ticks=20)
    with pytest.raises(ValueError, match="must fit inside ticks"):
        flash_crash_series(ticks=100, crash_at=0, crash_ticks=5, recovery_ticks=20)


def test_a_fault_needs_a_method_name(exchange):
    with pytest.raises(ValueError, match="method"):
        exchange.faults.fail_next("", "EService:Unavailable")
    assert exchange.faults.pending() == []


# -- pairs and clocks given by the caller ---------------------------------------------------------

def test_an_exchange_trades_only_the_pair_specs_it_is_given(client_for):
    only = [PairSpec.from_kraken("XXBTZUSD", PaperExchange.default_pairs()["XXBTZUSD"])]
    exchange = PaperExchange(pairs=only, prices={"XBTUSD": "43000"})
    client = client_for(exchange)
    assert set(client.public("AssetPairs")["result"]) == {"XXBTZUSD"}
    assert client.private("AddOrder", pair="ETHUSD", type="buy", ordertype="market",
                          volume="1")["error"] == ["EQuery:Unknown asset pair"]


def test_replay_on_a_wall_clock_keeps_the_clock_and_uses_the_prices(place):
    exchange = PaperExchange(clock=lambda: 1_800_000_000.0, prices={"BTC/USD": "43000"},
                             balances={"ZUSD": "100000", "XXBT": "2"})
    txid = place(exchange, type="sell", ordertype="stop-loss", price="42000", volume="0.5")
    ticks = [Tick(1_600_000_000.0 + i, Decimal(p), Decimal("0.1")) for i, p in enumerate(["42500", "41900"])]
    [trade] = exchange.replay("XBTUSD", ticks)
    assert (trade["ordertxid"], trade["price"], trade["time"]) == (txid, "41900.0", 1_800_000_000.0)


def test_a_trailing_stop_amended_before_it_starts_trails_from_its_start(exchange, client, place, clock):
    txid = place(type="sell", ordertype="trailing-stop", price="+500", volume="0.1", starttm="+10")
    assert client.private("AmendOrder", txid=txid, trigger_price="+200")["error"] == []
    clock.advance(11)
    exchange.set_price("XBTUSD", "44000")                   # started at 43000, now best 44000: trigger 43800
    assert exchange.set_price("XBTUSD", "43850") == []
    [trade] = exchange.set_price("XBTUSD", "43790")
    assert (trade["ordertxid"], exchange.order(txid)["stopprice"]) == (txid, "43800.0")


def test_replay_returns_the_trades_of_orders_the_clock_started(exchange, place, clock):
    """`replay` promises all trades. BUG (triplegain_fsm/paper/engine.py, set_price): `before = len(state.trades)`
    is taken after `_process_time()`, so a delayed-start order that trades when a tick's time starts it is in
    the book's trades but not in what set_price/replay return."""
    txid = place(type="buy", ordertype="market", volume="0.1", starttm="+5")
    ticks = [Tick(clock() + 3 * i, Decimal(43000 + i), Decimal(1)) for i in range(1, 4)]
    returned = exchange.replay("XBTUSD", ticks)
    assert [t["ordertxid"] for t in exchange.trades().values()] == [txid]
    assert [t["ordertxid"] for t in returned] == [txid]
