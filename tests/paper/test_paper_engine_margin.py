"""Margin positions: leverage checks, opening rows, reduce_only closes that cannot flip."""
from __future__ import annotations

from decimal import Decimal

import pytest

from triplegain_fsm.paper import KrakenRejection

pytestmark = pytest.mark.unit


@pytest.fixture
def margin(make_exchange):
    return make_exchange(account="margin", balances={"ZUSD": "10000"})


def refused(place, exchange, **params) -> str:
    with pytest.raises(KrakenRejection) as info:
        place(exchange, **params)
    return info.value.error


def test_spot_account_cannot_open_positions(exchange, place):
    assert refused(place, exchange, type="buy", ordertype="market", volume="0.1", leverage="2") == \
        "EOrder:Cannot open position"


def test_leverage_must_be_offered_by_the_pair(margin, place):
    assert refused(place, margin, type="buy", ordertype="market", volume="0.1", leverage="10") == \
        "EGeneral:Invalid arguments:leverage"
    assert refused(place, margin, pair="XRPETH", type="buy", ordertype="limit", price="0.0014", volume="100",
                   leverage="2") == "EGeneral:Invalid arguments:leverage"


def test_leveraged_buy_opens_a_position_and_only_the_fee_leaves_the_balance(margin, place):
    txid = place(margin, type="buy", ordertype="market", volume="0.2", leverage="2")
    [(posid, row)] = margin.positions().items()
    assert posid.startswith("T")
    assert (row["ordertxid"], row["posstatus"], row["pair"], row["type"]) == (txid, "open", "XXBTZUSD", "buy")
    assert (row["vol"], row["vol_closed"], row["cost"], row["margin"]) == (
        "0.20000000", "0.00000000", "8600.00000", "4300.00000")
    assert margin.balances()["ZUSD"] == Decimal("10000") - Decimal("22.36")
    assert margin.balances().get("XXBT", Decimal(0)) == 0
    margin.set_price("XBTUSD", "44000")
    row = margin.positions()[posid]
    assert (row["value"], row["net"]) == ("8800.00000", "200.00000")
    trade = next(iter(margin.trades().values()))
    assert (trade["posstatus"], trade["postxid"], trade["leverage"]) == ("open", posid, "2")
    assert trade["margin"] == "4300.00000"


def test_reduce_only_closes_the_position_and_settles_pnl(margin, place):
    place(margin, type="buy", ordertype="market", volume="0.2", leverage="2")
    margin.set_price("XBTUSD", "44000")
    place(margin, type="sell", ordertype="market", volume="0.2", leverage="2", reduce_only="true")
    assert margin.positions() == {}
    closing = list(margin.trades().values())[-1]
    assert closing["misc"] == "closing"
    fees = Decimal("22.36") + Decimal("22.88")
    assert margin.balances()["ZUSD"] == Decimal("10000") + Decimal("200") - fees


def test_reduce_only_cannot_flip_and_volume_zero_closes_all(margin, place):
    place(margin, type="buy", ordertype="market", volume="0.2", leverage="2")
    txid = place(margin, type="sell", ordertype="limit", price="44000", volume="0.5", leverage="2", reduce_only="true")
    assert margin.order(txid)["vol"] == "0.20000000"            # limited to the position
    margin.engine.cancel_order(txid=txid)
    place(margin, type="sell", ordertype="market", volume="0", leverage="2", reduce_only="true")
    assert margin.positions() == {}
    assert refused(place, margin, type="sell", ordertype="market", volume="0.1", leverage="2",
                   reduce_only="true") == "EOrder:Reduce only:No position exists"


def test_an_opposite_order_without_reduce_only_closes_then_opens(margin, place):
    place(margin, type="buy", ordertype="market", volume="0.1", leverage="2")
    place(margin, type="sell", ordertype="market", volume="0.3", leverage="2")
    [row] = margin.positions().values()
    assert (row["type"], row["vol"]) == ("sell", "0.20000000")


def test_margin_needs_free_collateral(margin, place):
    assert refused(place, margin, type="buy", ordertype="market", volume="1", leverage="2") == \
        "EOrder:Margin level too low"
    assert place(margin, type="buy", ordertype="market", volume="1", leverage="5")


def test_trade_balance_reports_margin_and_open_pnl(margin, place):
    place(margin, type="buy", ordertype="market", volume="0.2", leverage="2")
    margin.set_price("XBTUSD", "44000")
    balance = margin.engine.trade_balance()
    assert (balance["m"], balance["n"]) == ("4300.0000", "200.0000")
    assert (balance["v"], balance["c"]) == ("8800.0000", "8600.0000")
    assert Decimal(balance["e"]) == Decimal(balance["tb"]) + 200
    assert "ml" in balance
