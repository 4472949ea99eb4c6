"""The load of the threaded soak (`simulate.soak`): bots, a price feed and chaos, each on a real thread.

Every public call goes through `Recorder.call`, which classifies its answer the way
the seeded runner does (`Simulation._call`: a result, an ExecutionResult with its
error, or a TripleGainError; anything else is a bug), times it, and keeps what each
thread is inside right now, so a watchdog on another thread can tell a hang from a
slow call and dump every stack. Randomness is per thread (`random.Random(seed + i)`):
the seed fixes what each thread draws, never when the threads meet.
Sleeps here only pace the load (`Event.wait`, so a stop is heard at once); no
outcome waits on them.
"""
from __future__ import annotations

import random
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import attrs

from triplegain_fsm.core import ExecutionCore
from triplegain_fsm.enums import OrderRole
from triplegain_fsm.errors import TripleGainError
from triplegain_fsm.models import TradeProposal
from triplegain_fsm.paper import KrakenRejection
from triplegain_fsm.simulate.faults import DURING_CALL, FAULT_CLASSES, METHODS, REST_FAULTS

SYMBOL = "BTC/USD"
START_PRICE = Decimal("43000")
MAX_OPEN = 8                      # positions the bots keep open at most (the config's limits allow it)
BOT_PACE = (0.005, 0.05)          # float-ok: seconds between two calls of one bot
PRICE_PACE = 0.02                 # float-ok: seconds between two ticks
CHAOS_PACE = (0.05, 0.4)          # float-ok: seconds between two incidents
WS_FAULTS = ("drop_now", "skip_sequence", "drop_next_update", "silence", "invalidate_tokens",
             "fail_next", "reorder_next", "drop_after_next")
WS_METHODS = ("add_order", "amend_order", "cancel_order")
HUMAN = ("cancel_stop", "cancel_entry")


@attrs.define
class Problem:
    """The first thing that went wrong, named like the seeded runner's invariants."""

    invariant: str
    message: str


def where(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{frame.filename.rsplit('triplegain_fsm/', 1)[-1]}:{frame.lineno}"


def thread_stacks() -> str:
    """Every thread's stack, named: what a hang report needs to show who waits for whom."""
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        parts.append(f"--- thread {names.get(ident, '?')} ({ident}):\n" + "".join(traceback.format_stack(frame)))
    return "\n".join(parts)


class Recorder:
    """Counts, times and judges every public call, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()           # refusals by error class
        self.injected: Counter[str] = Counter()
        self.latency: dict[str, float] = {}            # the slowest call per kind, seconds
        self.problems: list[Problem] = []
        self._inside: dict[int, tuple[str, float]] = {}   # thread ident -> (call, started)

    def call(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A public call must answer clearly: a result, an ExecutionResult with its error, or a TripleGainError."""
        ident, started = threading.get_ident(), time.monotonic()
        with self._lock:
            self._inside[ident] = (name, started)
        try:
            result = fn(*args, **kwargs)
        except TripleGainError as exc:
            self._done(name, started, refused=type(exc).__name__)
            return None
        except Exception as exc:  # the point of the check: anything else is a bug in the core
            self._done(name, started)
            self.fail("clear_answers", f"{name} raised a bare {type(exc).__name__}({exc}) at {where(exc)}")
            return None
        refused = getattr(result, "success", True) is False
        self._done(name, started, refused=getattr(result, "error_type", None) or "failed" if refused else "")
        if refused and not getattr(result, "error_message", None):
            self.fail("clear_answers", f"{name}: ExecutionResult(success=False) without an error_message")
        return result

    def _done(self, name: str, started: float, refused: str = "") -> None:
        """`refused`: the refusal's error class, empty for an answer."""
        took = time.monotonic() - started
        with self._lock:
            self._inside.pop(threading.get_ident(), None)
            self.calls[name] += 1
            if refused:
                self.refused[name] += 1
                self.reasons[refused] += 1
            self.latency[name] = max(self.latency.get(name, 0.0), took)

    def fail(self, invariant: str, message: str) -> None:
        with self._lock:
            self.problems.append(Problem(invariant, message))

    def count(self, what: str) -> None:
        with self._lock:
            self.injected[what] += 1

    def stuck(self, bound: float) -> list[str]:
        """Calls in flight for longer than `bound` seconds, as 'name for N s'."""
        now = time.monotonic()
        with self._lock:
            return [f"{name} for {now - since:.0f} s" for name, since in self._inside.values() if now - since > bound]


class Market:
    """The price every thread reads; moved by the price thread only (a seeded walk with jumps)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.price = START_PRICE

    def step(self) -> Decimal:
        move = self.rng.gauss(0, 0.0015)                  # float-ok: a relative move, turned into Decimal below
        if self.rng.random() < 0.02:
            move += self.rng.choice((-1, 1)) * self.rng.uniform(0.01, 0.03)   # float-ok: a jump
        move -= 0.02 * float(self.price / START_PRICE - 1)   # float-ok: pull back towards the start
        self.price = (self.price * (1 + Decimal(str(round(move, 5))))).quantize(Decimal("0.1"))
        return self.price


def _level(price: Decimal, pct: float) -> Decimal:
    return (price * (1 + Decimal(str(round(pct, 4))))).quantize(Decimal("1"))


class Load:
    """The threads' bodies; each loops until `stop` is set."""

    def __init__(self, core: ExecutionCore, seed: int, recorder: Recorder, stop: threading.Event) -> None:
        self.core, self.seed, self.rec, self.stop = core, seed, recorder, stop
        self.market = Market(random.Random(seed ^ 0x9F1CE))
        self.silent_until = 0.0        # float-ok: monotonic seconds; the chaos thread lifts a silence then

    # -- bots ------------------------------------------------------------------------------------------
    def bot(self, index: int) -> None:
        rng = random.Random(self.seed + index)
        actions = (self._propose, self._close, self._modify, self._trail, self._read)
        weights = (35, 12, 28, 12, 13)
        while not self.stop.is_set():
            rng.choices(actions, weights)[0](rng)
            self.stop.wait(rng.uniform(*BOT_PACE))

    def _pick(self, rng: random.Random) -> Any:
        positions = sorted(self.core.positions.get_open_positions(), key=lambda p: p.id)
        return rng.choice(positions) if positions else None

    def _propose(self, rng: random.Random) -> None:
        if len(self.core.positions.get_open_positions()) >= MAX_OPEN:
            return
        price, side = self.market.price, rng.choice(("buy", "sell"))
        sign = 1 if side == "buy" else -1
        entry = None if rng.random() < 0.6 else _level(price, -sign * rng.uniform(0, 0.004))
        basis = entry or price
        proposal = TradeProposal(symbol=SYMBOL, side=side, size_usd=Decimal(rng.randrange(200, 2500, 50)),
                                 entry_price=entry, stop_loss=_level(basis, -sign * rng.uniform(0.008, 0.03)),
                                 take_profit=_level(basis, sign * rng.uniform(0.008, 0.04)),
                                 leverage=rng.choice((2, 3, 5, 5)))   # margin only (as the simulator); 5 goes by WS
        self.rec.call("execute_trade", self.core.orders.execute_trade, proposal)

    def _close(self, rng: random.Random) -> None:
        position = self._pick(rng)
        if position is not None:
            self.rec.call("close_position", self.core.positions.close_position, position.id, reason="soak")

    def _modify(self, rng: random.Random) -> None:
        position = self._pick(rng)
        if position is None:
            return
        sign, price = (1 if position.is_long else -1), self.market.price
        stop = _level(price, -sign * rng.uniform(0.006, 0.03))
        take = _level(price, sign * rng.uniform(0.006, 0.04)) if rng.random() < 0.5 else None
        self.rec.call("modify_position", self.core.positions.modify_position, position.id,
                      stop_loss=stop, take_profit=take)

    def _trail(self, rng: random.Random) -> None:
        position = self._pick(rng)
        if position is not None:
            self.rec.call("enable_trailing_stop", self.core.positions.enable_trailing_stop_for_position,
                          position.id, distance_pct=Decimal(rng.choice(("0.8", "1.5", "3"))), activation_pct=0)

    def _read(self, rng: random.Random) -> None:
        for order in self.rec.call("get_open_orders", self.core.orders.get_open_orders) or ():
            if self.core.orders.get_order(order.id) is None:   # F15: never invisible between two lookups
                self.rec.fail("orders_visible", f"open order {order.id} vanished from get_order")

    # -- the market ------------------------------------------------------------------------------------
    def prices(self) -> None:
        while not self.stop.is_set():
            self.rec.call("price_tick", self.core.price_tick, SYMBOL, self.market.step())
            self.stop.wait(PRICE_PACE)

    # -- chaos -----------------------------------------------------------------------------------------
    def chaos(self) -> None:
        rng = random.Random(self.seed ^ 0xC4A05)
        kinds = (self._rest_fault, self._ws_fault, self._human)
        while not self.stop.is_set():
            self.stop.wait(rng.uniform(*CHAOS_PACE))
            if self.silent_until and time.monotonic() >= self.silent_until:
                self.core.paper.ws_faults.resume()
                self.silent_until = 0.0
            if not self.stop.is_set():
                rng.choices(kinds, (5, 4, 2))[0](rng)

    def _rest_fault(self, rng: random.Random) -> None:
        paper = self.core.paper
        fault, method = rng.choice(FAULT_CLASSES), rng.choice(METHODS)
        storm = rng.random() < 0.25
        times = rng.randint(3, 8) if storm else 1
        if fault == DURING_CALL:
            moved = (self.market.price * Decimal("0.99")).quantize(Decimal("0.1"))
            paper.faults.during_next(method, lambda: paper.set_price(SYMBOL, moved), times=times)
        else:
            REST_FAULTS[fault](paper.faults, method, times)
        self.rec.count(f"rest {fault}" + (" (storm)" if storm else ""))

    def _ws_fault(self, rng: random.Random) -> None:
        faults, fault = self.core.paper.ws_faults, rng.choice(WS_FAULTS)
        if fault == "silence":   # lifted after 0.2-4.5 s: past the staleness bound, or not
            faults.silence()
            self.silent_until = time.monotonic() + rng.uniform(0.2, 4.5)
        elif fault == "invalidate_tokens":
            faults.invalidate_tokens()
            faults.drop_now()   # Kraken ends a dead token's subscriptions: the stream notices at once
        elif fault in ("drop_now", "skip_sequence", "drop_next_update"):
            getattr(faults, fault)()
        elif fault == "fail_next":
            faults.fail_next(rng.choice(WS_METHODS), "EService:Unavailable")
        else:
            getattr(faults, fault)(rng.choice(WS_METHODS))
        self.rec.count(f"ws {fault}")

    def _human(self, rng: random.Random) -> None:
        what = rng.choice(HUMAN)
        role = OrderRole.STOP_LOSS if what == "cancel_stop" else OrderRole.ENTRY
        paper = self.core.paper
        open_at_exchange = paper.open_orders()
        targets = sorted(o.external_id for o in self.core.orders.working_orders()
                         if o.role is role and o.external_id is not None and o.external_id in open_at_exchange)
        if targets:
            try:
                paper.engine.cancel_order(txid=rng.choice(targets))
            except KrakenRejection:   # it filled or was cancelled meanwhile: the human was too late
                return
            self.rec.count(f"human {what}")
