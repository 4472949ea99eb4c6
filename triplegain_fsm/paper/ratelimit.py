"""Kraken's two rate-limit counters, per verification tier; off unless a tier is chosen.

REST counter (per key): +1 per private call, +2 for trade/ledger history; AddOrder,
CancelOrder and friends are not on it. Trading counter (per pair): +1 per AddOrder,
more for cancelling or amending a young order. Both decay continuously by the
clock. Over the maximum: `EAPI:Rate limit exceeded` / `EOrder:Rate limit exceeded`.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import attrs

from triplegain_fsm.errors import ConfigError
from triplegain_fsm.paper.errors import API_RATE_LIMIT, ORDER_RATE_LIMIT, KrakenRejection


@attrs.frozen
class Tier:
    rest_max: float
    rest_decay: float          # per second
    trade_max: float
    trade_decay: float         # per second
    max_open_orders: int       # per pair


TIERS = {
    "starter": Tier(15, 0.33, 60, 1.0, 60),
    "intermediate": Tier(20, 0.5, 125, 2.34, 80),
    "pro": Tier(20, 1.0, 180, 3.75, 225),
}
REST_COST = {"Ledgers": 2, "QueryLedgers": 2, "TradesHistory": 2, "QueryTrades": 2}
NOT_ON_REST_COUNTER = frozenset({
    "AddOrder", "AddOrderBatch", "CancelOrder", "CancelOrderBatch", "AmendOrder", "EditOrder", "CancelAll",
    "CancelAllOrdersAfter",
})
# (order younger than N seconds, extra cost): Kraken's penalty for cancelling resting orders early.
CANCEL_PENALTY = ((5, 8), (10, 6), (15, 5), (45, 4), (90, 2), (300, 1))
AMEND_PENALTY = ((5, 3), (10, 2), (15, 1))


def _penalty(table: tuple[tuple[int, int], ...], age: float) -> int:
    return next((cost for limit, cost in table if age < limit), 0)


def cancel_cost(age: float) -> int:
    return _penalty(CANCEL_PENALTY, age)


def amend_cost(age: float) -> int:
    return 1 + _penalty(AMEND_PENALTY, age)


@attrs.define
class _Counter:
    level: float = 0.0
    stamp: float = 0.0

    def charge(self, cost: float, maximum: float, decay: float, now: float, error: str) -> None:
        current = max(0.0, self.level - decay * (now - self.stamp))
        if current + cost > maximum:
            self.level, self.stamp = current, now
            raise KrakenRejection(error)
        self.level, self.stamp = current + cost, now


class RateLimiter:
    def __init__(self, tier: str, clock: Callable[[], float]) -> None:
        if tier not in TIERS:
            raise ConfigError(f"rate_limit_tier: one of {sorted(TIERS)}, got {tier!r}")
        self.tier = TIERS[tier]
        self._clock = clock
        self._rest: dict[str, _Counter] = {}
        self._trading: dict[str, _Counter] = {}
        self._lock = threading.Lock()

    def charge_rest(self, key: str, method: str) -> None:
        if method in NOT_ON_REST_COUNTER:
            return
        with self._lock:
            counter = self._rest.setdefault(key, _Counter(stamp=self._clock()))
            counter.charge(REST_COST.get(method, 1), self.tier.rest_max, self.tier.rest_decay, self._clock(),
                           API_RATE_LIMIT)

    def charge_trading(self, pair_id: str, cost: float) -> None:
        if cost <= 0:
            return
        with self._lock:
            counter = self._trading.setdefault(pair_id, _Counter(stamp=self._clock()))
            counter.charge(cost, self.tier.trade_max, self.tier.trade_decay, self._clock(), ORDER_RATE_LIMIT)
