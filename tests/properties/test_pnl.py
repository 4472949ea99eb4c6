"""P&L identities, checked against the paper exchange's own trades (long and short, fees, leverage).

For a closed position, whatever the path (market or limit entry, partial fills,
a manual close, the stop-loss or the take-profit):

    realized_pnl == sum(sell cost) - sum(buy cost) - sum(fees)
    total_fees   == sum(fees)                 over the exchange's trades of its orders
    calculate_pnl(p)[0] == realized_pnl       at any price: nothing is left open
    calculate_pnl(p)[1] == realized / (entry cost / leverage) * 100

The exchange side is read from `core.paper.trades()`, never from the core.
"""
from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from triplegain_fsm import PositionStatus, TradeProposal

pytestmark = pytest.mark.integration

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def note(text: str) -> None:
    """A hypothesis event (shown by --hypothesis-show-statistics) when running under @given."""
    if currently_in_test_context():
        event(text)


@st.composite
def trades(draw: Any) -> dict[str, Any]:
    account = draw(st.sampled_from(["spot", "margin", "margin"]))
    side = "buy" if account == "spot" else draw(st.sampled_from(["buy", "sell"]))
    return {
        "account": account, "side": side,
        "leverage": 1 if account == "spot" else draw(st.integers(2, 5)),
        "size_usd": D(draw(st.integers(5, 200))) * 50,                      # 250 .. 10,000 USD
        "limit_entry": draw(st.booleans()),
        "liquidity": draw(st.sampled_from([None, "0.01", "0.05"])),
        "exit": draw(st.sampled_from(["close", "stop_loss", "take_profit"])),
        "exit_price": D(draw(st.integers(415, 475)) * 100),                  # between the stop and the target
        "mark": D(draw(st.integers(1, 100_000))),                           # any price for calculate_pnl
    }


def exchange_cash(core: Any, txids: set[str]) -> tuple[D, D]:
    cash, fees = D(0), D(0)
    for trade in core.paper.trades().values():
        if trade["ordertxid"] in txids:
            cash += D(trade["cost"]) if trade["type"] == "sell" else -D(trade["cost"])
            fees += D(trade["fee"])
    return cash, fees


@SETTINGS
@given(t=trades())
def test_closed_position_pnl_is_the_exchanges_cash_flow_net_of_fees(lab, t):
    long = t["side"] == "buy"
    stop, target = (D(41000), D(48000)) if long else (D(45000), D(38000))
    paper = {"liquidity_per_tick": t["liquidity"]} if t["liquidity"] else {}
    with lab.core(t["account"], paper=paper) as trial:
        core, bot = trial.core, trial.bot
        result = bot.execute(TradeProposal(
            symbol="BTC/USD", side=t["side"], size_usd=t["size_usd"], stop_loss=stop, take_profit=target,
            leverage=t["leverage"], entry_price=D(43000) if t["limit_entry"] else None))
        assert result.success, result
        position = core.positions.get_position(result.position_id)
        fill_at = D(42990) if long else D(43010)      # marketable for the limit entry
        for _ in range(12):                            # partial fills: liquidity is per tick
            if position.state == PositionStatus.PROTECTED.value and result.order.is_final:
                break
            core.price_tick("BTC/USD", fill_at)
            bot.poll()
        assert result.order.is_final and position.state == PositionStatus.PROTECTED.value, position.state
        if t["exit"] == "close":
            core.price_tick("BTC/USD", t["exit_price"])
            bot.close(position.id)
        else:
            level = stop if t["exit"] == "stop_loss" else target
            beyond = D(100) if (t["exit"] == "take_profit") == long else D(-100)
            core.price_tick("BTC/USD", level + beyond)
        for _ in range(12):
            if position.state == PositionStatus.CLOSED.value:
                break
            trial.clock.advance(5)
            core.price_tick("BTC/USD", core.paper.last_price("BTC/USD"))   # liquidity for a partly filled exit
            bot.poll()
        assert position.state == PositionStatus.CLOSED.value, (position.state, bot.unclear, bot.refused)
        note(f"{t['side']} x{t['leverage']} exits by {t['exit']}")

        txids = {o.external_id for o in core.orders.get_orders_for_position(position.id) if o.external_id}
        cash, fees = exchange_cash(core, txids)
        assert not bot.unclear
        assert fees > 0
        assert position.total_fees == fees
        pnl, pct = position.calculate_pnl(t["mark"])
        assert pnl == position.realized_pnl
        entry_cost = sum((D(tr["cost"]) for tr in core.paper.trades().values()
                          if tr["ordertxid"] == result.order.external_id), D(0))
        assert pct == position.realized_pnl / (entry_cost / t["leverage"]) * 100
        assert core.store.load_positions("id = ?", (position.id,))[0].realized_pnl == position.realized_pnl
        # exact: the books must be the exchange's figures, not figures re-derived through a rounded price
        assert position.realized_pnl == cash - fees, (
            f"realized {position.realized_pnl} != exchange cash flow {cash} - fees {fees} = {cash - fees} "
            f"(off by {position.realized_pnl - (cash - fees)})")
