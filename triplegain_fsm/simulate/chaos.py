"""The hostile exchange for a paper session: `triplegain-fsm paper --chaos SEED`.

The simulator proves the core copes, seed by seed, with nobody watching; this
puts the same hostility into the demo a person runs, so they can watch it cope:
before each tick, with probability `rate`, one incident drawn from the seed —
a REST fault of any class the fault matrix knows (singly or as a storm), a
stream fault on the paper exchange's real loopback WebSocket (the connection
cut, a sequence gap, an update lost, every token invalidated), a fault on the
WebSocket order entry (refused, answered after its execution reports, the
connection cut after acting), or a human at the exchange (a stop or an entry
cancelled, a foreign order placed). At the end the world calms down (faults
cleared, the human cancels what they placed), the session winds down as
usual, and the verdict is the simulator's: its invariants, read from the
exchange's records and the store, and every position whose filled volume sat
without a resting stop for longer than `bound` seconds must have been alerted.

Critical alerts are expected here (a stop refused through a storm raises one):
they are counted, and they do not fail the session; a broken invariant does.
Thread timing is real (the stream and its worker run on their own threads), so
the seed fixes what is injected and when, not every outcome.
"""
from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal
from typing import Any

from triplegain_fsm.core import ExecutionCore
from triplegain_fsm.enums import OrderRole
from triplegain_fsm.paper.params import parse_add_order
from triplegain_fsm.session_summary import ChaosOutcome
from triplegain_fsm.simulate import checks
from triplegain_fsm.simulate.faults import DURING_CALL, FAULT_CLASSES, METHODS, REST_FAULTS
from triplegain_fsm.simulate.human import cancel_one
from triplegain_fsm.simulate.results import counts_text as _counts

DEFAULT_RATE = 0.03          # incidents per tick: ~36 in the 1,200-tick demo
UNPROTECTED_BOUND = 900.0    # seconds (session clock) a position may lack a resting stop without an alert
STREAM_BACK_SECONDS = 10.0   # wall seconds the stream may take to reconnect and resync once calm
KINDS = {"rest_fault": 5, "stream_fault": 3, "ws_entry_fault": 2, "human": 2}
STREAM_FAULTS = ("drop", "gap", "lost_update", "token_invalidated")
WS_ENTRY_FAULTS = ("refused", "reports_before_answer", "dropped_after_acting")
HUMAN_ACTIONS = ("cancel_stop", "cancel_entry", "foreign_order")
WS_METHODS = ("add_order", "amend_order", "cancel_order")


class PaperChaos:
    """Seeded incidents for one paper session; `start`, `tick` per tick, `calm`, then `finish`."""

    def __init__(self, seed: int, rate: float = DEFAULT_RATE, bound: float = UNPROTECTED_BOUND) -> None:
        self.seed, self.rate = seed, rate
        self.rng = random.Random(seed)
        self.meter = checks.ExposureMeter(bound)
        self.injected: Counter[str] = Counter()
        self.alerts: list[dict[str, Any]] = []
        self.foreign: set[str] = set()
        self.problems: list[checks.Problem] = []
        self.storms = 0
        self.core: ExecutionCore | None = None
        self.symbol = ""

    # -- the session's hooks ------------------------------------------------------------------------
    def start(self, core: ExecutionCore, symbol: str) -> None:
        self.core, self.symbol = core, symbol
        core.bus.subscribe("risk_alerts", lambda message: self.alerts.append(
            {**message.payload, "_at": core.clock()}))

    def tick(self, index: int, price: Decimal) -> None:
        """Maybe one incident before the tick; the exposure meter after the previous one."""
        core = self._core()
        self._measure(core)
        if self.rng.random() >= self.rate:
            return
        kind = self.rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        getattr(self, f"_{kind}")(core, price)

    def calm(self) -> None:
        """The end of the storm: faults cleared, the human's orders cancelled, and the stream back
        (reconnected and resynchronised) before the wind-down, or a broken invariant says it is not."""
        core = self._core()
        paper = core.paper
        assert paper is not None
        paper.faults.clear()
        paper.ws_faults.clear()
        open_now = paper.open_orders()
        for txid in sorted(self.foreign & set(open_now)):
            paper.engine.cancel_order(txid=txid)
        link = core.stream
        if link is not None and not link.wait_connected(STREAM_BACK_SECONDS):
            self.problems.append(("stream_comes_back", f"the executions stream is still {link.state} "
                                  f"{STREAM_BACK_SECONDS:.0f} s after the faults ended"))

    def finish(self) -> ChaosOutcome:
        """After the wind-down: the invariants, the exposure figures, what was injected and what it raised."""
        core = self._core()
        ledger = self._measure(core)
        problems = [*self.problems, *checks.always(core, ledger, self.foreign),
                    *checks.settled(core, ledger, self.alerts, self.foreign)]
        raised = Counter(a.get("alert_type", "?") for a in self.alerts)
        lines = (
            f"chaos seed {self.seed}: {sum(self.injected.values())} incidents ({self.storms} REST storms)",
            "  injected: " + _counts(self.injected),
            "  alerts raised: " + _counts(raised),
            f"  unprotected position-seconds {self.meter.position_seconds:.1f}; longest window "
            f"{self.meter.worst:.1f} s (an alert is required past {self.meter.bound:.0f} s)",
            "  invariants: " + ("all held" if not problems else f"{len(problems)} broken"),
        )
        return ChaosOutcome(seed=self.seed, lines=lines,
                            problems=tuple(f"invariant {name}: {text}" for name, text in problems))

    # -- incidents --------------------------------------------------------------------------------
    def _rest_fault(self, core: ExecutionCore, price: Decimal) -> None:
        rng, paper = self.rng, core.paper
        assert paper is not None
        fault, method = rng.choice(FAULT_CLASSES), rng.choice(METHODS)
        storm = rng.random() < 0.3
        times = rng.randint(3, 8) if storm else 1
        if fault == DURING_CALL:
            moved = price * Decimal("0.98")
            paper.faults.during_next(method, lambda: paper.set_price(self.symbol, moved), times=times)
        else:
            REST_FAULTS[fault](paper.faults, method, times)
        self.storms += storm
        self.injected[f"rest {fault}"] += 1

    def _stream_fault(self, core: ExecutionCore, price: Decimal) -> None:
        paper, fault = core.paper, self.rng.choice(STREAM_FAULTS)
        assert paper is not None
        faults = paper.ws_faults
        if fault == "drop":
            faults.drop_now()
        elif fault == "gap":
            faults.skip_sequence()
        elif fault == "lost_update":
            faults.drop_next_update()
        else:
            # Kraken ends the subscriptions of a dead token; the cut makes the stream notice at once
            # instead of after its staleness bound.
            paper.invalidate_ws_tokens()
            faults.drop_now()
        self.injected[f"stream {fault}"] += 1

    def _ws_entry_fault(self, core: ExecutionCore, price: Decimal) -> None:
        paper, fault = core.paper, self.rng.choice(WS_ENTRY_FAULTS)
        method = self.rng.choice(WS_METHODS)
        assert paper is not None
        if fault == "refused":
            paper.ws_faults.fail_next(method, "EService:Unavailable")
        elif fault == "reports_before_answer":
            paper.ws_faults.reorder_next(method)
        else:
            paper.ws_faults.drop_after_next(method)
        self.injected[f"ws {method} {fault}"] += 1

    def _human(self, core: ExecutionCore, price: Decimal) -> None:
        paper, what = core.paper, self.rng.choice(HUMAN_ACTIONS)
        assert paper is not None
        self.injected[f"human {what}"] += 1
        if what == "foreign_order":
            pair = core.client.pairs.resolve(self.symbol)
            placed = paper.engine.add_order(parse_add_order(
                {"pair": pair.id, "type": "buy", "ordertype": "limit", "volume": str(pair.ordermin),
                 "price": str((price / 2).quantize(Decimal(1).scaleb(-pair.pair_decimals)))}))
            self.foreign.update(placed["txid"])
            return
        cancel_one(paper, core, OrderRole.STOP_LOSS if what == "cancel_stop" else OrderRole.ENTRY, self.rng.random())

    # -- helpers ----------------------------------------------------------------------------------
    def _measure(self, core: ExecutionCore) -> checks.Ledger:
        ledger = checks.Ledger.read(core)
        seen = {name for name, _ in self.problems}
        # a window past its bound is reported at every later tick: its first report says it all
        self.problems += [p for p in self.meter.measure(ledger, core.clock(), self.alerts) if p[0] not in seen][:1]
        return ledger

    def _core(self) -> ExecutionCore:
        if self.core is None:
            raise RuntimeError("PaperChaos.start(core, symbol) was not called")
        return self.core

