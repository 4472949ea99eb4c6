"""The core's end of the executions stream: pushed reports in, machines fired, outages said out loud.

The transport (`kraken.stream`) connects, checks sequences and reconnects; this
link turns each delivered report into execution events (`executions.from_stream`)
and hands them to the one mutator (`orders.apply_stream`), then runs the due
protective work at once, so a filled entry's stop-loss is requested within one
round trip of the push instead of at the next poll.

Never guess: after every (re)connect the snapshot is applied and then the core's
working orders are re-read over REST before the stream is trusted again (the
socket may have missed anything while it was down). While the stream is down,
the poller runs at its normal interval; `stream_down` (high) is alerted once per
outage and `stream_restored` (info) when it is back.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from triplegain_fsm import alerts
from triplegain_fsm.errors import ValidationError
from triplegain_fsm.executions import from_stream
from triplegain_fsm.kraken.stream import ExecutionStream, StreamBatch, StreamState
from triplegain_fsm.orders import OrderExecutionManager, PollReport
from triplegain_fsm.positions import PositionTracker

log = logging.getLogger(__name__)
OFF = "off"


class StreamLink:
    def __init__(self, orders: OrderExecutionManager, positions: PositionTracker, url: str,
                 token_source: Callable[[], str], *, stale_seconds: float, reconnect_seconds: float,
                 on_change: Callable[[str], None] | None = None,
                 run_work: Callable[[Callable[[], None]], None] | None = None) -> None:
        """`run_work`: how the follow-up work runs; None = on this link's worker thread (started by
        start()). The simulator (`triplegain_fsm.simulate`) passes `lambda work: work()` so the work
        runs at once on the delivering thread, deterministically (it never starts the stream
        either: it calls the transport's `deliver`/`set_state` itself, without a socket)."""
        self.orders = orders
        self.positions = positions
        self.guard = orders.guard
        self.on_change = on_change           # e.g. wake the poller, set a metric
        self._outage = False
        self._resynced = threading.Event()
        self._work_lock = threading.Lock()
        self._work_queued = False
        self._worker: ThreadPoolExecutor | None = None
        self._run_work = run_work
        self._pending_work = 0               # follow-ups queued or running on the worker
        self.last_sequence: int | None = None   # of the last batch applied (a paper session waits for it)
        self.applied = 0                     # reports applied (benchmarks read it)
        self.stream = ExecutionStream(url, token_source, self._on_batch, self._on_state,
                                      stale_seconds=stale_seconds, reconnect_min_seconds=reconnect_seconds,
                                      reconnect_max_seconds=max(60.0, reconnect_seconds))

    @property
    def state(self) -> str:
        """connected | connecting | down (REST polling carries on) | off (not started)."""
        state = self.stream.state
        if state is StreamState.CONNECTED and not self._resynced.is_set():
            return StreamState.CONNECTING.value    # snapshot in, REST backfill not yet done
        return state.value

    @property
    def healthy(self) -> bool:
        return self.state == StreamState.CONNECTED.value

    def start(self) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="triplegain-stream-work")
        self.stream.start()

    def stop(self) -> None:
        self.stream.stop()
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
        self._resynced.clear()

    def wait_connected(self, timeout: float) -> bool:
        """True once connected AND resynchronised (for start-up and tests)."""
        return self.stream.wait_connected(timeout) and self._resynced.wait(timeout)

    # -- the stream's thread -----------------------------------------------------------------------
    def _on_batch(self, batch: StreamBatch) -> None:
        for report in batch.reports:
            try:
                execution = from_stream(report.raw, report.merged)
            except ValidationError as exc:
                with self.guard.unit() as unit:
                    unit.alert(alerts.MALFORMED_REPORT, alerts.WARNING, f"stream: {exc}")
                continue
            self.orders.apply_stream(execution)
            self.applied += 1
        self._kick()
        self.last_sequence = batch.sequence

    def _kick(self) -> None:
        """Hand the exchange work the reports caused to the worker thread, once however many batches asked.

        Never on the stream's own thread: a protective order placed over the socket would wait
        for an answer only that thread can read, and the stream must keep reading meanwhile.
        """
        if self._run_work is not None:
            with self._work_lock:
                self._pending_work += 1
            self._run_work(self._work)
            return
        with self._work_lock:
            if self._work_queued or self._worker is None:
                return
            self._work_queued = True
            self._pending_work += 1
        try:
            self._worker.submit(self._work)
        except RuntimeError:   # shutting down
            with self._work_lock:
                self._work_queued = False
                self._pending_work -= 1

    def _work(self) -> None:
        with self._work_lock:
            self._work_queued = False
        try:
            self._backfill()
            self.positions.run_due_work()   # a fill just prepared its stop: send it now, not at the next poll
        except Exception:   # never silent, never fatal: the poller's cycle does the same work again
            log.exception("stream follow-up work failed; the next poll cycle retries it")
        finally:
            with self._work_lock:
                self._pending_work -= 1

    @property
    def idle(self) -> bool:
        """No follow-up work queued or running."""
        with self._work_lock:
            return self._pending_work == 0

    def _backfill(self) -> None:
        orders = self.orders.take_backfill()
        if orders:
            self.orders.refresh(orders)

    def _on_state(self, state: StreamState, reason: str) -> None:
        if state is StreamState.CONNECTED:
            self._resync()
            if self._outage:
                self._outage = False
                self._alert(alerts.STREAM_RESTORED, alerts.INFO, "executions stream back; REST polling is an "
                            "audit again")
        elif state is StreamState.DOWN:
            self._resynced.clear()
            if not self._outage:
                self._outage = True
                self._alert(alerts.STREAM_DOWN, alerts.HIGH, f"executions stream down ({reason}); "
                            "fills are learnt by REST polling until it is back")
        else:
            self._resynced.clear()
        if self.on_change is not None:
            self.on_change(self.state)

    def _resync(self) -> None:
        """The snapshot is applied; now read what the socket may have missed before trusting it."""
        working = [o for o in self.orders.working_orders() if o.external_id and not o.is_final]
        report = PollReport()
        self.orders.refresh(working, report)
        self._kick()
        if report.errors:   # not trusted yet: polling carries on at its normal pace until a clean cycle
            log.warning("stream back, but its REST backfill failed (%s); polling until a clean cycle",
                        "; ".join(report.errors))
            return
        self._resynced.set()
        log.info("executions stream resynchronised (%d working orders re-read over REST)", len(working))

    def after_poll(self, report: PollReport) -> None:
        """A clean poll cycle while connected is the backfill a failed resync still owed."""
        if not report.errors and self.stream.state is StreamState.CONNECTED and not self._resynced.is_set():
            self._resynced.set()
            if self.on_change is not None:
                self.on_change(self.state)

    def _alert(self, alert_type: str, severity: str, message: str) -> None:
        with self.guard.unit() as unit:
            unit.alert(alert_type, severity, message)
