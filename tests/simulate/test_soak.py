"""The threaded soak (triplegain_fsm.simulate.soak): the real threads of a started core under load and chaos.

A short run must hold every invariant; injected bugs (a bare exception from a public
call, a fee booked twice, a call that never returns) must be reported as failures,
never pass. Thread timing is real, so the runs are not reproducible: a failure names
its seed, which replays the same draws, not the same interleaving.
"""
from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest

from triplegain_fsm import order_sync
from triplegain_fsm.cli import main
from triplegain_fsm.positions import PositionTracker
from triplegain_fsm.simulate import soak
from triplegain_fsm.simulate.soak import run_soak

pytestmark = pytest.mark.integration


def _assert_held(result: soak.SoakResult) -> None:
    assert result.failure is None, result.describe_failure()
    assert result.calls["execute_trade"] > 0 and result.calls["price_tick"] > 0
    assert result.fills > 0 and sum(result.injected.values()) > 0
    assert result.positions_opened > 0 and result.positions_closed == result.positions_opened


def test_a_short_soak_holds_every_invariant() -> None:
    """~5 s of load, then settling (bounded) and the wind-down: about 8-15 s of wall time."""
    result = run_soak(11, 5.0)
    _assert_held(result)
    assert result.wall_seconds < 5.0 + 2 * soak.SETTLE_SECONDS + soak.STOP_SECONDS


@pytest.mark.slow
def test_a_minute_of_six_bots_holds_every_invariant() -> None:
    result = run_soak(21, 60.0, threads=6)
    _assert_held(result)
    assert len([k for k in result.injected if k.startswith("rest ")]) > 5, result.injected


@pytest.fixture
def bare_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    """An injected bug: modify_position fails with a KeyError from deep inside, not a TripleGainError."""
    def broken(self: PositionTracker, position_id: str, **levels: Any) -> Any:
        raise KeyError(f"injected: {position_id}")

    monkeypatch.setattr(PositionTracker, "modify_position", broken)


@pytest.mark.usefixtures("bare_exception")
def test_a_bare_exception_from_a_bot_call_is_a_failure() -> None:
    result = run_soak(3, 5.0)
    assert result.failure is not None, "a KeyError from a public call passed as an answer"
    assert result.failure.invariant == "clear_answers"
    assert "modify_position raised a bare KeyError" in result.failure.message
    assert "test_soak.py" in result.failure.message      # where it was raised
    assert "seed 3" in result.describe_failure()


def test_a_fee_booked_twice_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator's injected double count (tests/simulate/test_simulate.py), under real threads."""
    original = order_sync._held_change

    def held_change(*args: Any) -> tuple[Decimal, Decimal, Decimal]:
        qty, cost, fee = original(*args)
        return qty, cost, fee * 2

    monkeypatch.setattr(order_sync, "_held_change", held_change)
    result = run_soak(4, 3.0)
    assert result.failure is not None, "a position booking every fee twice passed"
    assert result.failure.invariant == "fees_and_pnl", result.describe_failure()


def test_a_call_that_never_returns_is_a_hang_with_every_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watchdog: a trailing-stop call blocks (as on a lock nobody releases); the failure names the call
    and carries every thread's stack. The blocked bot is released after the run."""
    release = threading.Event()

    def blocked(self: PositionTracker, position_id: str, **kwargs: Any) -> Any:
        release.wait(60)

    monkeypatch.setattr(soak, "HANG_SECONDS", 0.5)
    monkeypatch.setattr(PositionTracker, "enable_trailing_stop_for_position", blocked)
    try:
        result = run_soak(5, 5.0)
    finally:
        release.set()
    assert result.failure is not None and result.failure.invariant == "no_deadlock", result.describe_failure()
    assert "enable_trailing_stop for" in result.failure.message
    assert "--- thread soak-bot-" in result.failure.message and "release.wait(60)" in result.failure.message


def test_cli_threaded_prints_the_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--threaded", "5", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    for figure in ("threaded soak seed 3", "calls ", "refused calls", "faults injected", "fills ",
                   "positions opened", "slowest call", "all invariants held (threaded soak)"):
        assert figure in out, out


@pytest.mark.usefixtures("bare_exception")
def test_cli_threaded_fails_and_names_the_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--threaded", "2", "--seed", "8"]) == 1
    captured = capsys.readouterr()
    assert "FAILED threaded soak seed 8: invariant clear_answers" in captured.out
    assert "simulate --threaded 2 --seed 8" in captured.err
