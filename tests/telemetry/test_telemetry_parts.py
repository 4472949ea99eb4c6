"""The telemetry's parts on their own: reading a call's outcome, a delivery that raises, an outage that ends."""
from __future__ import annotations

import logging

import pytest
import requests

from triplegain_fsm import alerts
from triplegain_fsm.bus import MessageBus
from triplegain_fsm.config import HeartbeatConfig, NotificationsConfig
from triplegain_fsm.errors import ConfigError
from triplegain_fsm.store import Store
from triplegain_fsm.telemetry import Heartbeat, Notifier
from triplegain_fsm.telemetry.metrics import call_outcome
from triplegain_fsm.telemetry.notifier import Target, notify_type, render
from triplegain_fsm.testing import FakeClock
from triplegain_fsm.unit import AlertPolicy, StateGuard

pytestmark = pytest.mark.unit


def response(status: int, body: bytes) -> requests.Response:
    answer = requests.Response()
    answer.status_code, answer._content = status, body
    return answer


@pytest.mark.parametrize(("status", "body", "outcome"), [
    (200, b'{"error":[],"result":{}}', "ok"),
    (200, b'{"error":["EOrder:Insufficient funds"],"result":{}}', "EOrder"),
    (200, b'{"error":["WGeneral:Not yet"]}', "WGeneral"),
    (200, b'{"error":["nonsense without a category"]}', "error"),
    (200, b'{"error":[],"result":{"descr":{"order":"', "malformed"),
    (200, b'[1, 2]', "malformed"),
    (200, b'{"error": "EAPI:Invalid key"}', "malformed"),
    (429, b"", "http_429"),
    (404, b"<html>", "http_4xx"),
    (520, b"<html>", "http_5xx"),
])
def test_call_outcome(status, body, outcome) -> None:
    assert call_outcome(response(status, body)) == outcome


def test_notification_format() -> None:
    row = {"payload": '{"alert_type": "oco_both_filled", "severity": "critical", "message": "sold twice", '
                      '"position_id": "pos-1", "order_id": "ord-2", "symbol": "BTC/USD", "excess": "0.1"}',
           "created_at": "2026-01-02T03:04:05+00:00", "severity": "critical"}
    title, body = render(row)
    assert title == "TripleGain CRITICAL: oco_both_filled"
    assert body.splitlines() == ["sold twice", "position_id: pos-1", "order_id: ord-2", "symbol: BTC/USD",
                                 "raised at 2026-01-02T03:04:05+00:00"]
    assert [notify_type(s) for s in ("critical", "high", "warning", "info")] == ["failure", "failure", "warning",
                                                                                   "info"]


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "outbox.sqlite")
    yield s
    s.close()


def enqueue(store: Store, n: int) -> None:
    guard = StateGuard(store, MessageBus(), AlertPolicy(notify_at="high"))
    for i in range(n):
        with guard.unit() as unit:
            unit.alert(alerts.POSITION_UNPROTECTED, alerts.CRITICAL, f"alert {i}", position_id=f"pos-{i}")


def test_a_target_that_raises_counts_as_a_failure_and_backs_off(store, caplog) -> None:
    enqueue(store, 2)
    clock = FakeClock()
    sent: list[str] = []

    def flaky(title: str, body: str, kind: str) -> bool:
        if not sent:
            sent.append("boom")
            raise RuntimeError("the plugin crashed")
        sent.append(body.splitlines()[0])
        return True

    config = NotificationsConfig(urls=("json://127.0.0.1:9/x",), retry_base_seconds=5, retry_max_seconds=20)
    notifier = Notifier(config, store, clock=clock, targets=[Target("k1", "json://127.0.0.1:9/***", flaky)])
    with caplog.at_level(logging.WARNING):
        assert notifier.deliver_due() == 5.0          # the first attempt raised: back off 5 s
        assert notifier.deliver_due() == 5.0          # not due yet: nothing sent
        clock.advance(5)
        assert notifier.deliver_due() is None         # delivered both, nothing waits
    assert sent == ["boom", "alert 0", "alert 1"]
    rows = store._select("SELECT * FROM outbox ORDER BY seq")
    assert [(r["delivered_to"], r["attempts"], r["last_error"]) for r in rows] == [("k1", 2, None), ("k1", 1, None)]
    assert [r.getMessage() for r in caplog.records if r.name.endswith("notifier")] == [
        "notifications to json://127.0.0.1:9/*** failing (RuntimeError); alerts wait in the outbox, retrying with "
        "backoff up to 20 s"]


def test_one_failing_target_does_not_resend_to_the_other(store) -> None:
    enqueue(store, 1)
    clock = FakeClock()
    good: list[str] = []
    config = NotificationsConfig(urls=("json://a/x", "json://b/y"), retry_base_seconds=1, retry_max_seconds=4)
    notifier = Notifier(config, store, clock=clock, targets=[
        Target("good", "json://a/***", lambda t, b, k: good.append(b) is None),
        Target("down", "json://b/***", lambda t, b, k: False)])
    waits = []
    for _ in range(4):
        waits.append(notifier.deliver_due())
        clock.advance(100)
    assert len(good) == 1 and waits == [1.0, 2.0, 4.0, 4.0]     # capped backoff, the good one reached once
    assert store.undelivered_notifications()[0]["delivered_to"] == "good"


def test_a_url_listed_twice_is_refused() -> None:
    config = NotificationsConfig(urls=("json://127.0.0.1:9/x", " json://127.0.0.1:9/x"))
    with pytest.raises(ConfigError, match="listed twice"):
        Notifier(config, None)  # type: ignore[arg-type]  # refused before the store is used


def test_a_heartbeat_outage_is_logged_once_and_its_end_too(receiver, caplog) -> None:
    receiver.fail_first = 2
    clock = FakeClock()
    heartbeat = Heartbeat(HeartbeatConfig(url=receiver.http_url, every_seconds=1), clock=clock)
    heartbeat.start()
    heartbeat.start()                   # idempotent
    with caplog.at_level(logging.INFO, logger="triplegain_fsm.telemetry.heartbeat"):
        for n in range(1, 4):
            heartbeat.beat()
            assert receiver.wait_for(lambda r, n=n: len(r.requests) == n)
            clock.advance(1)
        heartbeat.stop()
    shown = f"http://127.0.0.1:{receiver.port}/***"
    assert [r.getMessage() for r in caplog.records] == [
        f"heartbeat ping to {shown} failed (HTTP 500); the checker will see missed pings",
        f"heartbeat to {shown} answered again"]


def test_a_backlog_larger_than_one_batch_goes_out_without_waiting(store) -> None:
    from triplegain_fsm.telemetry.notifier import BATCH

    enqueue(store, BATCH + 3)
    sent: list[str] = []
    config = NotificationsConfig(urls=("json://127.0.0.1:9/x",))
    notifier = Notifier(config, store, targets=[Target("k", "json://***", lambda t, b, k: sent.append(b) is None)])
    assert notifier.deliver_due() == 0.0          # a full batch: come back at once
    assert notifier.deliver_due() is None and len(sent) == BATCH + 3
    assert store.undelivered_notifications() == []


def test_a_store_that_fails_is_logged_once_and_retried(tmp_path, caplog) -> None:
    broken = Store(tmp_path / "gone.sqlite")
    broken.close()                                 # every read now raises
    config = NotificationsConfig(urls=("json://127.0.0.1:9/x",), retry_base_seconds=7)
    notifier = Notifier(config, broken, targets=[Target("k", "json://***", lambda t, b, k: True)])
    with caplog.at_level(logging.ERROR, logger="triplegain_fsm.telemetry.notifier"):
        assert [notifier.run_pass() for _ in range(3)] == [7, 7, 7]    # retried, never raised
    assert [r.getMessage() for r in caplog.records] == ["notification delivery pass failed; retrying"]
