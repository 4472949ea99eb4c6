"""The position table and its arithmetic: P&L identities hold for long and short, fees and leverage."""
from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triplegain_fsm.errors import IllegalTransition
from triplegain_fsm.machines.position_machine import POSITION_KIND
from triplegain_fsm.models import LegLocation, OrderSide, Position, PositionStatus

pytestmark = pytest.mark.unit


def new_position(side: str = "buy", leverage: int = 1, sl: str | None = "90", tp: str | None = "120") -> Position:
    position = Position(symbol="BTC/USD", side=OrderSide(side), leverage=leverage,
                        stop_loss=D(sl) if sl else None, take_profit=D(tp) if tp else None)
    POSITION_KIND.attach(position)
    return position


def entry(p: Position, qty: str, price: str, fee: str = "0") -> None:
    POSITION_KIND.fire(p, "entry_filled", qty=D(qty), price=D(price), fee=D(fee))


def exit_(p: Position, qty: str, price: str, fee: str = "0") -> None:
    POSITION_KIND.fire(p, "exit_filled", qty=D(qty), price=D(price), fee=D(fee))


def test_long_round_trip_pnl_net_of_fees():
    p = new_position()
    entry(p, "1", "100", "0.26")
    assert p.status is PositionStatus.UNPROTECTED
    p.stop_loss_covered = p.take_profit_covered = D(1)
    p.stop_loss_location = LegLocation.EXCHANGE
    POSITION_KIND.fire(p, "protected")
    assert p.calculate_pnl(D("110")) == (D("9.74"), D("9.74"))
    exit_(p, "1", "120", "0.31")
    assert p.status is PositionStatus.CLOSING  # the sibling leg must go first
    POSITION_KIND.fire(p, "settle")
    assert p.status is PositionStatus.CLOSED
    assert p.realized_pnl == D("20") - D("0.57")


def test_short_with_leverage_pnl_percent_is_on_margin():
    p = new_position("sell", leverage=4, sl="110", tp="80")
    entry(p, "2", "100", "0.5")
    pnl, pct = p.calculate_pnl(D("90"))
    assert pnl == D("20") - D("0.5")
    assert pct == pnl / (D("200") / 4) * 100


def test_protected_needs_both_legs_to_cover_the_size():
    p = new_position()
    entry(p, "1", "100")
    p.stop_loss_covered = D(1)
    p.stop_loss_location = LegLocation.EXCHANGE
    with pytest.raises(IllegalTransition, match="guard refused"):
        POSITION_KIND.fire(p, "protected")
    assert p.status is PositionStatus.UNPROTECTED
    p.take_profit_covered = D("1")
    p.stop_loss_location = LegLocation.LOCAL
    with pytest.raises(IllegalTransition, match="guard refused"):  # a stop the exchange does not hold
        POSITION_KIND.fire(p, "protected")
    p.stop_loss_location = LegLocation.EXCHANGE
    POSITION_KIND.fire(p, "protected")
    assert p.unprotected_since is None
    entry(p, "0.5", "102")
    assert p.status is PositionStatus.UNPROTECTED, "a later fill makes the legs short until they grow"


def test_both_legs_filled_leaves_excess_until_flattened():
    p = new_position()
    entry(p, "1", "100")
    exit_(p, "1", "90")      # stop-loss
    exit_(p, "1", "120")     # take-profit filled before its cancel landed
    assert p.status is PositionStatus.CLOSING and p.size == 0 and p.excess_size == D(1)
    with pytest.raises(IllegalTransition):
        POSITION_KIND.fire(p, "settle")
    POSITION_KIND.fire(p, "flatten_filled", qty=D(1), price=D("121"), fee=D(0))
    POSITION_KIND.fire(p, "settle")
    assert p.realized_pnl == D("-10") + D("120") - D("121")


def test_entry_with_nothing_filled_is_abandoned():
    p = new_position()
    POSITION_KIND.fire(p, "abandon", reason="entry rejected")
    assert p.status is PositionStatus.CLOSED
    q = new_position()
    entry(q, "1", "100")
    with pytest.raises(IllegalTransition):
        POSITION_KIND.fire(q, "abandon")


_FILLS = st.lists(st.tuples(st.sampled_from(["entry", "exit"]),
                            st.decimals(min_value=D("0.001"), max_value=3, places=3),
                            st.decimals(min_value=1, max_value=1000, places=2),
                            st.decimals(min_value=0, max_value=2, places=2)), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["buy", "sell"]), st.integers(1, 5), _FILLS, st.decimals(min_value=1, max_value=1000,
                                                                                 places=2))
def test_pnl_identity_holds_for_any_fill_sequence(side, leverage, fills, mark):
    """P&L == cash of every fill + open quantity at the mark − fees, whatever the order of fills."""
    p = new_position(side, leverage)
    direction = 1 if side == "buy" else -1
    cash, net, fees = D(0), D(0), D(0)
    for kind, qty, price, fee in fills:
        try:
            (entry if kind == "entry" else exit_)(p, str(qty), str(price), str(fee))
        except IllegalTransition:
            continue
        sign = direction if kind == "entry" else -direction
        cash -= sign * qty * price
        net += sign * qty
        fees += fee
        assert p.size >= 0 and p.excess_size >= 0
        assert p.size - p.excess_size == direction * net
    if p.entry_size:
        assert p.calculate_pnl(mark)[0] == cash + net * mark - fees
