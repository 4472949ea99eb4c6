"""Public-API behaviour the fault matrix does not reach (found uncovered by the coverage run).

Limit-type protective legs and the price fields Kraken needs for them (the F01 class
of bug), the refusals execute_trade / cancel_order / close_position must give, bounded
in-memory history that still answers from the store, settling an unknown submission
whose look-up answer is malformed, and `check_sl_tp_triggers` for the locally watched
leg. Every test ends with the fault-matrix invariants where the exchange was involved.
"""
from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from triplegain_fsm import (
    LegLocation,
    NotFoundError,
    OrderStatus,
    PositionLimitError,
    PositionStatus,
    ProposalError,
    TradeProposal,
    ValidationError,
)

pytestmark = pytest.mark.integration


def long(leverage: int = 2, entry: str | None = None, size: str = "4300", **kw: Any) -> TradeProposal:
    return TradeProposal(symbol="BTC/USD", side="buy", size_usd=D(size), stop_loss=D(41000), take_profit=D(48000),
                         leverage=leverage, entry_price=D(entry) if entry else None, **kw)


def placed(core, ordertype: str) -> list[dict[str, str]]:
    return [c.params for c in core.paper.calls.of("AddOrder") if c.acted and c.params["ordertype"] == ordertype]


def test_limit_type_legs_carry_the_trigger_in_price_and_the_limit_in_price2(make_core, collect, inv):
    core = make_core("margin", positions={"stop_loss_order_type": "stop-loss-limit",
                                          "take_profit_order_type": "take-profit-limit",
                                          "limit_slippage_pct": "0.5"})
    _, alerts = collect(core)
    result = core.orders.execute_trade(long())
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    assert position.status is PositionStatus.PROTECTED
    (sl,), (tp,) = placed(core, "stop-loss-limit"), placed(core, "take-profit-limit")
    # Kraken: price = trigger, price2 = limit; a sell's limit sits below its trigger by the slippage
    assert (D(sl["price"]), D(sl["price2"])) == (D(41000), D("40795"))
    assert (D(tp["price"]), D(tp["price2"])) == (D(48000), D(47760))
    core.price_tick("BTC/USD", D("48100"))
    core.poll_once()
    assert position.status is PositionStatus.CLOSED
    assert not inv.all_problems(core, alerts)


@pytest.mark.parametrize("make, sections, match", [
    (lambda: "not a proposal", {}, "needs a TradeProposal"),
    (lambda: long(), {"symbols": {"BTC/USD": {"enabled": False, "max_leverage": 5}}}, "disabled"),
    (lambda: long(size="43000"), {"limits": {"max_order_usd": "10000"}}, "max_order_usd"),
    (lambda: long(leverage=5), {"symbols": {"BTC/USD": {"max_leverage": 3}}}, "not allowed"),
], ids=["not-a-proposal", "symbol-disabled", "above-max-order-usd", "leverage-above-config"])
def test_execute_trade_refusals_send_nothing_and_store_nothing(make_core, make, sections, match):
    core = make_core("margin", **sections)
    with pytest.raises(ProposalError, match=match):
        core.orders.execute_trade(make())
    assert core.paper.calls.count("AddOrder") == 0
    assert core.store.count("orders") == core.store.count("positions") == 0
    assert core.positions.get_open_positions() == []


def test_max_open_positions_across_symbols(make_core):
    core = make_core("margin", limits={"max_open_positions": 1, "max_positions_per_symbol": 1},
                     paper={"prices": {"ETH/USD": "2300"}})
    core.orders.execute_trade(long(entry="42000"))
    eth = TradeProposal(symbol="ETH/USD", side="buy", size_usd=D(2300), stop_loss=D(2200), take_profit=D(2500),
                        leverage=2)
    with pytest.raises(PositionLimitError, match="max_open_positions"):
        core.orders.execute_trade(eth)
    assert core.paper.calls.count("AddOrder") == 1


def test_unknown_ids_are_refused_by_name(make_core):
    core = make_core("margin")
    with pytest.raises(NotFoundError, match="no order"):
        core.orders.cancel_order("ord-nope")
    with pytest.raises(NotFoundError, match="no position"):
        core.positions.close_position("pos-nope")
    with pytest.raises(NotFoundError, match="no position"):
        core.positions.modify_position("pos-nope", stop_loss=D(40000))
    assert core.positions.enable_trailing_stop_for_position("pos-nope", distance_pct=D(2)) is False
    with pytest.raises(ProposalError, match="below 100"):
        core.positions.enable_trailing_stop_for_position("pos-nope", distance_pct=D(100))


def test_finished_orders_and_positions_beyond_the_history_are_read_from_the_store(make_core):
    core = make_core("margin", orders={"history_size": 1})
    results = [core.orders.execute_trade(long(entry="42000")) for _ in range(2)]
    for result in results:
        assert core.orders.cancel_order(result.order.id) is True
    first = results[0]
    order = core.orders.get_order(first.order.id)
    position = core.positions.get_position(first.position_id)
    assert order is not first.order, "evicted from memory, answered from the store"
    assert (order.status, order.external_id) == (OrderStatus.CANCELLED, first.order.external_id)
    assert position.status is PositionStatus.CLOSED
    assert core.orders.order_by_txid(first.order.external_id) is None
    assert core.orders.cancel_order(first.order.id) is True   # already final: nothing to do


def test_unknown_submission_whose_look_up_answer_is_malformed_is_settled_and_alerted(make_core, clock, collect,
                                                                                       inv):
    core = make_core("margin")
    _, alerts = collect(core)
    core.paper.faults.http_status_next("AddOrder", 502, acted=True)        # placed, answer lost
    core.paper.faults.fail_next("OpenOrders", "EService:Unavailable", times=16)  # the submitter cannot look
    result = core.orders.execute_trade(long(entry="42000"))
    assert result.order.status is OrderStatus.SUBMITTED_UNKNOWN
    core.paper.faults.clear()

    def spoil(payload: dict[str, Any]) -> None:
        for info in payload["result"]["open"].values():
            info["vol_exec"] = ["not", "a", "number"]

    core.paper.faults.corrupt_result_next("OpenOrders", spoil)
    core.poll_once()
    assert result.order.status is OrderStatus.OPEN and result.order.external_id    # found: it exists
    assert "malformed_report" in [a.payload["alert_type"] for a in alerts]
    clock.advance(35)
    core.poll_once()
    core.price_tick("BTC/USD", D("41990"))
    clock.advance(35)
    core.poll_once()
    assert result.order.status is OrderStatus.FILLED
    assert core.positions.get_position(result.position_id).status is PositionStatus.PROTECTED
    assert not inv.all_problems(core, alerts)


def test_check_sl_tp_triggers_names_the_locally_watched_leg_and_acts_on_nothing(make_core):
    core = make_core("spot")          # spot: the take-profit is kept LOCAL, the stop rests at the exchange
    result = core.orders.execute_trade(long(leverage=1))
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    assert position.take_profit_location is LegLocation.LOCAL
    assert core.positions.check_sl_tp_triggers({"BTC/USD": D(47000)}) == []
    assert core.positions.check_sl_tp_triggers({"ETH/USD": D(99999)}) == []
    assert core.positions.check_sl_tp_triggers({"BTC/USD": D(48100)}) == [(position, "take_profit")]
    assert core.positions.check_sl_tp_triggers({"BTC/USD": D(40000)}) == []   # the exchange holds the stop
    assert position.status is PositionStatus.PROTECTED
    assert core.paper.calls.count("AddOrder") == 2          # entry and stop: no take-profit Kraken must refuse


def test_a_price_tick_must_be_money_not_a_float(make_core):
    core = make_core("margin")
    core.positions.on_price_update("BTC/USD", "43100")       # a str is read exactly
    assert core.positions.fresh_price("BTC/USD", 10) == D(43100)
    with pytest.raises(ValidationError, match="float"):  # floats carry rounding error
        core.positions.on_price_update("BTC/USD", 43100.5)
