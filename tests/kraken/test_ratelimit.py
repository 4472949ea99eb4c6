"""The pacer mirrors Kraken's counters and makes the client wait the right time instead of being refused."""
from __future__ import annotations

import threading

import pytest

from triplegain_fsm.kraken.ratelimit import TIERS, CounterBucket, Pacer, amend_cost, cancel_cost

pytestmark = pytest.mark.unit


def test_tiers_match_kraken():
    assert [(t.rest_max, t.rest_decay, t.trading_max, t.trading_decay) for t in TIERS.values()] == [
        (15, 0.33, 60, 1.0), (20, 0.5, 125, 2.34), (20, 1.0, 180, 3.75)]


def test_bucket_lets_a_full_burst_through_then_waits_for_decay(clock):
    bucket = CounterBucket(15, 0.33, clock=clock, sleep=clock.sleep)
    for _ in range(15):
        assert bucket.acquire(1) == 0
    assert clock.sleeps == []
    waited = bucket.acquire(1)
    assert waited == pytest.approx(1 / 0.33)
    assert clock.sleeps == [pytest.approx(1 / 0.33)]
    assert bucket.available() == pytest.approx(0, abs=1e-9)


def test_bucket_decays_with_time(clock):
    bucket = CounterBucket(20, 1.0, clock=clock, sleep=clock.sleep)
    bucket.acquire(20)
    clock.now += 5
    assert bucket.available() == pytest.approx(5)
    assert bucket.acquire(5) == 0
    assert bucket.acquire(2) == pytest.approx(2)


def test_waiters_queue_in_order(clock):
    bucket = CounterBucket(2, 1.0, clock=clock, sleep=lambda s: None)   # nobody actually waits here
    assert [bucket.reserve(1) for _ in range(5)] == [0, 0, pytest.approx(1), pytest.approx(2), pytest.approx(3)]


def test_saturate_makes_the_next_call_wait(clock):
    bucket = CounterBucket(15, 0.33, clock=clock, sleep=clock.sleep)
    bucket.saturate()
    assert bucket.acquire(1) == pytest.approx(1 / 0.33)


def test_cost_above_maximum_is_a_bug():
    with pytest.raises(ValueError):
        CounterBucket(5, 1).reserve(6)


@pytest.mark.parametrize(("age", "cost"), [(None, 8), (0, 8), (4.9, 8), (5, 6), (12, 5), (30, 4), (60, 2),
                                           (200, 1), (300, 0), (1000, 0)])
def test_cancel_cost_by_order_age(age, cost):
    assert cancel_cost(age) == cost


@pytest.mark.parametrize(("age", "cost"), [(None, 4), (0, 4), (4.9, 4), (5, 3), (9, 3), (10, 2), (14.9, 2),
                                           (15, 1), (3600, 1)])
def test_amend_cost_by_order_age(age, cost):
    """Kraken: 1, plus 3 / 2 / 1 when the order is younger than 5 / 10 / 15 s; unknown age = youngest."""
    assert amend_cost(age) == cost


def test_pacer_charges_an_old_orders_amend_its_real_cost(clock):
    pacer = Pacer("starter", clock=clock, sleep=clock.sleep)
    pacer.acquire("AmendOrder", pair="XBTUSD", order_age=60)
    pacer.acquire("AmendOrder", pair="XBTUSD", order_age=7)
    assert pacer.available("XBTUSD") == pytest.approx(60 - 1 - 3)


def test_pacer_costs(clock):
    pacer = Pacer("starter", clock=clock, sleep=clock.sleep)
    pacer.acquire("Balance")
    pacer.acquire("TradesHistory")
    assert pacer.available() == pytest.approx(12)
    pacer.acquire("AddOrder", pair="XBTUSD")
    pacer.acquire("CancelOrder", pair="XBTUSD")                  # unknown age: worst case
    pacer.acquire("CancelOrder", pair="XBTUSD", order_age=400)   # free
    pacer.acquire("AmendOrder", pair="XBTUSD")
    assert pacer.available() == pytest.approx(12)                # trading calls are not on the REST counter
    assert pacer.available("XBTUSD") == pytest.approx(60 - 1 - 8 - 4)
    assert pacer.available("ETHUSD") == 60
    pacer.acquire("Ticker", private=False)
    budget = pacer.budget()
    assert budget["tier"] == "starter" and budget["rest"] == pytest.approx(12)
    assert budget["trading"] == {"XBTUSD": pytest.approx(47), "ETHUSD": 60}
    assert budget["public"] == pytest.approx(4)


def test_pacer_sustained_rate_is_the_decay_rate(clock):
    for name, tier in TIERS.items():
        pacer = Pacer(name, clock=clock, sleep=clock.sleep)
        start = clock.now
        calls = int(tier.rest_max) + 100
        for _ in range(calls):
            pacer.acquire("OpenOrders")
        assert (calls - tier.rest_max) / (clock.now - start) == pytest.approx(tier.rest_decay)


def test_unknown_tier_refused():
    with pytest.raises(ValueError):
        Pacer("diamond")


def test_concurrent_reservations_are_all_counted(clock):
    bucket = CounterBucket(1000, 1.0, clock=clock, sleep=lambda s: None)
    barrier = threading.Barrier(8)

    def take():
        barrier.wait()
        for _ in range(100):
            bucket.reserve(1)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bucket.available() == pytest.approx(200)
