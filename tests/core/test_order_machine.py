"""The order table: legal moves, guards, and that an illegal move changes nothing."""
from __future__ import annotations

from decimal import Decimal as D

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triplegain_fsm.errors import IllegalTransition
from triplegain_fsm.machines.order_machine import ORDER_KIND, ORDER_TABLE
from triplegain_fsm.models import Order, OrderSide, OrderStatus, OrderType

pytestmark = pytest.mark.unit


def new_order(size: str = "1") -> Order:
    order = Order(symbol="BTC/USD", side=OrderSide.BUY, order_type=OrderType.LIMIT, size=D(size), price=D("100"))
    ORDER_KIND.attach(order)
    return order


def fill(order: Order, vol: str, price: str = "100", fee: str = "0") -> None:
    vol_exec = D(vol)
    ORDER_KIND.fire(order, "fill", vol_exec=vol_exec, cost=vol_exec * D(price), fee=D(fee))


def test_partial_then_full_fill():
    order = new_order()
    ORDER_KIND.fire(order, "acknowledge")
    fill(order, "0.25")
    assert order.status is OrderStatus.PARTIALLY_FILLED
    fill(order, "0.5", fee="0.1")
    assert order.status is OrderStatus.PARTIALLY_FILLED
    fill(order, "1", fee="0.3")
    assert order.status is OrderStatus.FILLED
    assert order.filled_size == D("1") and order.fee_amount == D("0.3")
    assert [r.to_state for r in order.drain_records()] == ["OPEN", "PARTIALLY_FILLED", "PARTIALLY_FILLED",
                                                            "FILLED"]
    assert not ORDER_KIND.is_attached(order), "a finished order must leave the shared machine (no leak)"


def test_fill_that_does_not_increase_is_refused_and_changes_nothing():
    order = new_order()
    ORDER_KIND.fire(order, "acknowledge")
    fill(order, "0.5")
    before = attrs.asdict(order, recurse=False)
    with pytest.raises(IllegalTransition, match="guard refused"):
        fill(order, "0.5")
    with pytest.raises(IllegalTransition):
        fill(order, "1.5")  # beyond the order volume
    with pytest.raises(IllegalTransition, match="no such trigger"):
        ORDER_KIND.fire(order, "explode")
    assert attrs.asdict(order, recurse=False) == before


def test_illegal_trigger_names_state_and_trigger():
    order = new_order()
    with pytest.raises(IllegalTransition) as info:
        ORDER_KIND.fire(order, "request_cancel")
    assert "PENDING" in str(info.value) and "request_cancel" in str(info.value)
    assert order.status is OrderStatus.PENDING
    assert order.drain_records() == []


def test_fill_after_cancel_request_is_applied_and_can_complete():
    order = new_order()
    ORDER_KIND.fire(order, "acknowledge")
    ORDER_KIND.fire(order, "request_cancel")
    fill(order, "0.4")
    assert order.status is OrderStatus.CANCEL_PENDING and order.filled_size == D("0.4")
    fill(order, "1")
    assert order.status is OrderStatus.FILLED


def test_cancelled_order_keeps_partial_fill():
    order = new_order()
    ORDER_KIND.fire(order, "acknowledge")
    fill(order, "0.3")
    ORDER_KIND.fire(order, "request_cancel")
    ORDER_KIND.fire(order, "cancelled", reason="User requested")
    assert order.status is OrderStatus.CANCELLED and order.filled_size == D("0.3")


def test_cancel_refused_returns_to_the_right_state():
    order = new_order()
    ORDER_KIND.fire(order, "acknowledge")
    ORDER_KIND.fire(order, "request_cancel")
    ORDER_KIND.fire(order, "cancel_refused")
    assert order.status is OrderStatus.OPEN
    fill(order, "0.2")
    ORDER_KIND.fire(order, "request_cancel")
    ORDER_KIND.fire(order, "cancel_refused")
    assert order.status is OrderStatus.PARTIALLY_FILLED


def test_unknown_outcome_settles_either_way():
    found = new_order()
    ORDER_KIND.fire(found, "submit_unknown")
    ORDER_KIND.fire(found, "acknowledge")
    assert found.status is OrderStatus.OPEN
    lost = new_order()
    ORDER_KIND.fire(lost, "submit_unknown")
    ORDER_KIND.fire(lost, "reject", reason="not found after deadline")
    assert lost.status is OrderStatus.REJECTED


def test_two_equal_orders_both_get_triggers():
    """attrs eq=False: a shared machine must not treat two identical orders as one."""
    a, b = new_order(), new_order()
    b.id = a.id = "same"
    ORDER_KIND.fire(a, "acknowledge")
    ORDER_KIND.fire(b, "acknowledge")
    assert a.status is b.status is OrderStatus.OPEN


def test_every_edge_names_known_states_and_guards():
    states = set(ORDER_KIND.states)
    for edge in ORDER_TABLE:
        sources = edge.source if isinstance(edge.source, tuple) else (edge.source,)
        assert set(sources) <= states and (edge.dest is None or edge.dest in states)
        for guard in (*edge.conditions, *edge.unless, *edge.before):
            assert callable(getattr(Order, guard)), guard


_ACTIONS = st.lists(st.one_of(
    st.tuples(st.just("fill"), st.decimals(min_value=0, max_value=2, places=3)),
    st.tuples(st.sampled_from(["acknowledge", "request_cancel", "cancel_refused", "cancelled", "expire",
                               "submit_unknown", "reject"]), st.none()),
), max_size=25)


@settings(max_examples=300, deadline=None)
@given(_ACTIONS)
def test_random_reports_never_corrupt_an_order(actions):
    order = new_order()
    for trigger, value in actions:
        before = (order.state, order.filled_size)
        try:
            if trigger == "fill":
                fill(order, str(value))
            else:
                ORDER_KIND.fire(order, trigger)
        except IllegalTransition:
            assert (order.state, order.filled_size) == before
        assert D(0) <= order.filled_size <= order.size
        assert (order.status is OrderStatus.FILLED) == (order.filled_size == order.size)
        assert order.state in ORDER_KIND.states
