"""Kill the bot process at every step of a trade; a fresh process on the same store must recover.

A subprocess (`scripted_trade.py`) trades against a paper exchange served on a
loopback port by this test process, in `exchange.mode: live`, and dies with
`os._exit(137)` at one kill point: before an order is sent, after the exchange
accepted an AddOrder / CancelOrder / AmendOrder whose answer the core never
recorded, or just before a position is marked PROTECTED. For some kill points
the exchange price moves while the bot is down (the entry fills, a leg
triggers). Then a fresh process on the same SQLite file recovers: it polls
once before any submit deadline has passed (nothing may be assumed lost yet),
then with its clock past the deadlines.

For every kill point, after recovery:
- no duplicate order at the exchange: at most one accepted AddOrder per
  cl_ord_id, every exchange order is one of the store's orders under the same
  txid, and exactly the expected number of entries (one, none if never sent);
- every filled position ends PROTECTED (both legs resting at the exchange for
  its whole size) or CLOSED flat, or else an alert for it is in the store;
- the store matches the exchange: open orders at the exchange == the store's
  unfinished orders (each with a txid), fills in the store == the exchange's
  trades per txid, resting sizes and trigger prices agree, and the margin
  exposure equals the store's open position size;
- and right after each restart, an order whose fate is unknown is held
  SUBMITTED_UNKNOWN (never assumed either way), and a position holding size
  that is not PROTECTED has raised an alert.

Review findings: F06 (the fill, the position and the PENDING stop-loss commit
together: `fill_committed_stop_not_sent` kills right after that commit) and F05
(the store agrees with the exchange after recovery: orders, fills, exposure).
Each kill point is played once (a module-scoped fixture); one test per invariant.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import attrs
import pytest

from triplegain_fsm.enums import OrderRole
from triplegain_fsm.paper import Call, PaperExchange
from triplegain_fsm.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLED = 137
ENTRY_PRICE = Decimal("43000")
THIN_BOOK = {"liquidity_per_tick": "0.05", "limit_market_orders": True}  # the 0.1 BTC entry fills in two parts
FINAL_EXCHANGE = ("closed", "canceled", "expired")
LEG_FIELDS = {OrderRole.STOP_LOSS: "stop_loss", OrderRole.TAKE_PROFIT: "take_profit"}


@attrs.frozen
class KillPoint:
    name: str
    kill_at: str                          # scripted_trade.py --kill-at
    scenario: str = "market"              # scripted_trade.py --scenario
    price_while_down: str | None = None   # the exchange's BTC/USD price moves here between kill and restart
    entries: int = 1                      # entry orders that must exist at the exchange
    final: str = "PROTECTED"              # the position's state after recovery
    unknown_early: str | None = None      # role of the order recovery must still hold SUBMITTED_UNKNOWN early on
    recovery_kill_at: str | None = None   # the first recovery dies here too; a second one finishes
    died_after: str | None = None         # what the last request before the kill was (see died_after())


KILL_POINTS = [
    # the entry
    KillPoint("entry_persisted_not_sent", "add_order#1:before", entries=0, final="CLOSED", unknown_early="entry"),
    KillPoint("entry_accepted_unrecorded", "add_order#1:after", died_after="AddOrder market"),
    KillPoint("limit_entry_accepted_then_fills_while_down", "add_order#1:after", scenario="limit",
              price_while_down="42800", died_after="AddOrder limit"),
    KillPoint("limit_entry_accepted_then_price_gaps_through_the_stop_while_down", "add_order#1:after",
              scenario="limit", price_while_down="40500", final="CLOSED", died_after="AddOrder limit"),
    # the fill and its protection
    KillPoint("fill_committed_stop_not_sent", "add_order#2:before", unknown_early="stop_loss"),
    KillPoint("stop_accepted_unrecorded", "add_order#2:after", died_after="AddOrder stop-loss"),
    KillPoint("stop_accepted_then_triggers_while_down", "add_order#2:after", price_while_down="40900",
              final="CLOSED", died_after="AddOrder stop-loss"),
    KillPoint("take_profit_persisted_not_sent", "add_order#3:before", unknown_early="take_profit"),
    KillPoint("take_profit_accepted_unrecorded", "add_order#3:after", died_after="AddOrder take-profit"),
    KillPoint("take_profit_accepted_then_hit_while_down", "add_order#3:after", price_while_down="48100",
              final="CLOSED", died_after="AddOrder take-profit"),
    KillPoint("both_legs_recorded_not_marked_protected", "protected#1:before"),
    KillPoint("both_legs_recorded_then_stop_hit_while_down", "protected#1:before", price_while_down="40900",
              final="CLOSED"),
    # leg resizes (AmendOrder) after a later partial fill of the entry
    KillPoint("stop_resize_accepted_unrecorded", "amend_order#1:after", scenario="partial",
              died_after="AmendOrder order_qty stop-loss"),
    KillPoint("take_profit_resize_accepted_unrecorded", "amend_order#2:after", scenario="partial",
              died_after="AmendOrder order_qty take-profit"),
    # modify_position: the stop moved at the exchange, the core never heard
    KillPoint("stop_move_accepted_unrecorded", "amend_order#1:after",
              died_after="AmendOrder trigger_price stop-loss"),
    # the close
    KillPoint("close_stop_cancel_accepted_unrecorded", "cancel_order#1:after", final="CLOSED",
              died_after="CancelOrder stop-loss"),
    KillPoint("close_take_profit_cancel_accepted_unrecorded", "cancel_order#2:after", final="CLOSED",
              died_after="CancelOrder take-profit"),
    KillPoint("close_order_persisted_not_sent", "add_order#4:before", final="CLOSED", unknown_early="close"),
    KillPoint("close_order_accepted_unrecorded", "add_order#4:after", final="CLOSED",
              died_after="AddOrder market reduce_only"),
    # a second crash, during recovery
    KillPoint("entry_accepted_then_recovery_dies_after_stop_accepted", "add_order#1:after",
              recovery_kill_at="add_order#1:after"),
    KillPoint("stop_not_sent_then_recovery_dies_before_replacement", "add_order#2:before",
              unknown_early="stop_loss", recovery_kill_at="add_order#1:before"),
]


def placed(ordertype: str):
    def matches(call: Call) -> bool:
        return (call.method == "AddOrder" and call.acted and not call.error
                and call.params.get("ordertype") == ordertype)
    return matches


@attrs.define
class Outcome:
    """One kill point played out: the exchange, the recovery runs, and the store they left."""

    point: KillPoint
    paper: PaperExchange
    recoveries: list[Any]
    store: Store


@pytest.fixture(scope="module", params=KILL_POINTS, ids=[p.name for p in KILL_POINTS])
def outcome(request, open_venue, tmp_path_factory) -> Iterator[Outcome]:
    """Trade in a subprocess, kill it at the point, move the price if asked, recover in fresh processes."""
    point: KillPoint = request.param
    v = open_venue(tmp_path_factory.mktemp(point.name), **(THIN_BOOK if point.scenario == "partial" else {}))
    if point.scenario == "partial":
        # once both legs of the first part rest, a tick brings liquidity: the entry's remainder fills
        v.api.after(placed("take-profit"), lambda: v.paper.set_price("BTC/USD", ENTRY_PRICE))
    traded = v.trade(point.scenario, point.kill_at)
    assert traded.returncode == KILLED, f"the trade was not killed at {point.kill_at}: {traded.describe()}"
    if point.died_after is not None:
        assert died_after(v.paper) == point.died_after, f"the kill point hit the wrong request: {traded.describe()}"
    if point.price_while_down is not None:
        v.paper.set_price("BTC/USD", Decimal(point.price_while_down))
    runs = []
    if point.recovery_kill_at is not None:
        runs.append(v.recover("--kill-at", point.recovery_kill_at))
        assert runs[0].returncode == KILLED, f"recovery not killed at {point.recovery_kill_at}: {runs[0].describe()}"
    runs.append(v.recover())
    assert runs[-1].returncode == 0, runs[-1].describe()
    store = Store(v.store_path)
    yield Outcome(point, v.paper, runs, store)
    store.close()
    v.server.shutdown()


def test_no_duplicate_order_at_the_exchange(outcome: Outcome) -> None:
    check_no_duplicates(outcome.paper, outcome.store, outcome.point)
    check_never_sent(outcome.paper, outcome.store, outcome.point)


def test_store_matches_the_exchange(outcome: Outcome) -> None:
    check_store_matches_exchange(outcome.paper, outcome.store)


def test_filled_position_ends_protected_or_closed(outcome: Outcome) -> None:
    check_positions(outcome.paper, outcome.store, outcome.point)


def test_restart_neither_assumes_nor_stays_silent(outcome: Outcome) -> None:
    early = [run.phases()["early"] for run in outcome.recoveries if "early" in run.phases()]  # one may die first
    check_early(early, outcome.point)


def test_scripted_trade_runs_to_the_end_without_a_kill(venue) -> None:
    """The baseline the kill points cut into: entry, protection, a stop move, a close, every book in step."""
    v = venue()
    traded = v.trade("market", "none")
    assert traded.returncode == 0, traded.describe()
    calls = [c.method for c in v.paper.calls if c.method in ("AddOrder", "AmendOrder", "CancelOrder")]
    assert calls == ["AddOrder", "AddOrder", "AddOrder", "AmendOrder", "CancelOrder", "CancelOrder", "AddOrder"]
    baseline = KillPoint("baseline", "none", final="CLOSED")
    store = Store(v.store_path)
    try:
        check_no_duplicates(v.paper, store, baseline)
        check_store_matches_exchange(v.paper, store)
        check_positions(v.paper, store, baseline)
    finally:
        store.close()


# -- what the kill hit ------------------------------------------------------------------------------------------

def died_after(paper: PaperExchange) -> str:
    """The last request the exchange saw, accepted, as 'Method [changed field] ordertype [reduce_only]':
    proves an ':after' kill point died right after the request it names."""
    call = paper.calls.last()
    assert call is not None and call.acted and not call.error, f"last request not accepted: {call}"
    words = [call.method]
    if call.method == "AddOrder":
        words.append(call.params["ordertype"])
        if call.params.get("reduce_only") == "true" and call.params["ordertype"] == "market":
            words.append("reduce_only")
        return " ".join(words)
    if call.method == "AmendOrder":
        words += [name for name in ("order_qty", "trigger_price", "limit_price") if name in call.params]
    words.append(paper.order(call.params["txid"])["descr"]["ordertype"])
    return " ".join(words)


# -- the invariants ----------------------------------------------------------------------------------------------

def check_early(snapshots: list[dict[str, Any]], point: KillPoint) -> None:
    """Right after each restart, before any submit deadline has passed:

    - an order that may or may not have reached the exchange is held SUBMITTED_UNKNOWN: neither
      assumed placed, nor assumed lost (and so never sent again);
    - a position that holds size but is not PROTECTED has raised an alert: money is at risk while
      recovery waits, and the operator must hear of it then, not only if it never recovers.
    """
    assert snapshots, "no recovery got as far as its first poll"
    if point.unknown_early is not None:
        of_role = [o for o in snapshots[0]["orders"].values() if o["role"] == point.unknown_early]
        assert [o["state"] for o in of_role] == ["SUBMITTED_UNKNOWN"], (
            f"{point.unknown_early} orders right after the restart: {of_role}")
    for early in snapshots:
        alerted = {a["position_id"] for a in early["alerts"]}
        at_risk = {pid: p["state"] for pid, p in early["positions"].items()
                   if Decimal(p["size"]) > 0 and p["state"] != "PROTECTED" and pid not in alerted}
        assert not at_risk, (f"positions holding size, not PROTECTED and not alerted after the restart: "
                             f"{at_risk}; orders {early['orders']}")


def check_never_sent(paper: PaperExchange, store: Store, point: KillPoint) -> None:
    """The order that died before its AddOrder went out: the exchange never saw its client id, and
    recovery concluded (after the deadline, not before) that it was never placed."""
    if point.unknown_early is None:
        return
    role = OrderRole(point.unknown_early)
    first = min(store.load_orders("role = ?", (role.value,)), key=lambda o: o.created_at)
    seen = [c for c in paper.calls.of("AddOrder") if c.params.get("cl_ord_id") == first.client_order_id]
    assert not seen, f"the {role.value} that died before sending reached the exchange: {seen}"
    assert first.state == "REJECTED" and first.external_id is None, (first.state, first.error_message)


def exchange_orders(paper: PaperExchange) -> dict[str, dict[str, Any]]:
    """Every order the exchange ever accepted, open and closed, by txid."""
    orders = dict(paper.open_orders())
    offset = 0
    while True:
        page = paper.engine.closed_orders(trades=True, ofs=offset)
        orders.update(page["closed"])
        offset += 50
        if offset >= page["count"]:
            return orders


def check_no_duplicates(paper: PaperExchange, store: Store, point: KillPoint) -> None:
    accepted = Counter(c.params.get("cl_ord_id") for c in paper.calls.of("AddOrder") if c.acted and not c.error)
    twice = {cl: n for cl, n in accepted.items() if n > 1}
    assert not twice, f"AddOrder accepted more than once for {twice}"
    at_exchange = exchange_orders(paper)
    per_client_id = Counter(info["cl_ord_id"] for info in at_exchange.values())
    assert all(n == 1 for n in per_client_id.values()), f"duplicate orders at the exchange: {per_client_id}"
    orders = {o.client_order_id: o for o in store.load_orders()}
    for txid, info in at_exchange.items():
        mine = orders.get(info["cl_ord_id"])
        assert mine is not None, f"exchange order {txid} ({info['descr']['order']}) is not in the store"
        assert mine.external_id == txid, f"store order {mine.id} has txid {mine.external_id}, exchange {txid}"
    entries = [o for o in orders.values() if o.role is OrderRole.ENTRY]
    assert len(entries) == 1, f"the store has {len(entries)} entries"
    entries_at_exchange = [i for i in at_exchange.values() if orders[i["cl_ord_id"]].role is OrderRole.ENTRY]
    assert len(entries_at_exchange) == point.entries


def check_store_matches_exchange(paper: PaperExchange, store: Store) -> None:
    at_exchange = exchange_orders(paper)
    orders = store.load_orders()
    unsettled = [(o.id, o.role.value, o.state) for o in orders if not o.is_final and o.external_id is None]
    assert not unsettled, f"orders still unsettled after recovery: {unsettled}"
    working = {o.external_id for o in orders if not o.is_final}
    assert set(paper.open_orders()) == working, "open orders at the exchange != unfinished orders in the store"

    trades: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for trade in paper.trades().values():
        trades[trade["ordertxid"]].append(trade)
    known = {o.external_id for o in orders}
    assert set(trades) <= known, f"trades of orders the store does not know: {set(trades) - known}"
    fills: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for fill in store.fills():
        fills[fill["order_id"]].append(fill)
    for order in orders:
        mine = fills[order.id]
        if order.external_id is None:
            assert not mine, f"fills recorded for {order.id}, which never reached the exchange"
            continue
        info = at_exchange[order.external_id]
        theirs = trades[order.external_id]
        what = f"{order.role.value} {order.id} ({order.external_id})"
        stored_qty = sum((Decimal(f["qty"]) for f in mine), Decimal(0))
        traded_qty = sum((Decimal(t["vol"]) for t in theirs), Decimal(0))
        assert stored_qty == traded_qty == order.filled_size == Decimal(info["vol_exec"]), (
            f"{what}: store fills {stored_qty}, order filled {order.filled_size}, "
            f"exchange trades {traded_qty}, vol_exec {info['vol_exec']}")
        stored_fee = sum((Decimal(f["fee"]) for f in mine), Decimal(0))
        assert stored_fee == order.fee_amount == Decimal(info["fee"]), (
            f"{what}: store fees {stored_fee} / {order.fee_amount}, exchange {info['fee']}")
        assert order.is_final == (info["status"] in FINAL_EXCHANGE), (
            f"{what}: store {order.state}, exchange {info['status']}")
        if not order.is_final:
            assert order.size == Decimal(info["vol"]), f"{what}: store size {order.size}, exchange vol {info['vol']}"
            if order.stop_price is not None:
                assert order.stop_price == Decimal(info["descr"]["price"]), (
                    f"{what}: store trigger {order.stop_price}, exchange trigger {info['descr']['price']}")


def check_positions(paper: PaperExchange, store: Store, point: KillPoint) -> None:
    positions = store.load_positions()
    assert len(positions) == 1
    position = positions[0]
    orders = store.load_orders("position_id = ?", (position.id,))
    fills = [f for o in orders for f in store.fills(o.id)]
    assert position.total_fees == sum((Decimal(f["fee"]) for f in fills), Decimal(0)), (
        "position fees != fees of its fills")
    exposure = Decimal(0)
    for row in paper.positions().values():
        sign = 1 if row["type"] == "buy" else -1
        exposure += sign * (Decimal(row["vol"]) - Decimal(row["vol_closed"]))
    held = position.size if position.state != "CLOSED" else Decimal(0)
    assert exposure == held, f"exchange margin exposure {exposure}, store position {position.state} {held}"

    # the invariant: a filled position ends protected (or flat), or the store says it is not
    if position.entry_size > 0 and position.state not in ("PROTECTED", "CLOSED"):
        flagged = [a for a in store.alerts() if a["position_id"] == position.id]
        assert flagged, f"position {position.id} ended {position.state} with no alert"
    # and what recovery must achieve for this kill point
    assert position.state == point.final, (
        f"position ended {position.state}, expected {point.final}; alerts: "
        f"{[(a['alert_type'], a['message']) for a in store.alerts()]}")
    working = [o for o in orders if not o.is_final]
    if position.state == "CLOSED":
        assert position.size == 0 and not working, f"closed position left {working}"
        return
    if position.state != "PROTECTED":
        return
    assert position.size > 0
    for role, name in LEG_FIELDS.items():
        leg = store.get_order(getattr(position, f"{name}_order_id"))
        assert leg is not None and leg.role is role and leg.state in ("OPEN", "PARTIALLY_FILLED"), (
            f"{name} of a PROTECTED position: {leg and leg.state}")
        assert leg.remaining_size == position.size, f"{name} covers {leg.remaining_size} of {position.size}"
        level = getattr(position, name)
        assert leg.stop_price == level, f"{name}: order trigger {leg.stop_price}, position {level}"
        info = paper.order(leg.external_id)
        assert info["status"] == "open"
        assert Decimal(info["vol"]) - Decimal(info["vol_exec"]) == position.size
    assert {o.role for o in working} == set(LEG_FIELDS), f"working orders of a PROTECTED position: {working}"
