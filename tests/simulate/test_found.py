"""Counterexamples the simulator found, as plain regression tests with their seeds."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from triplegain_fsm import TradeProposal
from triplegain_fsm.protection import trailing_target
from triplegain_fsm.testing import FakeClock, paper_core

pytestmark = pytest.mark.integration


# simulate seeds 19 and 37 (steps 200/150, crash rate 0.03, before the scenario fixed the trailing distance):
# a smaller distance on an activated trailing stop did not re-apply its watermark; the stop stayed looser than
# the trailing rule until the next new extreme (invariant trailing_follows). Fixed: enabling/changing the trail
# schedules the position's converge.
def test_a_tighter_trailing_distance_moves_the_stop_at_once(tmp_path) -> None:
    core = paper_core(tmp_path / "t.sqlite", "margin", clock=FakeClock())
    try:
        result = core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="buy", size_usd=D("4300"),
                                                         stop_loss=D(41000), take_profit=D(48000), leverage=2))
        assert result.success and result.position_id
        core.poll_once()
        pid = result.position_id
        core.positions.enable_trailing_stop_for_position(pid, distance_pct=2, activation_pct=0)
        core.price_tick("BTC/USD", D("45000"))          # new high: the stop trails to 44100
        core.poll_once()
        core.positions.enable_trailing_stop_for_position(pid, distance_pct=1)   # the rule now asks 44550
        core.poll_once()
        position = core.positions.get_position(pid)
        assert position is not None
        assert trailing_target(position) is None, f"stop {position.stop_loss}, watermark {position.trailing_watermark}"
    finally:
        core.close()


# simulate seed 502 (1,000 steps, crash rate 0.02; test_soak_long_seeds): a human's margin position was
# reported as drift once, then its size changed and the core's reconciliations said so, but the alert
# policy measured `alerts.repeat_after_seconds` on the wall clock (time.monotonic) instead of the core's:
# on a fake or replay clock, where hours pass in seconds, a condition alerted once was never alerted again
# (invariant foreign_position_reported). Fixed: ExecutionCore hands its clock to the AlertPolicy.
def test_alerts_repeat_after_the_interval_on_the_cores_clock(tmp_path) -> None:
    clock = FakeClock()
    core = paper_core(tmp_path / "a.sqlite", "margin", clock=clock, alerts={"repeat_after_seconds": 300})
    seen: list[str] = []
    core.bus.subscribe("risk_alerts", lambda message: seen.append(message.payload["message"]))
    try:
        for message in ("drift 0.5", "drift 0.5 again", "drift 0.3"):
            with core.guard.unit() as unit:
                unit.alert("exchange_drift", "critical", message, asset="ETHUSD", kind="margin")
            clock.advance(200)
        assert seen == ["drift 0.5", "drift 0.3"]      # the repeat at 200 s is held back, the one at 400 s is not
    finally:
        core.close()
