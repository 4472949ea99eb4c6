"""Scripted faults: which ones act, what the client sees, and what the call log records."""
from __future__ import annotations

import json
import threading

import pytest
import requests

from triplegain_fsm.paper.faults import Faults

pytestmark = pytest.mark.integration

ORDER = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "42000", "volume": "0.1"}


def test_fail_next_answers_with_the_error_and_does_not_act(client, exchange):
    exchange.faults.fail_next("AddOrder", "EService:Unavailable")
    assert client.private("AddOrder", **ORDER) == {"error": ["EService:Unavailable"], "result": {}}
    assert exchange.open_orders() == {}
    assert exchange.calls.count("AddOrder") == 1 and exchange.calls.count("AddOrder", acted=True) == 0
    assert client.private("AddOrder", **ORDER)["error"] == []        # the fault was used up


def test_lost_response_acts_then_the_client_times_out(client, exchange):
    exchange.faults.lose_next_response("AddOrder")
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.post("AddOrder", cl_ord_id="lost-1", **ORDER)
    [order] = client.ok("OpenOrders", cl_ord_id="lost-1")["open"].values()   # it exists: the core must look
    assert order["status"] == "open"
    call = exchange.calls.last("AddOrder")
    assert (call.acted, call.fault, call.status, call.params["cl_ord_id"]) == (True, "lose_response", None, "lost-1")


def test_timeout_before_never_reaches_the_engine(client, exchange):
    exchange.faults.timeout_before_next("AddOrder")
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.post("AddOrder", cl_ord_id="never", **ORDER)
    assert client.ok("OpenOrders", cl_ord_id="never")["open"] == {}
    assert exchange.calls.count("AddOrder") == 1 and exchange.calls.count("AddOrder", acted=False) == 1


@pytest.mark.parametrize("acted", [False, True])
def test_http_status_with_or_without_acting(client, exchange, acted):
    exchange.faults.http_status_next("AddOrder", 520, acted=acted)
    response = client.post("AddOrder", cl_ord_id="maybe", **ORDER)
    assert response.status_code == 520 and "html" in response.headers["Content-Type"]
    assert len(client.ok("OpenOrders", cl_ord_id="maybe")["open"]) == int(acted)


def test_malformed_body_is_not_json(client, exchange):
    exchange.faults.malformed_next("Balance")
    response = client.post("Balance")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_corrupt_result_passes_the_real_answer_through_mutate(client, exchange):
    def drop_txid(payload):
        del payload["result"]["txid"]

    exchange.faults.corrupt_result_next("AddOrder", drop_txid)
    answer = client.private("AddOrder", cl_ord_id="corrupt", **ORDER)
    assert answer["error"] == [] and "txid" not in answer["result"]
    assert len(client.ok("OpenOrders", cl_ord_id="corrupt")["open"]) == 1
    exchange.faults.corrupt_result_next("Balance", lambda payload: {"result": {"ZUSD": 12}})
    assert client.private("Balance") == {"result": {"ZUSD": 12}}


def test_times_wildcard_pending_and_clear(client, exchange):
    exchange.faults.fail_next("*", "EService:Busy", times=2)
    assert client.private("Balance")["error"] == ["EService:Busy"]
    assert client.public("Time")["error"] == ["EService:Busy"]
    assert client.public("Time")["error"] == []
    exchange.faults.fail_next("AddOrder", "EGeneral:Internal error", times=3)
    assert len(exchange.faults.pending()) == 3
    exchange.faults.clear()
    assert exchange.faults.pending() == []


def test_the_call_log_counts_every_request(client, exchange):
    client.private("AddOrder", **ORDER)
    client.private("AddOrder", pair="NOPE", type="buy", ordertype="market", volume="1")
    client.public("Ticker", pair="XBTUSD")
    assert exchange.calls.count("AddOrder") == 2
    assert [c.error for c in exchange.calls.of("AddOrder")] == [[], ["EQuery:Unknown asset pair"]]
    assert exchange.calls.of("Ticker")[0].params == {"pair": "XBTUSD"}
    assert len(exchange.calls) == 3
    exchange.calls.clear()
    assert exchange.calls.count() == 0


def test_faults_are_taken_once_each_under_concurrency():
    faults = Faults()
    faults.fail_next("AddOrder", "EService:Unavailable", times=100)
    taken = []

    def take() -> None:
        for _ in range(50):
            taken.append(faults.take("AddOrder"))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(f is not None for f in taken) == 100 and faults.pending() == []


def test_fault_arguments_are_checked():
    faults = Faults()
    with pytest.raises(ValueError):
        faults.fail_next("AddOrder", "not a kraken error")
    with pytest.raises(ValueError):
        faults.http_status_next("AddOrder", 200)
    with pytest.raises(ValueError):
        faults.lose_next_response("AddOrder", times=0)
