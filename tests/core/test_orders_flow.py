"""Orders driven through the public API and the paper exchange (the exchange boundary)."""
from __future__ import annotations

import threading
from decimal import Decimal as D

import pytest

from triplegain_fsm import (
    ExecutionCore,
    IllegalTransition,
    OrderStatus,
    PositionLimitError,
    ProposalError,
    TradeProposal,
    UnknownSymbolError,
    ValidationError,
)

pytestmark = pytest.mark.integration


def buy(size="500", entry=None, sl="41000", tp="48000", symbol="BTC/USD", **kw) -> TradeProposal:
    return TradeProposal(symbol=symbol, side="buy", size_usd=D(size), entry_price=D(entry) if entry else None,
                         stop_loss=D(sl) if sl else None, take_profit=D(tp) if tp else None, **kw)


def wire(core: ExecutionCore, method: str) -> list[dict[str, str]]:
    return [c.params for c in core.paper.calls.of(method) if c.acted]


# -- sizing (F02) -----------------------------------------------------------------------------------------

def test_market_order_is_sized_from_the_ticker_when_no_fresh_price(make_core):
    core = make_core(price=None)
    result = core.orders.execute_trade(buy())
    assert result.success
    assert core.paper.calls.count("Ticker") == 1
    (params,) = wire(core, "AddOrder")
    assert params["ordertype"] == "market" and D(params["volume"]) == D("0.01162790")  # 500 / 43000, down to 8 dp
    assert D(params["volume"]) < 1, "never the USD amount as base volume"


def test_market_order_uses_a_fresh_cached_price_and_one_request(make_core):
    core = make_core(price="42000")
    core.client.pairs.all()  # pair metadata is loaded once per process, not per order
    before = len(core.paper.calls)
    core.orders.execute_trade(buy())
    new_calls = core.paper.calls.all()[before:]
    assert [c.method for c in new_calls] == ["AddOrder"]
    assert D(new_calls[0].params["volume"]) == D("0.01190476")


# -- partial fills (F03) and dedupe --------------------------------------------------------------------------

def test_limit_order_partially_filled_in_three_polls_then_filled(make_core, collect):
    core = make_core(price="43100", paper={"liquidity_per_tick": "0.004"})
    events, _ = collect(core)
    result = core.orders.execute_trade(buy(size="430", entry="43000", sl="41000", tp="48000"))
    order = result.order
    assert order.size == D("0.01") and order.status is OrderStatus.OPEN
    states = []
    for _ in range(3):
        core.price_tick("BTC/USD", D("42990"))
        core.poll_once()
        states.append((order.status, order.filled_size))
    assert states == [(OrderStatus.PARTIALLY_FILLED, D("0.004")), (OrderStatus.PARTIALLY_FILLED, D("0.008")),
                      (OrderStatus.FILLED, D("0.01"))]
    fills = [e.payload for e in events if e.payload.get("event") == "order_fill" and e.payload["order_id"] == order.id]
    assert [f["qty"] for f in fills] == [D("0.004"), D("0.004"), D("0.002")]
    assert len(core.store.fills(order.id)) == 3
    assert order.fee_amount > 0 and order.average_fill_price == D("43000")
    position = core.positions.get_position(result.position_id)
    assert position.size == D("0.01") and position.total_fees == order.fee_amount


def test_repeated_poll_never_counts_a_fill_twice(make_core):
    core = make_core()
    result = core.orders.execute_trade(buy())
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    size, fees = position.size, position.total_fees
    for _ in range(3):
        core.orders.refresh([result.order])  # the same closed report again
    assert len(core.store.fills(result.order.id)) == 1
    assert (position.size, position.total_fees) == (size, fees)


# -- cancel ----------------------------------------------------------------------------------------------------

def test_cancel_open_limit_order_abandons_its_position(make_core):
    core = make_core()
    result = core.orders.execute_trade(buy(entry="42000", sl="41000", tp="48000"))
    assert core.orders.cancel_order(result.order.id) is True
    assert result.order.status is OrderStatus.CANCELLED
    assert core.positions.get_position(result.position_id).status.value == "CLOSED"
    assert core.paper.open_orders() == {}


def test_cancel_racing_a_fill_ends_filled(make_core):
    core = make_core()
    result = core.orders.execute_trade(buy(entry="42000", sl="41000", tp="48000"))
    core.paper.set_price("BTC/USD", D("41950"))  # fills at the exchange; the core has not polled
    assert core.orders.cancel_order(result.order.id) is True
    assert result.order.status is OrderStatus.FILLED
    position = core.positions.get_position(result.position_id)
    assert position.size == result.order.size
    history = [e["to_state"] for e in core.store.events(result.order.id)]
    assert history == ["OPEN", "CANCEL_PENDING", "FILLED"]


# -- unknown outcomes and rejections (F11) ---------------------------------------------------------------------------

def test_addorder_response_lost_after_acceptance_sends_exactly_one_order(make_core):
    core = make_core()
    core.paper.faults.lose_next_response("AddOrder")
    result = core.orders.execute_trade(buy())
    assert core.paper.calls.count("AddOrder", acted=True) == 1
    assert result.success and result.order.status is OrderStatus.OPEN
    (trade,) = core.paper.trades().values()  # the market order filled at once; its txid is the one we hold
    assert result.order.external_id == trade["ordertxid"]


def test_unknown_outcome_is_parked_then_settled_by_client_order_id(make_core, collect):
    core = make_core()
    _, alerts = collect(core)
    core.paper.faults.http_status_next("AddOrder", 502, acted=True)
    core.paper.faults.fail_next("OpenOrders", "EService:Unavailable", times=200)
    core.paper.faults.fail_next("ClosedOrders", "EService:Unavailable", times=200)
    result = core.orders.execute_trade(buy())
    assert not result.success and result.error_type == "outcome_unknown"
    assert result.order.status is OrderStatus.SUBMITTED_UNKNOWN
    assert [a.payload["alert_type"] for a in alerts] == ["order_outcome_unknown"]
    core.paper.faults.clear()
    core.poll_once()
    assert result.order.status is OrderStatus.FILLED and result.order.external_id
    assert len([p for p in wire(core, "AddOrder") if p.get("cl_ord_id") == result.order.client_order_id]) == 1


def test_rejected_order_is_persisted_with_its_error(make_core):
    core = make_core()
    core.paper.faults.fail_next("AddOrder", "EOrder:Insufficient funds")
    result = core.orders.execute_trade(buy())
    assert not result.success and "Insufficient funds" in result.error_message
    stored = core.store.get_order(result.order.id)
    assert stored.status is OrderStatus.REJECTED and "Insufficient funds" in stored.error_message
    assert [e["to_state"] for e in core.store.events(result.order.id)] == ["REJECTED"]
    assert core.positions.get_position(result.position_id).status.value == "CLOSED"


def test_illegal_move_raises_and_leaves_no_trace(make_core):
    core = make_core()
    core.paper.faults.http_status_next("AddOrder", 502, acted=False)
    core.paper.faults.fail_next("OpenOrders", "EService:Unavailable", times=200)
    core.paper.faults.fail_next("ClosedOrders", "EService:Unavailable", times=200)
    result = core.orders.execute_trade(buy())
    events_before = core.store.events()
    with pytest.raises(IllegalTransition, match="SUBMITTED_UNKNOWN"):
        core.orders.cancel_order(result.order.id)
    assert core.store.events() == events_before
    assert result.order.status is OrderStatus.SUBMITTED_UNKNOWN


# -- validation: bad input changes nothing -----------------------------------------------------------------------------

@pytest.mark.parametrize("make, error", [
    (lambda: buy(sl="44000"), ProposalError),                      # stop above the market for a long
    (lambda: buy(tp="42000"), ProposalError),                      # target below the market
    (lambda: buy(symbol="DOGE/XYZ"), UnknownSymbolError),
    (lambda: buy(size="0.01"), ProposalError),                     # below Kraken's minimum
    (lambda: buy(leverage=3), ProposalError),                      # leverage on a spot account
    (lambda: TradeProposal(symbol="BTC/USD", side="sell", size_usd=D(500)), ProposalError),  # short on spot
])
def test_bad_proposals_raise_and_send_nothing(make_core, make, error):
    core = make_core()
    with pytest.raises(error):
        core.orders.execute_trade(make())
    assert core.paper.calls.count("AddOrder") == 0
    assert core.store.count("orders") == 0 and core.store.count("positions") == 0


@pytest.mark.parametrize("bad", [dict(size_usd=500.0), dict(size_usd=D("NaN")), dict(size_usd=D(-5)),
                                 dict(side="hold"), dict(symbol="BTCUSD")])
def test_malformed_proposals_are_refused_at_construction(bad):
    fields = dict(symbol="BTC/USD", side="buy", size_usd=D(500))
    fields.update(bad)
    with pytest.raises(ValidationError):
        TradeProposal(**fields)


def test_position_limits_are_enforced(make_core):
    core = make_core(limits={"max_open_positions": 3, "max_positions_per_symbol": 2})
    core.orders.execute_trade(buy(entry="42000"))
    core.orders.execute_trade(buy(entry="42000"))
    with pytest.raises(PositionLimitError, match="max_positions_per_symbol"):
        core.orders.execute_trade(buy(entry="42000"))
    assert core.paper.calls.count("AddOrder") == 2


# -- reads, bus, threads -----------------------------------------------------------------------------

def test_reads_find_every_order_of_a_position(make_core):
    core = make_core(account="margin")
    result = core.orders.execute_trade(buy(leverage=2))
    core.poll_once()
    roles = sorted(o.role.value for o in core.orders.get_orders_for_position(result.position_id))
    assert roles == ["entry", "stop_loss", "take_profit"]
    assert core.orders.get_order(result.order.id) is result.order
    assert {o.role.value for o in core.orders.get_open_orders()} == {"stop_loss", "take_profit"}


def test_a_raising_subscriber_does_not_break_polling(make_core):
    core = make_core()
    calls = []

    def broken(message):
        calls.append(message)
        raise RuntimeError("bot bug")

    core.bus.subscribe("execution", broken)
    result = core.orders.execute_trade(buy())
    core.poll_once()
    assert result.order.status is OrderStatus.FILLED and calls
    assert core.positions.get_position(result.position_id).status.value == "PROTECTED"


def test_start_and_stop_leave_no_thread_running(make_core):
    core = make_core()
    before = set(threading.enumerate())
    core.orders.execute_trade(buy())
    core.start()
    deadline = threading.Event()
    for _ in range(200):
        if core.orders.get_open_orders() and all(o.role.value != "entry" for o in core.orders.get_open_orders()):
            break
        deadline.wait(0.02)
    core.stop()
    assert set(threading.enumerate()) <= before
    assert not core.status().poller_running


def test_execute_trade_estimates_the_fee_from_the_configured_rates(make_core):
    core = make_core(symbols={"BTC/USD": {"fee_pct": "0.40", "maker_fee_pct": "0.10"}})
    market = core.orders.execute_trade(buy(size="430", sl=None, tp=None))
    limit = core.orders.execute_trade(buy(size="430", entry="43000", sl=None, tp=None))
    assert market.estimated_fee == market.order.size * D(43000) * D("0.0040")
    assert limit.estimated_fee == D("0.01") * D(43000) * D("0.0010")
