"""Random order flow and price paths must never break the books (hypothesis)."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from triplegain_fsm.enums import OrderSide
from triplegain_fsm.paper import KrakenRejection, ManualClock, PaperExchange
from triplegain_fsm.paper.params import parse_add_order, parse_amend

pytestmark = pytest.mark.unit

START = {"ZUSD": Decimal("50000"), "XXBT": Decimal("1")}
TYPES = ["market", "limit", "stop-loss", "take-profit", "stop-loss-limit", "take-profit-limit", "trailing-stop"]

ticks = st.tuples(st.just("tick"), st.integers(400000, 460000))                   # price in 0.1 USD
orders = st.tuples(st.just("order"), st.sampled_from(["buy", "sell"]), st.sampled_from(TYPES),
                   st.integers(-20000, 20000), st.integers(1, 5000))              # offset 0.1 USD, vol 0.0001
cancels = st.tuples(st.just("cancel"), st.integers(0, 50))
amends = st.tuples(st.just("amend"), st.integers(0, 50), st.integers(1, 5000))
actions = st.lists(st.one_of(ticks, orders, cancels, amends), max_size=60)


def wire(side: str, ordertype: str, offset: int, volume: int, last: Decimal) -> dict[str, str]:
    price = last + Decimal(offset) / 10
    params = {"pair": "XBTUSD", "type": side, "ordertype": ordertype, "volume": str(Decimal(volume) / 10000)}
    if ordertype == "trailing-stop":
        params["price"] = f"+{abs(Decimal(offset)) / 10 + 1}"
    elif ordertype != "market":
        params["price"] = str(max(price, Decimal(1000)))
        params["price2"] = str(max(price - 50, Decimal(1000)))
    return params


def apply(exchange: PaperExchange, action: tuple, txids: list[str]) -> None:
    kind = action[0]
    if kind == "tick":
        exchange.set_price("XBTUSD", Decimal(action[1]) / 10)
    elif kind == "order":
        last = exchange.last_price("XBTUSD")
        assert last is not None
        txids.append(exchange.engine.add_order(parse_add_order(wire(*action[1:], last)))["txid"][0])
    elif txids and kind == "cancel":
        exchange.engine.cancel_order(txid=txids[action[1] % len(txids)])
    elif txids and kind == "amend":
        exchange.engine.amend_order(parse_amend(
            {"txid": txids[action[1] % len(txids)], "order_qty": str(Decimal(action[2]) / 10000)}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions)
def test_books_stay_consistent(flow):
    exchange = PaperExchange(balances=START, prices={"XBTUSD": "43000"}, clock=ManualClock(), seed=0,
                             liquidity_per_tick="0.05")
    txids: list[str] = []
    for action in flow:
        try:
            apply(exchange, action, txids)
        except KrakenRejection:
            pass                       # refused requests are part of the flow; they must change nothing
    balances, holds = exchange.balances(), exchange.holds()
    for asset in ("ZUSD", "XXBT"):
        assert 0 <= holds.get(asset, 0) <= balances.get(asset, 0)
    # Conservation: every unit of base and quote is accounted for by a trade.
    records = exchange.engine.trade_records()
    signed = [(1 if t.side is OrderSide.BUY else -1, t) for t in records]
    assert balances.get("XXBT", 0) == START["XXBT"] + sum((s * t.vol for s, t in signed), Decimal(0))
    assert balances["ZUSD"] == START["ZUSD"] - sum((s * t.cost + t.fee for s, t in signed), Decimal(0))
    # Holds equal what the live orders need, and no order over- or under-reports its fills.
    live = exchange.open_orders()
    held_base = sum((Decimal(o["vol"]) - Decimal(o["vol_exec"]) for o in live.values()
                     if o["descr"]["type"] == "sell"), Decimal(0))
    assert holds.get("XXBT", 0) == held_base
    for txid in txids:
        order = exchange.order(txid)
        filled = sum((t.vol for t in records if t.ordertxid == txid), Decimal(0))
        assert Decimal(order["vol_exec"]) == filled <= Decimal(order["vol"])
        assert order["status"] != "closed" or filled == Decimal(order["vol"])
