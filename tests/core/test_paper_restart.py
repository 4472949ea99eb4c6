"""A paper bot restarted like a live one: the paper account outlives the process, and a store that
does not belong to the paper account it meets refuses to start (issue 13, item 2)."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from triplegain_fsm import ExecutionCore, TradeProposal
from triplegain_fsm.config import Config
from triplegain_fsm.errors import ConfigError
from triplegain_fsm.paper.feeds import flash_crash_series
from triplegain_fsm.paper_account import META_KEY
from triplegain_fsm.testing import FakeClock, paper_config

pytestmark = pytest.mark.integration

TROUBLE = {"exchange_drift", "orphan_order", "order_outcome_unknown", "contingent_order_failure",
           "position_unprotected", "oco_both_filled"}
CONFIG = """\
storage:
  path: bot.sqlite
orders:
  poll_interval_seconds: 0.05
paper:
  balances: {ZUSD: 100000}
"""


def readme_session(config_path: Path) -> tuple[ExecutionCore, list[Any], str]:
    """The README's example, as written: start, trade, poll, close, stop."""
    alerts: list[Any] = []
    core = ExecutionCore.from_config(config_path)
    core.bus.subscribe("risk_alerts", alerts.append)
    core.start()
    core.positions.on_price_update("BTC/USD", Decimal("43120.5"))
    result = core.orders.execute_trade(TradeProposal(
        symbol="BTC/USD", side="buy", size_usd=Decimal("500"), entry_price=None,
        stop_loss=Decimal("41000"), take_profit=Decimal("48000"), leverage=1))
    assert result.success, result.error_message
    core.orders.poll_once()
    position = core.positions.get_position(result.position_id)
    assert position is not None
    core.positions.close_position(position.id, reason="done")
    core.stop()
    return core, alerts, position.id


def test_the_readme_example_runs_twice_in_a_row_without_drift_or_stuck_positions(tmp_path: Path) -> None:
    config_path = tmp_path / "execution.yaml"
    config_path.write_text(CONFIG)
    first, first_alerts, first_position = readme_session(config_path)
    first.close()
    assert (tmp_path / "bot.paper.sqlite").is_file()

    second, alerts, second_position = readme_session(config_path)
    second.orders.poll_once()
    second.sync_with_exchange()
    trouble = [a.payload for a in first_alerts + alerts if a.payload["alert_type"] in TROUBLE]
    assert trouble == []
    for pid in (first_position, second_position):
        stored = second.store.load_positions("id = ?", (pid,))[0]
        assert stored.state == "CLOSED", (pid, stored.state)
    assert not second.store.load_positions("state != 'CLOSED'")
    assert second.paper is not None and second.paper.open_orders() == {}
    assert len(second.paper.trades()) == 4                            # both sessions' entries and exits
    assert second.store.get_meta(META_KEY) == second.paper.account_id is not None
    second.close()
    second.paper.close()


# --------------------------------------------------------------------------- ten restarts = one run

SERIES = flash_crash_series(ticks=420, crash_at=260, recovery_ticks=60, seed=5)


def build(store: Path, clock: FakeClock) -> ExecutionCore:
    config = paper_config(store, safety={"reconcile_interval_seconds": 30.0},
                          limits={"max_positions_per_symbol": 5})
    core = ExecutionCore.from_settings(config, clock=clock)
    core.sync_with_exchange()            # what start() does first, without the background poller
    return core


def proposal(price: Decimal, usd: str, *, limit: Decimal | None = None, stop: str = "0.97",
             target: str = "1.05") -> TradeProposal:
    base = limit or price
    return TradeProposal(symbol="BTC/USD", side="buy", size_usd=Decimal(usd), entry_price=limit,
                         stop_loss=(base * Decimal(stop)).quantize(Decimal("0.1")),
                         take_profit=(base * Decimal(target)).quantize(Decimal("0.1")), leverage=1)


def act(core: ExecutionCore, i: int, price: Decimal, opened: list[str]) -> None:
    """The bot's decisions: a function of the tick number and the books only, so both runs agree."""
    if i in (5, 150, 330):
        result = core.orders.execute_trade(proposal(price, "3000"))
        assert result.success, result.error_message
        opened.append(result.position_id)
    elif i == 30:
        result = core.orders.execute_trade(proposal(price, "2000", limit=price - Decimal(60)))
        assert result.success, result.error_message
        opened.append(result.position_id)
    elif i == 90:
        core.positions.modify_position(opened[0], stop_loss=(price * Decimal("0.96")).quantize(Decimal("0.1")))
    elif i == 120:
        core.positions.enable_trailing_stop_for_position(opened[1], distance_pct=Decimal("0.8"))
    elif i == 200:
        core.positions.close_position(opened[0], reason="manual")


def run(store: Path, restart_every: int | None, close_paper: bool = True) -> dict[str, Any]:
    clock = FakeClock(1_700_000_000.0)
    core = build(store, clock)
    opened: list[str] = []
    restarts = 0
    for i, tick in enumerate(SERIES):
        clock.advance(1)
        core.price_tick("BTC/USD", tick.price)
        act(core, i, tick.price, opened)
        if i % 3 == 0:
            core.poll_once()
        if restart_every and i % restart_every == 0 and i:
            core.close()
            assert core.paper is not None
            if close_paper:               # else: last prices since the last real change are lost, as in a crash
                core.paper.close()
            core = build(store, clock)
            restarts += 1
    core.poll_once()
    books = summary(core)
    books["restarts"] = restarts
    core.close()
    assert core.paper is not None
    core.paper.close()
    return books


def summary(core: ExecutionCore) -> dict[str, Any]:
    store, paper = core.store, core.paper
    assert paper is not None
    positions = sorted(
        (p.side.value, p.size, p.entry_price, p.state, p.stop_loss, p.take_profit, p.trailing_stop_enabled,
         p.realized_pnl, p.total_fees, p.entry_size, p.exit_size, p.close_reason)
        for p in store.load_positions())
    orders = sorted(
        (o.role.value, o.order_type.value, o.side.value, o.size, o.price, o.stop_price, o.state, o.filled_size,
         o.average_fill_price, o.fee_amount)
        for o in store.load_orders())
    def on_exchange(order_id: str | None) -> Any:
        order = store.get_order(order_id) if order_id else None
        if order is None or order.external_id is None:
            return None
        seen = paper.order(order.external_id)
        return seen["status"], seen["descr"]["ordertype"], seen["descr"]["price"], seen["vol"]

    protection = sorted(
        (p.state, p.stop_loss_location.value, p.take_profit_location.value, p.stop_loss, p.take_profit,
         on_exchange(p.stop_loss_order_id), on_exchange(p.take_profit_order_id))
        for p in core.positions.get_open_positions())
    exchange_orders = sorted(
        (o["descr"]["type"], o["descr"]["ordertype"], o["descr"]["price"], o["descr"]["price2"], o["vol"],
         o["vol_exec"], o["status"]) for o in [paper.order(t) for t in paper.engine.closed_orders()["closed"]]
        + list(paper.open_orders().values()))
    trades = [(t["type"], t["ordertype"], t["price"], t["vol"], t["fee"]) for t in paper.trades().values()]
    return {"positions": positions, "orders": orders, "protection": protection, "exchange_orders": exchange_orders,
            "trades": trades, "balances": paper.balances(), "holds": paper.holds(),
            "pnl": sum((p.realized_pnl for p in store.load_positions()), Decimal(0)),
            "fees": core.positions.fee_summary()}


@pytest.mark.parametrize("close_paper", [True, False], ids=["paper closed", "paper abandoned"])
def test_a_paper_bot_restarted_ten_times_ends_exactly_like_one_uninterrupted_run(
        tmp_path: Path, close_paper: bool) -> None:
    steady = run(tmp_path / "steady" / "bot.sqlite", None)
    restarted = run(tmp_path / "restarted" / "bot.sqlite", 40, close_paper)
    assert restarted.pop("restarts") == 10 and steady.pop("restarts") == 0
    # the run did real work: market and limit entries, a manual close, stops in the crash, one still open
    assert len(steady["positions"]) == 4 and len(steady["trades"]) == 7
    assert {p[3] for p in steady["positions"]} == {"CLOSED", "PROTECTED"} and steady["protection"]
    assert restarted == steady


# --------------------------------------------------------------------------- a store meets a stranger


def open_business(tmp_path: Path) -> tuple[Config, Path]:
    """A store with an open, protected position on its paper account; the core shut down cleanly."""
    store = tmp_path / "bot.sqlite"
    config = paper_config(store)
    core = ExecutionCore.from_settings(config)
    core.price_tick("BTC/USD", Decimal("43000"))
    result = core.orders.execute_trade(proposal(Decimal("43000"), "1000"))
    assert result.success, result.error_message
    core.poll_once()
    core.close()
    assert core.paper is not None
    core.paper.close()
    return config, store


def files(tmp_path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(tmp_path.iterdir()) if p.is_file()}


@pytest.mark.parametrize("stranger", ["missing", "another", "not kept"])
def test_a_store_restored_against_a_paper_exchange_that_does_not_know_it_refuses_and_changes_nothing(
        tmp_path: Path, stranger: str) -> None:
    config, store = open_business(tmp_path)
    paper_file = tmp_path / "bot.paper.sqlite"
    if stranger == "missing":
        paper_file.unlink()
    elif stranger == "another":
        other = paper_config(tmp_path / "other" / "bot.sqlite")
        stranger_core = ExecutionCore.from_settings(other)   # a second account, whose file takes the place
        stranger_core.close()
        assert stranger_core.paper is not None
        stranger_core.paper.close()
        (tmp_path / "other" / "bot.paper.sqlite").replace(paper_file)
    else:
        config = paper_config(store, paper={"state_path": ":memory:"})
    before = files(tmp_path)
    with pytest.raises(ConfigError) as refused:
        ExecutionCore.from_settings(config)
    message = str(refused.value)
    assert f"the store {store}" in message and "was used with paper exchange" in message
    assert {"missing": "is missing", "another": "is account", "not kept": "is not kept"}[stranger] in message
    assert "deleting both" in message
    assert files(tmp_path) == before                          # not a byte changed, no file created


def test_a_new_store_adopts_the_paper_account_and_a_flat_store_may_move_to_a_new_one(tmp_path: Path) -> None:
    store = tmp_path / "bot.sqlite"
    core = ExecutionCore.from_settings(paper_config(store))
    assert core.paper is not None and core.paper.account_id is not None
    first = core.paper.account_id
    assert core.store.get_meta(META_KEY) == first
    core.close()
    core.paper.close()
    (tmp_path / "bot.paper.sqlite").unlink()                  # nothing open: starting a fresh account is fine
    again = ExecutionCore.from_settings(paper_config(store))
    assert again.paper is not None and again.paper.account_id not in (None, first)
    assert again.store.get_meta(META_KEY) == again.paper.account_id
    again.close()
    again.paper.close()
