"""The /metrics endpoint, scraped for real during paper sessions and parsed by prometheus_client's parser."""
from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections import Counter
from decimal import Decimal as D

import attrs
import pytest
from prometheus_client import generate_latest

from triplegain_fsm import session as sessions
from triplegain_fsm.config import MetricsConfig
from triplegain_fsm.models import TradeProposal
from triplegain_fsm.telemetry.metrics import ORDER_STATES, POSITION_STATES

pytestmark = pytest.mark.integration


def buy(symbol: str, usd: str = "500", stop: str | None = None, target: str | None = None) -> TradeProposal:
    return TradeProposal(symbol=symbol, side="buy", size_usd=D(usd), stop_loss=None if stop is None else D(stop),
                         take_profit=None if target is None else D(target))


def expected_calls(paper) -> dict[tuple[str, str], float]:
    """What the exchange itself logged, in the metric's terms (no answer: the in-process transport's
    ReadTimeout, counted through the client's on_unanswered hook)."""
    counts: Counter[tuple[str, str]] = Counter()
    for call in paper.calls:
        if call.status is None:
            outcome = "timeout"
        elif call.status != 200:
            outcome = "http_5xx" if call.status >= 500 else "http_4xx"
        elif call.fault == "malformed":
            outcome = "malformed"
        else:
            outcome = call.error[0].split(":")[0] if call.error else "ok"
        counts[(call.method, outcome)] += 1
    return {key: float(n) for key, n in counts.items()}


def test_scrape_during_a_paper_session_matches_the_session(make_core, clock, prom):
    core = make_core(metrics={"port": 0})
    core.telemetry.start()
    core.price_tick("ETH/USD", D("2300"))
    protected = core.orders.execute_trade(buy("BTC/USD", stop="41000", target="48000"))
    bare = core.orders.execute_trade(buy("ETH/USD"))     # no stop-loss: alert no_stop_loss, nothing at the exchange
    core.poll_once()              # both fills seen; BTC's stop placed and acknowledged in the same cycle
    clock.advance(30)
    core.poll_once()

    families = prom.scrape(core.metrics.port)

    in_store = core.store.count_by_state("orders")
    assert prom.by_label(families, "triplegain_orders", "state") == {
        state: float(in_store.get(state, 0)) for state in ORDER_STATES}
    assert in_store.get("FILLED") == 2 and in_store.get("OPEN", 0) >= 1   # entries filled, BTC's stop resting
    positions = Counter(p.state for p in core.store.load_positions())
    assert prom.by_label(families, "triplegain_positions", "state") == {
        state: float(positions.get(state, 0)) for state in POSITION_STATES}
    # one observation per protected entry: the ETH entry has no stop to wait for
    assert prom.samples(families, "triplegain_fill_to_stop_seconds", "_count") == {(): 1.0}
    assert prom.samples(families, "triplegain_fill_to_stop_seconds", "_sum") == {(): 0.0}   # same cycle, fake clock
    eth = core.positions.get_position(bare.position_id)
    assert core.positions.get_position(protected.position_id).size > 0 and eth.size > 0
    assert prom.by_label(families, "triplegain_unprotected_position_seconds", "symbol", "_total") == {
        "BTC/USD": 0.0, "ETH/USD": pytest.approx(float(eth.size) * 30)}
    assert prom.samples(families, "triplegain_alerts", "_total") == {
        (("alert_type", "no_stop_loss"), ("severity", "high")): 1.0}
    calls = {(dict(k)["method"], dict(k)["outcome"]): v
             for k, v in prom.samples(families, "triplegain_exchange_calls", "_total").items()}
    assert calls == expected_calls(core.paper) and calls[("AddOrder", "ok")] >= 3
    assert prom.samples(families, "triplegain_last_poll_timestamp_seconds") == {(): pytest.approx(clock.now)}
    assert prom.by_label(families, "triplegain_poll_cycles", "outcome", "_total") == {"ok": 2.0}
    assert prom.samples(families, "triplegain_outcome_unknown_orders") == {(): 0.0}
    headroom = prom.by_label(families, "triplegain_rate_counter_headroom", "counter")
    assert 0 <= headroom["rest"] < 15 and {"public", "trading:XBTUSD", "trading:ETHUSD"} <= set(headroom)


def test_fill_to_stop_is_the_time_from_the_fill_seen_to_the_stop_acknowledged(make_core, clock, prom):
    core = make_core(metrics={"port": 0})
    core.telemetry.start()
    # the world moves 2.5 s between the fill being seen and the stop's answer (a slow exchange)
    core.bus.subscribe("execution", lambda m: clock.advance(2.5) if m.payload.get("event") == "order_fill" else None)
    result = core.orders.execute_trade(buy("BTC/USD", stop="41000", target="48000"))
    core.poll_once()
    families = prom.scrape(core.metrics.port)
    assert prom.samples(families, "triplegain_fill_to_stop_seconds", "_sum") == {(): 2.5}
    buckets = prom.by_label(families, "triplegain_fill_to_stop_seconds", "le", "_bucket")
    assert buckets["1.0"] == 0.0 and buckets["2.5"] == 1.0
    size = float(core.positions.get_position(result.position_id).size)
    # for those 2.5 s the filled volume had no stop at the exchange
    assert prom.by_label(families, "triplegain_unprotected_position_seconds", "symbol", "_total") == {
        "BTC/USD": pytest.approx(size * 2.5)}
    clock.advance(100)   # protected from now on: the integral stops growing
    again = prom.scrape(core.metrics.port)
    assert prom.by_label(again, "triplegain_unprotected_position_seconds", "symbol", "_total") == {
        "BTC/USD": pytest.approx(size * 2.5)}


def test_a_cancelled_stop_makes_the_position_count_as_unprotected(make_core, clock, prom):
    core = make_core(metrics={"port": 0})
    core.telemetry.start()
    result = core.orders.execute_trade(buy("BTC/USD", stop="41000", target="48000"))
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    core.paper.engine.cancel_order(txid=core.orders.get_order(position.stop_loss_order_id).external_id)  # a human
    core.paper.faults.fail_next("AddOrder", "EService:Unavailable", times=20)   # and re-protection fails for now
    core.poll_once()                 # the core sees the stop gone: critical position_unprotected
    clock.advance(10)
    families = prom.scrape(core.metrics.port)
    assert prom.by_label(families, "triplegain_unprotected_position_seconds", "symbol", "_total") == {
        "BTC/USD": pytest.approx(float(position.size) * 10)}
    alerts = prom.samples(families, "triplegain_alerts", "_total")
    assert alerts[(("alert_type", "position_unprotected"), ("severity", "critical"))] == 1.0
    calls = {(dict(k)["method"], dict(k)["outcome"]): v
             for k, v in prom.samples(families, "triplegain_exchange_calls", "_total").items()}
    assert calls[("AddOrder", "EService")] >= 1 and calls == expected_calls(core.paper)


def test_outcome_unknown_orders_and_http_errors_are_counted(make_core, prom):
    core = make_core(metrics={"port": 0})
    core.telemetry.start()
    core.paper.faults.lose_next_response("AddOrder")       # the exchange acts, the answer never arrives
    core.paper.faults.http_status_next("OpenOrders", 502)   # the look-ups by client id meet a bad gateway,
    core.paper.faults.malformed_next("OpenOrders")          # a cut-off body,
    core.paper.faults.fail_next("OpenOrders", "EService:Unavailable", times=200)    # and a busy exchange
    core.paper.faults.fail_next("ClosedOrders", "EService:Unavailable", times=200)
    result = core.orders.execute_trade(buy("BTC/USD", stop="41000", target="48000"))
    assert result.error_type == "outcome_unknown"
    families = prom.scrape(core.metrics.port)
    assert prom.samples(families, "triplegain_outcome_unknown_orders") == {(): 1.0}
    assert prom.by_label(families, "triplegain_orders", "state")["SUBMITTED_UNKNOWN"] == 1.0
    calls = {(dict(k)["method"], dict(k)["outcome"]): v
             for k, v in prom.samples(families, "triplegain_exchange_calls", "_total").items()}
    assert calls == expected_calls(core.paper)
    assert calls[("OpenOrders", "http_5xx")] == 1.0 and calls[("OpenOrders", "malformed")] == 1.0
    assert ("AddOrder", "ok") not in calls and calls[("AddOrder", "timeout")] == 1.0   # acted, answer lost


@pytest.mark.slow   # the whole demo session, 1,200 ticks (~3 s)
def test_the_demo_session_scraped_mid_run_and_at_the_end(tmp_path, prom):
    config = attrs.evolve(sessions.demo_config(tmp_path / "demo.sqlite"), metrics=MetricsConfig(port=0))
    ticks = sessions.demo_ticks()
    session = sessions._Session(config, ticks, sessions.demo_schedule(len(ticks)), sessions.DEMO_SYMBOL, 1)
    core = session.core
    mid: dict = {}

    def scrape_once_protected(message) -> None:   # runs in the session's thread, after the core's commit
        if not mid and message.payload.get("to_state") == "PROTECTED":
            mid.update(prom.scrape(core.metrics.port))

    core.bus.subscribe("execution", scrape_once_protected)
    try:
        core.telemetry.start()
        summary = session.run(None)
        families = prom.scrape(core.metrics.port)
        acked = {o.position_id for o in summary.orders if o.role.value == "stop_loss"
                 and any(e["to_state"] == "OPEN" for e in core.store.events(o.id))}
    finally:
        session.close()
    assert mid and prom.by_label(mid, "triplegain_positions", "state")["PROTECTED"] >= 1
    assert prom.by_label(families, "triplegain_orders", "state") == {
        state: float(summary.orders_by_status.get(state, 0)) for state in ORDER_STATES}
    assert prom.by_label(families, "triplegain_positions", "state")["CLOSED"] == len(summary.positions)
    # one observation per entry that filled and then got its stop acknowledged at the exchange
    filled = {p.id for p in summary.positions if p.entry_size > 0}
    assert acked and acked <= filled
    assert prom.samples(families, "triplegain_fill_to_stop_seconds", "_count") == {(): float(len(acked))}
    # every entry was protected in the poll cycle that saw its fills (partial ones included): no second of
    # filled volume without a stop, on the session's clock
    assert summary.never_protected == ()
    assert prom.by_label(families, "triplegain_unprotected_position_seconds", "symbol", "_total") == {"BTC/USD": 0.0}


def test_core_start_serves_and_stop_leaves_no_thread(make_core, prom, wait_until):
    before = set(threading.enumerate())
    core = make_core(metrics={"port": 0})
    core.start()
    port = core.metrics.port
    assert "triplegain_orders" in prom.scrape(port)
    core.stop()
    assert core.metrics.port is None
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
    # (a scrape's own handler thread may take a moment to end after its answer was read)
    assert wait_until(lambda: set(threading.enumerate()) <= before, timeout=5)
    core.start()                     # a stopped core starts again, endpoint included
    assert "triplegain_positions" in prom.scrape(core.metrics.port)


def test_metrics_exist_without_a_server_for_bots_that_mount_the_registry(make_core):
    core = make_core()
    core.start()
    assert core.metrics.port is None
    text = generate_latest(core.metrics.registry).decode()
    assert "triplegain_orders{" in text and "triplegain_rate_counter_headroom{" in text


def test_stream_state_gauge_is_fed_by_the_stream_integration(make_core, prom):
    core = make_core(metrics={"port": 0})
    core.telemetry.start()
    assert prom.samples(prom.scrape(core.metrics.port), "triplegain_stream_state") == {}
    core.metrics.stream_state("connecting")
    core.metrics.stream_state("live")
    core.metrics.stream_state("live")
    assert prom.by_label(prom.scrape(core.metrics.port), "triplegain_stream_state", "state") == {
        "connecting": 0.0, "live": 1.0}


def test_a_tick_that_crosses_no_level_publishes_nothing_for_metrics_to_do(make_core):
    core = make_core(metrics={"port": 0})
    core.orders.execute_trade(buy("BTC/USD", stop="41000", target="48000"))
    core.poll_once()
    seen: list = []
    core.bus.subscribe("execution", seen.append)
    core.bus.subscribe("risk_alerts", seen.append)
    for price in ("43010", "42990", "43005"):
        core.price_tick("BTC/USD", D(price))
    assert seen == []
