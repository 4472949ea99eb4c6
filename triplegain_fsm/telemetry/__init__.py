"""What the core knows, out of the process: metrics, notifications, a heartbeat (issue 14).

    core.metrics.registry          # prometheus_client registry of this core (mount it yourself, or
                                   # set metrics.port for a /metrics server on 127.0.0.1)
    core.telemetry.failed()        # a bot that stops the core on its own error: tell the checker

`Telemetry` is built by the core and follows its life: the threads (metrics server,
notification delivery, heartbeat) run from `core.start()` to `core.stop()` (a bot
that runs its own poll loop calls `core.telemetry.start()`). Nothing here may slow or
break trading: the core only writes outbox rows in its own transactions and sets
flags; every network call runs on a thread of its own with a bounded timeout, and
every hook the core calls swallows (and logs) its own failures.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from triplegain_fsm.bus import RISK_ALERTS
from triplegain_fsm.telemetry.heartbeat import Heartbeat
from triplegain_fsm.telemetry.metrics import Metrics
from triplegain_fsm.telemetry.notifier import Notifier

if TYPE_CHECKING:
    from triplegain_fsm.core import ExecutionCore
    from triplegain_fsm.orders import PollReport

__all__ = ["Heartbeat", "Metrics", "Notifier", "Telemetry"]

log = logging.getLogger(__name__)


class Telemetry:
    def __init__(self, core: ExecutionCore, environ: Mapping[str, str] = os.environ) -> None:
        config = core.config
        self._core = core
        self.metrics = Metrics(core, config.metrics.port)
        self.notifier: Notifier | None = None
        if config.notifications.urls:
            self.notifier = Notifier(config.notifications, core.store, self.metrics, environ)
            core.bus.subscribe(RISK_ALERTS, self.notifier.on_alert)
        self.heartbeat = Heartbeat(config.heartbeat, self.metrics, environ) if config.heartbeat.url else None

    def start(self) -> None:
        """Start the /metrics server (if a port is set), the delivery thread and the heartbeat thread."""
        self.metrics.serve()
        if self.notifier is not None:
            self.notifier.start()
        if self.heartbeat is not None:
            self.heartbeat.start()

    def stop(self) -> None:
        """Stop every thread started here (each within its bounded timeout)."""
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.notifier is not None:
            self.notifier.stop()
        self.metrics.shutdown()

    # -- hooks the core calls: they never raise and never wait on the network --------------------------------
    def poll_done(self, report: PollReport) -> None:
        try:
            healthy = not report.errors and not self._core.circuit.is_open
            self.metrics.poll_done(healthy)
            if healthy and self.heartbeat is not None:
                self.heartbeat.beat()
        except Exception:
            log.exception("telemetry after a poll cycle failed (trading is not affected)")

    def circuit_changed(self, opened: bool) -> None:
        if opened:
            self.failed()

    def failed(self) -> None:
        """The core is in trouble (circuit open, stopping on an error): the heartbeat sends URL/fail."""
        if self.heartbeat is not None:
            self.heartbeat.fail()
