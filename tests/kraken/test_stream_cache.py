"""Pure parts of the stream: merging sparse reports, the exact JSON, answers, the reconnect backoff."""
from __future__ import annotations

from decimal import Decimal

import pytest

from triplegain_fsm.kraken import errors as E
from triplegain_fsm.kraken.stream import Backoff, ExecutionStream
from triplegain_fsm.kraken.stream_cache import TRADE_FIELDS, OrderCache
from triplegain_fsm.kraken.stream_wire import Answer, PendingRequests, dumps, expected_answers, loads

pytestmark = pytest.mark.unit
PENDING = {"exec_type": "pending_new", "order_status": "pending_new", "order_id": "O1", "cl_ord_id": "c-1",
           "symbol": "BTC/USD", "side": "sell", "order_type": "stop-loss-limit", "order_qty": Decimal("0.5"),
           "limit_price": Decimal("39900"), "triggers": {"reference": "last", "price": Decimal("40000"),
                                                         "price_type": "static", "status": "untriggered"}}
TRADE = {"exec_type": "trade", "order_status": "partially_filled", "order_id": "O1", "exec_id": "E1",
         "trade_id": 11, "last_qty": Decimal("0.2"), "last_price": Decimal("39950"), "cost": Decimal("7990"),
         "fees": [{"asset": "USD", "qty": Decimal("12.78")}], "liquidity_ind": "t", "cum_qty": Decimal("0.2")}


def test_a_sparse_report_is_merged_with_what_is_known_of_its_order():
    cache = OrderCache()
    cache.merge(PENDING)
    new = cache.merge({"exec_type": "new", "order_status": "new", "order_id": "O1"})
    assert dict(new.raw) == {"exec_type": "new", "order_status": "new", "order_id": "O1"}
    assert new.merged["cl_ord_id"] == "c-1" and new.merged["symbol"] == "BTC/USD" and new.order_status == "new"
    assert new.merged["triggers"]["price"] == Decimal("40000")


def test_trade_fields_belong_to_their_report_only():
    cache = OrderCache()
    cache.merge(PENDING)
    trade = cache.merge(TRADE)
    assert trade.is_trade and trade.merged["trade_id"] == 11 and trade.merged["symbol"] == "BTC/USD"
    status = cache.merge({"exec_type": "status", "order_status": "partially_filled", "order_id": "O1",
                          "triggers": {"status": "triggered"}})
    assert not status.is_trade and not TRADE_FIELDS & set(status.merged)
    assert status.merged["cum_qty"] == Decimal("0.2")                             # cumulative figures are kept
    assert status.merged["triggers"] == {**PENDING["triggers"], "status": "triggered"}   # merged key by key
    cancel = cache.merge({"exec_type": "canceled", "order_status": "canceled", "order_id": "O1",
                          "reason": "User requested"})
    assert cancel.merged["reason"] == "User requested" and cancel.is_final


def test_a_final_status_evicts_and_unknown_values_are_kept_as_strings():
    cache = OrderCache()
    cache.merge(PENDING)
    odd = cache.merge({"exec_type": "from_the_future", "order_status": "hibernating", "order_id": "O1"})
    assert odd.exec_type == "from_the_future" and odd.order_status == "hibernating" and not odd.is_final
    assert "O1" in cache and len(cache) == 1
    for status in ("filled", "canceled", "expired"):
        cache.merge({**PENDING, "order_id": status})
        assert cache.merge({"order_id": status, "order_status": status}).is_final
        assert status not in cache
    assert len(cache) == 1


def test_a_report_without_order_id_is_delivered_unmerged_and_the_cache_is_capped(caplog):
    cache = OrderCache(max_orders=3)
    orphan = cache.merge({"exec_type": "trade", "trade_id": 5})
    assert orphan.order_id is None and orphan.merged["trade_id"] == 5 and len(cache) == 0
    for i in range(5):
        cache.merge({**PENDING, "order_id": f"O{i}"})
    assert len(cache) == 3 and "O0" not in cache and "O4" in cache and "forgot O0" in caplog.text


def test_the_views_are_read_only_and_independent_of_the_cache():
    cache = OrderCache()
    first = cache.merge(PENDING)
    with pytest.raises(TypeError):
        first.merged["symbol"] = "ETH/USD"  # type: ignore[index]
    second = cache.merge({"order_id": "O1", "order_qty": Decimal("0.4")})
    assert first.merged["order_qty"] == Decimal("0.5") and second.merged["order_qty"] == Decimal("0.4")


def test_json_numbers_are_exact_decimals_both_ways():
    message = loads('{"px": 0.00012345, "qty": 1e-8, "n": 3, "big": 12345678901234567890.123456789}')
    assert message == {"px": Decimal("0.00012345"), "qty": Decimal("1e-8"), "n": 3,
                       "big": Decimal("12345678901234567890.123456789")}
    assert dumps({"qty": Decimal("1E-8"), "px": Decimal("42000.10"), "ok": True, "ids": ["a"], "n": None}) == \
        '{"qty":0.00000001,"px":42000.1,"ok":true,"ids":["a"],"n":null}'
    for bad in ('{"px": NaN}', '{"px": Infinity}'):
        with pytest.raises(ValueError):
            loads(bad)
    for value in (0.1, Decimal("NaN"), object()):
        with pytest.raises(TypeError):
            dumps({"x": value})


def test_expected_answers_counts_named_orders_for_cancel_order():
    assert expected_answers("cancel_order", {"order_id": ["a", "b"], "cl_ord_id": ["c"]}) == 3
    assert expected_answers("cancel_order", {}) == 1 and expected_answers("add_order", {"order_id": ["a", "b"]}) == 1


def test_answers_unwrap_through_the_error_table():
    assert Answer.of("add_order", {"success": True, "result": {"order_id": "O1"}}).unwrap() == {"order_id": "O1"}
    with pytest.raises(E.InsufficientFunds):
        Answer.of("add_order", {"success": False, "error": "EOrder:Insufficient funds"}).unwrap()
    with pytest.raises(E.UnmappedKrakenError):
        Answer.of("add_order", {"success": False, "error": "EWhat:Is this"}).unwrap()
    with pytest.raises(E.MalformedResponse):
        Answer.of("add_order", {"success": False}).unwrap()


def test_a_waiter_times_out_as_outcome_unknown_and_a_late_answer_is_not_routed():
    pending = PendingRequests()
    waiter = pending.open("add_order", 1)
    with pytest.raises(E.RequestTimeout):
        pending.wait(waiter, 0.01)
    assert pending.deliver(waiter.req_id, {"success": True}) is False
    lost = pending.open("amend_order", 2)
    assert pending.deliver(lost.req_id, {"success": True, "result": {}}) is True
    assert pending.fail_all("connection closed") == 1
    with pytest.raises(E.ConnectionFailed, match="1 of 2 answer"):
        pending.wait(lost, 1)


def test_backoff_grows_is_capped_jittered_and_reset():
    backoff = Backoff(5, 60)
    delays = [backoff.next_delay() for _ in range(8)]
    assert 5 <= delays[0] <= 7.5 and 10 <= delays[1] <= 12.5 and all(d <= 60 for d in delays)
    assert delays[-1] == 60 and len({round(d, 6) for d in delays[:4]}) == 4
    backoff.reset()
    assert 5 <= backoff.next_delay() <= 7.5


def test_settings_are_checked():
    for kwargs in ({"stale_seconds": 0}, {"reconnect_min_seconds": 10, "reconnect_max_seconds": 5},
                   {"open_timeout": -1}):
        with pytest.raises(E.ValidationError):
            ExecutionStream("ws://127.0.0.1:1/v2", lambda: "t", lambda b: None, lambda s, r: None, **kwargs)
