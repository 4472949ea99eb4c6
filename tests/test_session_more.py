"""Paper sessions at their edges: what is refused before anything runs, entries the exchange or the
core refuse, entries that never fill, a close still in flight at the end, and how a summary
reports books that do not agree."""
from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from triplegain_fsm import TradeProposal
from triplegain_fsm.config import Config
from triplegain_fsm.errors import ProposalError, ValidationError
from triplegain_fsm.paper.feeds import Tick
from triplegain_fsm.session import (
    Close,
    Open,
    PositionResult,
    ScheduleError,
    SessionSummary,
    load_price_csv,
    load_schedule,
    run_paper_session,
)

pytestmark = pytest.mark.integration


def config(tmp_path: Path, usd: int = 10000) -> Config:
    return Config.from_dict({
        "exchange": {"mode": "paper"},
        "storage": {"path": str(tmp_path / "s.sqlite")},
        "limits": {"max_open_positions": 5, "max_positions_per_symbol": 5},
        "paper": {"balances": {"ZUSD": usd}, "prices": {"BTC/USD": 43000}},
    })


def flat(count: int = 30) -> list[tuple[int, D]]:
    return [(1_700_000_000 + i, D(43000) + (i % 5) * 10) for i in range(count)]


# --------------------------------------------------------------------------- refused before running


@pytest.mark.parametrize(("ticks", "match"), [
    ([], "the price series is empty"),
    (["43000"], "expected a paper.feeds.Tick or \\(time, price\\)"),
    ([(1, 2, 3)], "expected a paper.feeds.Tick or \\(time, price\\)"),
    ([(1, "-5")], "price"),
])
def test_a_bad_series_is_refused_and_no_store_is_made(tmp_path: Path, ticks: list, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        run_paper_session(config(tmp_path), ticks, [])
    assert not (tmp_path / "s.sqlite").exists()


def test_poll_every_must_be_at_least_one(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="poll_every: must be >= 1, got 0"):
        run_paper_session(config(tmp_path), flat(), [], poll_every=0)
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize("action", ["close a", {"close": "a"}, ("close",), ("trail", "a", 1, 2)])
def test_something_that_is_not_an_action_is_a_schedule_error(tmp_path: Path, action: object) -> None:
    with pytest.raises(ScheduleError, match="not a schedule action"):
        run_paper_session(config(tmp_path), flat(), [(1, Open("a", size_usd=100)), (2, action)])


def test_a_price_file_with_only_a_header_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("timestamp_ms,trade_id,side,price,amount,cost\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="no price rows"):
        load_price_csv(path)


def test_the_public_trades_layout_reads_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("timestamp_ms,trade_id,side,price,amount,cost\n1700000000500,1,b,43000.5,0.25,10750\n",
                    encoding="utf-8")
    assert load_price_csv(path, scale=2) == [Tick(1_700_000_000.5, D("86001.0"), D("0.25"))]


# --------------------------------------------------------------------------- schedules as mappings


def test_a_schedule_can_be_given_as_a_mapping() -> None:
    schedule = load_schedule({"description": "two steps", "ticks": 10,
                              "actions": [{"at": 2, "open": "a", "size_usd": 500}, {"at": "90%", "close": "a"}]},
                             100)
    assert schedule == [(20, Open("a", size_usd=D(500))), (90, Close("a"))]


@pytest.mark.parametrize(("data", "match"), [
    ({"ticks": True, "actions": []}, "ticks: expected the series length"),
    ({"ticks": "ten", "actions": []}, "ticks: expected the series length"),
    ({"ticks": 0, "actions": []}, "ticks: expected the series length"),
    ({"actions": [{"at": True, "open": "a", "size_usd": 5}]}, "at: expected a tick index or 'N%', got True"),
    ({"actions": [{"at": "half%", "open": "a", "size_usd": 5}]}, "'half%' is not a percentage"),
    ({"actions": [{"at": 1.5, "open": "a", "size_usd": 5}]}, "at: expected a tick index or 'N%'"),
    ({"actions": [{"at": "150%", "open": "a", "size_usd": 5}]}, "outside the series"),
    ({"actions": [{"at": 1, "modify": "a"}]}, "give stop_loss, take_profit"),
    ({"actions": [{"at": 1, "close": "a", "why": "x"}]}, "close a"),
    ({"actions": "open everything"}, "expected a mapping with an 'actions' list"),
])
def test_bad_schedule_mappings_name_the_problem(data: dict, match: str) -> None:
    with pytest.raises(ScheduleError, match=match):
        load_schedule(data, 100)


# --------------------------------------------------------------------------- what happens to entries


@pytest.fixture
def edges(tmp_path: Path) -> SessionSummary:
    """One session with each kind of entry outcome; nothing polls until the wind-down."""
    schedule = [
        (2, Open("big", size_usd=D(50000), stop_loss_pct=D(2))),                          # more than the account
        (3, TradeProposal(symbol="BTC/USD", side="buy", size_usd=D(1000), stop_loss=D(44000), id="bad")),
        (4, Open("low", size_usd=D(1000), entry_price=D(40000), stop_loss=D(39000))),     # never reached
        (5, TradeProposal(symbol="BTC/USD", side="buy", size_usd=D(1000), order_type="market",
                          entry_price=D(42000), stop_loss=D(41000), id="mkt")),
        (6, Close("big")),
        (7, Close("bad")),
        (29, Close("mkt")),                                                               # still in flight at the end
    ]
    return run_paper_session(config(tmp_path), flat(), schedule, poll_every=1000)


def test_an_entry_the_exchange_refuses_is_reported_and_its_position_never_fills(edges: SessionSummary) -> None:
    outcomes = {a.action.split(":")[0]: a.outcome for a in edges.actions}
    assert outcomes["open big"] == "not placed (rejected): ws add_order: EOrder:Insufficient funds"   # on the stream
    big = next(p for p in edges.positions if p.ref == "big")
    assert big.entry_size == 0 and big.exit_by.startswith("never filled (entry rejected")
    assert outcomes["close big (manual)"] == f"skipped: position {big.id} is CLOSED"


def test_actions_on_an_entry_the_core_refused_are_skipped(edges: SessionSummary) -> None:
    outcomes = {a.action.split(":")[0]: a.outcome for a in edges.actions}
    assert outcomes["open bad"].startswith("refused: stop_loss: 44000 is on the wrong side")
    assert outcomes["close bad (manual)"] == "skipped: no position for 'bad' (its entry was not placed)"
    assert "bad" not in {p.ref for p in edges.positions}


def test_a_limit_entry_that_never_fills_is_cancelled_at_the_end(edges: SessionSummary) -> None:
    low = next(p for p in edges.positions if p.ref == "low")
    assert (low.entry_size, low.exit_by, low.core_pnl, low.exchange_pnl) == (D(0), "never filled (session end)",
                                                                            D(0), D(0))


def test_an_explicit_market_entry_ignores_its_entry_price_and_a_close_in_flight_is_kept(
        edges: SessionSummary) -> None:
    mkt = next(p for p in edges.positions if p.ref == "mkt")
    entry = next(o for o in edges.orders if o.position_id == mkt.id and o.role.value == "entry")
    assert entry.order_type.value == "market" and entry.state == "FILLED"
    assert mkt.exit_by == "close: manual"            # the wind-down did not close it again as "session end"
    assert edges.ok, edges.problems()
    # CANCELLED: the "low" entry, and mkt's stop-loss -- placed as soon as the stream pushed the fill, though
    # nothing polled (on polling alone it was never placed), then cancelled by the close
    assert edges.orders_by_status == {"CANCELLED": 2, "FILLED": 2, "REJECTED": 1}


def test_an_explicit_market_entry_is_described_as_market(edges: SessionSummary) -> None:
    """BUG (triplegain_fsm/session.py, _describe): the kind comes from `entry_price is None` instead of the
    proposal's effective_order_type, so order_type="market" with an entry_price prints as "limit 42000"."""
    label = next(a.action for a in edges.actions if a.action.startswith("open mkt"))
    assert "market" in label and "limit" not in label


# --------------------------------------------------------------------------- the proposals a schedule carries


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"leverage": 0}, "leverage: must be >= 1, got 0"),
    ({"leverage": 2.5}, "leverage: must be an int"),
    ({"order_type": "stop-loss"}, "order_type: an entry is market or limit, got stop-loss"),
    ({"order_type": "limit"}, "entry_price: a limit entry needs an entry_price"),
    ({"order_type": "iceberg"}, "order_type: unknown order type"),
])
def test_a_proposal_the_session_could_not_run_is_refused_when_built(kwargs: dict, match: str) -> None:
    with pytest.raises(ProposalError, match=match):
        TradeProposal(symbol="BTC/USD", side="buy", size_usd=D(1000), **kwargs)


# --------------------------------------------------------------------------- summaries that do not add up


def summary(**changes: object) -> SessionSummary:
    fields: dict = dict(
        symbol="BTC/USD", ticks=10, elapsed_seconds=0.0, store_path="s.sqlite", orders=(), positions=(),
        actions=(), orders_by_status={}, partially_filled_orders=0, total_fees=D("1.00"), exchange_fees=D("1.00"),
        core_pnl=D("5.00"), exchange_pnl=D("5.00"), open_exchange_orders=0, open_positions=0, alerts_by_type={})
    fields.update(changes)
    return SessionSummary(**fields)


def position(core: str, exchange: str) -> PositionResult:
    return PositionResult(
        id="pos-1", ref="a", symbol="BTC/USD", side="buy", state="CLOSED", entry_size=D("0.1"),
        entry_price=D(43000), exit_price=D(43100), stop_loss=None, take_profit=None, exit_by="close: manual",
        trailing=False, fees=D(1), core_pnl=D(core), exchange_pnl=D(exchange))


def test_a_clean_summary_has_no_problems() -> None:
    clean = summary(positions=(position("5.00", "5.004"),))
    assert clean.ok and clean.problems() == [] and clean.ticks_per_second == float("inf")


def test_every_disagreement_is_named() -> None:
    bad = summary(open_positions=2, total_fees=D("1.00"), exchange_fees=D("1.02"),
                  positions=(position("5.00", "4.90"),), exchange_pnl=D("4.90"), elapsed_seconds=2.0)
    assert not bad.ok
    assert bad.problems() == [
        "2 position(s) still open in the core",
        "position pos-1: core P&L 5.00 != exchange P&L 4.90",
        "total P&L: core 5.00 != exchange 4.90",
        "fees: core 1.00 != exchange 1.02",
    ]
    assert bad.ticks_per_second == 5.0


def test_the_verdict_fails_on_a_critical_alert_and_on_a_schedule_that_never_traded(tmp_path) -> None:
    """Issue 13 #1: 'OK' used to mean only that the books agreed."""
    from triplegain_fsm import TradeProposal
    from triplegain_fsm.session import demo_config, demo_ticks, run_paper_session

    ticks = demo_ticks()
    config = demo_config(tmp_path / "refused.sqlite")
    too_big = TradeProposal(symbol="BTC/USD", side="buy", size_usd=D("50000000"), stop_loss=D("30000"))
    refused = run_paper_session(config, ticks, [(5, too_big)], symbol="BTC/USD")
    assert refused.nothing_traded and not refused.ok
    assert "no entry of the schedule was placed" in refused.problems()
    assert len(refused.refused_actions) == 1
    import attrs

    alerted = attrs.evolve(refused, actions=(), critical_alerts={"position_unprotected": 63})
    assert not alerted.ok and alerted.problems() == ["critical alerts: 63 position_unprotected"]
