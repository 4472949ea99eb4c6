"""The other port that can fail: a SQLite write refused (disk full, I/O error) in the middle of a unit.

unit.py promises that when a unit raises "nothing is written and the touched models
are restored in memory, so the store, the machines and the bus never disagree". The
exchange meanwhile did what it did. Once the disk is back, the next polls must catch
up: the fill the failed unit could not record is applied once, the position gets
protected, and memory holds nothing the store does not (no phantom position using up a
limit, no order the poller stopped following).
"""
from __future__ import annotations

import sqlite3
from decimal import Decimal as D
from typing import Any

import pytest

from triplegain_fsm import OrderStatus, PositionStatus, TradeProposal

pytestmark = pytest.mark.integration


def long() -> TradeProposal:
    return TradeProposal(symbol="BTC/USD", side="buy", size_usd=D(4300), stop_loss=D(41000), take_profit=D(48000),
                         leverage=2)


class DiskFull:
    """Replace one Store write method so that its next call fails the way SQLite does."""

    def __init__(self, store: Any, method: str) -> None:
        self.store, self.method = store, method
        self.real = getattr(store, method)
        self.failed = 0

    def __enter__(self) -> DiskFull:
        def fail(*args: Any, **kwargs: Any) -> Any:
            self.failed += 1
            raise sqlite3.OperationalError("database or disk is full")

        setattr(self.store, self.method, fail)
        return self

    def __exit__(self, *exc: Any) -> None:
        setattr(self.store, self.method, self.real)


def settle(core, clock, bot, polls: int = 6) -> None:
    for _ in range(polls):
        clock.advance(35)
        bot.poll()


def test_a_fill_whose_record_failed_is_caught_up_once_the_disk_is_back(make_core, clock, collect, inv):
    core = make_core("margin")
    _, alerts = collect(core)
    bot = inv.Bot(core)
    result = bot.execute(long())                       # placed and filled at the exchange
    with DiskFull(core.store, "record_fill") as disk:
        bot.poll()                                     # the poll that applies the fill cannot write it
    assert disk.failed == 1
    settle(core, clock, bot)
    order = core.orders.get_order(result.order.id)
    position = core.positions.get_position(result.position_id)
    assert (order.status, order.filled_size) == (OrderStatus.FILLED, D("0.1")), "the fill was never caught up"
    assert position.status is PositionStatus.PROTECTED
    problems = inv.all_problems(core, alerts)
    assert not problems, "\n".join(problems)


def test_execute_trade_whose_rows_cannot_be_written_leaves_nothing_behind(make_core, clock, collect, inv):
    core = make_core("margin", limits={"max_open_positions": 1, "max_positions_per_symbol": 1})
    _, alerts = collect(core)
    with DiskFull(core.store, "save_position"), pytest.raises(sqlite3.OperationalError):
        core.orders.execute_trade(long())
    assert core.paper.calls.count("AddOrder") == 0
    assert core.store.count("orders") == core.store.count("positions") == 0
    assert core.positions.get_open_positions() == [], "a position that was never stored is held in memory"
    bot = inv.Bot(core)
    result = bot.execute(long())                        # the disk is back: the one allowed position opens
    assert getattr(result, "success", False), result
    settle(core, clock, bot)
    problems = inv.all_problems(core, alerts, bot)
    assert not problems, "\n".join(problems)
