"""The store round-trips every field exactly, rolls back as a unit, and the bus isolates subscribers."""
from __future__ import annotations

import threading
from decimal import Decimal as D

import pytest

from triplegain_fsm.bus import EXECUTION, RISK_ALERTS, MessageBus
from triplegain_fsm.machines.order_machine import ORDER_KIND
from triplegain_fsm.models import LegLocation, Order, OrderRole, OrderSide, OrderType, Position
from triplegain_fsm.store import Store
from triplegain_fsm.unit import StateGuard

pytestmark = pytest.mark.unit


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "t.sqlite")
    yield s
    s.close()


def test_order_and_position_round_trip_exactly(store):
    order = Order(symbol="BTC/USD", side=OrderSide.SELL, order_type=OrderType.STOP_LOSS_LIMIT,
                  size=D("0.00012345"), price=D("40999.9"), stop_price=D("41000.1"), leverage=3,
                  reduce_only=True, role=OrderRole.STOP_LOSS, fee_amount=D("0.000000001"))
    position = Position(symbol="BTC/USD", side=OrderSide.BUY, size=D("1.5"), entry_price=D("43120.5"),
                        take_profit_location=LegLocation.LOCAL, trailing_stop_enabled=True,
                        trailing_stop_distance_pct=D("1.5"))
    with store.transaction():
        store.save_order(order)
        store.save_position(position)
    loaded = store.get_order(order.id)
    assert {k: getattr(loaded, k) for k in vars(order) if not k.startswith("_")} == \
        {k: v for k, v in vars(order).items() if not k.startswith("_")}
    again = store.load_positions()[0]
    assert again.take_profit_location is LegLocation.LOCAL and again.trailing_stop_enabled is True
    assert again.size == D("1.5") and again.opened_at == position.opened_at


def test_writes_outside_a_transaction_are_refused(store):
    with pytest.raises(RuntimeError):
        store.save_order(Order(symbol="BTC/USD", side=OrderSide.BUY, order_type=OrderType.MARKET, size=D(1)))


def test_fill_recorded_once(store):
    from triplegain_fsm.models import utcnow
    with store.transaction():
        assert store.record_fill("o:1", "o", "T", ["t1"], D(1), D(100), D(0), D(1), utcnow())
    with pytest.raises(RuntimeError, match="twice"), store.transaction():
        store.record_fill("o:1", "o", "T", ["t1"], D(1), D(100), D(0), D(1), utcnow())
    assert len(store.fills()) == 1


def test_unit_rolls_back_store_and_memory_together(store):
    guard = StateGuard(store, MessageBus())
    order = Order(symbol="BTC/USD", side=OrderSide.BUY, order_type=OrderType.LIMIT, size=D(1), price=D(1))
    ORDER_KIND.attach(order)
    with guard.unit() as unit:
        unit.touch(order)
    with pytest.raises(ZeroDivisionError):
        with guard.unit() as unit:
            unit.fire(order, "acknowledge")
            unit.fire(order, "fill", vol_exec=D(1), cost=D(1), fee=D(0))
            1 / 0
    assert order.state == "PENDING" and order.filled_size == 0
    assert store.get_order(order.id).state == "PENDING"
    assert [e["to_state"] for e in store.events(order.id)] == []
    with guard.unit() as unit:  # the restored order is still attached and usable
        unit.fire(order, "acknowledge")
    assert store.get_order(order.id).state == "OPEN"
    assert [e["to_state"] for e in store.events(order.id)] == ["OPEN"]


def test_messages_publish_after_commit_and_a_failing_subscriber_is_isolated(store):
    bus = MessageBus()
    guard = StateGuard(store, bus)
    seen = []

    def broken(message):
        raise RuntimeError("subscriber bug")

    def reader(message):
        # published after commit: the state the message reports is already in the store
        seen.append((message.topic, store.get_order(message.payload["order_id"]).state))

    bus.subscribe(EXECUTION, broken)
    bus.subscribe(EXECUTION, reader)
    bus.subscribe(RISK_ALERTS, lambda m: seen.append((m.topic, m.payload["alert_type"])))
    order = Order(symbol="BTC/USD", side=OrderSide.BUY, order_type=OrderType.LIMIT, size=D(1), price=D(1))
    ORDER_KIND.attach(order)
    with guard.unit() as unit:
        unit.fire(order, "acknowledge")
        unit.alert("position_unprotected", "critical", "test", order_id=order.id)
    assert (EXECUTION, "OPEN") in seen and (RISK_ALERTS, "position_unprotected") in seen
    assert bus.delivery_failures == 1
    assert store.alerts()[0]["alert_type"] == "position_unprotected"
    with pytest.raises(ValueError):
        bus.subscribe("nope", reader)


def test_concurrent_units_do_not_lose_writes(store):
    guard = StateGuard(store, MessageBus())
    orders = [Order(symbol="BTC/USD", side=OrderSide.BUY, order_type=OrderType.LIMIT, size=D(1), price=D(1))
              for _ in range(8)]

    def work(order):
        for _ in range(50):
            with guard.unit() as unit:
                unit.touch(order)
                order.fee_amount += D(1)

    threads = [threading.Thread(target=work, args=(o,)) for o in orders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(o.fee_amount == 50 for o in store.load_orders())
    assert store.count("orders") == 8


def test_alert_policy_repeats_a_lasting_condition_only_after_its_interval(store, caplog):
    from triplegain_fsm.unit import AlertPolicy

    now = [0.0]
    bus = MessageBus()
    seen = []
    bus.subscribe(RISK_ALERTS, seen.append)
    guard = StateGuard(store, bus, AlertPolicy("ERROR", repeat_after=300, persist=True, clock=lambda: now[0]))
    for at in (0, 100, 301):
        now[0] = at
        with guard.unit() as unit:
            unit.alert("position_unprotected", "critical", "no stop", position_id="p1")
    with guard.unit() as unit:
        unit.alert("position_unprotected", "warning", "another position", position_id="p2")
    assert [m.payload["position_id"] for m in seen] == ["p1", "p1", "p2"]
    assert len(store.alerts()) == 3
    # every occurrence is logged (at or above the configured level); only publication is throttled
    assert [r.levelname for r in caplog.records if "risk alert" in r.message] == ["CRITICAL"] * 3


def test_alert_policy_forgets_conditions_past_their_interval(store):
    from triplegain_fsm.unit import AlertPolicy

    now = [0.0]
    policy = AlertPolicy("CRITICAL", repeat_after=10, clock=lambda: now[0])
    for i in range(10_001):
        assert policy.admit({"alert_type": "x", "severity": "info", "position_id": f"p{i}"})
    now[0] = 20.0
    assert policy.admit({"alert_type": "x", "severity": "info", "position_id": "late"})
    assert len(policy._last) == 1  # the 10,001 old conditions were dropped, the new one kept
