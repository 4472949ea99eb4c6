"""8 threads hammer the same positions: ticks, polls, modifies, trailing, reads. Invariants checked after.

No sleeps as synchronisation: every thread runs a bounded number of iterations
started together by a barrier; the check runs once they have all joined.
"""
from __future__ import annotations

import random
import threading
from decimal import Decimal as D

import pytest

from triplegain_fsm import OrderRole, PositionStatus, TradeProposal, TripleGainError
from triplegain_fsm.machines.order_machine import ORDER_KIND
from triplegain_fsm.machines.position_machine import POSITION_KIND

pytestmark = pytest.mark.integration

ITERATIONS = 150


@pytest.mark.parametrize("stream", ["poll", "websocket"])
def test_eight_threads_keep_every_invariant(make_core, stream):
    """With the stream on, its thread applies pushed fills and cancels while all of this runs."""
    core = make_core(account="margin", limits={"max_open_positions": 5, "max_positions_per_symbol": 5},
                     exchange={"stream": stream, "stream_audit_seconds": 3600},
                     orders={"poll_interval_seconds": 3600})
    if stream == "websocket":
        core.start()   # the stream thread (and an idle poller): pushed reports race everything below
        assert core.stream is not None and core.stream.wait_connected(10)
    positions = []
    for _ in range(3):
        result = core.orders.execute_trade(TradeProposal(
            symbol="BTC/USD", side="buy", size_usd=D("4300"), stop_loss=D(41000), take_profit=D(48000), leverage=2))
        positions.append(result.position_id)
    core.poll_once()
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def run(work):
        def body(seed):
            rng = random.Random(seed)
            barrier.wait()
            for _ in range(ITERATIONS):
                try:
                    work(rng)
                except TripleGainError:
                    pass  # a legal refusal (position closed meanwhile, level on the wrong side after a tick)
                except BaseException as exc:  # anything else is a bug the test must show
                    errors.append(exc)
        return body

    def tick(rng):
        core.price_tick("BTC/USD", D(rng.randrange(43000, 47000)))

    def poll(rng):
        core.poll_once()

    def modify(rng):
        core.positions.modify_position(rng.choice(positions), stop_loss=D(rng.randrange(41000, 42000)))

    def trail(rng):
        core.positions.enable_trailing_stop_for_position(rng.choice(positions), distance_pct=D(rng.randrange(4, 8)))

    def read(rng):
        for order in core.orders.get_open_orders():
            assert core.orders.get_order(order.id) is not None  # F15: never invisible between two lookups
        core.positions.get_open_positions()

    workers = [tick, tick, poll, poll, modify, modify, trail, read]
    threads = [threading.Thread(target=run(w), args=(i,)) for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    core.stop()       # the stream (if any) goes quiet before the books are compared
    core.poll_once()  # settle what the last ticks caused
    core.poll_once()
    exchange_open = core.paper.open_orders()
    for pid in positions:
        position = core.positions.get_position(pid)
        assert position.state in POSITION_KIND.states
        stored = core.store.load_positions("id = ?", (pid,))[0]
        assert (stored.state, stored.size, stored.stop_loss) == (position.state, position.size, position.stop_loss)
        history = core.store.events(pid)
        assert history and history[-1]["to_state"] == position.state  # every transition persisted
        for order in core.orders.get_orders_for_position(pid):
            assert order.state in ORDER_KIND.states
            assert sum(D(f["qty"]) for f in core.store.fills(order.id)) == order.filled_size  # fills once
            traded = sum(D(t["vol"]) for t in core.paper.trades().values() if t["ordertxid"] == order.external_id)
            assert traded == order.filled_size
            if order.role in (OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT) and order.external_id in exchange_open:
                live = exchange_open[order.external_id]
                assert D(live["vol"]) - D(live["vol_exec"]) <= position.size  # protection never exceeds size
        if position.state == PositionStatus.PROTECTED.value:
            sl = core.orders.get_order(position.stop_loss_order_id)
            at_exchange = D(exchange_open[sl.external_id]["descr"]["price"])
            assert at_exchange == position.stop_loss == sl.stop_price  # no lost update
