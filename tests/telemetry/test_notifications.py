"""Notifications: the outbox row commits with its alert, apprise delivers it to a real loopback receiver,
and neither a crash, a failing receiver nor a hung one loses an alert or delays the core."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from triplegain_fsm import alerts
from triplegain_fsm.core import ExecutionCore
from triplegain_fsm.errors import ConfigError
from triplegain_fsm.kraken.errors import ServiceUnavailable
from triplegain_fsm.store import Store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BOT = Path(__file__).with_name("alerting_bot.py")
FAST = {"timeout_seconds": 0.3, "retry_base_seconds": 0.05, "retry_max_seconds": 0.2}


def notifying(receiver, **extra):
    return {"urls": [receiver.json_url], **FAST, **extra}


def raise_alert(core, n: int, severity: str = alerts.CRITICAL) -> None:
    """A distinct condition per n (its own position id), through the core's one alert path."""
    with core.guard.unit() as unit:
        unit.alert(alerts.POSITION_UNPROTECTED, severity, f"position pos-{n} has no stop", position_id=f"pos-{n}")


def outbox(core) -> list[dict]:
    return core.store._select("SELECT * FROM outbox ORDER BY seq")


def test_the_outbox_row_commits_with_its_alert_or_not_at_all(make_core, receiver):
    core = make_core(notifications=notifying(receiver))   # not started: nothing is delivered here
    raise_alert(core, 1)
    raise_alert(core, 1)                        # the same condition again: the repeat policy holds it back
    raise_alert(core, 2, alerts.WARNING)        # below min_severity (high): stored, not notified
    with pytest.raises(RuntimeError), core.guard.unit() as unit:
        unit.alert(alerts.POSITION_UNPROTECTED, alerts.CRITICAL, "rolled back", position_id="pos-3")
        raise RuntimeError("the unit fails: neither the alert nor its notification may exist")
    rows = outbox(core)
    assert [(r["alert_type"], r["severity"], r["delivered_at"]) for r in rows] == [
        ("position_unprotected", "critical", None)]
    assert [a["position_id"] for a in core.store.alerts()] == ["pos-1", "pos-2"]


def test_without_urls_nothing_goes_to_the_outbox(make_core):
    core = make_core()
    raise_alert(core, 1)
    assert core.store.alerts() and outbox(core) == [] and core.telemetry.notifier is None


def test_a_critical_alert_reaches_the_receiver_through_apprise_json(make_core, receiver, prom, wait_until):
    core = make_core(notifications=notifying(receiver), safety={"circuit_failure_threshold": 1},
                     metrics={"port": 0})
    core.start()
    core.circuit.record_failure(ServiceUnavailable("EService:Unavailable", endpoint="QueryOrders"))
    assert receiver.wait_for(lambda r: len(r.accepted()) == 1)
    got = receiver.accepted()[0]
    assert got.method == "POST" and got.path == "/alerts"
    assert got.body["type"] == "failure" and got.body["title"] == "TripleGain CRITICAL: circuit_open"
    assert "new entries paused" in got.body["message"]
    assert wait_until(lambda: outbox(core)[0]["delivered_at"] is not None)
    families = prom.scrape(core.metrics.port)
    assert prom.samples(families, "triplegain_notifications_delivered", "_total") == {(): 1.0}
    assert prom.samples(families, "triplegain_notifications_pending") == {(): 0.0}


def _poll_while_raising(core, alerts_to_raise: int, seconds: float) -> list[float]:
    """Poll cycles and alerts, interleaved, for `seconds`: the duration of every cycle and every unit."""
    spent = []
    raised = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until or raised < alerts_to_raise:
        began = time.perf_counter()
        if raised < alerts_to_raise:
            raise_alert(core, raised)
            raised += 1
        core.poll_once()
        spent.append(time.perf_counter() - began)
    return spent


def test_a_receiver_answering_500_delays_nothing_and_loses_nothing(make_core, receiver, wait_until, prom, caplog):
    receiver.fail_first = 4
    core = make_core(notifications=notifying(receiver), metrics={"port": 0})
    core.telemetry.start()
    with caplog.at_level(logging.INFO, logger="triplegain_fsm.telemetry.notifier"):
        spent = _poll_while_raising(core, alerts_to_raise=5, seconds=0.5)
        assert max(spent) < 0.5, f"a poll cycle waited for the notifications: {max(spent):.3f} s"
        assert receiver.wait_for(lambda r: len(r.accepted()) == 5)
        assert wait_until(lambda: not core.store.undelivered_notifications())
    firsts = sorted(r.body["message"].split("\n")[0] for r in receiver.accepted())
    assert firsts == sorted(f"position pos-{n} has no stop" for n in range(5))   # each accepted exactly once
    assert len(receiver.requests) == 5 + 4                          # the refused attempts, then one each
    failing = [r for r in caplog.records if "failing" in r.getMessage()]
    recovered = [r for r in caplog.records if "delivered again" in r.getMessage()]
    assert len(failing) == 1 and len(recovered) == 1                # logged once per outage
    families = prom.scrape(core.metrics.port)
    assert prom.samples(families, "triplegain_notification_failures", "_total") == {(): 4.0}
    assert prom.samples(families, "triplegain_notifications_delivered", "_total") == {(): 5.0}


def test_a_hung_receiver_delays_no_poll_cycle_and_loses_nothing(make_core, receiver, wait_until):
    receiver.hang_seconds = 30.0                # far longer than the 1 s timeout: the attempt in flight gives up
    core = make_core(notifications=notifying(receiver, timeout_seconds=1.0))
    core.telemetry.start()
    spent = _poll_while_raising(core, alerts_to_raise=3, seconds=1.2)
    assert max(spent) < 0.5, f"a poll cycle waited for the hung receiver: {max(spent):.3f} s"
    assert len(core.store.undelivered_notifications()) == 3
    receiver.release()                          # the service is back
    assert wait_until(lambda: not core.store.undelivered_notifications())
    messages = {r.body["message"].split("\n")[0] for r in receiver.accepted()}
    assert messages == {f"position pos-{n} has no stop" for n in range(3)}
    rows = outbox(core)
    assert all(r["attempts"] >= 1 and r["delivered_at"] for r in rows) and rows[0]["attempts"] >= 2


def test_undelivered_alerts_are_delivered_by_the_next_core_on_the_store(make_core, receiver, clock, wait_until):
    receiver.fail_first = 10_000                # the service is down for the whole first life
    first = make_core(notifications=notifying(receiver))
    first.telemetry.start()
    raise_alert(first, 1)
    assert receiver.wait_for(lambda r: len(r.requests) >= 1)
    first.close()
    kept = Store(first.store.path)
    try:
        assert len(kept.undelivered_notifications()) == 1
    finally:
        kept.close()
    receiver.fail_first = 0
    second = ExecutionCore.from_settings(first.config, clock=clock)
    try:
        second.telemetry.start()
        assert receiver.wait_for(lambda r: len(r.accepted()) == 1)
        assert wait_until(lambda: not second.store.undelivered_notifications())
    finally:
        second.close()
    assert [r.body["message"].split("\n")[0] for r in receiver.accepted()] == ["position pos-1 has no stop"]


def _bot(store: Path, url: str, mode: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, str(BOT), "--store", str(store), "--url", url, "--mode", mode],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.slow   # two bot processes (~2 s each), like tests/crash/
def test_killed_between_the_alert_and_its_delivery_it_is_delivered_once_after_restart(tmp_path, receiver):
    store = tmp_path / "bot.sqlite"
    died = _bot(store, receiver.json_url, "raise")
    assert died.returncode == 137, died.stderr[-3000:]
    assert receiver.requests == []                                  # it died before anything went out
    kept = Store(store)
    try:
        rows = kept.undelivered_notifications()
    finally:
        kept.close()
    assert [r["alert_type"] for r in rows] == ["circuit_open"]     # the outbox row committed with the alert
    again = _bot(store, receiver.json_url, "deliver")
    assert again.returncode == 0 and '{"undelivered": 0}' in again.stdout, again.stderr[-3000:]
    assert [r.body["title"] for r in receiver.requests] == ["TripleGain CRITICAL: circuit_open"]
    kept = Store(store)
    try:   # marked delivered: no later start sends it again
        assert [r["delivered_at"] is not None for r in kept._select("SELECT * FROM outbox")] == [True]
    finally:
        kept.close()


def test_secrets_come_from_the_environment_and_are_never_shown(make_core, receiver, monkeypatch, caplog,
                                                                 wait_until):
    monkeypatch.setenv("TG_TEST_PORT", str(receiver.port))
    monkeypatch.setenv("TG_TEST_TOKEN", "s3cr3t-t0ken")
    receiver.fail_first = 1                     # one failure, so the outage is logged
    with caplog.at_level(logging.DEBUG):
        core = make_core(notifications={"urls": ["json://127.0.0.1:${TG_TEST_PORT}/${TG_TEST_TOKEN}"], **FAST},
                         heartbeat={"url": "http://127.0.0.1:${TG_TEST_PORT}/${TG_TEST_TOKEN}"})
        core.telemetry.start()
        raise_alert(core, 1)
        assert receiver.wait_for(lambda r: len(r.accepted()) == 1)
        core.telemetry.stop()
    assert receiver.accepted()[0].path == "/s3cr3t-t0ken"           # the environment filled it in
    shown = " ".join([repr(core.config), str(core.config), repr(core.telemetry.heartbeat),
                      *(r.getMessage() for r in caplog.records)])
    assert "s3cr3t" not in shown and "TG_TEST_TOKEN" not in shown
    assert "urls=('json://127.0.0.1/***',)" in repr(core.config.notifications)
    assert "url='http://127.0.0.1/***'" in repr(core.config.heartbeat)
    assert any("failing" in r.getMessage() and "json://127.0.0.1/***" in r.getMessage() for r in caplog.records)


def test_a_missing_environment_variable_is_named_at_start(make_core, monkeypatch):
    monkeypatch.delenv("TG_NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError, match=r"notifications.urls\[0\]: environment variable TG_NOT_SET_ANYWHERE"):
        make_core(notifications={"urls": ["tgram://${TG_NOT_SET_ANYWHERE}/12345"]})


def test_a_url_apprise_refuses_is_refused_at_start_without_echoing_it(make_core):
    with pytest.raises(ConfigError) as info:
        make_core(notifications={"urls": ["nosuchservice://tok3n-value/x"]})
    assert "urls[0]" in str(info.value) and "tok3n" not in str(info.value)


def test_a_start_refused_by_its_notification_urls_leaves_no_file_open(tmp_path, monkeypatch):
    """The store (and a paper account's file) opened before the refusal are closed again."""
    from triplegain_fsm import core as core_module
    from triplegain_fsm.testing import paper_config

    closed: list[str] = []

    class Recorded(Store):
        def close(self) -> None:
            closed.append(self.path)
            super().close()
    monkeypatch.setattr(core_module, "Store", Recorded)
    config = paper_config(tmp_path / "refused.sqlite", notifications={"urls": ["nosuchservice://x/y"]})
    with pytest.raises(ConfigError, match="urls\\[0\\]"):
        ExecutionCore.from_settings(config)
    assert closed == [str(tmp_path / "refused.sqlite")]
