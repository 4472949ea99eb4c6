"""Everything the engine knows, in one object the engine's lock guards.

The matching, fill and placement modules are functions over this state, so each
stays small and testable while one lock (held by `Engine`) makes every operation
atomic: a tick, an AddOrder and a cancel never interleave half-done.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal

import attrs

from triplegain_fsm.paper.ids import IdFactory
from triplegain_fsm.paper.ledger import Ledger
from triplegain_fsm.paper.margin import PositionBook
from triplegain_fsm.paper.orders import PaperOrder, TradeRecord
from triplegain_fsm.paper.pairs import PairRegistry

ZERO = Decimal(0)
ACCOUNTS = ("spot", "margin")


@attrs.frozen
class EngineConfig:
    """How the paper market behaves.

    liquidity_per_tick: base volume a pair can trade against resting orders per
      tick (one Decimal for all pairs, or per pair id); None = unlimited.
    limit_market_orders: when True, taker fills (market orders, marketable limits,
      triggered stops) share that budget too; by default they fill in full.
    account: "spot" refuses leveraged orders (`EOrder:Cannot open position`) the
      way Kraken does for an account without margin; "margin" allows them.
    fill_latency_ticks: ticks between an order becoming marketable and its fill
      (0 = at once); IOC orders are exempt, they must fill at once or not at all.
    """

    liquidity_per_tick: Decimal | Mapping[str, Decimal] | None = None
    limit_market_orders: bool = False
    account: str = attrs.field(default="spot", validator=attrs.validators.in_(ACCOUNTS))
    fill_latency_ticks: int = attrs.field(default=0, validator=attrs.validators.ge(0))

    def liquidity_for(self, pair_id: str) -> Decimal | None:
        if isinstance(self.liquidity_per_tick, Mapping):
            return self.liquidity_per_tick.get(pair_id)
        return self.liquidity_per_tick


@attrs.define(eq=False)
class TickerStats:
    """Running figures for Ticker since the exchange started (the paper day is the whole run)."""

    open: Decimal
    high: Decimal
    low: Decimal
    last: Decimal
    last_volume: Decimal = ZERO
    volume: Decimal = ZERO
    notional: Decimal = ZERO
    count: int = 0

    def update(self, price: Decimal, volume: Decimal) -> None:
        self.high, self.low, self.last = max(self.high, price), min(self.low, price), price
        self.last_volume = volume
        self.volume += volume
        self.notional += price * volume
        self.count += 1

    @property
    def vwap(self) -> Decimal:
        return self.notional / self.volume if self.volume else self.last


class State:
    def __init__(
        self, registry: PairRegistry, ledger: Ledger, ids: IdFactory, clock: Callable[[], float], config: EngineConfig
    ) -> None:
        self.registry = registry
        self.ledger = ledger
        self.ids = ids
        self.clock = clock
        self.config = config
        self.positions = PositionBook()
        self.orders: dict[str, PaperOrder] = {}
        self.live: dict[str, list[PaperOrder]] = {pair_id: [] for pair_id in registry.pairs}
        self.by_cl_ord_id: dict[str, PaperOrder] = {}     # live orders only: Kraken's uniqueness scope
        self.timed: list[PaperOrder] = []                  # live orders with a start or expiry time
        self.trades: dict[str, TradeRecord] = {}
        self.prices: dict[str, Decimal] = {}
        self.tick_count: dict[str, int] = {}
        self.budget: dict[str, Decimal | None] = {p: config.liquidity_for(p) for p in registry.pairs}
        self.stats: dict[str, TickerStats] = {}
        self.pending_closes: list[PaperOrder] = []         # filled parents whose close[...] is still to place
        self.pair_status: dict[str, str] = {}
        self.system_status = "online"
        self.dead_man_at: float | None = None
        self.last_seq = 0                                  # the last arrival number handed out
        # orders an operation may have changed, kept only while a journal (paper.persist) listens
        self.touched: list[PaperOrder] | None = None

    def now(self) -> float:
        return self.clock()

    def next_seq(self) -> int:
        self.last_seq += 1
        return self.last_seq

    def touch(self, order: PaperOrder) -> None:
        """Note that `order` may change now (the journal writes it if it did)."""
        if self.touched is not None:
            self.touched.append(order)

    def register(self, order: PaperOrder) -> None:
        self.orders[order.txid] = order
        self.live[order.pair.id].append(order)
        if order.cl_ord_id:
            self.by_cl_ord_id[order.cl_ord_id] = order
        if order.starttm or order.expiretm:
            self.timed.append(order)

    def unregister(self, order: PaperOrder) -> None:
        """Drop a finished order from the live indexes (it stays in `orders` for queries)."""
        self.live[order.pair.id].remove(order)
        if order.cl_ord_id and self.by_cl_ord_id.get(order.cl_ord_id) is order:
            del self.by_cl_ord_id[order.cl_ord_id]
        if order in self.timed:
            self.timed.remove(order)

    def live_orders(self) -> list[PaperOrder]:
        return sorted((o for orders in self.live.values() for o in orders), key=lambda o: o.seq)

    def take_liquidity(self, pair_id: str, want: Decimal, *, taker: bool) -> Decimal:
        """How much of `want` this tick's liquidity allows, consuming it."""
        if taker and not self.config.limit_market_orders:
            return want
        left = self.budget.get(pair_id)
        if left is None:
            return want
        take = min(want, left)
        self.budget[pair_id] = left - take
        return take
