"""The threaded soak: the real threads of a live core, under load and chaos, bounded in wall time.

    from triplegain_fsm.simulate.soak import run_soak
    result = run_soak(seed=3, seconds=30)
    assert result.failure is None, result.describe_failure()

The seeded simulator proves the core's logic with thread timing taken out of it;
this proves the threads: a paper-mode core started the way a live bot starts it
(`core.start()`: the poller and its pool, the executions stream over the paper
exchange's real loopback WebSocket, its worker), `threads` bot threads calling the
public API at once, a price thread, and a chaos thread (REST faults of every class,
singly and in storms; WebSocket faults; a human cancelling stops and entries).
Then the chaos stops, everything settles, every position is closed, the core is
stopped, and the invariants are read from the exchange's records and the store.

Time: the core runs on the wall clock. Only while settling, after the load, does
its clock jump forward (`SoakClock.warp`, 35 s a round, as a suspended laptop's
would), so that deadlines of a minute (an order whose outcome is unknown) pass
within the settling bound instead of after it. Nothing waits on a schedule to be
correct: the load is paced by sleeps, the settling by conditions with bounds.
The seed fixes what each thread draws, not how the threads interleave: a run is
not reproducible, its failure names the seed to run the same load again.
"""
from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from triplegain_fsm.config import Config
from triplegain_fsm.core import ExecutionCore
from triplegain_fsm.enums import OrderStatus, PositionStatus
from triplegain_fsm.simulate import checks
from triplegain_fsm.simulate.results import counts_text as _counts
from triplegain_fsm.simulate.soak_load import START_PRICE, SYMBOL, Load, Problem, Recorder, thread_stacks, where
from triplegain_fsm.testing import paper_config

HANG_SECONDS = 60.0       # float-ok: a public call that has not returned by then is a hang
SETTLE_SECONDS = 30.0     # float-ok: wall-time bound of each settling phase
SETTLE_ROUNDS = 8         # polls at least, each after a 35 s jump of the core's clock
WARP = 35.0               # float-ok: past every backoff and lookup deadline in a few rounds
STREAM_BACK_SECONDS = 75.0   # float-ok: the stream's longest reconnect backoff (60 s) + open timeout (10 s)
STOP_SECONDS = 30.0       # float-ok: bound on stop() and on the core's threads ending after it
IN_FLIGHT = frozenset({OrderStatus.PENDING.value, OrderStatus.SUBMITTED_UNKNOWN.value,
                       OrderStatus.CANCEL_PENDING.value})
HOLDING = frozenset({PositionStatus.OPENING.value, PositionStatus.UNPROTECTED.value, PositionStatus.PROTECTED.value})


class SoakClock:
    """The wall clock, which the settling phase may move forward (never back)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return time.time() + self._offset

    def warp(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


@attrs.define
class SoakResult:
    seed: int
    seconds: float
    threads: int
    calls: Counter[str] = attrs.field(factory=Counter)
    refused: Counter[str] = attrs.field(factory=Counter)
    reasons: Counter[str] = attrs.field(factory=Counter)
    injected: Counter[str] = attrs.field(factory=Counter)
    latency: dict[str, float] = attrs.field(factory=dict)
    alerts: Counter[str] = attrs.field(factory=Counter)
    fills: int = 0
    positions_opened: int = 0
    positions_closed: int = 0
    settle_seconds: float = 0.0
    wall_seconds: float = 0.0
    failure: Problem | None = None

    def describe_failure(self) -> str:
        if self.failure is None:
            return ""
        return f"FAILED threaded soak seed {self.seed}: invariant {self.failure.invariant}: {self.failure.message}"

    def lines(self) -> list[str]:
        """The figures, one topic a line."""
        slowest = max(self.latency.items(), key=lambda kv: kv[1], default=("none", 0.0))
        faults = sum(self.injected.values())
        return [
            f"threaded soak seed {self.seed}: {self.threads} bot threads for {self.seconds:g} s "
            f"(wall {self.wall_seconds:.1f} s, settling {self.settle_seconds:.1f} s)",
            f"calls {sum(self.calls.values())}: {_counts(self.calls)}",
            f"refused calls {sum(self.refused.values())}: {_counts(self.refused)}; by error: {_counts(self.reasons)}",
            f"faults injected {faults}: {_counts(self.injected)}",
            f"fills {self.fills}, positions opened {self.positions_opened}, closed {self.positions_closed}",
            f"alerts {sum(self.alerts.values())}: {_counts(self.alerts)}",
            f"slowest call {slowest[1]:.3f} s ({slowest[0]})",
        ]



def soak_config(store_path: Path) -> Config:
    """Paper mode on a margin account, the stream and WS order entry on, short bounds everywhere:
    a stream silent for 3 s is down, a socket answer is awaited 1 s, polling is a 2 s audit."""
    return paper_config(
        store_path, "margin",
        exchange={"account": "margin", "stream": "websocket", "order_entry": "websocket", "timeout_seconds": 1.0,
                  "submit_deadline_seconds": 2, "stream_stale_seconds": 3.0, "stream_reconnect_seconds": 0.2,
                  "stream_audit_seconds": 2.0},
        orders={"poll_interval_seconds": 0.5},
        limits={"max_open_positions": 10, "max_positions_per_symbol": 10},
        paper={"balances": {"ZUSD": "1000000"}, "prices": {SYMBOL: str(START_PRICE)}, "state_path": ":memory:",
               "liquidity_per_tick": "0.05"},
        safety={"reconcile_interval_seconds": 5},
    )


def _bounded(fn: Callable[[], Any], seconds: float, name: str) -> bool:
    """Run `fn` on a daemon thread; False if it has not returned within `seconds` (it is left behind)."""
    worker = threading.Thread(target=fn, name=name, daemon=True)
    worker.start()
    worker.join(seconds)
    return not worker.is_alive()


def _eventually(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class Soak:
    """One run: the core, its load, the settling, the checks."""

    def __init__(self, seed: int, store_path: Path, threads: int) -> None:
        self.seed, self.threads = seed, threads
        self.clock = SoakClock()
        self.core = ExecutionCore.from_settings(soak_config(store_path), clock=self.clock)
        self.alerts: list[dict[str, Any]] = []
        self.core.bus.subscribe("risk_alerts", lambda m: self.alerts.append({**m.payload, "_at": self.clock()}))
        self.rec = Recorder()
        self.stop = threading.Event()
        self.load = Load(self.core, seed, self.rec, self.stop)
        self.settle_seconds = 0.0
        self.hung = False             # then the store and the exchange may be locked: figures from calls only

    @property
    def failed(self) -> bool:
        return bool(self.rec.problems)

    # -- the phases --------------------------------------------------------------------------------------
    def run(self, seconds: float) -> None:
        self.core.price_tick(SYMBOL, START_PRICE)
        self.core.start()
        assert self.core.stream is not None
        if not self.core.stream.wait_connected(10):
            self.rec.fail("stream_connects", f"the executions stream did not connect ({self.core.status()})")
            return
        self._load(seconds)
        if not self.failed:
            self._watched(self._finish, 2 * SETTLE_SECONDS + STREAM_BACK_SECONDS + STOP_SECONDS + HANG_SECONDS)

    def _finish(self) -> None:
        """Calm, settle, check; close everything, settle, stop, check again."""
        self.core.paper.faults.clear()
        self.core.paper.ws_faults.clear()
        if self._settle("after the load", wind_down=False):
            self._check("after the load")
        if not self.failed and self._settle("closing every position", wind_down=True):
            self._stream_back()
            self._stop_core()
            self._check("after the wind-down", final=True)

    def _watched(self, fn: Callable[[], None], bound: float) -> None:
        """Run `fn` on a thread under the watchdog: a call inside it stuck past HANG_SECONDS, or `fn`
        itself past `bound`, is a hang (and `fn` is left behind); an exception from it is a failure."""
        def body() -> None:
            try:
                fn()
            except Exception as exc:  # the soak's own phases must not die silently on a thread
                self.rec.fail("soak_finishes", f"{type(exc).__name__}({exc}) at {where(exc)}")

        worker = threading.Thread(target=body, name="soak-settle", daemon=True)
        worker.start()
        deadline = time.monotonic() + bound
        while worker.is_alive():
            worker.join(0.05)
            if self._hung():
                return
            if time.monotonic() > deadline:
                self._hang(f"settling, winding down and checking took longer than {bound:g} s")
                return

    def _load(self, seconds: float) -> None:
        """Bots, prices and chaos for `seconds`; the watchdog ends the run at the first problem or hang."""
        workers = [threading.Thread(target=self.load.bot, args=(i,), name=f"soak-bot-{i}", daemon=True)
                   for i in range(self.threads)]
        workers += [threading.Thread(target=body, name=name, daemon=True)
                    for name, body in (("soak-prices", self.load.prices), ("soak-chaos", self.load.chaos))]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.failed and not self._hung():
            time.sleep(0.05)
        self.stop.set()
        ends = time.monotonic() + HANG_SECONDS
        for worker in workers:
            worker.join(max(0.0, ends - time.monotonic()))
        alive = [w.name for w in workers if w.is_alive()]
        if alive and not self.failed:
            self._hang(f"threads {alive} did not return within {HANG_SECONDS:g} s of the stop")

    def _hung(self) -> bool:
        stuck = self.rec.stuck(HANG_SECONDS)
        if stuck:
            self._hang(f"a call did not return: {'; '.join(stuck)}")
        return bool(stuck)

    def _hang(self, what: str) -> None:
        self.hung = True
        self.rec.fail("no_deadlock", f"{what}\n{thread_stacks()}")

    def _settle(self, phase: str, wind_down: bool) -> bool:
        """Poll (the core's clock jumping) until nothing is in flight and the stream has caught up;
        with `wind_down`, closing what is still open, until nothing is open anywhere."""
        began = time.monotonic()
        quiet, rounds = 0, 0
        while quiet < 2 or rounds < SETTLE_ROUNDS:
            if time.monotonic() - began > SETTLE_SECONDS:
                link = self.core.stream
                stream = f"the stream {link.state}, idle {link.idle}" if link is not None else "no stream"
                self.rec.fail("settles", f"{phase}: not settled within {SETTLE_SECONDS:g} s: "
                              f"{self._unsettled(wind_down) or 'nothing in flight'}; {stream}")
                break
            rounds += 1
            if wind_down:
                self._close_all()
            # the clock jumps only while it helps: past a backoff or an outcome's deadline
            self._round(warp=rounds <= SETTLE_ROUNDS or bool(self._unsettled(wind_down)))
            quiet = quiet + 1 if self._quiet(wind_down) else 0
            if not quiet:
                time.sleep(0.02)    # paces the rounds while the stream reconnects (its own real-time backoff)
        self.settle_seconds += time.monotonic() - began
        return not self.failed

    def _round(self, warp: bool) -> None:
        if warp:
            self.clock.warp(WARP)
        self.rec.call("price_tick", self.core.price_tick, SYMBOL, self.load.market.price)
        self.rec.call("poll_once", self.core.poll_once)
        self.core.settle_stream(timeout=2.0)

    def _close_all(self) -> None:
        for position in self.core.positions.get_open_positions():
            if position.state in HOLDING:
                self.rec.call("close_position", self.core.positions.close_position, position.id, reason="soak end")

    def _unsettled(self, wind_down: bool) -> str:
        busy = [f"{o.role.value} {o.id} {o.state}" for o in self.core.orders.working_orders() if o.state in IN_FLIGHT]
        if wind_down:
            busy += [f"position {p.id} {p.state}" for p in self.core.positions.get_open_positions()]
            busy += [f"exchange order {txid}" for txid in self.core.paper.open_orders()]
        return ", ".join(busy)

    def _quiet(self, wind_down: bool) -> bool:
        """Nothing in flight, and the stream either caught up or down (polling is then the source: a
        storm on GetWebSocketsToken may keep it down for its whole reconnect backoff)."""
        link = self.core.stream
        steady = link is not None and link.idle and link.state != "connecting"
        return steady and not self._unsettled(wind_down)

    def _stream_back(self) -> None:
        """The stream reconnects within its own bound: its longest backoff plus a connect's timeout."""
        link = self.core.stream
        if link is None or not _eventually(lambda: link.healthy, STREAM_BACK_SECONDS):
            state = link.state if link is not None else "gone"
            self.rec.fail("stream_back", f"the executions stream is {state} {STREAM_BACK_SECONDS:g} s after the "
                          "faults ended")

    def _stop_core(self) -> None:
        if not _bounded(self.core.stop, STOP_SECONDS, "soak-stop"):
            self._hang(f"core.stop() did not return within {STOP_SECONDS:g} s")

    # -- the checks --------------------------------------------------------------------------------------
    def _check(self, phase: str, final: bool = False) -> None:
        core = self.core
        ledger = checks.Ledger.read(core)
        problems = [*checks.always(core, ledger, ()), *checks.settled(core, ledger, self.alerts, ())]
        problems += [("fills_booked_once", p) for p in booked_once(core)]
        if final:
            problems += [("nothing_left_open", p) for p in left_open(core)]
        for invariant, message in problems[:1]:
            self.rec.fail(invariant, f"{phase}: {message}")

    def result(self, seconds: float) -> SoakResult:
        rec = self.rec
        result = SoakResult(
            self.seed, seconds, self.threads, calls=rec.calls, refused=rec.refused, reasons=rec.reasons,
            injected=rec.injected, latency=rec.latency, alerts=Counter(a.get("alert_type", "?") for a in self.alerts),
            settle_seconds=self.settle_seconds, failure=rec.problems[0] if rec.problems else None)
        if not self.hung:
            positions = self.core.store.load_positions()
            result.fills = len(self.core.paper.trades())
            result.positions_opened = len(positions)
            result.positions_closed = sum(p.state == PositionStatus.CLOSED.value for p in positions)
        return result

    def close(self) -> None:
        """Stop (if a hang did not stop it already) and close the core; bounded either way."""
        self.stop.set()
        if not _bounded(self.core.close, STOP_SECONDS, "soak-close") and not self.failed:
            self._hang(f"core.close() did not return within {STOP_SECONDS:g} s")


def booked_once(core: ExecutionCore) -> list[str]:
    """Each trade the exchange made is booked once, on the order it belongs to, whichever channel told first."""
    problems, trades = [], core.paper.trades()
    for order in core.store.load_orders():
        ids = [t for row in core.store.fills(order.id) for t in (row["trade_ids"] or "").split(",") if t]
        problems += [f"{order.role.value} {order.id}: trade {t} booked {n} times" for t, n in Counter(ids).items()
                     if n > 1]
        problems += [f"{order.role.value} {order.id}: booked trade {t} is not a trade of {order.external_id}"
                     for t in ids if trades.get(t, {}).get("ordertxid") != order.external_id]
    return problems


def left_open(core: ExecutionCore) -> list[str]:
    """After the wind-down: no position, no working order, nothing at the exchange."""
    problems = [f"position {p.id} still {p.state}" for p in core.positions.get_open_positions()]
    problems += [f"{o.role.value} {o.id} still {o.state}" for o in core.orders.get_open_orders()]
    problems += [f"exchange order {txid} ({info['descr']['order']}) still open"
                 for txid, info in core.paper.open_orders().items()]
    problems += [f"exchange margin position {pid} still open" for pid in core.paper.positions()]
    return problems


def _leftover_threads(before: set[threading.Thread]) -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t not in before and t.is_alive()
                  and not t.name.startswith("soak-"))


@contextmanager
def _quiet_logs(quiet: bool) -> Iterator[None]:
    if quiet:
        logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        if quiet:
            logging.disable(logging.NOTSET)


def run_soak(seed: int, seconds: float, *, threads: int = 4, directory: Path | None = None,
             quiet: bool = True) -> SoakResult:
    """`threads` bots, prices and chaos on a started core for `seconds` of wall time, then settle,
    wind down, stop and check. The first problem (broken invariant, bare exception, hang, thread
    left running) is in `.failure`; figures in the rest."""
    began = time.monotonic()
    before = set(threading.enumerate())
    with tempfile.TemporaryDirectory(prefix="triplegain-soak-") as tmp, _quiet_logs(quiet):
        soak = Soak(seed, Path(directory or tmp) / f"soak-{seed}.sqlite", threads)
        try:
            soak.run(seconds)
            result = soak.result(seconds)   # read before close(): it closes the store
        finally:
            soak.close()
        result.failure = result.failure or (soak.rec.problems[0] if soak.rec.problems else None)
    if result.failure is None and not _eventually(lambda: not _leftover_threads(before), STOP_SECONDS):
        result.failure = Problem("no_thread_left", f"threads still running after stop(): "
                                 f"{_leftover_threads(before)}")
    result.wall_seconds = time.monotonic() - began
    return result
