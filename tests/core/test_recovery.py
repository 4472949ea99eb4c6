"""A new process on the same store picks up where the last one stopped: nothing twice, nothing lost."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from triplegain_fsm import ExecutionCore, OrderStatus, PositionStatus, TradeProposal
from triplegain_fsm.kraken.client import KrakenClient
from triplegain_fsm.store import Store

pytestmark = pytest.mark.integration


def restart(core: ExecutionCore, clock) -> ExecutionCore:
    """A fresh core on the same SQLite file and the same (paper) exchange; the old one is simply dropped."""
    paper = core.paper
    client = KrakenClient(paper.api_key, paper.api_secret, core.config.exchange.base_url, sleep=lambda s: None)
    paper.mount(client.session, core.config.exchange.base_url)
    return ExecutionCore(core.config, client, Store(core.config.storage.path), paper=paper, clock=clock)


def entry(core):
    return core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="buy", size_usd=D("4300"),
                                                   stop_loss=D(41000), take_profit=D(48000), leverage=2))


def test_fill_that_happened_while_down_is_caught_up_and_protected(make_core, clock):
    core = make_core(account="margin")
    result = entry(core)  # accepted and filled at the exchange; the process dies before polling
    again = restart(core, clock)
    order = again.orders.get_order(result.order.id)
    assert order.status is OrderStatus.OPEN and order is not result.order
    again.poll_once()
    position = again.positions.get_position(result.position_id)
    assert order.status is OrderStatus.FILLED and position.status is PositionStatus.PROTECTED
    assert core.paper.calls.count("AddOrder", acted=True) == 3  # one entry, two legs: nothing sent twice
    assert [e["to_state"] for e in again.store.events(order.id)] == ["OPEN", "FILLED"]


def test_stop_loss_lost_in_flight_is_settled_then_replaced(make_core, clock, collect):
    core = make_core(account="margin")
    result = entry(core)
    core.paper.faults.timeout_before_next("AddOrder")  # the stop-loss never reaches the exchange
    core.paper.faults.fail_next("OpenOrders", "EService:Unavailable", times=100)  # and the look-up fails
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    stop = core.orders.get_order(position.stop_loss_order_id)
    assert stop.status is OrderStatus.SUBMITTED_UNKNOWN and position.status is PositionStatus.UNPROTECTED
    core.paper.faults.clear()
    again = restart(core, clock)
    _, alerts = collect(again)
    clock.advance(120)  # past the stop's deadline: "not found" is now definite
    again.poll_once()
    again.poll_once()
    position = again.positions.get_position(result.position_id)
    assert again.orders.get_order(stop.id).status is OrderStatus.REJECTED
    assert position.status is PositionStatus.PROTECTED
    stops_at_exchange = [o for o in core.paper.open_orders().values() if o["descr"]["ordertype"] == "stop-loss"]
    assert len(stops_at_exchange) == 1


class Crash(BaseException):
    """Stands in for the process dying: not an Exception, so nothing in the core catches it."""


def test_crash_between_the_fill_commit_and_the_stop_request(make_core, clock):
    core = make_core(account="margin")
    result = entry(core)

    def die(request):
        raise Crash

    core.client.add_order = die
    with pytest.raises(Crash):
        core.poll_once()  # the fill, the position and the PENDING stop-loss are committed together
    stored = Store(core.config.storage.path)
    pending = stored.load_orders("state = 'PENDING'")
    assert [o.role.value for o in pending] == ["stop_loss"]
    assert stored.load_positions()[0].size > 0
    stored.close()
    again = restart(core, clock)
    assert again.orders.get_order(pending[0].id).status is OrderStatus.SUBMITTED_UNKNOWN
    clock.advance(120)
    again.poll_once()
    again.poll_once()
    position = again.positions.get_position(result.position_id)
    assert position.status is PositionStatus.PROTECTED
    assert again.orders.get_order(pending[0].id).status is OrderStatus.REJECTED  # never sent: settled, not assumed
    assert core.paper.calls.count("AddOrder", acted=True) == 3
