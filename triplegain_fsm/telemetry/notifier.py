"""Alerts out of the process: apprise deliveries from the durable outbox, on one thread of their own.

The core never waits for a notification. An alert at or above
`notifications.min_severity` is written to the `outbox` table in the same SQLite
transaction that records it (unit.py), so an alert raised just before a crash is
still there after the restart. This thread reads the outbox, sends each row to every
configured URL (one apprise object per URL, so a URL that fails never makes another
one receive the same alert twice), marks what each URL accepted, and retries a
failing URL with capped exponential backoff. Failures are counted
(`triplegain_notification_failures_total`) and logged once per outage per URL; they
never reach the core. A hung receiver holds only this thread, for at most
`notifications.timeout_seconds` per attempt.

Delivery is at least once: a crash between a receiver accepting a row and the row
being marked delivers it again after the restart (it cannot be otherwise over HTTP).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs

from triplegain_fsm.bus import Message
from triplegain_fsm.config import NotificationsConfig
from triplegain_fsm.errors import ConfigError
from triplegain_fsm.telemetry.urls import expand, mask_url, quiet_third_parties
from triplegain_fsm.unit import AlertPolicy

if TYPE_CHECKING:
    from triplegain_fsm.store import Store
    from triplegain_fsm.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

THREAD_NAME = "triplegain-notify"
BATCH = 100                 # outbox rows read per pass
IDLE_SECONDS = 60.0         # a pass this often even without a new alert (rows written by another process)
DETAIL_FIELDS = ("position_id", "order_id", "symbol", "client_order_id", "txid", "asset", "kind")


@attrs.define
class Target:
    """One notification URL: its apprise object, the key its deliveries are recorded under, its outage."""

    key: str                  # sha256 of the URL template: stable when a ${SECRET} rotates; never the URL
    label: str                # the masked URL, for logs
    send: Callable[[str, str, str], bool]
    failures: int = 0
    next_attempt: float = 0.0


def target_key(template: str) -> str:
    return hashlib.sha256(template.strip().encode()).hexdigest()[:16]


def notify_type(severity: str) -> str:
    return {"critical": "failure", "high": "failure", "warning": "warning"}.get(severity, "info")


def render(row: Mapping[str, Any]) -> tuple[str, str]:
    """(title, body) of one outbox row."""
    payload = json.loads(row["payload"])
    severity = str(payload.get("severity", "")).upper()
    title = f"TripleGain {severity}: {payload.get('alert_type')}"
    lines = [str(payload.get("message", ""))]
    lines += [f"{name}: {payload[name]}" for name in DETAIL_FIELDS if payload.get(name) not in (None, "", [])]
    lines.append(f"raised at {row['created_at']}")
    return title, "\n".join(lines)


def apprise_target(template: str, index: int, timeout: float, environ: Mapping[str, str]) -> Target:
    """A Target that delivers through apprise; a URL apprise refuses is a ConfigError at start."""
    import apprise  # ~0.2 s: only when notifications are configured

    where = f"notifications.urls[{index}]"
    url = expand(template, environ, where)
    asset = apprise.AppriseAsset(async_mode=False, storage_mode="memory", service_timeout=0)
    with quiet_third_parties():
        plugin = apprise.Apprise.instantiate(url, asset=asset)
    if plugin is None:
        raise ConfigError(f"{where}: apprise does not accept {mask_url(template)} (unknown scheme or malformed)")
    plugin.socket_connect_timeout = plugin.socket_read_timeout = timeout  # one attempt is bounded
    sender = apprise.Apprise(asset=asset)
    sender.add(plugin)

    def send(title: str, body: str, kind: str) -> bool:
        with quiet_third_parties():
            return bool(sender.notify(title=title, body=body, notify_type=kind))

    return Target(key=target_key(template), label=mask_url(template), send=send)


class Notifier:
    def __init__(self, config: NotificationsConfig, store: Store, metrics: Metrics | None = None,
                 environ: Mapping[str, str] = os.environ, clock: Callable[[], float] = time.monotonic,
                 targets: list[Target] | None = None) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.clock = clock
        if targets is None:
            keys = [target_key(url) for url in config.urls]
            if len(set(keys)) != len(keys):
                raise ConfigError("notifications.urls: a URL is listed twice")
            targets = [apprise_target(url, i, config.timeout_seconds, environ) for i, url in enumerate(config.urls)]
        self.targets = targets
        self._policy = AlertPolicy(notify_at=config.min_severity)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pass_failing = False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._wake.set()   # first pass at once: rows left undelivered by the last process
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ends after the attempt in flight (bounded by the timeout); undelivered rows wait for the next start."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self.config.timeout_seconds * 2 + 5)
            if thread.is_alive():
                log.warning("notification delivery thread still busy after stop; it ends with its attempt")

    def on_alert(self, message: Message) -> None:
        """Bus subscriber: an alert that went to the outbox wakes the thread (never blocks the publisher)."""
        if self._policy.notifies(message.payload):
            self._wake.set()

    # -- the delivery thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            wait = self.run_pass()
            if wait is None and self._stop.is_set():
                return
            self._wake.wait(IDLE_SECONDS if wait is None else wait)

    def run_pass(self) -> float | None:
        """`deliver_due`, with its failures logged once until a pass succeeds again, never raised."""
        try:
            wait = self.deliver_due()
        except Exception:  # the store closed under us, or a bug: never raised into the core
            if self._stop.is_set():
                return None
            if not self._pass_failing:
                log.exception("notification delivery pass failed; retrying")
            self._pass_failing = True
            return self.config.retry_base_seconds
        self._pass_failing = False
        return wait

    def deliver_due(self) -> float | None:
        """One pass: every row to every due target, in order. Returns the seconds until a failing target is
        due again (None: nothing waits for a retry)."""
        rows = self.store.undelivered_notifications(BATCH)
        keys = {t.key for t in self.targets}
        reached = {row["seq"]: set(filter(None, (row["delivered_to"] or "").split(","))) for row in rows}
        attempts = {row["seq"]: int(row["attempts"] or 0) for row in rows}
        for target in self.targets:
            if target.next_attempt > self.clock():
                continue
            for row in rows:
                seq = row["seq"]
                if self._stop.is_set():
                    return None
                if target.key in reached[seq]:
                    continue
                attempts[seq] += 1
                ok, error = self._attempt(target, row)
                if ok:
                    reached[seq].add(target.key)
                done = datetime.now(timezone.utc) if keys <= reached[seq] else None
                self.store.mark_notification(seq, ",".join(sorted(reached[seq])), done, attempts[seq], error)
                if not ok:
                    break   # this target is down: the rest of its rows wait for its backoff
        pending = sum(1 for seq in reached if not keys <= reached[seq])
        if self.metrics is not None:
            self.metrics.notifications_pending.set(pending)
        waits = [t.next_attempt - self.clock() for t in self.targets if t.failures]
        if waits:
            return max(0.0, min(waits))
        return 0.0 if len(rows) == BATCH else None   # a full batch went out: the next one at once

    def _attempt(self, target: Target, row: Mapping[str, Any]) -> tuple[bool, str | None]:
        title, body = render(row)
        try:
            ok = target.send(title, body, notify_type(row["severity"]))
            error = None if ok else "the receiver did not accept it"
        except Exception as exc:  # apprise or a plugin raised: counted like a refusal
            ok, error = False, type(exc).__name__
        if ok:
            if target.failures:
                log.info("notifications to %s delivered again after %d failed attempts", target.label,
                         target.failures)
            target.failures, target.next_attempt = 0, 0.0
            if self.metrics is not None:
                self.metrics.notifications_delivered.inc()
            return True, None
        target.failures += 1
        delay = min(self.config.retry_base_seconds * 2 ** (target.failures - 1), self.config.retry_max_seconds)
        target.next_attempt = self.clock() + delay
        if self.metrics is not None:
            self.metrics.notification_failures.inc()
        if target.failures == 1:   # once per outage; the recovery is logged too
            log.warning("notifications to %s failing (%s); alerts wait in the outbox, retrying with backoff up "
                        "to %g s", target.label, error, self.config.retry_max_seconds)
        return False, error
