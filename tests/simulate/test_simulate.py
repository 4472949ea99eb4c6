"""The seeded chaos simulation (triplegain_fsm.simulate): many short seeds, reproducibility, and a
simulator that catches an injected bug by seed and invariant."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from triplegain_fsm import order_sync, reconcile
from triplegain_fsm.cli import main
from triplegain_fsm.simulate import Totals, run_many, run_seed

pytestmark = pytest.mark.integration

CHUNKS, PER_CHUNK, SHORT_STEPS = 10, 20, 25     # 200 short seeds in the default suite


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_short_seeds_hold_every_invariant(chunk: int) -> None:
    totals, failures = run_many(1000 + chunk * PER_CHUNK, SHORT_STEPS, PER_CHUNK, crash_rate=0.05,
                                settle_every=SHORT_STEPS)
    assert not failures, "\n".join(f.describe() for f in failures)
    assert totals.steps == PER_CHUNK * SHORT_STEPS and totals.settles == PER_CHUNK


def test_a_seed_reproduces_exactly() -> None:
    first, second = run_seed(7, 150, crash_rate=0.05), run_seed(7, 150, crash_rate=0.05)
    assert first.totals == second.totals
    assert first.failure == second.failure
    assert sum(first.totals.crashes.values()) > 0 and first.totals.fills > 0


def test_cli_output_is_identical_for_the_same_seed(capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for _ in range(2):
        assert main(["simulate", "--seed", "3", "--steps", "60", "--crash-rate", "0.05"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert "unprotected position-seconds" in outputs[0] and "all invariants held" in outputs[0]
    assert "accounts: " in outputs[0] and "WebSocket order-entry faults" in outputs[0]


@pytest.fixture
def double_counting(monkeypatch: pytest.MonkeyPatch) -> None:
    """An injected bug: the one mutator books every trade's fee twice into its position."""
    original = order_sync._held_change

    def held_change(*args: Any) -> tuple[Decimal, Decimal, Decimal]:
        qty, cost, fee = original(*args)
        return qty, cost, fee * 2

    monkeypatch.setattr(order_sync, "_held_change", held_change)


@pytest.mark.usefixtures("double_counting")
def test_an_injected_double_count_is_caught_with_its_seed() -> None:
    totals, failures = run_many(1, 100, 5, crash_rate=0.0)
    assert failures, "the simulator missed a mutator that books a trade twice"
    first = failures[0]
    assert first.invariant == "fees_and_pnl"
    assert f"seed {first.seed}" in first.describe() and "invariant fees_and_pnl" in first.describe()


@pytest.mark.usefixtures("double_counting")
def test_the_cli_fails_and_names_the_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--seed", "1", "--steps", "100", "--seeds", "5", "--crash-rate", "0"]) == 1
    captured = capsys.readouterr()
    assert "FAILED seed" in captured.out and "invariant fees_and_pnl" in captured.out
    assert "reproduce one with `triplegain-fsm simulate --seed" in captured.err


@pytest.mark.slow
def test_soak_long_seeds() -> None:
    """Seeds twice as long as CI's batch (`.ci/run`: 40 x 500). Bounded: the invariants read the whole
    call log after every step, so a seed's cost grows with the square of its length (1,000 steps ~20 s)."""
    totals, failures = run_many(500, 1000, 3, crash_rate=0.02)
    assert not failures, "\n".join(f.describe() for f in failures)
    assert sum(totals.crashes.values()) > 20


def test_spot_websocket_recovery_crashes_reordered_reports_and_a_humans_margin_position() -> None:
    """The kinds of trouble issue 15 added, each met at least once by these three short seeds."""
    runs = [run_seed(2, 150, crash_rate=0.1, account="margin", order_entry="websocket"),
            run_seed(5, 150, crash_rate=0.1, account="margin", order_entry="websocket"),
            run_seed(3, 150, crash_rate=0.1, account="spot", order_entry="websocket")]
    assert [r.failure for r in runs] == [None] * 3, "\n".join(r.failure.describe() for r in runs if r.failure)
    totals = Totals()
    for run in runs:
        totals.add(run.totals)
    assert totals.accounts == {"margin": 2, "spot": 1} and totals.entries == {"websocket": 3}
    assert totals.crashes["during_recovery"] > 0 and totals.stream_faults["reorder"] > 0
    assert totals.human["foreign_position"] > 0 and sum(totals.ws_faults.values()) > 0


def test_a_humans_margin_position_left_unreported_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """An injected bug: reconciliation finds the drift but says nothing (and closes nothing)."""
    monkeypatch.setattr(reconcile.Reconciler, "_act_on_drift", lambda self, report, drift, owners: None)
    failure = run_seed(2, 150, crash_rate=0.1, account="margin", order_entry="websocket").failure
    assert failure is not None and failure.invariant == "foreign_position_reported", failure
