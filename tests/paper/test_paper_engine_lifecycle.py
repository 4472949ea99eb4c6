"""Cancel, amend, cancel-all and the dead man's switch."""
from __future__ import annotations

from decimal import Decimal

import pytest

from triplegain_fsm.paper import KrakenRejection
from triplegain_fsm.paper.params import parse_amend

pytestmark = pytest.mark.unit


def amend(exchange, **params):
    return exchange.engine.amend_order(parse_amend({k: str(v) for k, v in params.items()}))


def amend_error(exchange, **params) -> str:
    with pytest.raises(KrakenRejection) as info:
        amend(exchange, **params)
    return info.value.error


def test_a_cancelled_order_keeps_what_it_filled(make_exchange, place):
    exchange = make_exchange(liquidity_per_tick="0.3")
    txid = place(exchange, type="sell", ordertype="limit", price="43500", volume="1")
    exchange.set_price("XBTUSD", "43600")
    assert exchange.engine.cancel_order(txid=txid) == 1
    order = exchange.order(txid)
    assert (order["status"], order["reason"], order["vol_exec"]) == ("canceled", "User requested", "0.30000000")
    assert exchange.holds()["XXBT"] == 0
    assert exchange.balances()["XXBT"] == Decimal("1.7")


def test_cancelling_a_gone_order_is_unknown_order(exchange, place):
    txid = place(type="buy", ordertype="market", volume="0.1")
    for target in ({"txid": txid}, {"txid": "OAAAAA-BBBBB-CCCCCC"}, {"cl_ord_id": "nope"}):
        with pytest.raises(KrakenRejection) as info:
            exchange.engine.cancel_order(**target)
        assert info.value.error == "EOrder:Unknown order"


def test_cancel_by_userref_cancels_all_orders_with_it(exchange, place):
    for _ in range(3):
        place(type="buy", ordertype="limit", price="40000", volume="0.1", userref="42")
    place(type="buy", ordertype="limit", price="40000", volume="0.1", userref="7")
    assert exchange.engine.cancel_order(txid="42") == 3
    assert len(exchange.open_orders()) == 1
    assert exchange.engine.cancel_all() == 1


def test_amend_changes_quantity_and_price_in_place(exchange, place):
    txid = place(type="buy", ordertype="limit", price="42000", volume="0.1", cl_ord_id="amend-me")
    result = amend(exchange, cl_ord_id="amend-me", order_qty="0.2", limit_price="42500")
    assert result["amend_id"].startswith("T")
    order = exchange.order(txid)
    assert (order["vol"], order["descr"]["price"], order["misc"]) == ("0.20000000", "42500.0", "amended")
    assert exchange.holds()["ZUSD"] == Decimal("0.2") * Decimal("42500") * Decimal("1.0026")


def test_amend_to_a_marketable_price_trades_as_taker(exchange, place):
    txid = place(type="buy", ordertype="limit", price="42000", volume="0.1")
    amend(exchange, txid=txid, limit_price="43500")
    assert exchange.order(txid)["status"] == "closed"
    assert next(iter(exchange.trades().values()))["maker"] is False


def test_amend_post_only_refuses_a_price_that_would_take(exchange, place):
    txid = place(type="buy", ordertype="limit", price="42000", volume="0.1")
    assert amend_error(exchange, txid=txid, limit_price="43500", post_only="true") == "EOrder:Post only order"
    assert exchange.order(txid)["descr"]["price"] == "42000.0"


def test_amend_quantity_below_filled_cancels_the_rest(make_exchange, place):
    exchange = make_exchange(liquidity_per_tick="0.3")
    txid = place(exchange, type="sell", ordertype="limit", price="43500", volume="1")
    exchange.set_price("XBTUSD", "43600")
    amend(exchange, txid=txid, order_qty="0.2")
    order = exchange.order(txid)
    assert (order["status"], order["vol_exec"]) == ("canceled", "0.30000000")


def test_amend_trigger_price_of_a_stop(exchange, place):
    txid = place(type="sell", ordertype="stop-loss", price="41000", volume="1")
    amend(exchange, txid=txid, trigger_price="42000")
    assert exchange.set_price("XBTUSD", "42050") == []
    assert len(exchange.set_price("XBTUSD", "41990")) == 1


def test_amend_refusals(exchange, place):
    limit = place(type="buy", ordertype="limit", price="42000", volume="0.1")
    assert amend_error(exchange, txid=limit, trigger_price="41000") == "EGeneral:Invalid arguments:trigger_price"
    assert amend_error(exchange, txid="OAAAAA-BBBBB-CCCCCC", order_qty="1") == "EOrder:Unknown order"
    sell = place(type="sell", ordertype="limit", price="45000", volume="1")
    assert amend_error(exchange, txid=sell, order_qty="3") == "EOrder:Insufficient funds"
    assert exchange.order(sell)["vol"] == "1.00000000"


def test_dead_mans_switch_cancels_everything_when_not_refreshed(exchange, place, clock):
    stop = place(type="sell", ordertype="stop-loss", price="41000", volume="1")
    limit = place(type="buy", ordertype="limit", price="42000", volume="0.1")
    answer = exchange.engine.cancel_all_after(60)
    assert set(answer) == {"currentTime", "triggerTime"}
    clock.advance(50)
    exchange.engine.cancel_all_after(60)          # refreshed: now due at +110
    clock.advance(50)
    exchange.process_time()
    assert len(exchange.open_orders()) == 2
    clock.advance(11)
    exchange.process_time()
    assert exchange.open_orders() == {}
    assert exchange.order(stop)["status"] == exchange.order(limit)["status"] == "canceled"
    assert exchange.engine.dead_man_at is None


def test_dead_mans_switch_disarms_with_zero(exchange, place, clock):
    place(type="buy", ordertype="limit", price="42000", volume="0.1")
    exchange.engine.cancel_all_after(60)
    assert exchange.engine.cancel_all_after(0)["triggerTime"] == "0"
    clock.advance(3600)
    exchange.process_time()
    assert len(exchange.open_orders()) == 1
