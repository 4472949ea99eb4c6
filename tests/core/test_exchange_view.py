"""Issue 11 #4: the exchange's view of every position (F05), whatever the config says, named by Kraken's ids."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from triplegain_fsm import ExecutionCore, PositionStatus, ProposalError, TradeProposal
from triplegain_fsm.kraken.client import KrakenClient
from triplegain_fsm.paper import PaperExchange
from triplegain_fsm.store import Store
from triplegain_fsm.testing import paper_config

pytestmark = pytest.mark.integration


def kinds(alerts) -> list[str]:
    return [a.payload["alert_type"] for a in alerts]


def spot_core_on_a_margin_account(tmp_path, clock) -> ExecutionCore:
    """Configured `spot`, but the Kraken account behind the key can trade on margin (they all can)."""
    config = paper_config(tmp_path / "s.sqlite", "spot")
    paper = PaperExchange(balances={"ZUSD": "1000000"}, prices={"BTC/USD": "43000"}, account="margin")
    client = KrakenClient(paper.api_key, paper.api_secret, config.exchange.base_url, sleep=lambda s: None)
    paper.mount(client.session, config.exchange.base_url)
    return ExecutionCore(config, client, Store(config.storage.path), paper=paper, clock=clock)


def test_a_margin_position_opened_by_hand_is_drift_on_a_spot_account_too(tmp_path, clock, collect):
    core = spot_core_on_a_margin_account(tmp_path, clock)
    _, alerts = collect(core)
    txid = core.client.private("AddOrder", pair="XBTUSD", type="sell", ordertype="market", leverage="2",
                               volume="0.02")["txid"][0]  # a human, on the website
    [posid] = core.paper.positions()
    report = core.sync_with_exchange()
    [drift] = report.position_drift
    assert (drift["kind"], drift["asset"], D(drift["exchange"])) == ("margin", "XBTUSD", D("-0.02"))
    assert drift["posids"] == [posid] and drift["ordertxids"] == [txid]
    [alert] = [a.payload for a in alerts if a.payload["alert_type"] == "exchange_drift"]
    assert alert["severity"] == "critical" and alert["posids"] == [posid] and alert["ordertxids"] == [txid]
    core.close()


def test_margin_drift_names_the_position_and_the_orders_behind_it(make_core):
    core = make_core(account="margin")
    result = core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="buy", size_usd=D("4300"),
                                                     stop_loss=D(41000), take_profit=D(48000), leverage=2))
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    core.client.private("AddOrder", pair="XBTUSD", type="sell", ordertype="market", leverage="2",
                        reduce_only=True, volume="0.04")  # a human halves it
    [drift] = core.sync_with_exchange().position_drift
    assert drift["posids"] == list(core.paper.positions())
    assert drift["ordertxids"] == [result.order.external_id]
    assert result.order.external_id in drift["txids"] and drift["position_ids"] == [position.id]


def test_a_rewards_balance_is_the_same_coins_not_drift(make_core, collect):
    core = make_core()
    _, alerts = collect(core)
    result = core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="buy", size_usd=D("4300"),
                                                     stop_loss=D(41000), take_profit=D(48000)))
    core.poll_once()
    position = core.positions.get_position(result.position_id)

    def half_earning(answer):  # Kraken moved half the coins into the rewards-earning balance
        balances = answer["result"]
        held = D(balances["XXBT"])
        balances["XXBT"], balances["XXBT.F"] = format(held / 2, "f"), format(held / 2, "f")

    core.paper.faults.corrupt_result_next("Balance", half_earning)
    report = core.sync_with_exchange()
    assert report.position_drift == [] and "exchange_drift" not in kinds(alerts)
    assert position.status is PositionStatus.PROTECTED


def test_a_leg_capped_by_the_exchange_below_the_position_is_said_and_resized(make_core, collect):
    """Found by the simulator: a human's margin position on the same pair nets with the core's, Kraken
    caps the core's reduce-only leg at the smaller net, and the core kept counting it as covering the
    whole position. Now the shrink is drift, the state says what the leg covers, and converge resizes it."""
    core = make_core(account="margin")
    _, alerts = collect(core)
    core.client.private("AddOrder", pair="XBTUSD", type="buy", ordertype="market", leverage="2",
                        volume="0.04")  # a human's own long
    result = core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="sell", size_usd=D("4300"),
                                                     stop_loss=D(45000), take_profit=D(40000), leverage=2))
    seen: list[tuple[D, bool]] = []

    def on_drift(message) -> None:
        if message.payload["alert_type"] == "exchange_drift" and message.payload.get("order_id"):
            position = core.positions.get_position(result.position_id)
            seen.append((position.take_profit_covered, position.legs_cover_size()))
    core.bus.subscribe("risk_alerts", on_drift)
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    target = core.orders.get_order(position.take_profit_order_id)
    drift = [a.payload for a in alerts if a.payload["alert_type"] == "exchange_drift"
             and a.payload.get("order_id") == target.id]
    assert drift and drift[0]["severity"] == "high" and "covers 0.06000000" in drift[0]["message"]
    assert seen[0] == (D("0.06"), False), "while capped, the leg counts for what it covers"
    core.poll_once()
    held = core.paper.order(target.external_id)
    assert D(held["vol"]) == position.size == target.size and position.take_profit_covered == position.size
    assert any(a.payload["alert_type"] == "exchange_drift" and a.payload["severity"] == "critical"
               and "margin XBTUSD" in a.payload["message"] for a in alerts), "the netted position itself"


def test_a_margin_entry_on_a_pair_holding_a_margin_position_the_core_did_not_open_is_refused(make_core, collect):
    """Kraken nets margin orders per pair: beside a human's margin position a core entry would close or
    stack onto it (found by the simulator with the human trading the core's own pair)."""
    core = make_core(account="margin", limits={"max_positions_per_symbol": 3})
    _, alerts = collect(core)
    core.client.private("AddOrder", pair="XBTUSD", type="buy", ordertype="market", leverage="2",
                        volume="0.5")  # a human, on the website
    [posid] = core.paper.positions()
    core.sync_with_exchange()
    calls = len(core.paper.calls)
    for side, sl, tp in (("sell", 45000, 40000), ("buy", 41000, 48000)):
        with pytest.raises(ProposalError, match=f"{posid}.*did not open"):
            core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side=side, size_usd=D("4300"),
                                                    stop_loss=D(sl), take_profit=D(tp), leverage=2))
    assert len(core.paper.calls) == calls and core.positions.get_open_positions() == []
    assert core.store.load_positions() == [] and core.store.load_orders() == []
    spot = core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="buy", size_usd=D("430"),
                                                   stop_loss=D(41000), take_profit=D(48000)))
    assert spot.success, "a spot entry holds coins, not a margin position: it is not netted"
    core.client.private("AddOrder", pair="XBTUSD", type="sell", ordertype="market", leverage="2",
                        reduce_only=True, volume="0.5")  # the human closes theirs
    core.sync_with_exchange()
    again = core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="sell", size_usd=D("4300"),
                                                    stop_loss=D(45000), take_profit=D(40000), leverage=2))
    assert again.success


def test_a_core_margin_position_netted_away_by_an_order_the_other_way_vanishes_and_leaves_no_leg(make_core,
                                                                                                collect):
    """Found by the simulator: a human's larger buy on the pair closed the core's short at the exchange;
    the core kept it open and retried a reduce-only close Kraken refused ('No position exists') forever."""
    core = make_core(account="margin")
    _, alerts = collect(core)
    result = core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="sell", size_usd=D("4300"),
                                                     stop_loss=D(45000), take_profit=D(40000), leverage=2))
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    assert position.status is PositionStatus.PROTECTED
    core.client.private("AddOrder", pair="XBTUSD", type="buy", ordertype="market", leverage="2",
                        volume="0.5")  # a human: closes the core's 0.1 short and opens a 0.4 long
    report = core.sync_with_exchange()
    assert report.positions_closed == [position.id] and position.status is PositionStatus.CLOSED
    assert "netted away" in position.close_reason
    ours = {o.external_id for o in core.orders.get_orders_for_position(position.id)}
    assert not ours & set(core.paper.open_orders()), "no leg of the gone position is left working"
    payloads = [a.payload for a in alerts]
    assert any(p["alert_type"] == "position_vanished" and p["position_id"] == position.id for p in payloads)
    [drift] = [p for p in payloads if p["alert_type"] == "exchange_drift" and "margin" in p["message"]]
    assert drift["severity"] == "critical" and drift["posids"] == list(core.paper.positions())
