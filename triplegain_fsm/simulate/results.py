"""What a seeded run reports: its totals, its first failure, and the context that makes it reproducible."""
from __future__ import annotations

import logging
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import attrs

from triplegain_fsm import models
from triplegain_fsm.kraken import retry
from triplegain_fsm.machines import base as machine_base
from triplegain_fsm.testing import FakeClock


def counts_text(counter: Counter[str]) -> str:
    """`name n, name n` in name order (zero counts left out), or `none`: how every figure is printed."""
    return ", ".join(f"{name} {n}" for name, n in sorted(counter.items()) if n) or "none"


COUNTERS = ("crashes", "faults", "stream_faults", "ws_faults", "human", "actions", "accounts", "entries")


@attrs.define
class Failure:
    seed: int
    step: int
    invariant: str
    message: str
    action: str

    def describe(self) -> str:
        return (f"FAILED seed {self.seed} at step {self.step} (after {self.action}): invariant {self.invariant}: "
                f"{self.message}")


@attrs.define
class Totals:
    seeds: int = 0
    steps: int = 0
    fills: int = 0
    crashes: Counter[str] = attrs.field(factory=Counter)
    faults: Counter[str] = attrs.field(factory=Counter)
    storms: int = 0
    stream_faults: Counter[str] = attrs.field(factory=Counter)
    ws_faults: Counter[str] = attrs.field(factory=Counter)      # faults of the WebSocket order entry
    human: Counter[str] = attrs.field(factory=Counter)
    actions: Counter[str] = attrs.field(factory=Counter)
    accounts: Counter[str] = attrs.field(factory=Counter)       # seeds per account: margin / spot
    entries: Counter[str] = attrs.field(factory=Counter)        # seeds per order entry: rest / websocket
    refused: int = 0
    settles: int = 0
    unprotected_seconds: float = 0.0
    worst_window: float = 0.0
    worst_where: str = ""

    def add(self, other: Totals) -> None:
        self.seeds += other.seeds
        self.steps += other.steps
        self.fills += other.fills
        for name in COUNTERS:
            getattr(self, name).update(getattr(other, name))
        self.storms += other.storms
        self.refused += other.refused
        self.settles += other.settles
        self.unprotected_seconds += other.unprotected_seconds
        if other.worst_window > self.worst_window:
            self.worst_window, self.worst_where = other.worst_window, other.worst_where

    @property
    def per_thousand_fills(self) -> float:
        return 1000 * self.unprotected_seconds / self.fills if self.fills else 0.0


@attrs.define
class RunResult:
    seed: int
    totals: Totals
    failure: Failure | None = None


@contextmanager
def deterministic(seed: int, clock: FakeClock, quiet: bool = True) -> Iterator[None]:
    """One seed decides everything: model ids, model timestamps (the fake clock), retry jitter."""
    ids = random.Random(seed ^ 0x5EED)
    saved = models.NEW_UUID, machine_base.WALL_CLOCK, random.getstate(), retry.is_testing()
    models.NEW_UUID = lambda: uuid.UUID(int=ids.getrandbits(128), version=4)
    machine_base.WALL_CLOCK = clock
    random.seed(seed)
    retry.set_testing(True)     # the client never sleeps: time is the fake clock's
    if quiet:
        logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        models.NEW_UUID, machine_base.WALL_CLOCK = saved[0], saved[1]
        random.setstate(saved[2])
        retry.set_testing(saved[3])
        if quiet:
            logging.disable(logging.NOTSET)
