"""Trading requests on the stream's socket: answers by req_id, error strings through the one error table,
no answer = outcome unknown (never resent), not connected = not sent."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from triplegain_fsm.kraken import errors as E
from triplegain_fsm.kraken.stream import ExecutionStream

pytestmark = pytest.mark.integration
LIMIT = {"order_type": "limit", "side": "buy", "order_qty": Decimal("0.01"), "symbol": "BTC/USD",
         "limit_price": Decimal("42000")}
MARKET = {"order_type": "market", "side": "buy", "order_qty": Decimal("0.01"), "symbol": "BTC/USD"}


def of(order_id: str, exec_type: str | None = None):
    return lambda r: r.order_id == order_id and (exec_type is None or r.exec_type == exec_type)


def test_add_amend_and_cancel_order_return_their_results_and_the_reports_follow(connected, paper):
    stream, rec = connected
    placed = stream.request("add_order", {**LIMIT, "cl_ord_id": "ws-1"}, timeout=2)
    order_id = placed["order_id"]
    assert placed == {"order_id": order_id, "cl_ord_id": "ws-1"} and order_id in paper.open_orders()
    assert rec.report(of(order_id, "pending_new")).merged["cl_ord_id"] == "ws-1"
    amended = stream.request("amend_order", {"order_id": order_id, "limit_price": Decimal("41000.5")}, timeout=2)
    assert amended["amend_id"] and amended["order_id"] == order_id
    report = rec.report(of(order_id, "amended"))
    assert report.merged["limit_price"] == Decimal("41000.5") and report.merged["cl_ord_id"] == "ws-1"
    assert report.merged["symbol"] == "BTC/USD" and "symbol" not in report.raw
    assert stream.request("cancel_order", {"order_id": [order_id]}, timeout=2) == {"order_id": order_id}
    assert rec.report(of(order_id, "canceled")).merged["reason"] == "User requested"
    assert paper.order(order_id)["status"] == "canceled"


def test_cancel_order_with_several_ids_collects_one_answer_per_order(connected):
    stream, rec = connected
    first = stream.request("add_order", LIMIT, timeout=2)["order_id"]
    second = stream.request("add_order", {**LIMIT, "limit_price": Decimal("41000")}, timeout=2)["order_id"]
    answers = stream.request_all("cancel_order", {"order_id": [first, "OAAAAA-BBBBB-CCCCCC", second]}, timeout=2)
    assert len(answers) == 3
    assert sorted(a.result["order_id"] for a in answers if a.success) == sorted([first, second])
    [refused] = [a for a in answers if not a.success]
    with pytest.raises(E.UnknownOrder):
        refused.unwrap()
    with pytest.raises(E.KrakenRequestError):
        stream.request_all("cancel_all", {}, timeout=2, expect=0)


@pytest.mark.parametrize(("params", "cls"), [
    ({**LIMIT, "order_qty": Decimal("0.00001")}, E.OrderMinimumNotMet),
    ({**LIMIT, "order_qty": Decimal("50")}, E.InsufficientFunds),
    ({**LIMIT, "limit_price": Decimal("42000.05")}, E.InvalidPrice),
    ({**LIMIT, "order_type": "stop-loss"}, E.InvalidArguments),        # a limit price on a stop: the F01 bug
])
def test_an_error_answer_raises_its_class_from_the_one_table(connected, params, cls):
    stream, _ = connected
    with pytest.raises(cls) as raised:
        stream.request("add_order", params, timeout=2)
    assert type(raised.value) is E.class_for(raised.value.raw[0]) and raised.value.order_not_placed
    assert "ws add_order" in str(raised.value)


def test_no_answer_is_outcome_unknown_and_nothing_is_resent(connected, paper):
    stream, rec = connected
    paper.ws_faults.unanswered_next("add_order")
    with pytest.raises(E.RequestTimeout) as raised:
        stream.request("add_order", {**MARKET, "cl_ord_id": "quiet-1"}, timeout=0.3)
    assert raised.value.outcome_unknown and "not resent" in str(raised.value)
    assert isinstance(raised.value, E.OutcomeUnknownError)
    filled = rec.report(lambda r: r.merged.get("cl_ord_id") == "quiet-1" and r.exec_type == "filled")
    assert len([t for t in paper.trades().values() if t["ordertxid"] == filled.order_id]) == 1   # placed once
    assert stream.request("cancel_all", {}, timeout=2) == {"count": 0}                          # still usable


def test_connection_lost_before_the_answer_is_outcome_unknown_and_the_stream_recovers(connected, paper):
    stream, rec = connected
    paper.ws_faults.drop_after_next("add_order")
    with pytest.raises(E.ConnectionFailed) as raised:
        stream.request("add_order", {**MARKET, "cl_ord_id": "lost-1"}, timeout=2)
    assert raised.value.outcome_unknown and "connection lost" in str(raised.value)
    assert rec.wait_state("connected", 2)
    snap = rec.snapshots()[-1]
    assert [r.merged["cl_ord_id"] for r in snap.reports if r.is_trade] == ["lost-1"]   # snap_trades shows it


def test_reports_before_the_answer_are_delivered_before_request_returns(connected, paper):
    stream, rec = connected
    paper.ws_faults.reorder_next("add_order")
    order_id = stream.request("add_order", LIMIT, timeout=2)["order_id"]
    assert [r.exec_type for r in rec.reports() if r.order_id == order_id][:1] == ["pending_new"]


def test_not_connected_means_not_sent(paper, paper_ws, open_stream):
    idle = ExecutionStream(paper_ws.url, lambda: "t", lambda b: None, lambda s, r: None)
    with pytest.raises(E.StreamNotConnected) as raised:
        idle.request("add_order", LIMIT, timeout=1)
    assert raised.value.order_not_placed and not raised.value.outcome_unknown
    assert "NOT sent" in str(raised.value) and "off" in str(raised.value)
    stream, rec = open_stream()
    paper.ws_faults.silence()
    rec.wait_state("down")
    with pytest.raises(E.StreamNotConnected):
        stream.request("add_order", LIMIT, timeout=1)
    paper.ws_faults.resume()
    assert paper.open_orders() == {}


def test_bad_params_are_refused_before_sending(connected, paper):
    stream, _ = connected
    with pytest.raises(E.KrakenRequestError):
        stream.request("add_order", {**LIMIT, "order_qty": 0.01}, timeout=1)          # a float: never
    with pytest.raises(E.KrakenRequestError):
        stream.request("add_order", {**LIMIT, "token": "mine"}, timeout=1)
    assert paper.open_orders() == {}


def test_a_request_from_a_stream_callback_is_refused_at_once_not_sent(kx, open_stream, paper, paper_place):
    refused: list[BaseException] = []

    class Eager(kx.StreamRecorder):
        def on_batch(self, batch):
            if batch.kind == "update" and not refused:
                try:
                    stream.request("add_order", LIMIT, timeout=5)   # would deadlock the reader
                except E.KrakenRequestError as exc:
                    refused.append(exc)
            super().on_batch(batch)

    stream, rec = open_stream(recorder=Eager())
    assert stream.wait_connected(5)
    order_id = paper_place(type="buy", ordertype="limit", price="42000", volume="0.01")
    rec.report(of(order_id, "new"))
    assert refused and "NOT sent" in str(refused[0]) and list(paper.open_orders()) == [order_id]


def test_concurrent_requests_each_get_their_own_answer(connected, paper):
    stream, _ = connected
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def place(i: int) -> None:
        try:
            results[i] = stream.request("add_order", {**LIMIT, "cl_ord_id": f"c-{i}",
                                                      "limit_price": Decimal(40000 + i)}, timeout=3)["cl_ord_id"]
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=place, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == [] and results == {i: f"c-{i}" for i in range(8)}
    assert len(paper.open_orders()) == 8
