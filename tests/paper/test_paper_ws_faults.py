"""Scripted WebSocket v2 failures (`exchange.ws_faults`), each seen through a real loopback client."""
from __future__ import annotations

from decimal import Decimal

import pytest
from websockets.exceptions import ConnectionClosed

from triplegain_fsm.paper.ws_probe import WsProbe

pytestmark = pytest.mark.integration
HEARTBEAT = 0.05
MARKET_BUY = {"order_type": "market", "side": "buy", "order_qty": Decimal("0.01"), "symbol": "BTC/USD"}


@pytest.fixture
def probe(exchange, ws_server):
    probe = WsProbe(ws_server.url, exchange.ws_tokens.issue()["token"])
    probe.recv()
    probe.subscribe()
    yield probe
    probe.close()


def drain_until_closed(probe: WsProbe) -> list[dict]:
    got = []
    with pytest.raises(ConnectionClosed):
        while True:
            got.append(probe.recv(timeout=1))
    return got


def test_drop_now_cuts_the_connection_and_orders_stay(exchange, probe, place):
    txid = place(type="buy", ordertype="limit", price="42000", volume="0.01")
    probe.executions()
    exchange.ws_faults.drop_now()
    drain_until_closed(probe)
    assert probe.ws.close_code == 1006                   # abnormal closure: no close frame
    assert txid in exchange.open_orders()


def test_drop_after_next_acts_then_drops_without_answering(exchange, probe):
    exchange.ws_faults.drop_after_next("add_order")
    probe.send("add_order", {**MARKET_BUY, "cl_ord_id": "lost-1"})
    got = drain_until_closed(probe)
    assert [m for m in got if "method" in m or m.get("channel") == "executions"] == []
    [order] = [o for o in (exchange.order(t["ordertxid"]) for t in exchange.trades().values())]
    assert order["cl_ord_id"] == "lost-1" and order["status"] == "closed"     # it was placed and filled


def test_drop_before_next_cuts_the_connection_before_the_exchange_acts(exchange, probe, place):
    resting = place(type="buy", ordertype="limit", price="42000", volume="0.01")
    probe.executions()
    exchange.ws_faults.drop_before_next("add_order")
    probe.send("add_order", {**MARKET_BUY, "cl_ord_id": "never-1"})
    got = drain_until_closed(probe)
    assert probe.ws.close_code == 1006                        # cut, no close frame
    assert [m for m in got if "method" in m or m.get("channel") == "executions"] == []
    assert exchange.trades() == {} and list(exchange.open_orders()) == [resting]   # nothing placed
    [call] = exchange.ws_calls.of("add_order")
    assert (call.acted, call.fault, call.params["cl_ord_id"]) == (False, "drop_before", "never-1")


def test_drop_before_next_cancel_leaves_the_order_open(exchange, probe, place):
    txid = place(type="buy", ordertype="limit", price="42000", volume="0.01")
    exchange.ws_faults.drop_before_next("cancel_order")
    probe.send("cancel_order", {"order_id": [txid]})
    drain_until_closed(probe)
    assert txid in exchange.open_orders()


@pytest.mark.parametrize("error", ["EService:Unavailable", "EOrder:Rate limit exceeded", "EOrder:Insufficient funds"])
def test_fail_next_answers_the_error_without_acting_then_serves_normally(exchange, probe, error):
    exchange.ws_faults.fail_next("add_order", error, times=2)
    for n in (1, 2):
        answer = probe.request("add_order", {**MARKET_BUY, "cl_ord_id": f"refused-{n}"})
        assert answer["success"] is False and answer["error"] == error and answer["method"] == "add_order"
        assert "time_in" in answer and "result" not in answer
    assert exchange.trades() == {} and exchange.open_orders() == {}
    assert probe.request("add_order", {**MARKET_BUY, "cl_ord_id": "placed-3"})["success"] is True
    assert [(c.acted, c.error) for c in exchange.ws_calls.of("add_order")] == [(False, [error])] * 2 + [(True, [])]


def test_fail_next_amend_and_cancel_change_nothing(exchange, probe, place):
    txid = place(type="buy", ordertype="limit", price="42000", volume="0.01")
    exchange.ws_faults.fail_next("amend_order", "EService:Unavailable")
    exchange.ws_faults.fail_next("cancel_order", "EOrder:Rate limit exceeded")
    amend = probe.request("amend_order", {"order_id": txid, "limit_price": Decimal("41000")})
    cancel = probe.request("cancel_order", {"order_id": [txid]})
    assert (amend["error"], cancel["error"]) == ("EService:Unavailable", "EOrder:Rate limit exceeded")
    assert exchange.open_orders()[txid]["descr"]["price"] == "42000.0"
    assert [(f.kind, f.method) for f in exchange.ws_faults.met()] == [("fail", "amend_order"), ("fail", "cancel_order")]


def test_met_records_every_fault_used_and_survives_clear(exchange, probe, place):
    exchange.ws_faults.skip_sequence()
    exchange.ws_faults.unanswered_next("add_order")
    exchange.ws_faults.drop_before_next("cancel_order")         # never used
    place(type="buy", ordertype="limit", price="41000", volume="0.01")
    probe.executions()
    probe.send("add_order", MARKET_BUY)
    probe.executions()
    exchange.ws_faults.silence()
    with pytest.raises(TimeoutError):
        probe.recv(timeout=HEARTBEAT * 4)
    exchange.ws_faults.clear()
    kinds = [(f.kind, f.method) for f in exchange.ws_faults.met()]
    assert kinds == [("skip_sequence", "executions"), ("unanswered", "add_order"), ("silence", "heartbeat")]
    assert exchange.ws_faults.pending() == []


def test_during_next_runs_the_action_after_acting_and_before_the_answer(exchange, probe):
    seen_in_action = []

    def market_moves() -> None:
        seen_in_action.append(bool(exchange.engine.open_orders(cl_ord_id="limit-1")["open"]))
        exchange.set_price("BTC/USD", "41950")           # the resting buy fills before its answer is sent
    exchange.ws_faults.during_next("add_order", market_moves, where=lambda p: p.get("cl_ord_id") == "limit-1")
    assert probe.request("add_order", {**MARKET_BUY, "cl_ord_id": "other"})["success"] is True   # not this one
    answer = probe.request("add_order", {"order_type": "limit", "side": "buy", "order_qty": Decimal("0.01"),
                                         "symbol": "BTC/USD", "limit_price": Decimal("42000"), "cl_ord_id": "limit-1"})
    assert answer["success"] is True and seen_in_action == [True]
    reports = [r for m in probe.seen if m.get("channel") == "executions" for r in m["data"]]
    assert not any(r.get("order_id") == answer["result"]["order_id"] for r in reports)   # all held until now
    while not any(r.get("exec_type") == "filled" for r in reports):
        reports += probe.executions()["data"]
    assert exchange.order(answer["result"]["order_id"])["status"] == "closed"
    assert [(f.kind, f.method) for f in exchange.ws_faults.met()] == [("during", "add_order")]


def test_unanswered_add_order_is_acted_on_and_reported_but_never_answered(exchange, probe):
    exchange.ws_faults.unanswered_next("add_order")
    req_id = probe.send("add_order", {**MARKET_BUY, "cl_ord_id": "quiet-1"})
    data = probe.executions()["data"]
    assert data[0]["cl_ord_id"] == "quiet-1" and data[-1]["exec_type"] == "filled"
    assert probe.request("ping", req_id=500, token=False)["method"] == "pong"   # still connected
    assert all(m.get("req_id") != req_id for m in probe.seen)


def test_reorder_sends_the_execution_reports_before_the_answer(exchange, probe):
    exchange.ws_faults.reorder_next("add_order")
    req_id = probe.send("add_order", MARKET_BUY)
    first = probe.wait_for(lambda m: m.get("channel") != "heartbeat")
    assert first["channel"] == "executions" and first["data"][0]["exec_type"] == "pending_new"
    answer = probe.answer(req_id)
    assert answer["success"] is True and answer["result"]["order_id"] == first["data"][0]["order_id"]
    normal = probe.send("add_order", MARKET_BUY)                # the fault was used up: answer first again
    assert probe.wait_for(lambda m: m.get("channel") != "heartbeat").get("req_id") == normal


def test_skip_sequence_leaves_a_gap_but_loses_nothing(exchange, probe, place):
    exchange.ws_faults.skip_sequence()
    first = place(type="buy", ordertype="limit", price="41000", volume="0.01")
    second = place(type="buy", ordertype="limit", price="40000", volume="0.01")
    a, b = probe.executions(), probe.executions()
    assert (a["sequence"], b["sequence"]) == (3, 4)          # snapshot was 1: 2 was skipped
    assert (a["data"][0]["order_id"], b["data"][0]["order_id"]) == (first, second)


def test_drop_next_update_loses_one_update_and_its_sequence_number(exchange, probe, place):
    exchange.ws_faults.drop_next_update()
    place(type="buy", ordertype="limit", price="41000", volume="0.01")
    second = place(type="buy", ordertype="limit", price="40000", volume="0.01")
    update = probe.executions()
    assert update["sequence"] == 3 and update["data"][0]["order_id"] == second


def test_silence_stops_everything_but_the_connection(exchange, probe, place):
    exchange.ws_faults.silence()
    txid = place(type="buy", ordertype="limit", price="41000", volume="0.01")
    probe.send("ping", req_id=9, token=False)
    with pytest.raises(TimeoutError):
        probe.recv(timeout=HEARTBEAT * 6)                     # no update, no pong, no heartbeat
    assert txid in exchange.open_orders()
    exchange.ws_faults.resume()
    assert probe.recv(timeout=1) == {"channel": "heartbeat"}
    place(type="buy", ordertype="limit", price="40000", volume="0.01")
    assert probe.executions()["sequence"] == 3                # the silenced update used 2: a gap shows it


def test_invalidated_tokens_end_the_subscription_and_refuse_requests(exchange, probe, place):
    assert exchange.ws_faults.invalidate_tokens() == 1
    place(type="buy", ordertype="limit", price="41000", volume="0.01")
    answer = probe.request("add_order", MARKET_BUY)
    assert answer["success"] is False and answer["error"] == "EAPI:Invalid token"
    assert [m for m in probe.seen if m.get("channel") == "executions" and m["type"] == "update"] == []
    with pytest.raises(TimeoutError):
        probe.recv(timeout=HEARTBEAT * 6)                     # no heartbeats without a subscription
    probe.token = exchange.ws_tokens.issue()["token"]         # a fresh token: resubscribe works
    ack, snapshot = probe.subscribe()
    assert ack["success"] is True and len(snapshot["data"]) == 1


def test_fault_arguments_are_checked(exchange):
    with pytest.raises(ValueError):
        exchange.ws_faults.unanswered_next("add_order", times=0)
    with pytest.raises(ValueError):
        exchange.ws_faults.drop_after_next("")
    with pytest.raises(ValueError):
        exchange.ws_faults.drop_before_next("")
    for bad in ("Unavailable", "", None):
        with pytest.raises(ValueError):
            exchange.ws_faults.fail_next("add_order", bad)
    with pytest.raises(ValueError):
        exchange.ws_faults.during_next("add_order", "not callable")
    exchange.ws_faults.reorder_next("*", times=2)
    assert len(exchange.ws_faults.pending()) == 2
    exchange.ws_faults.clear()
    assert exchange.ws_faults.pending() == []
