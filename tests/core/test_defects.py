"""Regression tests for the eight wrong outcomes of issue 10, each through the public API and the paper
exchange. Every test failed before its fix; the comment on each says which class of bug it stands for."""
from __future__ import annotations

import threading
from decimal import Decimal as D

import pytest

from triplegain_fsm import (
    IllegalTransition,
    LegLocation,
    OrderRole,
    OrderStatus,
    PositionStatus,
    ProposalError,
    TradeProposal,
)

pytestmark = pytest.mark.integration


def kinds(alerts) -> list[str]:
    return [a.payload["alert_type"] for a in alerts]


def proposal(side="buy", size="4300", sl="41000", tp="48000", leverage=1, entry=None, symbol="BTC/USD"):
    return TradeProposal(symbol=symbol, side=side, size_usd=D(size), stop_loss=D(sl) if sl else None,
                         take_profit=D(tp) if tp else None, leverage=leverage,
                         entry_price=D(entry) if entry else None)


def in_thread(action) -> None:
    """Run `action` on another thread and wait for it: the bot's price feed or poller, at that moment."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # handed back to the test thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    if errors:
        raise errors[0]


# -- 1. reconciliation compared two views read at different moments ----------------------------------------


@pytest.mark.parametrize("account, during", [("spot", "OpenOrders"), ("margin", "OpenPositions")])
def test_a_fill_during_reconciliation_never_closes_a_position_the_exchange_holds(make_core, collect, account,
                                                                                 during):
    core = make_core(account=account)
    _, alerts = collect(core)
    leverage = 2 if account == "margin" else 1
    result = core.orders.execute_trade(proposal(entry="42900", leverage=leverage))
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    assert position.status is PositionStatus.OPENING
    # the market trades through the limit while reconciliation waits for one of its own answers
    core.paper.faults.during_next(during, lambda: core.paper.set_price("BTC/USD", D("42800")))
    report = core.sync_with_exchange()
    assert report.positions_closed == [] and report.position_drift == []
    assert report.inconclusive, "the moved asset is reported as not compared this time"
    assert position.status in (PositionStatus.UNPROTECTED, PositionStatus.PROTECTED)
    assert not {"exchange_drift", "position_vanished"} & set(kinds(alerts))
    again = core.sync_with_exchange()  # the next comparison is consistent: nothing to report
    assert again.position_drift == [] and again.inconclusive == []
    assert position.status is PositionStatus.PROTECTED and position.size == position.entry_size > 0


def test_a_position_closed_outside_the_core_still_vanishes_and_alerts_on_its_own(make_core, collect):
    core = make_core(account="margin")
    _, alerts = collect(core)
    result = core.orders.execute_trade(proposal(leverage=2))
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    core.client.private("AddOrder", pair="XBTUSD", type="sell", ordertype="market", leverage="2",
                        reduce_only=True, volume=format(position.size, "f"))  # a human, on the website
    report = core.sync_with_exchange()
    assert report.positions_closed == [position.id]
    vanished = [a.payload for a in alerts if a.payload["alert_type"] == "position_vanished"]
    assert [v["position_id"] for v in vanished] == [position.id]
    assert report.position_drift[0]["position_ids"] == [position.id]


def test_a_failed_requery_makes_reconciliation_inconclusive_not_destructive(make_core, collect):
    core = make_core(account="margin")
    _, alerts = collect(core)
    result = core.orders.execute_trade(proposal(leverage=2))
    core.poll_once()
    position = core.positions.get_position(result.position_id)

    def stop_fills_then_queries_fail() -> None:
        core.paper.set_price("BTC/USD", D("40900"))
        core.paper.faults.fail_next("QueryOrders", "EService:Unavailable", times=4)

    core.paper.faults.during_next("OpenPositions", stop_fills_then_queries_fail)
    sync = core.sync_with_exchange()
    assert sync.positions_closed == [] and sync.errors and "position_vanished" not in kinds(alerts)
    core.paper.faults.clear()
    core.poll_once()
    assert position.status is PositionStatus.CLOSED and position.close_reason is None
    roles = {o.role.value: o.status.value for o in core.orders.get_orders_for_position(position.id)}
    assert roles == {"entry": "FILLED", "stop_loss": "FILLED", "take_profit": "CANCELLED"}
    assert "orphan_order" not in kinds(alerts)


# -- 7. an alert key that missed identity fields let one condition silence another ---------------------------


def _sell_by_hand(core, position, fraction: D) -> None:
    """A human cancels the position's stop and sells part of its coins on the website."""
    pair = core.client.pairs.resolve(position.symbol)
    for order in core.orders.get_orders_for_position(position.id):
        if order.role is OrderRole.STOP_LOSS and order.external_id in core.paper.open_orders():
            core.client.cancel_order(txid=order.external_id)
    volume = core.client.pairs.round_volume(pair, position.size * fraction)
    core.client.private("AddOrder", pair=pair.altname, type="sell", ordertype="market", volume=format(volume, "f"))


def test_drift_of_one_asset_does_not_silence_drift_of_another(make_core, collect):
    core = make_core(alerts={"repeat_after_seconds": 300})
    _, alerts = collect(core)
    core.price_tick("ETH/USD", D("2300"))
    btc = core.orders.execute_trade(proposal())
    eth = core.orders.execute_trade(proposal(symbol="ETH/USD", size="2300", sl="2100", tp="2600"))
    core.poll_once()
    btc_pos, eth_pos = (core.positions.get_position(r.position_id) for r in (btc, eth))
    _sell_by_hand(core, btc_pos, D("0.5"))
    core.sync_with_exchange()
    _sell_by_hand(core, eth_pos, D("0.5"))
    core.sync_with_exchange()
    drift = [a.payload for a in alerts if a.payload["alert_type"] == "exchange_drift"]
    assert {d["asset"] for d in drift} == {"XXBT", "XETH"}
    assert [d["position_ids"] for d in drift if d["asset"] == "XETH"] == [[eth_pos.id]]
    stored = [a for a in core.store.alerts() if a["alert_type"] == "exchange_drift"]
    assert len(stored) == 2
