"""The simulation loop: one seed, the real core, the paper exchange, invariants after every step.

Each step the clock moves (seeded), the scenario draws one action (a tick, a poll,
a stream delivery, a proposal, a close/modify/trailing change, a REST fault or a
storm, a stream fault, a human at the exchange, or a crash), the runner performs
it through the core's public API and synchronous hooks, and then checks
`checks.always` and the exposure meter. Every `settle_every` steps, and at the end,
the world calms down (faults cleared, the stream back, eight polls 35 s apart: past
every deadline and backoff) and `checks.settled` must hold. A `SimulatedCrash`
anywhere abandons the core and boots a new one on the same store and exchange; one
armed for the boot dies inside that recovery, and the process after it recovers.
The account and order entry are the seed's (`scenario.setup`); totals are `results`'.
The first broken invariant ends the run; `Failure` names it with the seed and step.
"""
from __future__ import annotations

import tempfile
import traceback
from decimal import Decimal
from pathlib import Path
from typing import Any

import triplegain_fsm.simulate.checks as checks
import triplegain_fsm.simulate.human as human
from triplegain_fsm.errors import TripleGainError
from triplegain_fsm.models import TradeProposal
from triplegain_fsm.simulate.crash import DURING_RECOVERY, IN_RECOVERY, SimulatedCrash
from triplegain_fsm.simulate.faults import DURING_CALL, REST_FAULTS
from triplegain_fsm.simulate.results import Failure, RunResult, Totals, deterministic
from triplegain_fsm.simulate.scenario import Action, Scenario, Setup, setup
from triplegain_fsm.simulate.world import START_TIME, World
from triplegain_fsm.simulate.ws_entry import queue_fault
from triplegain_fsm.testing import FakeClock

__all__ = ["Failure", "RunResult", "Simulation", "Totals", "deterministic", "run_many", "run_seed"]
SYMBOL = "BTC/USD"
MAX_OPEN = 8
SETTLE_POLLS, SETTLE_STEP = 8, 35.0
UNPROTECTED_BOUND = 900.0          # seconds a position may lack a resting stop without an alert


class Simulation:
    def __init__(self, world: World, scenario: Scenario, seed: int, settle_every: int) -> None:
        self.world, self.scenario, self.seed = world, scenario, seed
        self.settle_every = settle_every
        self.totals = Totals(seeds=1)
        self.alerts: list[dict[str, Any]] = []
        self.meter = checks.ExposureMeter(UNPROTECTED_BOUND)
        self.step_no = 0
        self.last_action = "boot"
        self.recovery_crash: tuple[str, int] | None = None   # armed for the next boot's recovery
        self.totals.accounts[world.config.exchange.account] += 1
        self.totals.entries[world.config.exchange.order_entry] += 1
        self._boot()

    # -- processes ---------------------------------------------------------------------------------
    def _listen(self, core: Any) -> None:
        core.bus.subscribe("risk_alerts", lambda message: self.alerts.append(
            {**message.payload, "_at": self.world.clock()}))

    def _boot(self) -> None:
        self.world.boot(self._listen)

    def _restart(self, kind: str) -> None:
        """A new process; one armed to die inside its recovery does, and the one after it recovers."""
        self.totals.crashes[kind] += 1
        world, armed = self.world, self.recovery_crash
        self.recovery_crash = None
        world.abandon()
        world.switch.disarm()
        if armed is not None:
            world.switch.arm(*armed)
            try:
                self._boot()
            except SimulatedCrash:
                self.totals.crashes[DURING_RECOVERY] += 1
                world.abandon()
                world.switch.disarm()
                self._boot()
            world.switch.disarm()      # not reached in its recovery: it was that process's, not the next one's
            return
        self._boot()

    @property
    def core(self) -> Any:
        assert self.world.core is not None
        return self.world.core

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, steps: int) -> Failure | None:
        for self.step_no in range(1, steps + 1):
            failure = self.step()
            if failure is None and self.step_no % self.settle_every == 0:
                failure = self.settle()
            if failure is not None:
                return failure
        return self.settle() if steps % self.settle_every else None

    def step(self) -> Failure | None:
        action = self.scenario.next()
        self.world.clock.advance(self.scenario.seconds())
        self.last_action = _name(action)
        self.totals.steps += 1
        self.totals.actions[action.kind] += 1
        problems: list[checks.Problem] = []
        try:
            self.world.paper.process_time()
            self.perform(action, problems)
            assert self.world.stream is not None
            self.world.stream.watchdog()
        except SimulatedCrash as crash:
            self._restart(str(crash))
        return self.check(problems)

    def check(self, problems: list[checks.Problem], settled: bool = False) -> Failure | None:
        core = self.core
        ledger = checks.Ledger.read(core)
        problems = [*problems, *checks.always(core, ledger, self.world.foreign)]
        problems += self.meter.measure(ledger, self.world.clock(), self.alerts)
        if settled:
            problems += checks.settled(core, ledger, self.alerts, self.world.foreign)
        if not problems:
            return None
        invariant, message = problems[0]
        return Failure(self.seed, self.step_no, invariant, message, self.last_action)

    def settle(self) -> Failure | None:
        """Calm: no faults, no armed crash, the stream back; polls past every deadline; then all invariants."""
        world = self.world
        world.paper.faults.clear()
        world.paper.ws_faults.clear()
        world.switch.disarm()
        self.totals.settles += 1
        for _ in range(SETTLE_POLLS):
            world.clock.advance(SETTLE_STEP)
            world.paper.process_time()
            assert world.stream is not None
            world.stream.silent_until = 0.0
            world.stream.reconnect()
            world.stream.deliver()
            problems: list[checks.Problem] = []
            self._call("poll_once", self.core.poll_once, problems)
            world.stream.deliver()
            # the bot keeps feeding prices: trailing stops ratchet on ticks, never between them
            self._call("on_price_update", self.core.positions.on_price_update, problems, SYMBOL, self.scenario.price)
            failure = self.check(problems)
            if failure is not None:
                return failure
        self.last_action = "settling"
        return self.check([], settled=True)

    def finish(self) -> Totals:
        self.totals.fills = len(self.world.paper.trades())
        self.totals.unprotected_seconds = self.meter.position_seconds
        self.totals.worst_window = self.meter.worst
        self.totals.worst_where = f"seed {self.seed}, {self.meter.worst_position}" if self.meter.worst_position else ""
        return self.totals

    # -- actions -----------------------------------------------------------------------------------
    def perform(self, action: Action, problems: list[checks.Problem]) -> None:
        getattr(self, f"_do_{action.kind}")(action.params, problems)

    def _call(self, name: str, fn: Any, problems: list[checks.Problem], *args: Any, **kwargs: Any) -> Any:
        """A public call must answer clearly: a result, an ExecutionResult with its error, or a TripleGainError."""
        try:
            result = fn(*args, **kwargs)
        except TripleGainError:
            self.totals.refused += 1
            return None
        except SimulatedCrash:
            raise
        except Exception as exc:  # the point of the check: anything else is a bug in the core
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            problems.append(("clear_answers", f"{name} raised a bare {type(exc).__name__}({exc}) at "
                             f"{frame.filename.rsplit('triplegain_fsm/', 1)[-1]}:{frame.lineno}"))
            return None
        if getattr(result, "success", True) is False:
            self.totals.refused += 1
            if not getattr(result, "error_message", None):
                problems.append(("clear_answers", f"{name}: ExecutionResult(success=False) without an error_message"))
        return result

    def _pick(self, pick: float) -> Any:
        positions = sorted(self.core.positions.get_open_positions(), key=lambda p: p.id)
        return positions[int(pick * len(positions))] if positions else None

    def _do_crash(self, params: dict[str, Any], problems: list[checks.Problem]) -> None:
        if params["at"] == "between_steps":
            raise SimulatedCrash("between_steps")
        if params["at"] == IN_RECOVERY:
            self.recovery_crash = (params["inner"], params["countdown"])
            raise SimulatedCrash("between_steps")
        self.world.switch.arm(params["at"], params["countdown"])

    def _do_tick(self, params: dict[str, Any], problems: list[checks.Problem]) -> None:
        price = params["price"]
        self.world.paper.set_price(SYMBOL, price, liquidity=params["liquidity"])
        self._call("on_price_update", self.core.positions.on_price_update, problems, SYMBOL, price)

    def _do_poll(self, params: dict[str, Any], problems: list[checks.Problem]) -> None:
        self._call("poll_once", self.core.poll_once, problems)

    def _do_deliver(self, params: dict[str, Any], problems: list[checks.Problem]) -> None:
        assert self.world.stream is not None
        self.world.stream.deliver(params["count"])

    def _do_propose(self, params: dict[str, Any], problems: list[checks.Problem]) -> None:
        if len(self.core.positions.get_open_positions()) >= MAX_OPEN:
            return
        proposal = TradeProposal(symbol=SYMBOL, side=params["side"], size_usd=params["size_usd"],
                                 entry_price=params["entry"], stop_loss=params["stop"], take_profit=params["take"],
                                 leverage=params["leverage"])
        self._call("execute_trade", self.core.orders.execute_trade, problems, proposal)

    def _do_close(self, params: dict[str, Any], problems: list[checks.Problem]) -> None:
        position = self._pick(params["pick"])
        if position is not None:
            self._call("close_position", self.core.positions.close_position, problems, position.id, reason="sim")

    def _do_modify(self, params: dict[str, Any], problems: list[checks.Problem]) -> None:
        position = self._pick(params["pick"])
        if position is None:
            return
        price = self.scenario.price
        sign = 1 if position.is_long else -1
        stop: Decimal | None = (price * (1 - sign * Decimal(str(round(params["stop_pct"], 4))))).quantize(Decimal("1"))
        take = None
        if params["take_pct"] is not None:
            take = (price * (1 + sign * Decimal(str(round(params["take_pct"], 4))))).quantize(Decimal("1"))
        if stop is not None or take is not None:
            self._call("modify_position", self.core.positions.modify_position, problems, position.id,
                       stop_loss=stop, take_profit=take)

    def _do_trail(self, params: dict[str, Any], problems: list[checks.Problem]) -> None:
        position = self._pick(params["pick"])
        if position is not None:
            self._call("enable_trailing_stop", self.core.positions.enable_trailing_stop_for_position, problems,
                       position.id, distance_pct=params["distance"], activation_pct=0)

    def _do_rest_fault(self, params: dict[str, Any], problems: list[checks.Problem]) -> None:
        paper, fault, method, times = self.world.paper, params["fault"], params["method"], params["times"]
        if fault == DURING_CALL:
            moved = (self.scenario.price * Decimal("0.98")).quantize(Decimal("0.1"))
            paper.faults.during_next(method, lambda: paper.set_price(SYMBOL, moved), times=times)
        else:
            REST_FAULTS[fault](paper.faults, method, times)
        self.totals.faults[fault] += 1
        self.totals.storms += bool(params["storm"])

    def _do_ws_fault(self, params: dict[str, Any], problems: list[checks.Problem]) -> None:
        fault = params["fault"]
        queue_fault(self.world.paper, fault, params["method"], params["error"], params["times"])
        self.totals.ws_faults[fault if fault != "fail" else f"fail {params['error']}"] += 1

    def _do_stream_fault(self, params: dict[str, Any], problems: list[checks.Problem]) -> None:
        stream, fault = self.world.stream, params["fault"]
        assert stream is not None
        injected = True
        if fault == "drop":
            stream.drop()
        elif fault == "gap":
            stream.gap(params["lost"])
        elif fault == "silence":
            stream.silence(self.world.clock() + params["seconds"])
        elif fault == "duplicate":
            stream.duplicate()
        elif fault == "reorder":
            injected = stream.reorder(params["pick"])     # False: fewer than two reports queued
        else:
            stream.drop("token invalidated")
            self.world.paper.invalidate_ws_tokens()
            stream.reconnect()
        if injected:
            self.totals.stream_faults[fault] += 1

    def _do_human(self, params: dict[str, Any], problems: list[checks.Problem]) -> None:
        if human.act(self.world, self.core, params):
            self.totals.human[params["what"]] += 1


def _name(action: Action) -> str:
    detail = {k: v for k, v in action.params.items() if k in ("fault", "method", "what", "at", "side")}
    return action.kind + (f" {detail}" if detail else "")


def run_seed(seed: int, steps: int, *, crash_rate: float = 0.02, settle_every: int = 50,
             directory: Path | None = None, quiet: bool = True, account: str | None = None,
             order_entry: str | None = None) -> RunResult:
    """One seeded run of `steps` steps; the first broken invariant, if any, is in `.failure`.
    The account (margin/spot) and order entry (rest/websocket) are the seed's (`scenario.setup`)
    unless given."""
    drawn = setup(seed)
    run = Setup(account or drawn.account, order_entry or drawn.order_entry)
    with tempfile.TemporaryDirectory(prefix="triplegain-sim-") as tmp:
        base = Path(directory or tmp)
        clock = FakeClock(START_TIME)
        with deterministic(seed, clock, quiet):
            world = World(base / f"sim-{seed}.sqlite", seed=seed, clock=clock, account=run.account,
                          order_entry=run.order_entry)
            scenario = Scenario(seed, crash_rate, run.account, run.order_entry)
            simulation = Simulation(world, scenario, seed, settle_every)
            try:
                failure = simulation.run(steps)
            finally:
                totals = simulation.finish()
                world.abandon()
    return RunResult(seed, totals, failure)


def run_many(seed: int, steps: int, seeds: int = 1, **kwargs: Any) -> tuple[Totals, list[Failure]]:
    totals, failures = Totals(), []
    for offset in range(seeds):
        result = run_seed(seed + offset, steps, **kwargs)
        totals.add(result.totals)
        if result.failure is not None:
            failures.append(result.failure)
    return totals, failures
