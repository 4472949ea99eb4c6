"""A local mirror of Kraken's rate counters, so the client waits instead of being refused.

Kraken keeps a counter per API key for REST calls and one per pair for trading calls;
each call adds its cost, the counter decays at a fixed rate, and a call that would
push it over the maximum is refused (`EAPI:Rate limit exceeded`,
`EOrder:Rate limit exceeded`). `CounterBucket` models exactly that counter. A caller
reserves its cost first and then sleeps for however long the counter needs to
decay, outside the lock, so concurrent callers queue in order without holding anyone up.

The mirror is an estimate (another process or a websocket session may use the same
key), so after a refusal the client calls `saturate()` and the next call waits.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import attrs


@attrs.frozen
class Tier:
    """Kraken's published limits for one verification tier (maximum, decay per second)."""

    name: str
    rest_max: float
    rest_decay: float
    trading_max: float
    trading_decay: float


TIERS: dict[str, Tier] = {
    "starter": Tier("starter", rest_max=15, rest_decay=0.33, trading_max=60, trading_decay=1.0),
    "intermediate": Tier("intermediate", rest_max=20, rest_decay=0.5, trading_max=125, trading_decay=2.34),
    "pro": Tier("pro", rest_max=20, rest_decay=1.0, trading_max=180, trading_decay=3.75),
}

# Public endpoints are limited per IP, not per key, and Kraken publishes no exact
# figure ("about one call per second"): a small burst, then one per second.
PUBLIC_MAX = 5.0
PUBLIC_DECAY = 1.0

# Private methods that cost more (or nothing) on the REST counter.
HEAVY_METHODS = frozenset({"Ledgers", "QueryLedgers", "TradesHistory", "QueryTrades"})
TRADING_METHODS = frozenset({
    "AddOrder", "AddOrderBatch", "AmendOrder", "EditOrder", "CancelOrder", "CancelOrderBatch",
    "CancelAll", "CancelAllOrdersAfter",
})

# Cancelling a young order costs more on the pair's counter: (younger than seconds, cost).
CANCEL_COST_BY_AGE: tuple[tuple[float, int], ...] = (
    (5, 8), (10, 6), (15, 5), (45, 4), (90, 2), (300, 1),
)
# Amending costs 1, plus this much for a young order: (younger than seconds, extra cost).
AMEND_PENALTY_BY_AGE: tuple[tuple[float, int], ...] = ((5, 3), (10, 2), (15, 1))
AMEND_COST = 4       # the worst case, charged when the order's age is not known
UNKNOWN_PAIR = "?"   # cancels whose pair is not known share this one pessimistic counter


def amend_cost(order_age: float | None) -> int:
    """Trading-counter cost of amending an order this old (unknown age = youngest = worst)."""
    if order_age is None:
        return AMEND_COST
    return 1 + next((cost for younger_than, cost in AMEND_PENALTY_BY_AGE if order_age < younger_than), 0)


def cancel_cost(order_age: float | None) -> int:
    """Trading-counter cost of cancelling an order this old (unknown age = youngest = worst)."""
    if order_age is None:
        return CANCEL_COST_BY_AGE[0][1]
    for younger_than, cost in CANCEL_COST_BY_AGE:
        if order_age < younger_than:
            return cost
    return 0


class CounterBucket:
    """One Kraken counter: rises by each call's cost, decays at `decay` per second, capped at `maximum`.

    `acquire(cost)` reserves the cost now and sleeps until the counter has decayed
    enough for it to fit; the level may run above the maximum while callers wait,
    which is what queues them in arrival order.
    """

    def __init__(self, maximum: float, decay: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if maximum <= 0 or decay <= 0:
            raise ValueError("a counter needs a positive maximum and decay")
        self.maximum, self.decay = float(maximum), float(decay)  # float-ok: counter units
        self._clock, self._sleep = clock, sleep
        self._level = 0.0
        self._stamp = clock()
        self._lock = threading.Lock()

    def _decayed(self, now: float) -> float:
        """The level at `now` (call with the lock held)."""
        level = max(0.0, self._level - self.decay * max(0.0, now - self._stamp))
        self._level, self._stamp = level, max(now, self._stamp)
        return level

    def reserve(self, cost: float) -> float:
        """Add `cost` and return how many seconds the caller must wait before sending."""
        if cost > self.maximum:
            raise ValueError(f"cost {cost} can never fit a counter of {self.maximum}")
        if cost <= 0:
            return 0.0
        with self._lock:
            level = self._decayed(self._clock()) + cost
            self._level = level
            return max(0.0, (level - self.maximum) / self.decay)

    def acquire(self, cost: float = 1) -> float:
        """Reserve `cost`, sleep as long as needed, return the seconds waited."""
        wait = self.reserve(cost)
        if wait > 0:
            self._sleep(wait)
        return wait

    def available(self) -> float:
        """Cost that can be spent right now without waiting."""
        with self._lock:
            return max(0.0, self.maximum - self._decayed(self._clock()))

    def saturate(self) -> None:
        """Kraken said we are over: assume the counter is full, so the next call waits a full step."""
        with self._lock:
            self._level = max(self._decayed(self._clock()), self.maximum)


class Pacer:
    """The client's rate gate: the REST counter, one trading counter per pair, and a public bucket."""

    def __init__(self, tier: str | Tier = "starter", *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if isinstance(tier, str):
            if tier not in TIERS:
                raise ValueError(f"tier: must be one of {sorted(TIERS)}, got {tier!r}")
            tier = TIERS[tier]
        self.tier = tier
        self._clock, self._sleep = clock, sleep
        self.rest = CounterBucket(tier.rest_max, tier.rest_decay, clock=clock, sleep=sleep)
        self.public = CounterBucket(PUBLIC_MAX, PUBLIC_DECAY, clock=clock, sleep=sleep)
        self._trading: dict[str, CounterBucket] = {}
        self._lock = threading.Lock()

    def trading(self, pair: str | None) -> CounterBucket:
        """The trading counter for `pair` (created on first use)."""
        key = (pair or UNKNOWN_PAIR).upper()
        with self._lock:
            bucket = self._trading.get(key)
            if bucket is None:
                bucket = CounterBucket(self.tier.trading_max, self.tier.trading_decay,
                                       clock=self._clock, sleep=self._sleep)
                self._trading[key] = bucket
            return bucket

    def acquire(self, method: str, *, private: bool = True, pair: str | None = None,
                order_age: float | None = None) -> float:
        """Wait until `method` fits the counters it uses; return the seconds waited."""
        if not private:
            return self.public.acquire(1)
        if method in TRADING_METHODS:
            cost = self.trading_cost(method, order_age)
            return self.trading(pair).acquire(cost) if cost else 0.0
        return self.rest.acquire(2 if method in HEAVY_METHODS else 1)

    @staticmethod
    def trading_cost(method: str, order_age: float | None = None) -> int:
        if method in ("CancelOrder", "CancelOrderBatch"):
            return cancel_cost(order_age)
        if method in ("AmendOrder", "EditOrder"):
            return amend_cost(order_age)
        if method in ("AddOrder", "AddOrderBatch"):
            return 1
        return 0   # CancelAll / CancelAllOrdersAfter: on no per-pair counter we can name

    def saturate(self, method: str, *, private: bool = True, pair: str | None = None) -> None:
        """After a rate-limit refusal: mark the counter that refused as full."""
        if not private:
            self.public.saturate()
        elif method in TRADING_METHODS:
            self.trading(pair).saturate()
        else:
            self.rest.saturate()

    def available(self, pair: str | None = None) -> float:
        """What can be spent now: the REST counter, or `pair`'s trading counter."""
        return self.rest.available() if pair is None else self.trading(pair).available()

    def budget(self) -> dict[str, object]:
        """A snapshot for the poller: REST headroom, decay per second, and each pair's trading headroom."""
        with self._lock:
            pairs = dict(self._trading)
        return {
            "tier": self.tier.name,
            "rest": self.rest.available(),
            "rest_max": self.rest.maximum,
            "rest_decay_per_s": self.rest.decay,
            "public": self.public.available(),
            "trading": {pair: bucket.available() for pair, bucket in pairs.items()},
        }
