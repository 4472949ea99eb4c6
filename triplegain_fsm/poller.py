"""The poller: a synchronous thread pool that keeps the core in step with the exchange.

One loop thread runs a cycle every `orders.poll_interval_seconds` (a slow audit
while the stream is healthy), or sooner when work is due earlier (`due_in`: a stop
whose placement failed retries after its backoff, not after a minute's audit);
inside a cycle the QueryOrders batches run on the pool. `stop()` waits for the cycle in
flight and joins every thread: nothing is left running.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)
MIN_GAP_SECONDS = 1.0  # float-ok: the shortest pause between cycles that due work may ask for
REPLAN_SECONDS = 1.0   # a sleeping poller asks `due_in` again this often (work scheduled meanwhile; float-ok)


class Poller:
    def __init__(self, cycle: Callable[[], Any], interval: float | Callable[[], float], workers: int,
                 on_pool: Callable[[ThreadPoolExecutor | None], None],
                 due_in: Callable[[], float | None] | None = None) -> None:
        self.cycle = cycle
        self.interval = interval    # a callable: the stream makes polling a slow audit while it is healthy
        self.due_in = due_in        # seconds from now until scheduled work is due (None: nothing scheduled)
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
            self._pause()
            self._wake.clear()

    def _pause(self) -> None:
        """Until the interval has passed since the cycle ended, work falls due, or someone wakes us."""
        ended = time.monotonic()
        until = ended + (self.interval() if callable(self.interval) else self.interval)
        while not self._stop.is_set():
            now = time.monotonic()
            left = until - now
            due = self.due_in() if self.due_in is not None else None
            if due is not None:   # never sooner than MIN_GAP after a cycle: overdue work cannot spin it
                left = min(left, max(due, ended + MIN_GAP_SECONDS - now))
            if left <= 0:
                return
            wait = left if self.due_in is None else min(left, REPLAN_SECONDS)
            if self._wake.wait(wait):
                return

    def wake(self) -> None:
        """Run the next cycle now (the stream went down: polling must not wait out the audit interval)."""
        self._wake.set()
