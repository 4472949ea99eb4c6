"""The heartbeat: a loopback checker sees a ping after healthy poll cycles (at most every N seconds) and
`/fail` when the circuit opens or the core stops on an error; a slow checker delays no cycle."""
from __future__ import annotations

import logging
import time

import pytest

from triplegain_fsm.config import HeartbeatConfig
from triplegain_fsm.core import ExecutionCore
from triplegain_fsm.kraken.errors import ServiceUnavailable
from triplegain_fsm.telemetry import Heartbeat
from triplegain_fsm.testing import FakeClock, paper_config

pytestmark = pytest.mark.integration


def paths(receiver) -> list[str]:
    return [r.path for r in receiver.requests]


def test_beats_are_sent_at_most_every_n_seconds(receiver):
    clock = FakeClock()
    heartbeat = Heartbeat(HeartbeatConfig(url=receiver.http_url, every_seconds=60, timeout_seconds=2), clock=clock)
    heartbeat.start()
    try:
        for _ in range(3):
            heartbeat.beat()
        assert receiver.wait_for(lambda r: len(r.requests) == 1)
        clock.advance(59)
        heartbeat.beat()
        clock.advance(1)
        heartbeat.beat()
        assert receiver.wait_for(lambda r: len(r.requests) == 2)
        heartbeat.fail()
        heartbeat.beat()                   # after a failure the next healthy cycle pings at once
        assert receiver.wait_for(lambda r: len(r.requests) == 4)
    finally:
        heartbeat.stop()
    assert paths(receiver) == ["/ping/check-1", "/ping/check-1", "/ping/check-1/fail", "/ping/check-1"]
    assert all(r.method == "GET" for r in receiver.requests)


def test_the_core_pings_after_healthy_cycles_and_fails_when_the_circuit_opens(make_core, receiver, prom,
                                                                               wait_until):
    core = make_core(heartbeat={"url": receiver.http_url, "every_seconds": 60}, metrics={"port": 0},
                     safety={"circuit_failure_threshold": 1})
    core.telemetry.start()
    core.poll_once()
    core.poll_once()                       # within every_seconds: no second ping
    assert receiver.wait_for(lambda r: len(r.requests) == 1)
    core.circuit.record_failure(ServiceUnavailable("EService:Unavailable", endpoint="QueryOrders"))
    assert receiver.wait_for(lambda r: len(r.requests) == 2)
    core.poll_once()                       # the circuit is open: not a healthy cycle, no ping
    core.circuit.record_success()          # the exchange answers again
    core.poll_once()
    assert receiver.wait_for(lambda r: len(r.requests) == 3)
    assert paths(receiver) == ["/ping/check-1", "/ping/check-1/fail", "/ping/check-1"]
    expected = {(("kind", "fail"), ("outcome", "sent")): 1.0, (("kind", "ping"), ("outcome", "sent")): 2.0}
    # counted when the answer is back, a moment after the checker saw the request
    assert wait_until(lambda: prom.samples(prom.scrape(core.metrics.port), "triplegain_heartbeats", "_total")
                      == expected)


def test_a_core_stopping_on_an_error_sends_fail_before_it_is_closed(tmp_path, receiver):
    config = paper_config(tmp_path / "hb.sqlite", heartbeat={"url": receiver.http_url})
    with pytest.raises(RuntimeError, match="the bot's own bug"), ExecutionCore.from_settings(config) as core:
        core.start()
        core.poll_once()
        raise RuntimeError("the bot's own bug")
    assert "/ping/check-1/fail" in paths(receiver)   # sent by close(), before it returned
    assert not core.telemetry.heartbeat.running


def test_a_slow_checker_delays_no_poll_cycle(make_core, receiver, caplog):
    receiver.hang_seconds = 30.0
    core = make_core(heartbeat={"url": receiver.http_url, "every_seconds": 0.05, "timeout_seconds": 0.6})
    core.telemetry.start()
    spent = []
    with caplog.at_level(logging.WARNING, logger="triplegain_fsm.telemetry.heartbeat"):
        until = time.monotonic() + 1.0       # the first ping times out after 0.6 s; others queue behind it
        while time.monotonic() < until:
            began = time.perf_counter()
            core.poll_once()
            spent.append(time.perf_counter() - began)
            time.sleep(0.01)
        receiver.release()
        core.telemetry.stop()
    assert max(spent) < 0.4, f"a poll cycle waited for the checker: {max(spent):.3f} s"
    warnings = [r for r in caplog.records if "heartbeat ping" in r.getMessage()]
    assert len(warnings) == 1 and "http://127.0.0.1" in warnings[0].getMessage()   # once per outage, masked
    assert "check-1" not in warnings[0].getMessage()
