"""Seeded chaos simulation of the whole core (issue 15).

    from triplegain_fsm.simulate import run_seed
    result = run_seed(42, steps=2000, crash_rate=0.02)
    assert result.failure is None, result.failure.describe()

One seed drives everything (`scenario`): the price path, proposals, closes,
modifications, trailing, partial-fill liquidity, REST faults of every class the
fault matrix knows (`faults`), stream faults (`stream`), a human at the exchange
(`human`), WebSocket order entry and its faults (`ws_entry`), and crashes (`crash`),
on a margin or a spot account. The runner (`runner`) drives the REAL core through its
synchronous hooks on a fake clock against one paper exchange that outlives every
crash (`world`), and checks the invariants (`checks`, `invariants`) after every step.
"""
from __future__ import annotations

from triplegain_fsm.simulate.runner import Failure, RunResult, Totals, run_many, run_seed

__all__ = ["Failure", "RunResult", "Totals", "run_many", "run_seed"]
