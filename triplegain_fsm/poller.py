"""The poller: a synchronous thread pool that keeps the core in step with the exchange.

One loop thread runs a cycle every `orders.poll_interval_seconds`; inside a
cycle the QueryOrders batches run on the pool. `stop()` waits for the cycle in
flight and joins every thread: nothing is left running.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)


class Poller:
    def __init__(self, cycle: Callable[[], Any], interval: float | Callable[[], float], workers: int,
                 on_pool: Callable[[ThreadPoolExecutor | None], None]) -> None:
        self.cycle = cycle
        self.interval = interval    # a callable: the stream makes polling a slow audit while it is healthy
        self.workers = workers
        self.on_pool = on_pool
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.cycles = 0
        self.failures = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="triplegain-poll")
        self.on_pool(self._pool)
        self._thread = threading.Thread(target=self._run, name="triplegain-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._pool is not None:
            self.on_pool(None)
            self._pool.shutdown(wait=True)
            self._pool = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.cycle()
                self.cycles += 1
            except Exception:  # one bad cycle must not kill the poller; it is logged and counted
                self.failures += 1
                log.exception("poll cycle failed")
            self._wake.wait(self.interval() if callable(self.interval) else self.interval)
            self._wake.clear()

    def wake(self) -> None:
        """Run the next cycle now (the stream went down: polling must not wait out the audit interval)."""
        self._wake.set()
