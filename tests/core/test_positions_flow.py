"""Positions driven through the public API and the paper exchange: protection, OCO, modify, trailing, close."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from triplegain_fsm import ExecutionCore, IllegalTransition, LegLocation, OrderRole, PositionStatus, TradeProposal
from triplegain_fsm.kraken.errors import InvalidPrice

pytestmark = pytest.mark.integration


def open_long(core: ExecutionCore, size="4300", sl="41000", tp="48000", leverage=1, entry=None):
    result = core.orders.execute_trade(TradeProposal(
        symbol="BTC/USD", side="buy", size_usd=D(size), stop_loss=D(sl), take_profit=D(tp), leverage=leverage,
        entry_price=D(entry) if entry else None))
    core.poll_once()
    return core.positions.get_position(result.position_id)


def legs_at_exchange(core: ExecutionCore, position) -> dict[str, dict]:
    """The paper exchange's own view of the position's protective orders still open."""
    legs = {}
    for order in core.orders.get_orders_for_position(position.id):
        if order.role in (OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT) and order.external_id in core.paper.open_orders():
            legs[order.role.value] = core.paper.order(order.external_id)
    return legs


def alert_types(alerts) -> list[str]:
    return [a.payload["alert_type"] for a in alerts]


def test_margin_fill_places_both_legs_with_krakens_parameters(make_core):
    core = make_core(account="margin")
    position = open_long(core, leverage=2)
    assert position.status is PositionStatus.PROTECTED
    assert position.stop_loss_location is position.take_profit_location is LegLocation.EXCHANGE
    sl, tp = [c.params for c in core.paper.calls.of("AddOrder") if c.acted][1:]
    assert (sl["ordertype"], sl["type"], D(sl["price"]), sl.get("price2")) == ("stop-loss", "sell", D(41000), None)
    assert (tp["ordertype"], tp["type"], D(tp["price"])) == ("take-profit", "sell", D(48000))
    assert sl["leverage"] == tp["leverage"] == "2" and sl["reduce_only"] == tp["reduce_only"] == "true"
    assert D(sl["volume"]) == D(tp["volume"]) == position.size == D("0.1")


def test_partial_entry_fills_grow_both_legs_to_the_full_size(make_core):
    core = make_core(account="margin", price="43100", paper={"liquidity_per_tick": "0.04"})
    result = core.orders.execute_trade(TradeProposal(
        symbol="BTC/USD", side="buy", size_usd=D("4300"), entry_price=D("43000"), stop_loss=D("41000"),
        take_profit=D("48000"), leverage=2))
    position = core.positions.get_position(result.position_id)
    sizes = []
    for _ in range(3):
        core.price_tick("BTC/USD", D("42990"))
        core.poll_once()
        legs = legs_at_exchange(core, position)
        sizes.append((position.size, D(legs["stop_loss"]["vol"]), D(legs["take_profit"]["vol"])))
    assert sizes == [(D("0.04"),) * 3, (D("0.08"),) * 3, (D("0.1"),) * 3]
    assert position.status is PositionStatus.PROTECTED
    assert core.paper.calls.count("AmendOrder", acted=True) == 4  # both legs grown twice, in place


def test_stop_loss_failing_twice_then_succeeding(make_core, collect, clock):
    core = make_core(account="margin", alerts={"repeat_after_seconds": 0})  # every failure alerts
    _, alerts = collect(core)
    result = core.orders.execute_trade(TradeProposal(
        symbol="BTC/USD", side="buy", size_usd=D("4300"), stop_loss=D(41000), take_profit=D(48000), leverage=2))
    core.paper.faults.fail_next("AddOrder", "EOrder:Margin allowance exceeded", times=2)
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    assert position.status is PositionStatus.UNPROTECTED
    assert alert_types(alerts) == ["contingent_order_failure", "position_unprotected"]
    assert alerts[0].payload["severity"] == "critical" and alerts[0].payload["failed_orders"] == ["stop_loss"]
    assert core.store.pending_work()[0]["position_id"] == position.id  # the retry survives a restart
    core.poll_once()  # not due yet: no new attempt
    assert len(alerts) == 2
    clock.advance(2.5)
    core.poll_once()
    assert position.status is PositionStatus.UNPROTECTED and len(alerts) == 4
    clock.advance(4.5)
    core.poll_once()
    assert position.status is PositionStatus.PROTECTED
    assert set(legs_at_exchange(core, position)) == {"stop_loss", "take_profit"}
    assert core.store.pending_work() == []
    states = [e["to_state"] for e in core.store.events(position.id)]
    assert states == ["UNPROTECTED", "PROTECTED"]


def test_take_profit_fill_cancels_the_stop_loss(make_core):
    core = make_core(account="margin")
    position = open_long(core, leverage=2)
    core.price_tick("BTC/USD", D("48100"))
    core.poll_once()
    assert position.status is PositionStatus.CLOSED and position.size == 0
    assert core.paper.open_orders() == {}
    sl = core.orders.get_order(position.stop_loss_order_id or "") or [
        o for o in core.orders.get_orders_for_position(position.id) if o.role is OrderRole.STOP_LOSS][0]
    assert sl.status.value == "CANCELLED"


def test_both_legs_filling_in_one_poll_alerts_and_flattens(make_core, collect):
    # a spot account holding other BTC: the exchange accepts both sell legs, and both can fill
    core = make_core(paper={"balances": {"ZUSD": "1000000", "XXBT": "1"}})
    _, alerts = collect(core)
    position = open_long(core)
    assert position.take_profit_location is LegLocation.EXCHANGE
    core.paper.set_price("BTC/USD", D("40900"))   # stop-loss fills
    core.paper.set_price("BTC/USD", D("48100"))   # take-profit fills before the core polls
    core.poll_once()
    assert "oco_both_filled" in alert_types(alerts)
    core.poll_once()  # the flatten order filled
    assert position.status is PositionStatus.CLOSED and position.excess_size == 0
    flatten = [o for o in core.orders.get_orders_for_position(position.id) if o.role is OrderRole.FLATTEN]
    assert len(flatten) == 1 and flatten[0].side.value == "buy" and flatten[0].filled_size == position.entry_size
    assert core.paper.balances()["XXBT"] == D(1)
    assert core.paper.open_orders() == {}


def test_modify_rejected_by_the_exchange_keeps_the_old_level(make_core, collect):
    core = make_core(account="margin")
    _, alerts = collect(core)
    position = open_long(core, leverage=2)
    core.paper.faults.fail_next("AmendOrder", "EOrder:Invalid price:trigger")
    with pytest.raises(InvalidPrice):
        core.positions.modify_position(position.id, stop_loss=D("42000"))
    assert position.stop_loss == D(41000)
    assert D(legs_at_exchange(core, position)["stop_loss"]["descr"]["price"]) == D(41000)
    assert alert_types(alerts) == ["modify_failed"]
    core.positions.modify_position(position.id, stop_loss=D("42000"), take_profit=D("47000"))
    legs = legs_at_exchange(core, position)
    assert (position.stop_loss, position.take_profit) == (D(42000), D(47000))
    assert D(legs["stop_loss"]["descr"]["price"]) == D(42000) and D(legs["take_profit"]["descr"]["price"]) == D(47000)
    with pytest.raises(Exception, match="wrong side"):
        core.positions.modify_position(position.id, stop_loss=D("44000"))


def test_trailing_stop_ratchets_up_and_never_loosens(make_core):
    core = make_core(account="margin")
    position = open_long(core, leverage=2)
    assert core.positions.enable_trailing_stop_for_position(position.id, distance_pct=D(2), activation_pct=D(1))
    stops = []
    for price in ("43200", "43500", "44000", "45000", "44500", "46000", "45500"):
        core.price_tick("BTC/USD", D(price))
        core.poll_once()
        stops.append(position.stop_loss)
    assert stops == [D(41000), D(42630), D(43120), D(44100), D(44100), D(45080), D(45080)]
    sl_leg = legs_at_exchange(core, position)["stop_loss"]
    assert D(sl_leg["descr"]["price"]) == D(45080)
    core.price_tick("BTC/USD", D("45000"))  # through the trailed stop: the exchange stops us out
    core.poll_once()
    assert position.status is PositionStatus.CLOSED and position.realized_pnl > 0


def test_spot_position_keeps_the_take_profit_local_and_a_tick_fires_it(make_core):
    core = make_core()  # spot: the stop holds the whole balance, Kraken refuses a second sell
    position = open_long(core)
    assert position.status is PositionStatus.PROTECTED
    assert (position.stop_loss_location, position.take_profit_location) == (LegLocation.EXCHANGE, LegLocation.LOCAL)
    assert len(core.paper.open_orders()) == 1
    core.price_tick("BTC/USD", D("47000"))
    assert position.status is PositionStatus.PROTECTED  # below the target: nothing happens
    core.price_tick("BTC/USD", D("48050"))
    core.poll_once()
    assert position.status is PositionStatus.CLOSED and "take_profit" in position.close_reason
    assert core.paper.open_orders() == {} and core.paper.balances().get("XXBT", D(0)) == 0


def test_manual_close_cancels_both_legs_and_closes_on_the_fill(make_core):
    core = make_core(account="margin")
    position = open_long(core, leverage=2)
    core.positions.close_position(position.id, reason="manual")
    assert position.status is PositionStatus.CLOSING
    core.poll_once()
    assert position.status is PositionStatus.CLOSED and position.close_reason == "manual"
    assert core.paper.open_orders() == {} and core.paper.positions() == {}
    close = [o for o in core.orders.get_orders_for_position(position.id) if o.role is OrderRole.CLOSE]
    assert close[0].reduce_only and close[0].leverage == 2
    with pytest.raises(IllegalTransition, match="already closing or closed"):
        core.positions.close_position(position.id)


@pytest.mark.parametrize("side, exit_price", [("buy", "44000"), ("sell", "42000")])
def test_realized_pnl_is_net_of_fees_and_matches_the_exchange(make_core, side, exit_price):
    core = make_core(account="margin")
    sl, tp = ("41000", "48000") if side == "buy" else ("45000", "38000")
    result = core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side=side, size_usd=D("4300"),
                                                     stop_loss=D(sl), take_profit=D(tp), leverage=3))
    core.poll_once()
    core.price_tick("BTC/USD", D(exit_price))
    core.positions.close_position(result.position_id)
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    assert position.status is PositionStatus.CLOSED
    txids = {o.external_id for o in core.orders.get_orders_for_position(position.id)}
    cash = D(0)
    fees = D(0)
    for trade in core.paper.trades().values():
        if trade["ordertxid"] in txids:
            cash += D(trade["cost"]) if trade["type"] == "sell" else -D(trade["cost"])
            fees += D(trade["fee"])
    assert fees > 0 and position.total_fees == fees
    assert position.realized_pnl == cash - fees
    assert position.calculate_pnl(D(exit_price))[0] == position.realized_pnl
    summary = core.positions.fee_summary()
    assert summary["by_symbol"]["BTC/USD"] == fees
