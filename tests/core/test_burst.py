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


def test_a_caller_returns_once_its_level_is_held_not_after_levels_asked_later(tmp_path) -> None:
    """Callers share amends, and none waits behind a level asked after its own: B's level is held
    once the second amend is answered; C's third amend is still held up inside the exchange, and B
    has returned already (before: B queued on the position's lock until C's amend was answered)."""
    import threading

    from triplegain_fsm.testing import paper_core

    core = paper_core(tmp_path / "share.sqlite", account="margin")
    opened = core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="buy", size_usd=D("4300"),
                                                     stop_loss=D(41000), take_profit=D(48000), leverage=2))
    core.poll_once()
    pid = opened.position_id
    inside = [threading.Event() for _ in range(3)]     # amend n is inside the exchange (acted, unanswered)
    answer = [threading.Event() for _ in range(3)]     # amend n may answer
    amends = iter(range(3))

    def hold_answer() -> None:
        n = next(amends)
        inside[n].set()
        assert answer[n].wait(10)
    core.paper.faults.during_next("AmendOrder", hold_answer, times=3)

    def move(level: int) -> threading.Thread:
        thread = threading.Thread(target=core.positions.modify_position, args=(pid,), kwargs={"stop_loss": D(level)})
        thread.start()
        return thread

    a = move(41100)
    assert inside[0].wait(10)
    b = move(41200)                      # asked while amend 1 (A's level) is on its way
    answer[0].set()
    assert inside[1].wait(10)            # amend 2 carries B's level
    c = move(41300)                      # asked while amend 2 is on its way
    answer[1].set()
    assert inside[2].wait(10)            # amend 3 carries C's level and is held inside the exchange
    b.join(5)
    assert not b.is_alive(), "B's level is at the exchange: B must not wait for C's amend"
    assert a.is_alive() and c.is_alive()
    answer[2].set()
    for thread in (a, c):
        thread.join(10)
        assert not thread.is_alive()
    position = core.positions.get_position(pid)
    stop = core.orders.get_order(position.stop_loss_order_id)
    assert position.stop_loss == D(41300) == D(core.paper.order(stop.external_id)["descr"]["price"])
    assert len([c for c in core.paper.calls.of("AmendOrder") if c.acted]) == 3
    core.close()
