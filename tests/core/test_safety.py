"""Reconciliation drift, the circuit breaker, the dead man's switch and lockouts, through the paper exchange."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from triplegain_fsm import CircuitOpenError, OrderStatus, PositionStatus, TradeProposal

pytestmark = pytest.mark.integration


def long(core, leverage=2, entry=None):
    result = core.orders.execute_trade(TradeProposal(
        symbol="BTC/USD", side="buy", size_usd=D("4300"), stop_loss=D(41000), take_profit=D(48000),
        leverage=leverage, entry_price=D(entry) if entry else None))
    core.poll_once()
    return result


def kinds(alerts):
    return [a.payload["alert_type"] for a in alerts]


def test_protective_order_cancelled_by_hand_is_noticed_and_replaced(make_core, collect):
    core = make_core(account="margin")
    _, alerts = collect(core)
    result = long(core)
    position = core.positions.get_position(result.position_id)
    stop = core.orders.get_order(position.stop_loss_order_id)
    core.client.cancel_order(txid=stop.external_id)  # a human, through the raw API: the core is not told
    report = core.sync_with_exchange()
    assert stop.status is OrderStatus.CANCELLED and report.orders_updated >= 1
    assert "position_unprotected" in kinds(alerts)
    assert position.status is PositionStatus.PROTECTED
    new_stop = core.orders.get_order(position.stop_loss_order_id)
    assert new_stop.id != stop.id and new_stop.external_id in core.paper.open_orders()


def test_unknown_exchange_order_is_reported_as_drift(make_core, collect):
    core = make_core(account="margin")
    _, alerts = collect(core)
    long(core)
    foreign = core.client.private("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="30000",
                                  volume="0.01")["txid"][0]
    report = core.sync_with_exchange()
    assert report.unknown_exchange_orders == [foreign]
    assert kinds(alerts).count("exchange_drift") == 1 and alerts[0].payload["txid"] == foreign


def test_holdings_missing_at_the_exchange_are_drift(make_core, collect):
    core = make_core()  # spot: the core's long must be backed by the BTC balance
    _, alerts = collect(core)
    long(core, leverage=1)
    result = core.orders.get_orders_for_position(core.positions.get_open_positions()[0].id)
    stop = [o for o in result if o.role.value == "stop_loss"][0]
    core.client.cancel_order(txid=stop.external_id)  # a human cancels the stop and sells the coins by hand
    held = core.paper.balances()["XXBT"]
    core.client.private("AddOrder", pair="XBTUSD", type="sell", ordertype="market", volume=format(held, "f"))
    report = core.sync_with_exchange()
    assert report.position_drift and report.position_drift[0]["asset"] == "XXBT"
    assert "exchange_drift" in kinds(alerts)
    position = core.positions.get_position(report.positions_closed[0])
    assert position.status is PositionStatus.CLOSED and "gone from the exchange" in position.close_reason


def test_margin_position_closed_by_hand_is_closed_locally_and_its_legs_cancelled(make_core, collect):
    core = make_core(account="margin")
    _, alerts = collect(core)
    result = long(core)
    position = core.positions.get_position(result.position_id)
    core.client.private("AddOrder", pair="XBTUSD", type="sell", ordertype="market", leverage="2",
                        reduce_only=True, volume=format(position.size, "f"))  # a human, on the website
    report = core.sync_with_exchange()
    assert report.positions_closed == [position.id] and position.status is PositionStatus.CLOSED
    assert core.paper.open_orders() == {}, "no orphan leg is left at the exchange (F12)"
    assert "exchange_drift" in kinds(alerts)


def test_unprotected_position_is_closed_after_the_configured_time(make_core, collect, clock):
    core = make_core(account="margin", positions={"close_unprotected_after_seconds": 60})
    result = core.orders.execute_trade(TradeProposal(
        symbol="BTC/USD", side="buy", size_usd=D("4300"), stop_loss=D(41000), take_profit=D(48000), leverage=2))
    core.paper.faults.fail_next("AddOrder", "EOrder:Margin allowance exceeded", times=2)
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    assert position.status is PositionStatus.UNPROTECTED
    clock.advance(61)
    core.poll_once()
    core.poll_once()
    assert position.status is PositionStatus.CLOSED and position.close_reason == "unprotected too long"
    assert core.paper.positions() == {}


def test_circuit_opens_on_repeated_failures_and_closes_after_a_probe(make_core, collect, clock):
    core = make_core(account="margin", safety={"circuit_failure_threshold": 3, "circuit_probe_seconds": 30})
    _, alerts = collect(core)
    result = long(core, entry="42000")  # a resting order for the poller to ask about
    core.paper.faults.fail_next("QueryOrders", "EService:Unavailable", times=100)
    for _ in range(3):
        core.orders.poll_once()
    assert core.circuit.is_open and "circuit_open" in kinds(alerts)
    with pytest.raises(CircuitOpenError):
        core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="buy", size_usd=D(500)))
    assert result.order.status is OrderStatus.OPEN  # exits and protection keep being managed
    core.paper.faults.clear()
    clock.advance(31)
    core.orders.poll_once()  # the probe succeeds
    assert not core.circuit.is_open and kinds(alerts)[-1] == "circuit_closed"
    assert core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="buy", size_usd=D(500))).success


def test_lockout_halts_every_call(make_core, collect):
    core = make_core(account="margin")
    _, alerts = collect(core)
    long(core, entry="42000")
    core.paper.faults.fail_next("QueryOrders", "EGeneral:Temporary lockout")
    core.poll_once()
    calls = len(core.paper.calls)
    report = core.poll_once()
    assert len(core.paper.calls) == calls, "a locked-out key is not called again"
    assert "halted" in report.errors[0]
    assert "circuit_open" in kinds(alerts)


def test_dead_mans_switch_is_refreshed_and_disarmed_on_stop(make_core, clock):
    core = make_core(safety={"dead_mans_switch_seconds": 60, "dead_mans_switch_refresh_seconds": 20})
    core.poll_once()
    core.poll_once()  # within the refresh interval: no second call
    clock.advance(21)
    core.poll_once()
    armed = [c.params["timeout"] for c in core.paper.calls.of("CancelAllOrdersAfter")]
    assert armed == ["60", "60"]
    core.stop()
    assert core.paper.calls.of("CancelAllOrdersAfter")[-1].params["timeout"] == "0"


def test_an_exit_filled_but_not_yet_seen_is_not_mistaken_for_a_vanished_position(make_core, collect):
    """Regression: reconciliation read OpenPositions (already flat) before the core had seen its own close
    fill, 'vanished' the position, then booked the close fill as an overfill and bought it all back."""
    core = make_core(account="margin")
    _, alerts = collect(core)
    result = long(core)
    core.positions.close_position(result.position_id)   # the market close fills at once; nobody polled yet
    report = core.sync_with_exchange()
    position = core.positions.get_position(result.position_id)
    assert report.position_drift == [] and report.positions_closed == []
    assert position.status is PositionStatus.CLOSED and position.close_reason == "manual"
    roles = [o.role.value for o in core.orders.get_orders_for_position(position.id)]
    assert "flatten" not in roles and core.paper.positions() == {}
    assert not {"exchange_drift", "oco_both_filled"} & set(kinds(alerts))
