"""Liquidity-limited partial fills, balance holds (and the refused second sell leg), concurrency."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from triplegain_fsm.paper import KrakenRejection
from triplegain_fsm.paper.params import parse_add_order

pytestmark = pytest.mark.unit


def test_a_large_resting_order_fills_over_several_ticks(make_exchange, place):
    exchange = make_exchange(liquidity_per_tick="0.3")
    txid = place(exchange, type="sell", ordertype="limit", price="43500", volume="1")
    fills = [exchange.set_price("XBTUSD", "43600") for _ in range(4)]
    assert [[t["vol"] for t in f] for f in fills] == [["0.30000000"], ["0.30000000"], ["0.30000000"], ["0.10000000"]]
    assert all(t["maker"] and t["price"] == "43500.0" for f in fills for t in f)
    order = exchange.order(txid)
    assert (order["status"], order["vol_exec"], len(order["trades"])) == ("closed", "1.00000000", 4)


def test_partially_filled_order_reports_open_with_vol_exec(make_exchange, place):
    exchange = make_exchange(liquidity_per_tick="0.375")
    txid = place(exchange, type="buy", ordertype="limit", price="30010", volume="1.25")
    exchange.set_price("XBTUSD", "30000")
    order = exchange.order(txid)
    assert (order["status"], order["vol"], order["vol_exec"], order["price"]) == (
        "open", "1.25000000", "0.37500000", "30010.0")


def test_older_orders_fill_first_when_liquidity_is_short(make_exchange, place):
    exchange = make_exchange(liquidity_per_tick="0.5")
    first = place(exchange, type="sell", ordertype="limit", price="43500", volume="0.4")
    second = place(exchange, type="sell", ordertype="limit", price="43400", volume="0.4")
    exchange.set_price("XBTUSD", "43600")
    assert exchange.order(first)["vol_exec"] == "0.40000000"
    assert exchange.order(second)["vol_exec"] == "0.10000000"


def test_market_orders_fill_in_full_unless_configured(make_exchange, place):
    unlimited = make_exchange(liquidity_per_tick="0.1")
    assert unlimited.order(place(unlimited, type="buy", ordertype="market", volume="1"))["status"] == "closed"
    limited = make_exchange(liquidity_per_tick="0.4", limit_market_orders=True)
    txid = place(limited, type="buy", ordertype="market", volume="1")
    assert limited.order(txid)["vol_exec"] == "0.40000000"
    limited.set_price("XBTUSD", "43100")
    limited.set_price("XBTUSD", "43200", liquidity="5")      # a busier tick
    order = limited.order(txid)
    assert (order["status"], order["vol_exec"]) == ("closed", "1.00000000")
    assert [t["price"] for t in limited.trades().values()] == ["43000.0", "43100.0", "43200.0"]


def test_resting_sell_holds_the_base_and_a_second_full_size_leg_is_refused(exchange, place):
    """Kraken's spot behaviour an OCO emulation must cope with."""
    stop = place(type="sell", ordertype="stop-loss", price="41000", volume="2")
    assert exchange.holds()["XXBT"] == Decimal("2")
    with pytest.raises(KrakenRejection) as info:
        place(type="sell", ordertype="take-profit", price="45000", volume="2")
    assert info.value.error == "EOrder:Insufficient funds"
    exchange.engine.cancel_order(txid=stop)
    assert exchange.holds()["XXBT"] == 0
    assert place(type="sell", ordertype="take-profit", price="45000", volume="2")


def test_buy_hold_covers_cost_and_fee_and_shrinks_with_fills(make_exchange, place):
    exchange = make_exchange(liquidity_per_tick="0.5")
    place(exchange, type="buy", ordertype="limit", price="40000", volume="1")
    assert exchange.holds()["ZUSD"] == Decimal("40104")          # 40000 * 1.0026
    exchange.set_price("XBTUSD", "39900")
    assert exchange.holds()["ZUSD"] == Decimal("20052")
    with pytest.raises(KrakenRejection):
        place(exchange, type="buy", ordertype="limit", price="40000", volume="2")


def test_balances_stay_consistent_under_concurrent_orders_and_ticks(exchange):
    errors: list[BaseException] = []

    def trader(side: str) -> None:
        try:
            for _ in range(25):
                exchange.engine.add_order(parse_add_order(
                    {"pair": "XBTUSD", "type": side, "ordertype": "market", "volume": "0.01"}))
        except BaseException as exc:   # collected and re-raised by the test thread
            errors.append(exc)

    def ticker() -> None:
        for i in range(50):
            exchange.set_price("XBTUSD", str(43000 + i))

    threads = [threading.Thread(target=trader, args=(side,)) for side in ("buy", "sell") * 3]
    threads.append(threading.Thread(target=ticker))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    trades = exchange.trades().values()
    assert len(trades) == 150
    bought = sum(Decimal(t["vol"]) * (1 if t["type"] == "buy" else -1) for t in trades)
    spent = sum((Decimal(t["cost"]) * (1 if t["type"] == "buy" else -1)) + Decimal(t["fee"]) for t in trades)
    assert exchange.balances()["XXBT"] == Decimal("2") + bought
    assert exchange.balances()["ZUSD"] == Decimal("100000") - spent


def test_fill_latency_delays_fills_by_ticks(make_exchange, place):
    exchange = make_exchange(fill_latency_ticks=2)
    market = place(exchange, type="buy", ordertype="market", volume="0.1")
    limit = place(exchange, type="sell", ordertype="limit", price="43100", volume="0.1")
    assert exchange.order(market)["status"] == "open"
    exchange.set_price("XBTUSD", "43200")            # limit becomes marketable here
    assert exchange.trades() == {}
    exchange.set_price("XBTUSD", "43300")            # market order's second tick: fills at this price
    assert exchange.order(market)["price"] == "43300.0"
    exchange.set_price("XBTUSD", "43050")            # limit no longer marketable: latency restarts
    exchange.set_price("XBTUSD", "43150")
    exchange.set_price("XBTUSD", "43150")
    assert exchange.order(limit)["status"] == "open"
    exchange.set_price("XBTUSD", "43150")
    assert exchange.order(limit)["status"] == "closed"


def test_paper_from_config_reads_the_paper_section(clock):
    from types import SimpleNamespace

    from triplegain_fsm.paper import paper_from_config

    config = SimpleNamespace(
        paper=SimpleNamespace(balances={"ZUSD": Decimal("500")}, prices={"BTC/USD": Decimal("43000")},
                              liquidity_per_tick=Decimal("0.05"), fill_latency_ticks=0),
        exchange=SimpleNamespace(account="margin"),
    )
    exchange = paper_from_config(config, clock=clock)
    assert exchange.balances() == {"ZUSD": Decimal("500")}
    assert exchange.last_price("XBTUSD") == Decimal("43000")
    assert exchange.engine.add_order(parse_add_order(
        {"pair": "XBTUSD", "type": "buy", "ordertype": "market", "volume": "0.01", "leverage": "2"}))
