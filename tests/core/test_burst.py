"""Issue 11 #1: a burst of stop moves shares amends (latest wins) instead of queueing one per call."""
from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal as D

import pytest

from triplegain_fsm import OrderRole, PositionStatus, TradeProposal
from triplegain_fsm.kraken import retry
from triplegain_fsm.testing import paced_paper_core, stop_move_burst

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def real_waits() -> Iterator[None]:
    """The client paces for real here: the burst meets Kraken's Starter counters as a bot would."""
    retry.set_testing(False)
    yield
    retry.set_testing(True)


def test_eight_threads_moving_one_stop_share_amends_and_end_at_the_last_level(tmp_path, real_waits):
    core = paced_paper_core(tmp_path / "burst.sqlite", tier="starter")
    result = core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="buy", size_usd=D("4300"),
                                                     stop_loss=D(41000), take_profit=D(48000), leverage=2))
    core.poll_once()
    burst = stop_move_burst(core, result.position_id, threads=8, calls=15, seed=1)
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    assert burst.errors == []
    assert burst.amends_per_leg.get("stop_loss", 0) < burst.calls / 2, "amends are shared, never one per call"
    stops = [o for o in core.orders.get_orders_for_position(position.id)
             if o.role is OrderRole.STOP_LOSS and o.external_id in core.paper.open_orders()]
    assert len(stops) == 1, "one stop at the exchange"
    held = core.paper.order(stops[0].external_id)
    assert D(held["descr"]["price"]) == position.stop_loss, "the exchange holds the last desired level"
    assert D(held["vol"]) - D(held["vol_exec"]) == position.size, "covering the position"
    assert position.status is PositionStatus.PROTECTED
    core.close()
