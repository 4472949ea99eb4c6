"""A heartbeat to an external checker (healthchecks.io style), on a thread of its own.

`beat()` is called after every healthy poll cycle and asks for a GET of the URL at
most once per `heartbeat.every_seconds`; `fail()` (the circuit breaker opened, the
core stops on an error) asks for a GET of `URL/fail`. Both only set a flag and wake
the thread: a slow or dead checker holds that thread (for at most the timeout per
ping), never the poll cycle. A checker that misses the pings raises its own alarm:
that is how a process that died is noticed from outside.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import requests

from triplegain_fsm.config import HeartbeatConfig
from triplegain_fsm.telemetry.urls import expand, fail_url, mask_url, quiet_third_parties

if TYPE_CHECKING:
    from triplegain_fsm.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

PING = "ping"
FAIL = "fail"


class Heartbeat:
    def __init__(self, config: HeartbeatConfig, metrics: Metrics | None = None,
                 environ: Mapping[str, str] = os.environ, clock: Callable[[], float] = time.monotonic) -> None:
        assert config.url is not None, "a heartbeat needs heartbeat.url"
        url = expand(config.url, environ, "heartbeat.url")
        self._urls = {PING: url, FAIL: fail_url(url)}
        self.label = mask_url(config.url)
        self.every = config.every_seconds
        self.timeout = config.timeout_seconds
        self.metrics = metrics
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: list[str] = []       # kinds to send, in order, without repeats in a row
        self._last_ping: float | None = None
        self._down = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._session: requests.Session | None = None

    def __repr__(self) -> str:
        return f"Heartbeat({self.label}, every {self.every:g} s)"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def beat(self) -> None:
        """A healthy cycle ended: ping, unless one was asked for less than `every` seconds ago."""
        now = self.clock()
        with self._lock:
            if self._last_ping is not None and now - self._last_ping < self.every:
                return
            self._last_ping = now
            self._queue(PING)

    def fail(self) -> None:
        """Something is wrong: tell the checker now; the next healthy cycle pings again at once."""
        with self._lock:
            self._last_ping = None
            self._queue(FAIL)

    def _queue(self, kind: str) -> None:
        if not self._pending or self._pending[-1] != kind:
            self._pending.append(kind)
            del self._pending[:-4]   # not started: keep only the latest few
        self._wake.set()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="triplegain-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """A /fail still queued (the core stopping on an error) is sent first, within the timeout."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self.timeout * 2 + 5)
        if self._session is not None:
            self._session.close()
            self._session = None

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                pending, self._pending = self._pending, []
            stopping = self._stop.is_set()
            for kind in pending:
                if not stopping or kind == FAIL:   # on the way out only a failure is worth the wait
                    self._send(kind)
            if stopping:
                return

    def _send(self, kind: str) -> None:
        assert self._session is not None
        try:
            with quiet_third_parties():
                response = self._session.get(self._urls[kind], timeout=self.timeout,
                                             headers={"User-Agent": "triplegain-fsm heartbeat"})
            ok, why = response.status_code < 400, f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            ok, why = False, type(exc).__name__   # never str(exc): it quotes the URL
        if self.metrics is not None:
            self.metrics.heartbeats.labels(kind, "sent" if ok else "failed").inc()
        if not ok and not self._down:
            log.warning("heartbeat %s to %s failed (%s); the checker will see missed pings", kind, self.label, why)
        elif ok and self._down:
            log.info("heartbeat to %s answered again", self.label)
        self._down = not ok
