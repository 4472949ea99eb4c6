"""`triplegain-fsm paper --chaos`: the demo on a hostile exchange, judged by the simulator's invariants.

The incidents are real: REST faults queued on the paper exchange, cuts, gaps and lost
updates on its loopback WebSocket, faults on the WebSocket order entry, a human
cancelling stops and entries at the exchange. What a test can hold is the verdict:
the books still agree with the exchange's trades to the cent, nothing is left open,
every invariant read from the exchange's records held — and a world the core does
not know of (an exchange order nobody accounts for) fails it.
"""
from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from triplegain_fsm import cli, session
from triplegain_fsm.cli.cmd_paper import chaos_config, demo_config
from triplegain_fsm.kraken.errors import ServiceUnavailable
from triplegain_fsm.session_summary import ChaosOutcome, SessionSummary
from triplegain_fsm.simulate.chaos import PaperChaos

pytestmark = pytest.mark.integration


def run_demo(tmp_path: Path, chaos: PaperChaos) -> SessionSummary:
    config = chaos_config(demo_config(tmp_path / "chaos.sqlite"))
    ticks = session.demo_ticks()
    return session.run_paper_session(config, ticks, session.demo_schedule(len(ticks)), chaos=chaos)


def test_the_demo_on_a_hostile_exchange_keeps_its_books_and_every_invariant(tmp_path: Path) -> None:
    chaos = PaperChaos(seed=5, rate=0.08)
    summary = run_demo(tmp_path, chaos)

    kinds = {name.split()[0] for name in chaos.injected}
    assert kinds == {"rest", "stream", "ws", "human"}, chaos.injected
    assert sum(chaos.injected.values()) > 60
    assert summary.chaos is not None and summary.chaos.problems == ()
    assert summary.problems() == [], summary.problems()
    assert summary.open_exchange_orders == 0 and summary.open_positions == 0
    assert abs(summary.core_pnl - summary.exchange_pnl) < D("0.01")
    assert summary.exchange_pnl != 0          # it traded through the chaos
    # the stream was cut and came back within the replay; the human's stops were noticed
    assert summary.alerts_by_type.get("stream_down", 0) >= 1
    assert summary.alerts_by_type.get("stream_restored", 0) >= 1
    if chaos.injected["human cancel_stop"]:
        assert summary.alerts_by_type.get("position_unprotected", 0) >= 1


def test_an_exchange_order_nobody_accounts_for_fails_the_chaos_verdict(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The invariants read the exchange, not the core: a human's order the chaos forgot it placed is an
    exchange order the core's store does not know, and the session says so."""
    forgetful = PaperChaos(seed=11, rate=0.05)
    place = forgetful._human

    def human(core, price):
        before = set(forgetful.foreign)
        place(core, price)
        forgetful.foreign.intersection_update(before)    # placed, then forgotten
    monkeypatch.setattr(forgetful, "_human", human)
    monkeypatch.setattr(forgetful.rng, "choice", _prefer("foreign_order", forgetful.rng.choice))

    summary = run_demo(tmp_path, forgetful)

    assert forgetful.injected["human foreign_order"] >= 1
    assert summary.chaos is not None and summary.chaos.problems
    assert any("not in the core's store" in p for p in summary.problems()), summary.problems()
    assert not summary.ok


def _prefer(value: str, choice):
    def pick(options):
        return value if value in options else choice(options)
    return pick


def test_under_chaos_critical_alerts_are_counted_and_the_invariants_decide() -> None:
    base = dict(symbol="BTC/USD", ticks=1, elapsed_seconds=1.0, store_path="x", orders=(), positions=(),
                actions=(), orders_by_status={}, partially_filled_orders=0, total_fees=D(0), exchange_fees=D(0),
                core_pnl=D(0), exchange_pnl=D(0), open_exchange_orders=0, open_positions=0, alerts_by_type={},
                critical_alerts={"position_unprotected": 2})
    calm = SessionSummary(**base)
    assert calm.problems() == ["critical alerts: 2 position_unprotected"]
    held = SessionSummary(**base, chaos=ChaosOutcome(seed=1, lines=("chaos seed 1",)))
    assert held.ok
    broken = SessionSummary(**base, chaos=ChaosOutcome(seed=1, lines=(), problems=("invariant x: y",)))
    assert broken.problems() == ["invariant x: y"]


def test_the_cli_runs_the_demo_with_chaos_and_prints_what_it_did(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["paper", "--chaos", "3", "--quiet", "--store", str(tmp_path / "c.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "chaos seed 3: " in out and "  injected: " in out and "invariants: all held" in out
    assert out.rstrip().splitlines()[-2].startswith("OK: books agree to the cent, nothing left open, every invariant")


def test_chaos_rate_needs_chaos(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["paper", "--chaos-rate", "0.1", "--store", str(tmp_path / "c.sqlite")]) == 2
    assert "--chaos-rate: only with --chaos" in capsys.readouterr().err
    assert cli.main(["paper", "--chaos", "1", "--chaos-rate", "2", "--store", str(tmp_path / "c.sqlite")]) == 2
    assert not (tmp_path / "c.sqlite").exists()


def test_a_stream_cut_under_chaos_reconnects_within_a_replay() -> None:
    config = chaos_config(demo_config(Path("x.sqlite")))
    assert config.exchange.stream_reconnect_seconds == 0.2
    assert demo_config(Path("x.sqlite")).exchange.stream_reconnect_seconds == 5.0


class _Outage:
    """A hostility of one incident: at tick 1 the exchange has failed often enough to open the circuit."""

    def start(self, core, symbol: str) -> None:
        self.core = core

    def tick(self, index: int, price: D) -> None:
        if index == 1:
            for _ in range(self.core.config.safety.circuit_failure_threshold):
                self.core.circuit.record_failure(ServiceUnavailable("EService:Unavailable"))

    def calm(self) -> None:
        """Nothing to clear: the next call that succeeds closes the circuit."""

    def finish(self) -> ChaosOutcome:
        return ChaosOutcome(seed=0, lines=())


def test_an_entry_refused_by_the_open_circuit_is_an_outcome_and_the_replay_goes_on(tmp_path: Path) -> None:
    """Found by --chaos: CircuitOpenError escaped the replay (a traceback instead of a summary)."""
    config = chaos_config(demo_config(tmp_path / "c.sqlite"))
    ticks = [(1_700_000_000 + i, D(43000)) for i in range(30)]
    summary = session.run_paper_session(config, ticks, [(20, session.Open("late", size_usd=D(500)))],
                                        chaos=_Outage())
    (outcome,) = summary.actions
    assert outcome.outcome.startswith("refused: new entries are paused"), outcome
    assert summary.alerts_by_type.get("circuit_open") == 1
    assert summary.open_exchange_orders == 0 and summary.open_positions == 0
