"""Issue 11 #5: a stop about to be placed whose trigger the market has already crossed follows a policy."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from triplegain_fsm import OrderRole, PositionStatus, TradeProposal

pytestmark = pytest.mark.integration


def protected_long(core):
    result = core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="buy", size_usd=D("4300"),
                                                     stop_loss=D(41000), take_profit=D(48000), leverage=2))
    core.poll_once()
    return core.positions.get_position(result.position_id)


def stop_cancelled_by_hand_then_the_market_falls(core, position) -> None:
    stop = core.orders.get_order(position.stop_loss_order_id)
    core.client.cancel_order(txid=stop.external_id)     # a human cancels the stop on the website
    core.price_tick("BTC/USD", D("40500"))              # the market falls through where it stood


def test_default_policy_closes_at_market_and_alerts(make_core, collect):
    core = make_core(account="margin")
    _, alerts = collect(core)
    position = protected_long(core)
    stop_cancelled_by_hand_then_the_market_falls(core, position)
    stops_before = [o for o in core.orders.get_orders_for_position(position.id) if o.role is OrderRole.STOP_LOSS]
    core.sync_with_exchange()  # sees the stop cancelled: re-protecting would place a stop above the market
    core.poll_once()
    crossed = [a.payload for a in alerts if a.payload["alert_type"] == "stop_crossed"]
    assert len(crossed) == 1 and crossed[0]["severity"] == "critical" and crossed[0]["position_id"] == position.id
    stops_after = [o for o in core.orders.get_orders_for_position(position.id) if o.role is OrderRole.STOP_LOSS]
    assert len(stops_after) == len(stops_before), "no stop was sent beyond the market"
    assert position.status is PositionStatus.CLOSED and "already crossed" in position.close_reason
    assert core.paper.positions() == {} and core.paper.open_orders() == {}


def test_policy_place_sends_the_stop_anyway(make_core, collect):
    core = make_core(account="margin", positions={"crossed_stop": "place"})
    _, alerts = collect(core)
    position = protected_long(core)
    stop_cancelled_by_hand_then_the_market_falls(core, position)
    core.sync_with_exchange()
    stops = [o for o in core.orders.get_orders_for_position(position.id) if o.role is OrderRole.STOP_LOSS]
    assert len(stops) == 2 and "stop_crossed" not in [a.payload["alert_type"] for a in alerts]
