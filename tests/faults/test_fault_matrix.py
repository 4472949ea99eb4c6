"""The fault matrix: every exchange call in an order's and a position's life x every way that call can fail.

Each cell builds a core (margin; and spot for all but OpenPositions) on the paper exchange, drives a realistic scenario
through the public API (execute_trade, poll_once, cancel_order, close_position,
modify_position, sync_with_exchange) with ONE fault queued for ONE call, then runs
settling polls on a fake clock moved past every deadline and backoff
(unknown-outcome look-ups, protection retries, the auth halt, reconciliation), and
checks what must survive any fault (tests/faults/invariants.py):

- no duplicate order at the exchange, and exactly one entry order reached it;
- no lost fill: each core order filled what the exchange traded for its txid;
- no position holding size that is not PROTECTED unless an alert said so;
- store == memory, and both agree with the exchange about what is still working
  (open or not, size, trigger price; net margin exposure);
- a clear answer at every public call: a result, an ExecutionResult carrying its
  error, or a TripleGainError -- never a bare KeyError/TypeError from inside.

Faults come from the paper exchange (`core.paper.faults`): not acted = the exchange
never saw the request; acted = it did the work and the answer was then lost or
spoiled, the case that must not turn into a second order. A third kind is no fault
of the call at all: the world moves while its true answer travels (a resting order
fills, a new high reaches the core from another thread) -- the races where the
core's view and the exchange's stop describing the same moment.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal as D
from typing import Any

import attrs
import pytest

from triplegain_fsm import ExecutionResult, OrderRole, OrderStatus, TradeProposal, TripleGainError
from triplegain_fsm.core import ExecutionCore
from triplegain_fsm.paper import Faults
from triplegain_fsm.simulate.faults import REST_FAULTS
from triplegain_fsm.testing import FakeClock

pytestmark = pytest.mark.integration

SETTLE_POLLS = 8          # cycles after the scenario ...
SETTLE_STEP = 35.0        # ... each this many seconds later: 280 s covers every deadline and backoff


# -- faults ---------------------------------------------------------------------------------------------------

# fault name -> queue(faults, method, times): the simulator's table, so both try the very same faults
FAULTS: dict[str, Callable[[Faults, str, int], Any]] = REST_FAULTS


def _fill_during(run: Run) -> Callable[[], Any]:
    """The market trades down 1,000 (a resting limit buy fills, a stop does not) while the answer travels."""
    return lambda: run.core.paper.set_price("BTC/USD", D("41950"))


def _new_high_during(run: Run) -> Callable[[], Any]:
    """Trailing stops on, and a new high reaches the core from the price feed's thread meanwhile."""

    def action() -> None:
        for position in run.core.positions.get_open_positions():
            run.core.positions.enable_trailing_stop_for_position(position.id, distance_pct=2, activation_pct=0)
        tick = threading.Thread(target=run.core.price_tick, args=("BTC/USD", D("45000")))
        tick.start()
        run.threads.append(tick)

    return action


# fault name -> make the action that runs while the answer to the faulted call travels
WORLD: dict[str, Callable[[Run], Callable[[], Any]]] = {
    "fill_during_call": _fill_during,
    "new_high_during_call": _new_high_during,
}


def _queued(fault: Callable[[Faults, str, int], Any]) -> Callable[[Run, str, int], Any]:
    return lambda run, method, times: fault(run.core.paper.faults, method, times)


def _during(make: Callable[[Run], Callable[[], Any]]) -> Callable[[Run, str, int], Any]:
    return lambda run, method, times: run.core.paper.faults.during_next(method, make(run), times=times)


ALL_FAULTS: dict[str, Callable[[Run, str, int], Any]] = {
    **{name: _queued(fault) for name, fault in FAULTS.items()},
    **{name: _during(make) for name, make in WORLD.items()},
}

# How long the fault lasts: the next call only (the matrix the brief asks for), or an outage
# of that method lasting through every retry of one call (the client tries a call at most 4
# times) until the end of the first settling poll -- the paths where retries run out.
DURATIONS = {"once": 1, "outage": 4}


# -- scenarios -------------------------------------------------------------------------------------------------

def long(entry: str | None = None, leverage: int = 2) -> TradeProposal:
    return TradeProposal(symbol="BTC/USD", side="buy", size_usd=D("4300"), stop_loss=D(41000), take_profit=D(48000),
                         leverage=leverage, entry_price=D(entry) if entry else None)


@attrs.define
class Run:
    core: ExecutionCore
    clock: FakeClock
    bot: Any
    method: str
    fault: Callable[[Run, str, int], Any]
    times: int = 1
    leverage: int = 2          # 1 on a spot account
    injected: int = 0
    threads: list[threading.Thread] = attrs.field(factory=list)   # ticks started by a fault, joined by settle

    def long(self, entry: str | None = None) -> TradeProposal:
        return long(entry, self.leverage)

    def inject(self) -> None:
        """Queue this cell's fault for the next call(s) of this cell's Kraken method."""
        self.fault(self, self.method, self.times)
        self.injected += 1

    def settle(self) -> None:
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive(), "a tick never finished: deadlock"
        for _ in range(SETTLE_POLLS):
            self.clock.advance(SETTLE_STEP)
            self.bot.poll()
            self.core.paper.faults.clear()   # an outage ends with the first settling poll

    def protected_long(self, **kwargs: Any) -> str:
        result = self.bot.execute(self.long(**kwargs))
        assert isinstance(result, ExecutionResult) and result.success, f"setup failed: {result}"
        self.bot.poll()
        return result.position_id


def _retry_if_refused(run: Run, result: Any) -> None:
    """A bot re-sends a trade the core settled as certainly not placed (never one still unknown)."""
    if isinstance(result, TripleGainError):
        refused = True
    else:
        refused = run.core.orders.get_order(result.order.id).status is OrderStatus.REJECTED
    if refused:
        run.bot.execute(run.long())
        run.settle()


def entry_add_order(run: Run) -> None:
    run.inject()
    result = run.bot.execute(run.long())
    run.settle()
    _retry_if_refused(run, result)


def stop_loss_add_order(run: Run) -> None:
    run.bot.execute(run.long())
    run.inject()          # the next AddOrder is the stop-loss, sent on the poll that sees the entry fill
    run.settle()


def take_profit_add_order(run: Run) -> None:
    def after_stop_is_open(message: Any) -> None:
        p = message.payload
        if (not run.injected and p.get("event") == "order_transition" and p.get("role") == "stop_loss"
                and p.get("to_state") == "OPEN"):
            run.inject()  # published before converge moves on to the take-profit

    run.core.bus.subscribe("execution", after_stop_is_open)
    run.bot.execute(run.long())
    run.settle()


def close_add_order(run: Run) -> None:
    position_id = run.protected_long()
    run.inject()          # close_position cancels both legs, then sends the market close
    run.bot.close(position_id)
    run.settle()


def query_entry_fill(run: Run) -> None:
    run.bot.execute(run.long())
    run.inject()
    run.settle()


def query_leg_fill(run: Run) -> None:
    run.protected_long()
    run.inject()
    run.core.price_tick("BTC/USD", D("48100"))   # the take-profit fills at the exchange; the stop must go
    run.settle()


def cancel_entry(run: Run) -> None:
    result = run.bot.execute(run.long(entry="42000"))
    run.inject()
    run.bot.cancel(result.order.id)   # asked once: settling a cancel in flight is the poller's job
    run.settle()


def close_cancels_legs(run: Run) -> None:
    position_id = run.protected_long()
    run.inject()
    run.bot.close(position_id)
    run.settle()


def modify_moves_stop(run: Run) -> None:
    position_id = run.protected_long()
    run.inject()
    run.bot.modify(position_id, stop_loss=D("42000"))
    run.settle()


def partial_fills_resize_legs(run: Run) -> None:
    result = run.bot.execute(run.long(entry="43000"))
    assert result.success
    run.core.price_tick("BTC/USD", D("42990"))
    run.bot.poll()        # 0.04 filled: both legs placed for 0.04
    run.inject()
    for _ in range(2):    # 0.08, then 0.1: both legs amended in place each time
        run.core.price_tick("BTC/USD", D("42990"))
        run.bot.poll()
    run.settle()


def lookup_after_unknown_submit(entry: str | None) -> Callable[[Run], None]:
    def scenario(run: Run) -> None:
        run.core.paper.faults.http_status_next("AddOrder", 502, acted=True)   # placed, answer lost
        run.inject()      # ... and the look-up by cl_ord_id meets the fault
        result = run.bot.execute(run.long(entry=entry))
        run.settle()
        _retry_if_refused(run, result)

    return scenario


def sync_resting_entry(run: Run) -> None:
    """Reconciliation while a limit entry rests: the market may fill it inside one of its round trips."""
    run.bot.execute(run.long(entry="42000"))
    run.bot.poll()
    run.inject()
    run.bot.sync()
    run.settle()


def sync_positions(run: Run) -> None:
    run.protected_long()
    run.inject()
    run.bot.sync()
    run.settle()


@attrs.frozen
class Call:
    method: str
    scenario: Callable[[Run], None]
    core: dict[str, Any] = attrs.field(factory=dict)


CALLS: dict[str, Call] = {
    "AddOrder:entry": Call("AddOrder", entry_add_order),
    "AddOrder:stop_loss": Call("AddOrder", stop_loss_add_order),
    # spot: the take-profit goes to the exchange only when free coins cover it beside the stop
    "AddOrder:take_profit": Call("AddOrder", take_profit_add_order,
                                 dict(paper={"balances": {"ZUSD": "1000000", "XXBT": "1"}})),
    "AddOrder:close": Call("AddOrder", close_add_order),
    "QueryOrders:entry_fill": Call("QueryOrders", query_entry_fill),
    "QueryOrders:leg_fill": Call("QueryOrders", query_leg_fill),
    "CancelOrder:cancel_order": Call("CancelOrder", cancel_entry),
    "CancelOrder:close_position": Call("CancelOrder", close_cancels_legs),
    "AmendOrder:modify_position": Call("AmendOrder", modify_moves_stop),
    "AmendOrder:leg_resize": Call("AmendOrder", partial_fills_resize_legs,
                                  dict(price="43100", paper={"liquidity_per_tick": "0.04"})),
    "OpenOrders:lookup": Call("OpenOrders", lookup_after_unknown_submit(entry="42000")),
    "ClosedOrders:lookup": Call("ClosedOrders", lookup_after_unknown_submit(entry=None)),
    "OpenPositions:sync": Call("OpenPositions", sync_positions),
    "OpenOrders:sync_resting_entry": Call("OpenOrders", sync_resting_entry),
}

# The margin account is the full matrix. A spot account (the default: the take-profit is kept
# LOCAL when Kraken will not hold a second sell, see positions.py) runs every call but
# OpenPositions (spot has no margin positions: reconciliation reads Balance), faults once.
MARGIN = [pytest.param("margin", call, fault, duration, id=f"margin|{call}|{fault}|{duration}")
          for duration in DURATIONS for call in CALLS for fault in ALL_FAULTS]
SPOT = [pytest.param("spot", call, fault, "once", id=f"spot|{call}|{fault}|once")
        for call in CALLS if CALLS[call].method != "OpenPositions" for fault in ALL_FAULTS]
CELLS = MARGIN + SPOT


@pytest.mark.parametrize("account, call, fault, duration", CELLS)
def test_cell(account, call, fault, duration, make_core, clock, collect, inv):
    spec = CALLS[call]
    core = make_core(account, **spec.core)
    _, alerts = collect(core)
    bot = inv.Bot(core)
    run = Run(core, clock, bot, spec.method, ALL_FAULTS[fault], DURATIONS[duration],
              leverage=2 if account == "margin" else 1)
    spec.scenario(run)
    problems = inv.all_problems(core, alerts, bot)
    if run.injected != 1 or not any(c.fault for c in core.paper.calls.of(spec.method)):
        problems.append(f"no {spec.method} call met the fault: this cell tested nothing")
    assert not problems, "\n".join(problems)


def test_matrix_covers_every_call_and_fault():
    methods = {c.method for c in CALLS.values()}
    assert methods == {"AddOrder", "QueryOrders", "CancelOrder", "AmendOrder", "OpenOrders", "ClosedOrders",
                       "OpenPositions"}
    assert len(MARGIN) == len(CALLS) * len(ALL_FAULTS) * len(DURATIONS) == 14 * 19 * 2
    assert len(SPOT) == 13 * 19
    assert {r.value for r in OrderRole} >= {"entry", "stop_loss", "take_profit", "close"}
