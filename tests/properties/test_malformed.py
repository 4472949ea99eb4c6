"""Malformed input never half-happens: a typed error (or a malformed_report alert), and nothing changed.

Two boundaries:

- the bot's: random junk in one TradeProposal field. Construction or execute_trade
  must refuse it with a TripleGainError, with no order sent and no row written; junk
  that happens to be a valid proposal must then trade cleanly (every later poll
  answers clearly and the books stay consistent).
- the exchange's: a random mutation that makes one QueryOrders entry invalid (a
  required field missing, a wrong type, a negative or non-finite number, an unknown
  status, more executed than ordered, an empty volume), delivered by the paper
  exchange's `corrupt_result_next`. The poll must report a malformed_report alert or
  a typed error, and change no order, position, fill or event.
"""
from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from triplegain_fsm import ExecutionResult, TradeProposal, TripleGainError

pytestmark = pytest.mark.integration

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def note(text: str) -> None:
    """A hypothesis event (shown by --hypothesis-show-statistics) when running under @given."""
    if currently_in_test_context():
        event(text)

VALID = dict(symbol="BTC/USD", side="buy", size_usd=D(4300), entry_price=None, stop_loss=D(41000),
             take_profit=D(48000), leverage=2, order_type=None)

JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.decimals(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.sampled_from([D("1E+30"), D("1E-30"), D("1E+500"), D("-1"), D(0), D("NaN"), D("sNaN"), D("-Infinity"),
                     "1e999", "", " ", "BTC/USD", "BTC/", "/", "buy", "sell", "limit", "stop-loss", object()]),
)


def table_counts(core: Any) -> dict[str, int]:
    """Rows per table, and what the core holds in memory (a refused call must leave neither behind)."""
    counts = {table: core.store.count(table) for table in ("orders", "positions", "fills", "events", "work")}
    counts["open positions in memory"] = len(core.positions.get_open_positions())
    counts["open orders in memory"] = len(core.orders.get_open_orders())
    return counts


def check_proposal(lab: Any, field: str, junk: Any) -> None:
    with lab.core("margin") as trial:
        core, bot = trial.core, trial.bot
        before = table_counts(core), core.paper.calls.count("AddOrder")
        try:
            proposal = TradeProposal(**{**VALID, field: junk})
        except TripleGainError:
            note("refused when the proposal was built")
            return
        except Exception as exc:  # the property: nothing but a TripleGainError
            pytest.fail(f"TradeProposal({field}={junk!r}) raised a bare {type(exc).__name__}: {exc}")
        result = bot.execute(proposal)
        assert not bot.unclear, bot.unclear
        if isinstance(result, TripleGainError):
            note("refused by execute_trade")
            assert (table_counts(core), core.paper.calls.count("AddOrder")) == before, "a refused proposal left a trace"
            return
        note("valid after all: traded")
        assert isinstance(result, ExecutionResult)
        for _ in range(3):
            trial.clock.advance(35)
            bot.poll()
        problems = lab.inv.all_problems(core, trial.alerts, bot, entries_expected=1 if result.success else None)
        assert not problems, f"{field}={junk!r} was accepted, then:\n" + "\n".join(problems)


@SETTINGS
@given(field=st.sampled_from(sorted(VALID) + ["id"]), junk=JUNK)
def test_junk_in_a_proposal_field_is_refused_and_changes_nothing(lab, field, junk):
    check_proposal(lab, field, junk)


@pytest.mark.parametrize("field, junk", [
    ("size_usd", D("1E+30")),      # a volume too long for Decimal's context to round
    ("take_profit", D("1E+30")),   # a target no tick size can round: accepted, then every poll fails
    ("id", 2**64),                 # a proposal id SQLite cannot store
], ids=["size_usd=1E+30", "take_profit=1E+30", "id=2**64"])
def test_junk_found_by_exploration_is_refused_and_changes_nothing(lab, field, junk):
    check_proposal(lab, field, junk)


# -- the exchange's payloads -------------------------------------------------------------------------------

NOT_A_NUMBER = st.sampled_from([None, [], {}, True, "abc", "", "NaN", "Infinity", "-1", "-0.5", "1e", 1.5, 7])
BAD_STATUS = st.sampled_from([None, 3, "", "OPEN", "filled", "cancelled", "partially_filled", ["open"]])


@st.composite
def corruptions(draw: Any) -> tuple[str, Any]:
    """(what, value): one change that makes an order entry invalid."""
    kind = draw(st.sampled_from(["drop", "number", "status", "overfill", "zero_volume", "below_filled", "trades",
                                 "entry"]))
    if kind == "drop":
        return kind, draw(st.sampled_from(["status", "vol", "vol_exec"]))
    if kind == "number":
        return kind, (draw(st.sampled_from(["vol", "vol_exec", "cost", "fee", "price"])), draw(NOT_A_NUMBER))
    if kind == "status":
        return kind, draw(BAD_STATUS)
    if kind == "trades":
        return kind, draw(st.sampled_from(["T1", 5, [1, 2], [None], {"a": "b"}]))
    if kind == "entry":
        return kind, draw(st.sampled_from(["junk", 5, [], None, True]))
    return kind, None


def corrupt(kind: str, value: Any, which: int, entry_txid: str) -> Any:
    """Spoil the entry of the QueryOrders answer numbered `which` (0 = the entry order's, then the legs')."""

    def mutate(payload: dict[str, Any]) -> None:
        result = payload["result"]
        txids = sorted(result, key=lambda t: (t != entry_txid, t))
        txid = txids[which % len(txids)]
        info = result[txid]
        if kind == "drop":
            info.pop(value, None)
        elif kind == "number":
            name, junk = value
            info[name] = junk
        elif kind == "status":
            info["status"] = value
        elif kind == "overfill":
            info["vol_exec"] = format(D(info["vol"]) * 2, "f")
        elif kind == "zero_volume":
            info["vol"] = "0.00000000"
        elif kind == "below_filled":   # less ordered (and executed) than the exchange already reported filled
            half = format(D(info["vol_exec"]) / 2, "f")
            info["vol"] = info["vol_exec"] = half
        elif kind == "trades":
            info["trades"] = value
        else:
            result[txid] = value

    return mutate


def order_rows(core: Any) -> dict[str, tuple[Any, ...]]:
    return {o.id: (o.state, o.size, o.filled_size, o.filled_cost, o.fee_amount, o.external_id)
            for o in core.store.load_orders()}


def check_report_corruption(lab: Any, corruption: tuple[str, Any], which: int, partly_filled: bool) -> None:
    paper = {"liquidity_per_tick": "0.04"} if partly_filled else {}
    with lab.core("margin", price="43100", paper=paper) as trial:
        core, bot = trial.core, trial.bot
        result = bot.execute(TradeProposal(**{**VALID, "entry_price": D(43000)}))
        assert result.success
        if partly_filled:
            core.price_tick("BTC/USD", D(42990))   # 0.04 of 0.1 fills: the poll places both legs for it
        bot.poll()
        bot.poll()
        memory = {o.id: (o.state, o.size, o.filled_size) for o in core.orders.get_open_orders()}
        positions = {p.id: (p.state, p.size) for p in core.positions.get_open_positions()}
        before = table_counts(core), order_rows(core), core.paper.calls.count("AddOrder")
        alerts_before = len(trial.alerts)

        core.paper.faults.corrupt_result_next("QueryOrders", corrupt(*corruption, which, result.order.external_id))
        report = bot.poll()
        note(f"{corruption[0]}: {'alert' if len(trial.alerts) > alerts_before else 'typed error'}")

        assert not bot.unclear, bot.unclear
        told = [a.payload["alert_type"] for a in trial.alerts[alerts_before:]]
        assert "malformed_report" in told or report.errors, f"{corruption} went unnoticed"
        assert (table_counts(core), order_rows(core), core.paper.calls.count("AddOrder")) == before, \
            f"{corruption} changed the books"
        assert {o.id: (o.state, o.size, o.filled_size) for o in core.orders.get_open_orders()} == memory
        assert {p.id: (p.state, p.size) for p in core.positions.get_open_positions()} == positions


@SETTINGS
@given(corruption=corruptions(), which=st.integers(0, 2), partly_filled=st.booleans())
def test_a_malformed_order_report_is_refused_and_changes_nothing(lab, corruption, which, partly_filled):
    check_report_corruption(lab, corruption, which, partly_filled)


@pytest.mark.parametrize("corruption, partly_filled", [
    (("zero_volume", None), False),    # an order of volume 0 is nonsense
    (("below_filled", None), True),    # less ordered than the exchange already reported filled
], ids=["vol=0", "vol<filled"])
def test_report_corruptions_found_by_exploration_are_refused(lab, corruption, partly_filled):
    check_report_corruption(lab, corruption, 0, partly_filled)
