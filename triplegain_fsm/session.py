"""Paper sessions: replay a price series through the whole core against the paper exchange.

Why this exists: it is the one place where every part runs together the way a
bot runs them (proposals in, ticks in, polling, protective legs, OCO, closes)
with no API key and no money, and where the core's books can be checked
against an independent ledger: the paper exchange's own trade records. A
session ends with every position closed and reports the P&L twice, once as the
core computed it from order reports and once recomputed from the exchange's
trades; the two must agree to the cent, and the exchange must hold no open order.

Time is the series' pace: the core runs on a manual clock that starts at the
real time and moves by the gaps between the ticks' timestamps, so price
freshness, retry backoffs and the reconciliation interval follow the data and
a replay of hours takes seconds. (The paper exchange keeps the wall clock: the
client stamps AddOrder deadlines with it.)

A schedule says what to do at which tick: `(tick_index, action)` pairs where an
action is a `TradeProposal`, an `Open` (an entry whose levels are relative to
the price at its tick, so one schedule fits any series), a `Close`, a `Modify`
or a `Trail`; the tuples `("close", ref)`, `("modify", ref, stop_loss,
take_profit)` and `("trail", ref, distance_pct)` are accepted too. `ref` names
an entry: an `Open`'s `ref`, or a `TradeProposal`'s `id`. YAML schedules
(`load_schedule`) use the same actions; `data/demo_proposals.yaml` is the demo's.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import attrs

from triplegain_fsm.config import Config
from triplegain_fsm.core import ExecutionCore
from triplegain_fsm.enums import PositionStatus
from triplegain_fsm.errors import (
    CircuitOpenError,
    ConfigError,
    IllegalTransition,
    NotFoundError,
    ProposalError,
    ValidationError,
)
from triplegain_fsm.kraken.errors import KrakenError
from triplegain_fsm.models import Position, TradeProposal
from triplegain_fsm.money import ZERO
from triplegain_fsm.paper import feeds
from triplegain_fsm.paper.clock import ManualClock
from triplegain_fsm.paper.feeds import Tick
from triplegain_fsm.session_record import SessionRecorder
from triplegain_fsm.session_schedule import (  # noqa: F401  (public names of this module since the start)
    DEMO_SYMBOL,
    HUNDRED,
    Action,
    Close,
    Modify,
    Open,
    ScheduleError,
    Trail,
    _describe,
    as_action,
    as_ticks,
    check_refs,
    load_price_csv,
    load_schedule,
)
from triplegain_fsm.session_summary import (  # noqa: F401  (public names of this module since the start)
    CENT,
    ActionOutcome,
    ChaosOutcome,
    PositionResult,
    SessionSummary,
    position_result,
    trade_rows,
)
from triplegain_fsm.views import fmt

log = logging.getLogger(__name__)

__all__ = [
    "Close", "Modify", "Open", "PositionResult", "ScheduleError", "SessionSummary", "Tick", "Trail",
    "as_ticks", "demo_config", "demo_schedule", "demo_ticks", "load_price_csv", "load_schedule",
    "run_paper_session",
]

SESSION_END = "session end"
_HOLDING = frozenset({PositionStatus.UNPROTECTED.value, PositionStatus.PROTECTED.value})


# --------------------------------------------------------------------------- running


Progress = Callable[[int, int], None]


class Hostility(Protocol):
    """A hostile exchange for the session (`simulate.chaos.PaperChaos`): incidents before ticks,
    calm before the wind-down, a verdict after it."""

    def start(self, core: ExecutionCore, symbol: str) -> None: ...
    def tick(self, index: int, price: Decimal) -> None: ...
    def calm(self) -> None: ...
    def finish(self) -> ChaosOutcome: ...


class _Session:
    """One run: the core, the clock, the schedule, and what happened to each action."""

    def __init__(self, config: Config, ticks: list[Tick], schedule: list[tuple[int, Action]], symbol: str,
                 poll_every: int, chaos: Hostility | None = None) -> None:
        if config.exchange.mode != "paper":
            raise ConfigError("exchange.mode: a paper session runs only in paper mode (this config is live)")
        if poll_every < 1:
            raise ValidationError(f"poll_every: must be >= 1, got {poll_every}")
        self.config = config
        self.ticks = ticks
        self.symbol = symbol
        self.poll_every = poll_every
        self.chaos = chaos
        self.by_tick: dict[int, list[Action]] = {}
        for index, action in schedule:
            if not 0 <= index < len(ticks):
                raise ScheduleError(f"action at tick {index}: outside the series (0..{len(ticks) - 1})")
            self.by_tick.setdefault(index, []).append(action)
        # The core's clock replays the series' pace from now on: its stamps (created_at, fills) are
        # wall-clock based, so the series' absolute times would put deadlines decades apart.
        self.start = time.time()
        self.clock = ManualClock(self.start)
        self.core = ExecutionCore.from_settings(config, clock=self.clock)
        self.paper = self.core.paper
        try:  # an unknown pair is a usage error, found before the first tick rather than on it
            self.core.client.pairs.resolve(symbol)
            self.recorder = SessionRecorder(self.core, symbol)   # prices and level moves, for reports
            self.on_stream = self._connect_stream()
            if chaos is not None:
                chaos.start(self.core, symbol)
        except BaseException:
            self.core.close()
            raise
        self.positions_by_ref: dict[str, str] = {}
        self.outcomes: list[ActionOutcome] = []

    def _connect_stream(self) -> bool:
        """exchange.stream: websocket (the default): fills are pushed over the paper exchange's
        loopback WebSocket, exactly as a live bot learns them; polling stays as the audit."""
        if self.config.exchange.stream != "websocket":
            return False
        self.core.start_stream()
        assert self.core.stream is not None
        if not self.core.stream.wait_connected(10):
            raise ConfigError(f"paper session: the executions stream did not connect ({self.core.status().stream})")
        return True

    def _settle(self) -> None:
        """On the stream: everything the exchange pushed is applied before the replay moves on."""
        if self.on_stream and not self.core.settle_stream() and self._stream_up():
            log.warning("paper session: the stream did not settle within its bound; polling catches up")

    def _stream_up(self) -> bool:
        return self.core.stream is not None and self.core.stream.healthy

    def run(self, on_progress: Progress | None) -> SessionSummary:
        started = time.perf_counter()
        total = len(self.ticks)
        last_pct = -1
        origin = self.ticks[0].time
        for index, tick in enumerate(self.ticks):
            self.clock.set(self.start + (tick.time - origin))
            if self.chaos is not None:
                self.chaos.tick(index, tick.price)
            self.core.price_tick(self.symbol, tick.price)
            self._settle()
            for action in self.by_tick.get(index, ()):
                self._apply(index, action, tick.price)
                self._settle()
            if (index + 1) % self.poll_every == 0:
                self.core.poll_once()
            self.recorder.tick(index, self.clock(), tick.price)
            pct = (index + 1) * 100 // total
            if on_progress is not None and pct != last_pct:
                last_pct = pct
                on_progress(index + 1, total)
        if self.chaos is not None:
            self.chaos.calm()
        self._wind_down(self.ticks[-1])
        outcome = self.chaos.finish() if self.chaos is not None else None
        elapsed = time.perf_counter() - started
        return attrs.evolve(self._summary(elapsed), chaos=outcome)

    # -- actions ---------------------------------------------------------------------------------
    def _apply(self, index: int, action: Action, price: Decimal) -> None:
        label = _describe(action, self.symbol)
        try:
            outcome = self._do(action, price)
        except (ProposalError, IllegalTransition, NotFoundError, CircuitOpenError, KrakenError) as exc:
            outcome = f"refused: {exc}"     # a bot is told why, and the replay goes on as a bot's loop would
        self.outcomes.append(ActionOutcome(index, label, outcome))

    def _do(self, action: Action, price: Decimal) -> str:
        if isinstance(action, (TradeProposal, Open)):
            proposal = action if isinstance(action, TradeProposal) else action.proposal(self.symbol, price)
            result = self.core.orders.execute_trade(proposal)
            if result.position_id is not None:
                self.positions_by_ref[proposal.id] = result.position_id
            if not result.success:
                return f"not placed ({result.error_type}): {result.error_message}"
            return f"position {result.position_id}"
        position = self._position(action.ref)
        if position is None:
            return f"skipped: no position for {action.ref!r} (its entry was not placed)"
        if position.state not in _HOLDING and not (isinstance(action, Close)
                                                   and position.state == PositionStatus.OPENING.value):
            return f"skipped: position {position.id} is {position.state}"
        if isinstance(action, Close):
            self.core.positions.close_position(position.id, reason=action.reason)
            return f"closing {position.id}"
        if isinstance(action, Modify):
            sl, tp = action.levels(position, price)
            self.core.positions.modify_position(position.id, stop_loss=sl, take_profit=tp)
            return f"stop_loss={fmt.pair_price(position.stop_loss, position.symbol, grouping=False)} " \
                   f"take_profit={fmt.pair_price(position.take_profit, position.symbol, grouping=False)}"
        enabled = self.core.positions.enable_trailing_stop_for_position(
            position.id, distance_pct=action.distance_pct, activation_pct=action.activation_pct)
        return "trailing enabled" if enabled else f"skipped: position {position.id} is not open"

    def _position(self, ref: str) -> Position | None:
        position_id = self.positions_by_ref.get(ref)
        return None if position_id is None else self.core.positions.get_position(position_id)

    # -- the end -----------------------------------------------------------------------------------
    def _wind_down(self, last: Tick, max_polls: int = 200) -> None:
        """Close what is still open, then keep the market ticking at the last price until all is settled.

        Bounded: with a liquidity limit a close may need several ticks to fill,
        and each poll waits out the core's poll interval on the session clock.
        """
        for position in self.core.positions.get_open_positions():
            if position.state in (*_HOLDING, PositionStatus.OPENING.value):
                self.core.positions.close_position(position.id, reason=SESSION_END)
        step = self.config.orders.poll_interval_seconds
        for extra in range(max_polls):
            if self._settled():
                return
            self.clock.advance(step)
            self.core.price_tick(self.symbol, last.price)
            self._settle()
            self.core.poll_once()
            self.recorder.tick(len(self.ticks) + extra, self.clock(), last.price)

    def _settled(self) -> bool:
        return not (self.core.orders.get_open_orders() or self.core.positions.get_open_positions()
                    or self.paper.open_orders())

    # -- the books -----------------------------------------------------------------------------------
    def _summary(self, elapsed: float) -> SessionSummary:
        store = self.core.store
        orders = tuple(sorted(store.load_orders(), key=lambda o: o.created_at))
        trades = list(trade_rows(self.paper.trades()))
        refs = {pid: ref for ref, pid in self.positions_by_ref.items()}
        positions = tuple(position_result(p, refs.get(p.id), orders, trades)
                          for p in sorted(store.load_positions(), key=lambda p: p.opened_at))
        partial_ids = {e["entity_id"] for e in store.events()
                       if e["entity"] == "order" and e["to_state"] == "PARTIALLY_FILLED"}
        fee_total = self.core.positions.fee_summary()["total"]
        summary = SessionSummary(
            symbol=self.symbol, ticks=len(self.ticks), elapsed_seconds=elapsed, store_path=store.path,
            orders=orders, positions=positions, actions=tuple(self.outcomes),
            orders_by_status=dict(sorted(Counter(o.state for o in orders).items())),
            partially_filled_orders=len(partial_ids),
            total_fees=fee_total, exchange_fees=sum((t.fee for t in trades), ZERO),
            core_pnl=sum((p.core_pnl for p in positions), ZERO),
            exchange_pnl=sum((p.exchange_pnl for p in positions), ZERO),
            open_exchange_orders=len(self.paper.open_orders()),
            open_positions=len(self.core.positions.get_open_positions()),
            alerts_by_type=dict(sorted(Counter(a["alert_type"] for a in store.alerts()).items())),
            critical_alerts=dict(sorted(Counter(a["alert_type"] for a in store.alerts()
                                                if a["severity"] == "critical").items())),
            never_protected=tuple(p.id for p in store.load_positions() if p.entry_size > 0 and not any(
                e["to_state"] == "PROTECTED" for e in store.events(p.id))),
        )
        return summary

    def close(self) -> None:
        try:
            self.recorder.flush()
        finally:
            self.core.close()


def run_paper_session(config: Config, ticks: Iterable[Any], proposals: Iterable[tuple[int, Any]], *,
                      symbol: str = DEMO_SYMBOL, poll_every: int = 1,
                      on_progress: Progress | None = None, chaos: Hostility | None = None) -> SessionSummary:
    """Replay `ticks` for `symbol` through a paper-mode core, acting on `proposals` at their tick index.

    Polls after every `poll_every` ticks; at the end closes every open
    position (reason "session end") and settles. The store at
    `config.storage.path` is left for inspection. Raises ConfigError for a
    live config and ScheduleError for a bad schedule, before anything runs.
    `chaos` (e.g. `simulate.chaos.PaperChaos(seed)`) makes the exchange hostile;
    the summary's verdict is then its invariants.
    """
    series = as_ticks(ticks)
    if not series:
        raise ValidationError("ticks: the price series is empty")
    schedule = [(int(index), as_action(action)) for index, action in proposals]
    check_refs(schedule)
    session = _Session(config, series, schedule, symbol, poll_every, chaos)
    try:
        return session.run(on_progress)
    finally:
        session.close()


# --------------------------------------------------------------------------- the demo


def demo_config(store_path: str | Path) -> Config:
    """Paper mode, spot, with a liquidity limit so the large entry fills in parts."""
    return Config.from_dict({
        "exchange": {"mode": "paper"},
        "storage": {"path": str(store_path)},
        "limits": {"max_open_positions": 5, "max_positions_per_symbol": 5},
        "paper": {"balances": {"ZUSD": 100000}, "prices": {DEMO_SYMBOL: 43000},
                  "liquidity_per_tick": Decimal("0.05")},
    })


DEMO_CRASH_AT = 700
DEMO_TICKS = 1200


def demo_ticks() -> list[Tick]:
    """1,200 one-second BTC/USD-like ticks around 43,000; a 12 % flash crash at tick 700 (paper.feeds).

    The seed is fixed so the demo schedule's story (a partial fill, a stop-out
    in the crash, a take-profit and a trailing stop in the recovery) replays
    the same way every time.
    """
    return feeds.flash_crash_series(seed=12, start_price="43000", ticks=DEMO_TICKS, crash_at=DEMO_CRASH_AT,
                                    depth="0.12", crash_ticks=4, recovery_ticks=120, max_step_ticks=150)


def demo_schedule(total_ticks: int) -> list[tuple[int, Action]]:
    """The demo's schedule, shipped as data/demo_proposals.yaml (also an example to copy)."""
    text = resources.files("triplegain_fsm").joinpath("data/demo_proposals.yaml")
    with resources.as_file(text) as path:
        return load_schedule(path, total_ticks)
