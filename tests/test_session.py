"""Paper sessions: the whole core against the paper exchange, books checked against the exchange's own.

The demo replays a flash crash; it must end with nothing open anywhere and the
core's P&L equal, to the cent, to the P&L recomputed from the paper exchange's
trade records, having gone through a partial fill, a stop-out in the crash, a
take-profit and a trailing stop.
"""
from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import attrs
import pytest

from triplegain_fsm import TradeProposal
from triplegain_fsm.config import Config
from triplegain_fsm.errors import ConfigError
from triplegain_fsm.paper.feeds import Tick
from triplegain_fsm.session import (
    DEMO_CRASH_AT,
    Close,
    Modify,
    Open,
    ScheduleError,
    SessionSummary,
    Trail,
    demo_config,
    demo_schedule,
    demo_ticks,
    load_price_csv,
    load_schedule,
    run_paper_session,
)

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parent.parent / "triplegain_fsm" / "data"
CRASH = range(DEMO_CRASH_AT, DEMO_CRASH_AT + 4)   # the demo series' crash ticks (session.demo_ticks)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> SessionSummary:
    store = tmp_path_factory.mktemp("demo") / "demo.sqlite"
    ticks = demo_ticks()
    return run_paper_session(demo_config(store), ticks, demo_schedule(len(ticks)))


def by_ref(summary: SessionSummary) -> dict:
    return {p.ref: p for p in summary.positions}


# --------------------------------------------------------------------------- the demo


def test_demo_ends_clean(demo: SessionSummary) -> None:
    assert demo.open_exchange_orders == 0
    assert demo.open_positions == 0
    assert demo.problems() == [] and demo.ok
    assert all(p.state == "CLOSED" for p in demo.positions)
    assert not any(o.state in ("OPEN", "PARTIALLY_FILLED", "CANCEL_PENDING", "PENDING", "SUBMITTED_UNKNOWN")
                   for o in demo.orders)


def test_core_pnl_equals_the_exchange_ledger_to_the_cent(demo: SessionSummary) -> None:
    assert len(demo.positions) == 5
    for position in demo.positions:
        assert abs(position.core_pnl - position.exchange_pnl) < D("0.01"), position
    assert abs(demo.core_pnl - demo.exchange_pnl) < D("0.01")
    assert abs(demo.total_fees - demo.exchange_fees) < D("0.01")
    assert demo.total_fees == sum((p.fees for p in demo.positions), D(0)) > 0


def test_a_stop_loss_fired_in_the_crash(demo: SessionSummary) -> None:
    crash = by_ref(demo)["crash"]
    assert crash.exit_by == "stop_loss order"
    prices = [t.price for i, t in enumerate(demo_ticks()) if i in CRASH]
    assert min(prices) <= crash.exit_price <= crash.stop_loss  # a market exit at or below the stop
    assert crash.core_pnl < 0


def test_a_take_profit_was_taken(demo: SessionSummary) -> None:
    target = by_ref(demo)["target"]
    # spot: the exchange refused a second sell leg, so the core watched the target and closed at it
    assert target.exit_by.startswith("close: take_profit hit")
    assert target.exit_price >= target.take_profit and target.core_pnl > 0


def test_the_entry_filled_in_parts_and_its_stop_grew_with_it(demo: SessionSummary) -> None:
    assert demo.partially_filled_orders >= 1
    partial = by_ref(demo)["partial"]
    entry = next(o for o in demo.orders if o.position_id == partial.id and o.role.value == "entry")
    assert entry.order_type.value == "limit" and entry.filled_size == entry.size
    stop = next(o for o in demo.orders if o.position_id == partial.id and o.role.value == "stop_loss")
    assert stop.size == entry.size  # amended up as each part filled
    assert partial.exit_by == "close: session end"


def test_the_trailing_stop_followed_the_recovery_and_took_the_exit(demo: SessionSummary) -> None:
    trail = by_ref(demo)["trail"]
    assert trail.trailing and trail.exit_by == "stop_loss order"
    assert trail.stop_loss > trail.entry_price * D("1.1")  # moved up from 5 % below entry
    assert trail.core_pnl > 0


def test_the_manual_close_and_the_modify_happened(demo: SessionSummary) -> None:
    manual = by_ref(demo)["manual"]
    assert manual.exit_by == "close: manual"
    outcomes = {a.action.split(":")[0]: a.outcome for a in demo.actions}
    assert outcomes["modify manual"].startswith("stop_loss=")
    assert D(outcomes["modify manual"].split()[0].split("=")[1]) == manual.stop_loss


def test_the_store_is_left_for_inspection(demo: SessionSummary) -> None:
    assert Path(demo.store_path).is_file()
    assert demo.orders_by_status["FILLED"] >= 10
    assert demo.ticks == 1200 and demo.ticks_per_second > 0


# --------------------------------------------------------------------------- the runner


def test_python_schedule_with_tuples_and_a_trade_proposal(tmp_path: Path) -> None:
    ticks = [Tick(1_700_000_000 + i, D(43000) + (i % 7) * 10 - i * D("0.5"), D(0)) for i in range(120)]
    schedule = [
        (5, TradeProposal(symbol="BTC/USD", side="buy", size_usd=D(1000), stop_loss=D(42000),
                          take_profit=D(45000), id="p1")),
        (6, Open("p2", size_usd=D(500), stop_loss_pct=D(1))),
        (20, ("modify", "p1", D(42100), None)),
        (21, ("trail", "p2", D("0.5"))),
        (30, ("close", "p1")),
        (31, ("close", "p1")),   # already closed: skipped, not fatal
    ]
    summary = run_paper_session(demo_config(tmp_path / "s.sqlite"), ticks, schedule)
    assert summary.ok, summary.problems()
    outcomes = [a.outcome for a in summary.actions]
    assert outcomes[0].startswith("position ") and outcomes[1].startswith("position ")
    levels = dict(item.split("=") for item in outcomes[2].split())
    assert (D(levels["stop_loss"]), D(levels["take_profit"])) == (D(42100), D(45000))
    assert outcomes[3] == "trailing enabled"
    assert outcomes[4].startswith("closing ") and outcomes[5].startswith("skipped: position")
    assert {p.ref: p.exit_by for p in summary.positions} == {"p1": "close: manual", "p2": "close: session end"}


def test_a_refused_proposal_is_recorded_and_the_session_goes_on(tmp_path: Path) -> None:
    ticks = [(1_700_000_000 + i, D(43000)) for i in range(30)]
    schedule = [(2, TradeProposal(symbol="BTC/USD", side="buy", size_usd=D(1000), stop_loss=D(44000), id="bad")),
                (3, Open("good", size_usd=D(1000), stop_loss_pct=D(2), take_profit_pct=D(2)))]
    summary = run_paper_session(demo_config(tmp_path / "s.sqlite"), ticks, schedule)
    assert summary.actions[0].outcome.startswith("refused: stop_loss: 44000 is on the wrong side")
    assert summary.ok and [p.ref for p in summary.positions] == ["good"]


def test_polling_every_few_ticks_still_settles(tmp_path: Path) -> None:
    ticks = demo_ticks()
    summary = run_paper_session(demo_config(tmp_path / "s.sqlite"), ticks, demo_schedule(len(ticks)),
                                poll_every=7)
    assert summary.ok, summary.problems()
    assert by_ref(summary)["crash"].exit_by == "stop_loss order"


def test_progress_is_reported_per_percent_up_to_the_end(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    ticks = [(1_700_000_000 + i, D(43000)) for i in range(250)]
    run_paper_session(demo_config(tmp_path / "s.sqlite"), ticks, [], on_progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (250, 250) and len(seen) <= 101
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_a_live_config_is_refused_before_anything_runs(tmp_path: Path) -> None:
    live = Config.from_dict({"exchange": {"mode": "live"}, "storage": {"path": str(tmp_path / "s.sqlite")}})
    with pytest.raises(ConfigError, match="paper mode"):
        run_paper_session(live, [(0, D(43000))], [])
    assert not (tmp_path / "s.sqlite").exists()


def test_schedule_errors_name_the_problem(tmp_path: Path) -> None:
    config = demo_config(tmp_path / "s.sqlite")
    ticks = [(i, D(43000)) for i in range(10)]
    with pytest.raises(ScheduleError, match="no entry 'x' before it"):
        run_paper_session(config, ticks, [(1, Close("x"))])
    with pytest.raises(ScheduleError, match="used by two entries"):
        run_paper_session(config, ticks, [(1, Open("a", size_usd=100)), (2, Open("a", size_usd=100))])
    with pytest.raises(ScheduleError, match="outside the series"):
        run_paper_session(config, ticks, [(10, Open("a", size_usd=100))])
    with pytest.raises(ScheduleError, match="not a schedule action"):
        run_paper_session(config, ticks, [(1, ("explode", "a"))])
    with pytest.raises(ScheduleError, match="give stop_loss"):
        Modify("a")
    with pytest.raises(ScheduleError, match="between 0 and 100"):
        Open("a", size_usd=100, stop_loss_pct=150)
    with pytest.raises(ScheduleError, match="stop_loss or stop_loss_pct, not both"):
        Open("a", size_usd=100, stop_loss_pct=1, stop_loss=42000)


# --------------------------------------------------------------------------- YAML schedules


def test_demo_yaml_scales_to_another_series_length() -> None:
    full = demo_schedule(1200)
    half = demo_schedule(600)
    assert [i for i, _ in half] == [i * 600 // 1200 for i, _ in full]
    assert [type(a) for _, a in full] == [Open, Open, Open, Modify, Close, Open, Open, Trail]


def test_yaml_schedule_forms(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "actions:\n"
        "  - {at: '50%', open: a, size_usd: 500, stop_loss: 41000, take_profit: 48000}\n"
        "  - {at: 60, open: b, size_usd: 700, stop_loss_pct: 2.5, limit_offset_pct: 0.1}\n"
        "  - {at: 70, modify: a, take_profit_pct: 1}\n"
        "  - {at: 80, trail: b, distance_pct: 0.75}\n"
        "  - {at: 99, close: a, reason: done}\n", encoding="utf-8")
    schedule = load_schedule(path, 100)
    assert [i for i, _ in schedule] == [50, 60, 70, 80, 99]
    absolute = schedule[0][1].proposal("ETH/USD", D(43000))
    assert (absolute.id, absolute.symbol, absolute.stop_loss, absolute.entry_price) == ("a", "ETH/USD", D(41000), None)
    assert schedule[1][1] == Open("b", size_usd=D(700), stop_loss_pct=D("2.5"), limit_offset_pct=D("0.1"))
    assert schedule[3][1] == Trail("b", distance_pct=D("0.75")) and schedule[4][1] == Close("a", "done")
    built = schedule[1][1].proposal("BTC/USD", D("43000"))
    assert (built.entry_price, built.stop_loss) == (D("42957.0"), D("41883.1"))


@pytest.mark.parametrize(("text", "match"), [
    ("- just a list\n", "expected a mapping with an 'actions' list"),
    ("actions: []\nextra: 1\n", "unknown top-level key"),
    ("actions:\n  - {open: a, size_usd: 5}\n", r"actions\[0\]: expected a mapping with 'at'"),
    ("actions:\n  - {at: 1, open: a, close: a, size_usd: 5}\n", "exactly one of"),
    ("actions:\n  - {at: 1, open: a, size_usd: 5, colour: red}\n", "unknown key"),
    ("actions:\n  - {at: 1, open: a, size_usd: -5}\n", "size_usd"),
    ("actions:\n  - {at: 'soon', open: a, size_usd: 5}\n", "tick index or 'N%'"),
    ("actions:\n  - {at: 100, open: a, size_usd: 5}\n", "outside the series"),
    ("ticks: 10\nactions:\n  - {at: 10, open: a, size_usd: 5}\n", "outside the 10 ticks"),
    ("actions:\n  - {at: 1, close: a}\n", "no entry 'a'"),
])
def test_bad_yaml_schedules(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScheduleError, match=match):
        load_schedule(path, 100)


# --------------------------------------------------------------------------- price files


def test_both_shipped_csv_layouts_load_and_scale() -> None:
    bch = load_price_csv(DATA / "kraken_bcheur_trades.csv", scale=D(475))
    assert len(bch) == 148 and bch[0].time == 1672531436 and bch[0].price == D("90.540000") * 475
    xrp = load_price_csv(DATA / "xrp_eth_trades.csv")
    assert len(xrp) == 12477 and xrp[0].time == pytest.approx(1570752011.62) and xrp[0].price == D("0.00141342")


def test_unknown_csv_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("when,what\n1,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown CSV layout"):
        load_price_csv(path)
    path.write_text("unix_time,price,volume\n1,abc,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        load_price_csv(path)


def test_a_real_trade_print_replay_with_the_demo_schedule(tmp_path: Path) -> None:
    ticks = load_price_csv(DATA / "kraken_bcheur_trades_q2.csv", scale=D(475))  # BCH/EUR shaped like BTC/USD
    summary = run_paper_session(demo_config(tmp_path / "s.sqlite"), ticks, demo_schedule(len(ticks)))
    assert summary.ok, summary.problems()
    assert len(summary.positions) == 5


def test_the_demo_runs_on_the_stream_and_books_what_polling_books(demo: SessionSummary, tmp_path: Path) -> None:
    """exchange.stream: websocket is the default: the demo's fills are pushed over the paper exchange's
    loopback WebSocket. The same demo on REST polling books the same positions to the cent."""
    from triplegain_fsm.store import Store

    store = Store(demo.store_path)
    try:
        sources = {f["source"] for f in store.fills()}
    finally:
        store.close()
    assert "stream" in sources
    ticks = demo_ticks()
    polled_config = attrs.evolve(demo_config(tmp_path / "polled.sqlite"))
    polled_config = attrs.evolve(polled_config, exchange=attrs.evolve(polled_config.exchange, stream="poll"))
    polled = run_paper_session(polled_config, ticks, demo_schedule(len(ticks)))
    cents = D("0.01")
    assert polled.ok and [(p.ref, p.exit_by, p.core_pnl.quantize(cents)) for p in polled.positions] == \
        [(p.ref, p.exit_by, p.core_pnl.quantize(cents)) for p in demo.positions]
