"""A price file replayed into a served paper exchange, at the file's own pace times `speed`.

Each tick goes through `market_data.tick` (the engine moves, the print is on the tape), so
a bot trading over HTTP or WebSocket sees fills, stop triggers and take-profits as the
series crosses them. Runs on a daemon thread; `stop()` ends it between ticks. The pause
before a tick is the gap to the previous one in the file divided by `speed` (an Event
wait, so `stop()` never waits for a long gap). After the last tick the price stays there.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from triplegain_fsm.paper import market_data
from triplegain_fsm.paper.feeds import Tick

if TYPE_CHECKING:
    from triplegain_fsm.paper import PaperExchange

log = logging.getLogger(__name__)


class Replay:
    def __init__(self, exchange: PaperExchange, pair: str, ticks: Sequence[Tick], *, speed: float = 1.0,
                 on_done: Callable[[int, str | None], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not speed > 0:
            raise ValueError(f"speed: must be > 0, got {speed}")
        exchange.engine.registry.resolve(pair)   # an unknown pair fails here, not on the thread
        self.exchange, self.pair, self.ticks, self.speed = exchange, pair, list(ticks), speed
        self.played = 0
        self._on_done = on_done
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Replay:
        self._thread = threading.Thread(target=self._run, name=f"paper-replay-{self.pair}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """True once every tick was played (or the replay ended on an error)."""
        if self._thread is None:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        error = None
        try:
            self._play()
        except Exception as exc:  # a bad tick ends the replay, not the server; said once
            error = f"{type(exc).__name__}: {exc}"
            log.error("replay of %s stopped at tick %d: %s", self.pair, self.played + 1, error)
        if self._on_done is not None and not self._stop.is_set():
            self._on_done(self.played, error)

    def _play(self) -> None:
        if not self.ticks:
            return
        began, first = self._clock(), self.ticks[0].time
        for tick in self.ticks:
            due = began + (tick.time - first) / self.speed
            if self._stop.wait(max(0.0, due - self._clock())):
                return
            market_data.tick(self.exchange, self.pair, tick.price, tick.volume)
            self.played += 1
