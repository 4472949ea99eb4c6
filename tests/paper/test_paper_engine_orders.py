"""Each order type's trigger and fill semantics, fees, and AddOrder's validation."""
from __future__ import annotations

from decimal import Decimal

import pytest

from triplegain_fsm.paper import KrakenRejection
from triplegain_fsm.paper.fmt import rfc3339
from triplegain_fsm.paper.params import parse_add_order

pytestmark = pytest.mark.unit


def rejected(exchange, **params) -> str:
    params.setdefault("pair", "XBTUSD")
    with pytest.raises(KrakenRejection) as info:
        exchange.engine.add_order(parse_add_order({k: str(v) for k, v in params.items()}))
    return info.value.error


def only_trade(exchange, txid):
    trades = [t for t in exchange.trades().values() if t["ordertxid"] == txid]
    assert len(trades) == 1, trades
    return trades[0]


def test_market_buy_fills_at_last_price_with_taker_fee(exchange, place):
    txid = place(type="buy", ordertype="market", volume="0.5")
    order = exchange.order(txid)
    assert order["status"] == "closed"
    assert (order["vol_exec"], order["price"], order["cost"], order["fee"]) == (
        "0.50000000", "43000.0", "21500.00000", "55.90000")
    trade = only_trade(exchange, txid)
    assert trade["pair"] == "XXBTZUSD" and trade["maker"] is False and trade["ordertype"] == "market"
    assert exchange.balances()["ZUSD"] == Decimal("78444.1")
    assert exchange.balances()["XXBT"] == Decimal("2.5")


def test_market_sell_needs_the_base_balance(exchange):
    assert rejected(exchange, type="sell", ordertype="market", volume="3") == "EOrder:Insufficient funds"


def test_resting_limit_fills_at_its_price_as_maker(exchange, place):
    txid = place(type="buy", ordertype="limit", price="42000", volume="0.1")
    assert exchange.order(txid)["status"] == "open"
    assert exchange.set_price("XBTUSD", "42100") == []
    trades = exchange.set_price("XBTUSD", "41900")
    assert [(t["price"], t["maker"], t["fee"]) for t in trades] == [("42000.0", True, "6.72000")]
    assert exchange.order(txid)["status"] == "closed"
    assert exchange.balances()["ZUSD"] == Decimal("100000") - Decimal("4206.72")
    assert exchange.holds()["ZUSD"] == 0


def test_marketable_limit_fills_at_once_as_taker_at_the_current_price(exchange, place):
    txid = place(type="buy", ordertype="limit", price="44000", volume="0.1")
    trade = only_trade(exchange, txid)
    assert (trade["price"], trade["maker"], trade["fee"]) == ("43000.0", False, "11.18000")


@pytest.mark.parametrize("side, ordertype, trigger, quiet, fire, misc", [
    ("sell", "stop-loss", "42000", "42100", "42000", "stopped"),      # sell stop: price <= trigger
    ("sell", "take-profit", "44000", "43900", "44000", "touched"),    # sell take-profit: price >= trigger
    ("buy", "stop-loss", "44000", "43900", "44000", "stopped"),       # buy stop: price >= trigger
    ("buy", "take-profit", "42000", "42100", "42000", "touched"),     # buy take-profit: price <= trigger
])
def test_stop_and_take_profit_trigger_like_kraken(exchange, place, side, ordertype, trigger, quiet, fire, misc):
    txid = place(type=side, ordertype=ordertype, price=trigger, volume="1")
    assert exchange.set_price("XBTUSD", quiet) == []
    assert exchange.order(txid)["status"] == "open"
    [trade] = exchange.set_price("XBTUSD", fire)
    order = exchange.order(txid)
    assert (order["status"], order["misc"], order["stopprice"]) == ("closed", misc, f"{Decimal(trigger):.1f}")
    assert (trade["price"], trade["maker"]) == (f"{Decimal(fire):.1f}", False)


def test_a_stop_fills_at_the_price_it_gapped_to(exchange, place):
    txid = place(type="sell", ordertype="stop-loss", price="42000", volume="1")
    exchange.set_price("XBTUSD", "40000")
    assert only_trade(exchange, txid)["price"] == "40000.0"


def test_a_stop_already_through_its_trigger_fires_on_arrival(exchange, place):
    txid = place(type="sell", ordertype="stop-loss", price="43500", volume="1")
    assert exchange.order(txid)["status"] == "closed"
    assert only_trade(exchange, txid)["price"] == "43000.0"


def test_stop_loss_limit_trades_at_once_when_the_limit_is_reachable(exchange, place):
    txid = place(type="sell", ordertype="stop-loss-limit", price="42000", price2="41900", volume="1")
    [trade] = exchange.set_price("XBTUSD", "41950")
    order = exchange.order(txid)
    assert (order["stopprice"], order["limitprice"], order["status"]) == ("42000.0", "41900.0", "closed")
    assert (trade["price"], trade["maker"]) == ("41950.0", False)


def test_stop_loss_limit_rests_at_its_limit_after_a_gap(exchange, place):
    txid = place(type="sell", ordertype="stop-loss-limit", price="42000", price2="41900", volume="1")
    assert exchange.set_price("XBTUSD", "41800") == []
    order = exchange.order(txid)
    assert (order["status"], order["misc"], order["limitprice"]) == ("open", "stopped", "41900.0")
    [trade] = exchange.set_price("XBTUSD", "41950")
    assert (trade["price"], trade["maker"]) == ("41900.0", True)


def test_take_profit_limit_uses_price_as_trigger_and_price2_as_limit(exchange, place):
    txid = place(type="sell", ordertype="take-profit-limit", price="44000", price2="43950", volume="1")
    assert exchange.set_price("XBTUSD", "43990") == []
    [trade] = exchange.set_price("XBTUSD", "44010")
    assert trade["price"] == "44010.0"
    assert exchange.order(txid)["misc"] == "touched"


def test_trailing_stop_follows_the_high_and_fires_on_the_retrace(exchange, place):
    txid = place(type="sell", ordertype="trailing-stop", price="+500", volume="1")
    assert exchange.order(txid)["descr"]["price"] == "+500.0"
    exchange.set_price("XBTUSD", "43600")          # new high: trigger moves to 43100
    assert exchange.set_price("XBTUSD", "43200") == []
    [trade] = exchange.set_price("XBTUSD", "43100")
    assert trade["price"] == "43100.0"
    assert exchange.order(txid)["stopprice"] == "43100.0"


def test_trailing_stop_percent_offset(exchange, place):
    txid = place(type="sell", ordertype="trailing-stop", price="+1%", volume="1")
    exchange.set_price("XBTUSD", "44000")          # trigger 43560
    assert exchange.set_price("XBTUSD", "43600") == []
    assert len(exchange.set_price("XBTUSD", "43560")) == 1
    assert exchange.order(txid)["descr"]["order"] == "sell 1.00000000 XBTUSD @ trailing stop +1%"


def test_buy_trailing_stop_follows_the_low(exchange, place):
    txid = place(type="buy", ordertype="trailing-stop", price="+500", volume="0.1")
    exchange.set_price("XBTUSD", "42000")          # trigger 42500
    assert exchange.set_price("XBTUSD", "42400") == []
    exchange.set_price("XBTUSD", "42500")
    assert exchange.order(txid)["status"] == "closed"


def test_trailing_stop_limit_sets_its_limit_from_the_trigger(exchange, place):
    txid = place(type="sell", ordertype="trailing-stop-limit", price="+500", price2="-100", volume="1")
    exchange.set_price("XBTUSD", "43600")
    [trade] = exchange.set_price("XBTUSD", "43050")
    order = exchange.order(txid)
    assert (order["stopprice"], order["limitprice"], trade["price"]) == ("43100.0", "43000.0", "43050.0")


def test_trailing_offsets_must_start_with_plus(exchange):
    assert rejected(exchange, type="sell", ordertype="trailing-stop", price="500", volume="1") == \
        "EGeneral:Invalid arguments:price"


def test_post_only_limit_that_would_take_is_cancelled(exchange, place):
    taker = place(type="buy", ordertype="limit", price="44000", volume="0.1", oflags="post")
    order = exchange.order(taker)
    assert (order["status"], order["reason"], order["vol_exec"]) == ("canceled", "Post only order", "0.00000000")
    maker = place(type="buy", ordertype="limit", price="42000", volume="0.1", oflags="post")
    assert exchange.order(maker)["status"] == "open"


def test_ioc_limit_drops_what_did_not_fill(exchange, place):
    txid = place(type="buy", ordertype="limit", price="42000", volume="0.1", timeinforce="IOC")
    order = exchange.order(txid)
    assert (order["status"], order["vol_exec"]) == ("canceled", "0.00000000")


def test_validate_checks_without_placing(exchange):
    result = exchange.engine.add_order(parse_add_order(
        {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "42000", "volume": "0.1", "validate": "true"}))
    assert result == {"descr": {"order": "buy 0.10000000 XBTUSD @ limit 42000.0"}}
    assert exchange.open_orders() == {} and exchange.holds()["ZUSD"] == 0
    assert rejected(exchange, type="buy", ordertype="market", volume="100", validate="true") == \
        "EOrder:Insufficient funds"


def test_deadline(exchange, place, clock):
    assert rejected(exchange, type="buy", ordertype="market", volume="0.1",
                    deadline=rfc3339(clock() - 10)) == "EService:Deadline elapsed"
    assert rejected(exchange, type="buy", ordertype="market", volume="0.1",
                    deadline=rfc3339(clock() + 120)) == "EGeneral:Invalid arguments:deadline"
    assert place(type="buy", ordertype="market", volume="0.1", deadline=rfc3339(clock() + 10))


def test_cl_ord_id_is_unique_among_open_orders_only(exchange, place):
    first = place(type="buy", ordertype="limit", price="42000", volume="0.1", cl_ord_id="entry-1")
    assert rejected(exchange, type="buy", ordertype="limit", price="42000", volume="0.1",
                    cl_ord_id="entry-1") == "EOrder:Duplicate order"
    exchange.engine.cancel_order(txid=first)
    assert place(type="buy", ordertype="limit", price="42000", volume="0.1", cl_ord_id="entry-1") != first


@pytest.mark.parametrize("params, error", [
    ({"pair": "NOPE", "volume": "1"}, "EQuery:Unknown asset pair"),
    ({"volume": "0.00005"}, "EOrder:Order minimum not met"),
    ({"volume": "0.0001", "price": "1000"}, "EOrder:Cost minimum not met"),
    ({"volume": "0.1", "price": "42000.05"},
     "EOrder:Invalid price:XBTUSD price can only be specified up to 1 decimals."),
    ({"volume": "0.123456789"}, "EGeneral:Invalid arguments:volume"),
    ({"volume": ""}, "EGeneral:Invalid arguments"),
    ({"volume": "0.1", "price": ""}, "EGeneral:Invalid arguments:price"),
    ({"volume": "0.1", "leverage": "2"}, "EOrder:Cannot open position"),
    ({"volume": "0.1", "oflags": "viqc"}, "EGeneral:Invalid arguments:viqc"),
    ({"volume": "0.1", "cl_ord_id": "x" * 19}, "EGeneral:Invalid arguments:cl_ord_id"),
    ({"volume": "0.1", "cl_ord_id": "a", "userref": "7"}, "EGeneral:Invalid arguments:cl_ord_id"),
])
def test_validation_like_kraken(exchange, params, error):
    base = {"type": "buy", "ordertype": "limit", "price": "42000"}
    assert rejected(exchange, **{**base, **params}) == error


def test_viqc_only_on_market_buys(exchange, place):
    assert rejected(exchange, type="sell", ordertype="market", volume="100", oflags="viqc") == \
        "EGeneral:Invalid arguments:viqc"
    txid = place(type="buy", ordertype="market", volume="1000", oflags="viqc")
    assert exchange.order(txid)["vol_exec"] == "0.02325581"       # 1000 USD / 43000, rounded down


def test_tick_size_is_checked(make_exchange):
    pairs = make_exchange().default_pairs()
    pairs["XXBTZUSD"]["tick_size"] = "0.5"
    exchange = make_exchange(pairs=pairs)
    assert rejected(exchange, type="buy", ordertype="limit", price="42000.1", volume="0.1") == \
        "EOrder:Tick size check failed"


@pytest.mark.parametrize("side, price, expected", [
    ("buy", "-100", "42900.0"), ("buy", "#100", "42900.0"), ("sell", "#1%", "43430.0"), ("sell", "+0.5%", "43215.0"),
])
def test_relative_limit_prices_resolve_against_the_last_price(exchange, place, side, price, expected):
    txid = place(type=side, ordertype="limit", price=price, volume="0.1")
    assert exchange.order(txid)["descr"]["price"] == expected


def test_gtd_order_expires_by_the_clock(exchange, place, clock):
    txid = place(type="buy", ordertype="limit", price="42000", volume="0.1", timeinforce="GTD", expiretm="+60")
    clock.advance(59)
    exchange.process_time()
    assert exchange.order(txid)["status"] == "open"
    clock.advance(2)
    assert exchange.set_price("XBTUSD", "41000") == []    # expiry applies before the tick
    order = exchange.order(txid)
    assert (order["status"], order["vol_exec"]) == ("expired", "0.00000000")
    assert exchange.holds()["ZUSD"] == 0


def test_delayed_start_keeps_the_order_pending(exchange, place, clock):
    txid = place(type="buy", ordertype="market", volume="0.1", starttm="+30")
    assert exchange.order(txid)["status"] == "pending"
    clock.advance(31)
    exchange.process_time()
    assert exchange.order(txid)["status"] == "closed"


def test_conditional_close_is_placed_when_the_parent_fills(exchange, place):
    parent = place(type="buy", ordertype="limit", price="42000", volume="0.1",
                   **{"close[ordertype]": "stop-loss", "close[price]": "41000"})
    assert exchange.order(parent)["descr"]["close"] == "close position @ stop loss 41000.0"
    exchange.set_price("XBTUSD", "41900")
    [close] = [o for o in exchange.open_orders().values() if o["refid"] == parent]
    assert close["descr"]["order"] == "sell 0.10000000 XBTUSD @ stop loss 41000.0"
