"""The core on the executions stream (issue 12): pushed fills protected with no poll_once, outages loud.

Real parts end to end: the core's stream client over a real loopback socket to
the paper exchange's WebSocket v2 server, which reports on the same engine the
REST side trades on. No sleeps as synchronisation: every wait is a bounded
poll of an observable condition.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal as D

import pytest

from triplegain_fsm import alerts
from triplegain_fsm.enums import OrderStatus
from triplegain_fsm.models import TradeProposal

WAIT = 10.0


def eventually(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def buy(entry: str | None = "43000", tp: str | None = "48000") -> TradeProposal:
    return TradeProposal(symbol="BTC/USD", side="buy", size_usd=D("430"), entry_price=D(entry) if entry else None,
                         stop_loss=D("41000"), take_profit=D(tp) if tp else None)


@pytest.fixture
def stream_core(make_core):
    """A paper core on the stream, polling only as a rare audit (so a poll cannot be what saw the fill)."""
    def build(price: str = "43100", **sections):
        core = make_core(price=price, **{"exchange": {"stream": "websocket", "stream_stale_seconds": 2.5,
                                         "stream_reconnect_seconds": 0.05, "stream_audit_seconds": 3600},
                            "orders": {"poll_interval_seconds": 3600}, **sections})
        core.start()
        assert core.stream is not None and core.stream.wait_connected(WAIT)
        return core
    return build


def query_orders_calls(core) -> int:
    return sum(1 for c in core.paper.calls.all() if c.method == "QueryOrders")


def stop_at_exchange(core, position_id: str) -> bool:
    position = core.positions.get_position(position_id)
    return position is not None and position.state == "PROTECTED"


def test_a_pushed_fill_is_protected_without_any_poll(stream_core):
    core = stream_core()
    assert core.status().stream == "connected"
    result = core.orders.execute_trade(buy())
    polls = query_orders_calls(core)
    core.price_tick("BTC/USD", D("42990"))            # the resting entry fills at the exchange
    eventually(lambda: stop_at_exchange(core, result.position_id))
    assert result.order.status is OrderStatus.FILLED
    assert query_orders_calls(core) == polls, "learnt from the stream, not from a poll"
    [fill] = core.store.fills(result.order.id)
    assert fill["source"] == "stream"
    position = core.positions.get_position(result.position_id)
    stops = [o for o in core.orders.working_for_position(position.id) if o.role.value == "stop_loss"]
    assert [s.size for s in stops] == [position.size]


def test_partial_fills_pushed_one_trade_at_a_time_count_once_with_a_later_poll(stream_core):
    core = stream_core(paper={"liquidity_per_tick": "0.004"})
    result = core.orders.execute_trade(buy())
    for expected in ("0.004", "0.008", "0.01"):
        core.price_tick("BTC/USD", D("42990"))
        eventually(lambda e=expected: result.order.filled_size == D(e))
    core.poll_once()                                 # REST sees the same three trades: nothing new
    trades = {t for t, v in core.paper.trades().items() if v["ordertxid"] == result.order.external_id}
    assert {f["fill_key"] for f in core.store.fills(result.order.id)} == trades and len(trades) == 3
    assert core.positions.get_position(result.position_id).size == D("0.01")


def test_a_stop_cancelled_by_hand_is_seen_at_once(stream_core):
    core = stream_core()
    result = core.orders.execute_trade(buy(entry=None, tp=None))
    eventually(lambda: stop_at_exchange(core, result.position_id))
    [stop] = [o for o in core.orders.working_for_position(result.position_id) if o.role.value == "stop_loss"]
    core.paper.engine.cancel_order(txid=stop.external_id)   # a human at the web UI
    eventually(lambda: stop.status is OrderStatus.CANCELLED)


def test_a_dropped_stream_alerts_polls_and_resyncs_without_losing_a_fill(stream_core):
    core = stream_core()
    seen: list[dict] = []
    core.bus.subscribe("risk_alerts", lambda message: seen.append(message.payload))
    result = core.orders.execute_trade(buy())
    core.paper.ws_faults.silence()                    # acked but silent: heartbeats stop too
    core.price_tick("BTC/USD", D("42990"))            # filled while nobody listens
    eventually(lambda: any(a["alert_type"] == alerts.STREAM_DOWN for a in seen))
    assert core.status().stream in ("down", "connecting")
    core.paper.ws_faults.resume()
    eventually(lambda: core.status().stream == "connected")
    eventually(lambda: stop_at_exchange(core, result.position_id))
    assert len(core.store.fills(result.order.id)) == 1
    assert [a["alert_type"] for a in seen].count(alerts.STREAM_DOWN) == 1
    eventually(lambda: any(a["alert_type"] == alerts.STREAM_RESTORED for a in seen))


def test_stream_poll_keeps_the_stream_off(make_core):
    core = make_core(exchange={"stream": "poll"})
    core.start()
    assert core.stream is None and core.status().stream == "off"
    core.stop()


def _drop(core):
    core.paper.ws_faults.drop_now()


def _gap(core):
    core.paper.ws_faults.drop_next_update()     # the fill's update is lost; the next one shows the gap
    core.paper.ws_faults.skip_sequence()


def _token(core):
    core.paper.ws_faults.invalidate_tokens()
    core.paper.ws_faults.drop_now()              # the reconnect must fetch a fresh token


@pytest.mark.parametrize("fault", [_drop, _gap, _token], ids=["dropped", "gap", "token"])
def test_every_stream_fault_ends_with_the_fill_once_and_the_position_protected(stream_core, fault):
    core = stream_core()
    seen: list[dict] = []
    core.bus.subscribe("risk_alerts", lambda message: seen.append(message.payload))
    result = core.orders.execute_trade(buy())
    fault(core)
    core.price_tick("BTC/USD", D("42990"))
    # later activity: a lost update shows as a gap only once a later one comes
    core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="buy", size_usd=D("430"),
                                            entry_price=D("30000"), stop_loss=D("29000")))
    eventually(lambda: stop_at_exchange(core, result.position_id))
    eventually(lambda: core.status().stream == "connected")
    assert len(core.store.fills(result.order.id)) == 1
    assert result.order.filled_size == result.order.size
    assert [a["alert_type"] for a in seen].count(alerts.STREAM_DOWN) <= 1


def test_a_failed_rest_backfill_keeps_polling_until_a_clean_cycle(stream_core):
    core = stream_core()
    core.orders.execute_trade(buy())                 # one working order for the backfill to read
    core.paper.faults.fail_next("QueryOrders", "EService:Unavailable", times=50)
    core.paper.ws_faults.drop_now()
    eventually(lambda: core.stream.stream.state.value != "connected")    # the drop noticed
    eventually(lambda: core.stream.stream.state.value == "connected")    # and the socket back
    assert core.status().stream == "connecting"     # back, but not trusted: its backfill failed
    core.paper.faults.clear()
    core.poll_once()
    assert core.status().stream == "connected"


def test_a_stop_refused_once_is_retried_after_its_backoff_not_after_the_audit_interval(stream_core, clock):
    """On a healthy stream the poller is a slow audit (an hour here); a stop whose placement failed is
    due again after its backoff (2 s), and the sleeping poller wakes for it instead of sleeping the hour."""
    core = stream_core()
    core.paper.ws_faults.fail_next("add_order", "EOrder:Rate limit exceeded", times=4,   # one call and its retries
                                   where=lambda p: p.get("order_type") == "stop-loss")
    result = core.orders.execute_trade(buy(entry=None))          # a market entry: fills at once
    eventually(lambda: any(a["alert_type"] == alerts.CONTINGENT_ORDER_FAILURE for a in core.store.alerts()))
    assert not stop_at_exchange(core, result.position_id)
    clock.advance(3)                                             # past the retry's backoff
    eventually(lambda: stop_at_exchange(core, result.position_id))
    core.stop()
