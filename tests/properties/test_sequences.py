"""Random interleavings of exchange reports and bot calls never produce an illegal state.

One position per example: a long or a short, market or limit entry, on a spot or a
margin account, with or without partial fills. Then a random sequence of price ticks
(the paper exchange fills and triggers on them), polls (the core learns what happened),
cancel_order, modify_position, close_position and enable_trailing_stop. After EVERY
step: legal states, 0 <= filled <= size, position size >= 0, every bot call answered
clearly; after every poll (when the core has heard everything the exchange did) the
protective volume resting at the exchange never exceeds the position's size. At the
end, settling polls and the whole fault-matrix check (no duplicate, no lost fill, no
silent unprotected position, store == memory == exchange).
"""
from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from triplegain_fsm import TradeProposal

pytestmark = pytest.mark.integration

# deterministic (a failure reproduces everywhere), small (each example builds a whole core)
SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
PRICES = st.integers(395, 495).map(lambda n: D(n * 100))       # 39,500 .. 49,500 around the 43,000 start


def note(text: str) -> None:
    """A hypothesis event (shown by --hypothesis-show-statistics) when running under @given."""
    if currently_in_test_context():
        event(text)


@st.composite
def setups(draw: Any) -> dict[str, Any]:
    account = draw(st.sampled_from(["spot", "margin"]))
    side = "buy" if account == "spot" else draw(st.sampled_from(["buy", "sell"]))
    entry = draw(st.sampled_from([None, "42800", "43200"]))
    if entry is not None and side == "sell":
        entry = "43200" if entry == "42800" else "42800"
    return {
        "account": account, "side": side, "entry": entry,
        "leverage": 1 if account == "spot" else draw(st.integers(2, 5)),
        "liquidity": draw(st.sampled_from([None, "0.03"])),
    }


ACTIONS = st.one_of(
    st.tuples(st.just("tick"), PRICES),
    st.tuples(st.just("tick"), PRICES),
    st.tuples(st.just("poll"), st.sampled_from([0, 1, 5, 30, 70])),
    st.tuples(st.just("poll"), st.sampled_from([0, 1, 5, 30, 70])),
    st.tuples(st.just("cancel"), st.sampled_from(["entry", "stop_loss", "take_profit"])),
    st.tuples(st.just("modify"), st.tuples(st.one_of(st.none(), PRICES), st.one_of(st.none(), PRICES))),
    st.tuples(st.just("close"), st.none()),
    st.tuples(st.just("trail"), st.sampled_from([D("0.5"), D("1"), D("2.5"), D("5")])),
)


def proposal(setup: dict[str, Any]) -> TradeProposal:
    long = setup["side"] == "buy"
    return TradeProposal(symbol="BTC/USD", side=setup["side"], size_usd=D("4300"),
                         entry_price=D(setup["entry"]) if setup["entry"] else None,
                         stop_loss=D(41000) if long else D(45000), take_profit=D(46000) if long else D(40000),
                         leverage=setup["leverage"])


def step_problems(inv: Any, trial: Any, after_poll: bool) -> list[str]:
    problems = list(trial.bot.unclear)
    problems += inv.check_sizes_and_states(trial.core)
    if after_poll:  # between polls a leg may have filled at the exchange unseen: OCO is emulated by polling
        problems += inv.check_leg_volume(trial.core)
    return problems


# an exchange fault queued for the next call of one method (the fault matrix's kinds, fewer of them)
FAULT_KINDS: dict[str, Any] = {
    "timeout": lambda f, m: f.timeout_before_next(m),
    "lost": lambda f, m: f.lose_next_response(m),
    "502": lambda f, m: f.http_status_next(m, 502),
    "502 acted": lambda f, m: f.http_status_next(m, 502, acted=True),
    "busy": lambda f, m: f.fail_next(m, "EService:Busy"),
    "nonce": lambda f, m: f.fail_next(m, "EAPI:Invalid nonce"),
    "rate": lambda f, m: f.fail_next(m, "EOrder:Rate limit exceeded"),
    "malformed": lambda f, m: f.malformed_next(m),
    "malformed acted": lambda f, m: f.malformed_next(m, acted=True),
}
FAULTS = st.tuples(st.just("fault"), st.tuples(
    st.sampled_from(["AddOrder", "QueryOrders", "CancelOrder", "AmendOrder", "OpenOrders", "ClosedOrders",
                     "OpenPositions"]),
    st.sampled_from(sorted(FAULT_KINDS))))


def act(trial: Any, action: tuple[str, Any], position_id: str, entry_id: str) -> bool:
    """Run one step; True when it was a poll."""
    kind, arg = action
    core, bot = trial.core, trial.bot
    if kind == "tick":
        bot.call("price_tick", core.price_tick, "BTC/USD", arg)
    elif kind == "poll":
        trial.clock.advance(arg)
        bot.poll()
        return True
    elif kind == "cancel":
        position = core.positions.get_position(position_id)
        target = entry_id if arg == "entry" else getattr(position, f"{arg}_order_id")
        if target is not None:
            bot.cancel(target)
    elif kind == "modify":
        stop, target = arg
        bot.modify(position_id, stop_loss=stop, take_profit=target)
    elif kind == "close":
        bot.close(position_id)
    elif kind == "trail":
        bot.trail(position_id, distance_pct=arg, activation_pct=D("0.5"))
    elif kind == "fault":
        method, fault = arg
        FAULT_KINDS[fault](core.paper.faults, method)
    return False


def run_sequence(lab: Any, inv: Any, setup: dict[str, Any], actions: list[tuple[str, Any]],
                 legs_each_poll: bool = True) -> None:
    """Run the actions, checking after each; `legs_each_poll` off when faults may delay a cancel by a poll."""
    paper = {"liquidity_per_tick": setup["liquidity"]} if setup["liquidity"] else {}
    with lab.core(setup["account"], paper=paper) as trial:
        result = trial.bot.execute(proposal(setup))
        assert result.success, result
        problems: list[str] = []
        for number, action in enumerate(actions):
            after_poll = act(trial, action, result.position_id, result.order.id) and legs_each_poll
            problems += [f"after step {number} {action}: {p}" for p in step_problems(inv, trial, after_poll)]
            assert not problems, "\n".join(problems)
        trial.core.paper.faults.clear()   # the exchange recovers
        for _ in range(8):           # settle: deadlines, backoffs and reconciliation all come due
            trial.clock.advance(35)
            trial.bot.poll()
        final = trial.core.positions.get_position(result.position_id)
        note(f"{setup['account']} {setup['side']}: position ends {final.state}")
        note(f"{len(trial.core.paper.trades())} exchange trades")
        problems = inv.all_problems(trial.core, trial.alerts, trial.bot)
        problems += step_problems(inv, trial, after_poll=True)
        assert not problems, "\n".join(problems)


@SETTINGS
@given(setup=setups(), actions=st.lists(ACTIONS, min_size=3, max_size=16))
def test_random_sequences_keep_every_invariant(lab, inv, setup, actions):
    run_sequence(lab, inv, setup, actions)


@SETTINGS
@given(setup=setups(), actions=st.lists(st.one_of(ACTIONS, FAULTS), min_size=3, max_size=16))
def test_random_sequences_with_exchange_faults_keep_every_invariant(lab, inv, setup, actions):
    """The same, with exchange faults queued among the steps. A cancel whose answer was lost is only
    repeated on the next poll, so leg volumes are checked once the exchange has recovered, not per poll."""
    run_sequence(lab, inv, setup, actions, legs_each_poll=False)


# Counterexamples found by exploratory runs (2,500 examples, not derandomized), kept as plain
# tests so that they run every time while the property above keeps exploring.

def test_a_stop_moved_while_its_order_is_still_pending_goes_out_at_the_new_level(lab, inv):
    """A short's entry fill creates its stop-loss order (PENDING, trigger 45000) in the fill's own unit;
    the bot then tightens the stop to 40200 before the order is sent: the exchange must get 40200."""
    run_sequence(lab, inv, {"account": "margin", "side": "sell", "entry": None, "leverage": 2, "liquidity": None},
                 [("tick", D(40100)), ("cancel", "entry"), ("modify", (D(40200), None))])


def test_a_trailing_stop_ratcheted_while_its_order_is_still_pending_goes_out_at_the_new_level(lab, inv):
    """The same through trailing: the tick that activates the trail moves the stop to 43083.5 while the
    stop-loss order created with the fill is still PENDING at 41000."""
    run_sequence(lab, inv, {"account": "spot", "side": "buy", "entry": None, "leverage": 1, "liquidity": None},
                 [("cancel", "entry"), ("trail", D("0.5")), ("tick", D(43300))])
