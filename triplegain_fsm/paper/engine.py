"""The matching engine: one lock, one state, every operation atomic. No I/O.

Prices arrive as ticks (`set_price`); orders arrive as typed requests
(`params.NewOrder`). Each public method takes the lock, first applies whatever
the clock says is due (expiries, delayed starts, the dead man's switch), does its
work, places any conditional closes that fills made due, and returns copies in
Kraken's shapes -- never live records another thread could be changing.
With a state file attached (`attach_journal`, see `paper.persist`) the one piece of
I/O happens as the outermost lock is let go: that operation's changes, in one transaction.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from triplegain_fsm.errors import NotFoundError, ValidationError
from triplegain_fsm.money import to_decimal
from triplegain_fsm.paper.errors import INVALID_ORDER, UNKNOWN_ORDER, KrakenRejection, invalid
from triplegain_fsm.paper.fills import finish
from triplegain_fsm.paper.fmt import fmt, quantize, rfc3339
from triplegain_fsm.paper.ids import IdFactory
from triplegain_fsm.paper.ledger import Ledger
from triplegain_fsm.paper.matching import on_tick
from triplegain_fsm.paper.observe import ObservedLock, Observer, Snapshot
from triplegain_fsm.paper.orders import PaperOrder, TradeRecord
from triplegain_fsm.paper.pairs import PairRegistry, PairSpec, build_specs
from triplegain_fsm.paper.params import Amendment, NewOrder, looks_like_txid
from triplegain_fsm.paper.placement import activate, amend, place, place_conditional_close
from triplegain_fsm.paper.state import EngineConfig, State, TickerStats
from triplegain_fsm.paper.views import add_order_result, order_info, position_info, trade_info

if TYPE_CHECKING:
    from triplegain_fsm.paper.persist import StateFile

ZERO = Decimal(0)
PAGE = 50
FINISHED = ("closed", "canceled", "expired")
MARKET_STATUSES = ("online", "cancel_only", "post_only", "limit_only", "reduce_only")
SYSTEM_STATUSES = ("online", "maintenance", "cancel_only", "post_only")
DEAD_MAN_REASON = "Dead man's switch"
MAX_DEAD_MAN_TIMEOUT = 86400


def _liquidity(registry: PairRegistry, value: Any) -> Decimal | dict[str, Decimal] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {registry.resolve(k).id: to_decimal(v, f"liquidity_per_tick[{k}]") for k, v in value.items()}
    return to_decimal(value, "liquidity_per_tick")


class Engine:
    def __init__(
        self,
        pairs: Mapping[str, Mapping[str, Any]] | Iterable[PairSpec] | None = None,
        balances: Mapping[str, Any] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        liquidity_per_tick: Any = None,
        limit_market_orders: bool = False,
        account: str = "spot",
        fill_latency_ticks: int = 0,
        seed: int | None = None,
    ) -> None:
        registry = PairRegistry(build_specs(pairs))
        ledger = Ledger()
        for name, amount in (balances or {}).items():
            ledger.add(registry.asset_or_new(name).id, to_decimal(amount, f"balances[{name}]"))
        if account not in ("spot", "margin"):
            raise ValidationError(f"account: 'spot' or 'margin', got {account!r}")
        if isinstance(fill_latency_ticks, bool) or not isinstance(fill_latency_ticks, int) or fill_latency_ticks < 0:
            raise ValidationError(f"fill_latency_ticks: an int >= 0, got {fill_latency_ticks!r}")
        config = EngineConfig(_liquidity(registry, liquidity_per_tick), limit_market_orders, account,
                              fill_latency_ticks)
        self._state = State(registry, ledger, IdFactory(seed), clock, config)
        self._lock = ObservedLock(lambda: self._state)   # reports order changes to observers on release
        self._journal: StateFile | None = None

    @property
    def registry(self) -> PairRegistry:
        return self._state.registry

    def now(self) -> float:
        return self._state.now()

    # -- observers ----------------------------------------------------------------------------

    def add_observer(self, observer: Observer) -> Snapshot:
        """Tell `observer` every later order change (see `observe`); returns the open orders and
        recent trades as of the same instant, so a push feed neither misses nor repeats one."""
        return self._lock.add_observer(observer)

    def remove_observer(self, observer: Observer) -> None:
        self._lock.remove_observer(observer)

    # -- persistence (paper.persist) ----------------------------------------------------------

    def attach_journal(self, journal: StateFile) -> None:
        """Load `journal`'s saved account into this engine (a new file is seeded with this one), then
        write every change to it before the lock is let go. Once, before other threads use the engine."""
        with self._lock:
            journal.attach(self._state)
        self._journal = journal
        self._lock = journal.wrap(self._lock)

    def close_journal(self) -> None:
        """Write what is only in memory (last prices, Ticker figures, the clock) and close the state file."""
        with self._lock:
            if self._journal is not None:
                self._journal.close()

    # -- time ---------------------------------------------------------------------------------

    def process_time(self) -> None:
        """Apply what the clock says is due; every other method does this first."""
        with self._lock:
            self._process_time()

    def _process_time(self) -> None:
        state = self._state
        now = state.now()
        if state.dead_man_at is not None and now >= state.dead_man_at:
            state.dead_man_at = None
            for order in state.live_orders():
                finish(state, order, "canceled", DEAD_MAN_REASON)
        for order in list(state.timed):
            if not order.is_live:
                continue
            if order.expiretm and now >= order.expiretm:
                finish(state, order, "expired")
            elif order.status == "pending" and now >= order.starttm:
                order.status = "open"
                activate(state, order)
        self._drain_closes()

    def _drain_closes(self) -> None:
        """Place the `close[...]` orders of parents that filled (which may fill and queue more)."""
        state = self._state
        while state.pending_closes:
            place_conditional_close(state, state.pending_closes.pop(0))

    # -- market data --------------------------------------------------------------------------

    def set_price(self, pair: str, price: Any, *, volume: Any = None, liquidity: Any = None) -> list[dict[str, Any]]:
        """A tick: the last trade price of `pair` moves to `price` (rounded to the pair's decimals).

        `volume` counts toward Ticker volume; `liquidity` overrides `liquidity_per_tick`
        for this tick only. Returns the trades the tick caused, Kraken-shaped with `txid`.
        """
        with self._lock:
            state = self._state
            spec = state.registry.resolve(pair)
            value = quantize(to_decimal(price, "price"), spec.pair_decimals)
            if value <= 0:
                raise ValidationError(f"price: must be positive, got {price}")
            tick_volume = ZERO if volume is None else to_decimal(volume, "volume")
            before = len(state.trades)  # counted first: the clock's own work (delayed starts) may trade too
            self._process_time()
            state.prices[spec.id] = value
            state.tick_count[spec.id] = state.tick_count.get(spec.id, 0) + 1
            stats = state.stats.get(spec.id)
            if stats is None:
                stats = state.stats[spec.id] = TickerStats(value, value, value, value)
            stats.update(value, tick_volume)
            state.budget[spec.id] = (
                state.config.liquidity_for(spec.id) if liquidity is None else to_decimal(liquidity, "liquidity")
            )
            on_tick(state, spec.id, value)
            self._drain_closes()
            return self._recent_trades(len(state.trades) - before)

    def _recent_trades(self, count: int) -> list[dict[str, Any]]:
        newest = itertools.islice(reversed(self._state.trades.values()), count)
        return [{"txid": t.txid, **trade_info(t)} for t in reversed(list(newest))]

    def last_price(self, pair: str) -> Decimal | None:
        with self._lock:
            return self._state.prices.get(self._state.registry.resolve(pair).id)

    def ticker(self, pairs: list[str] | None = None) -> dict[str, Any]:
        with self._lock:
            state = self._state
            specs = [state.registry.resolve(p) for p in pairs] if pairs else list(state.registry.pairs.values())
            return {spec.id: _ticker_entry(spec, state.stats[spec.id]) for spec in specs if spec.id in state.stats}

    def pair_entry(self, pair: str) -> dict[str, Any]:
        """The pair's AssetPairs entry, with the market status it has now."""
        with self._lock:
            spec = self._state.registry.resolve(pair)
            return {**spec.to_kraken(), "status": self._state.pair_status.get(spec.id, spec.status)}

    def set_pair_status(self, pair: str, status: str) -> None:
        if status not in MARKET_STATUSES:
            raise ValidationError(f"status: one of {MARKET_STATUSES}, got {status!r}")
        with self._lock:
            self._state.pair_status[self._state.registry.resolve(pair).id] = status

    @property
    def system_status(self) -> str:
        return self._state.system_status

    def set_system_status(self, status: str) -> None:
        if status not in SYSTEM_STATUSES:
            raise ValidationError(f"status: one of {SYSTEM_STATUSES}, got {status!r}")
        with self._lock:
            self._state.system_status = status

    # -- orders -------------------------------------------------------------------------------

    def add_order(self, new: NewOrder) -> dict[str, Any]:
        with self._lock:
            self._process_time()
            order = place(self._state, new)
            self._drain_closes()
            return add_order_result(order, new.validate)

    def amend_order(self, amendment: Amendment) -> dict[str, Any]:
        with self._lock:
            self._process_time()
            amend_id = amend(self._state, amendment)
            self._drain_closes()
            return {"amend_id": amend_id}

    def _targets(self, txid: str | None, cl_ord_id: str | None) -> list[PaperOrder]:
        """The live orders a cancel names: a txid, a userref (all orders with it), or a cl_ord_id."""
        state = self._state
        if txid and txid.lstrip("-").isdigit():
            targets = [o for o in state.live_orders() if o.userref == int(txid)]
        elif txid:
            order = state.orders.get(txid)
            targets = [order] if order is not None and order.is_live else []
        elif cl_ord_id:
            order = state.by_cl_ord_id.get(cl_ord_id)
            targets = [order] if order is not None else []
        else:
            raise invalid()
        if not targets:
            raise KrakenRejection(UNKNOWN_ORDER)
        return targets

    def open_order_ages(self, *, txid: str | None = None, cl_ord_id: str | None = None) -> list[tuple[str, float]]:
        """(pair id, age in seconds) of the orders a cancel would hit: the rate limiter prices them."""
        with self._lock:
            self._process_time()
            now = self._state.now()
            try:
                return [(o.pair.id, now - o.opentm) for o in self._targets(txid, cl_ord_id)]
            except KrakenRejection:
                return []

    def open_count(self, pair: str) -> int:
        with self._lock:
            return len(self._state.live[self._state.registry.resolve(pair).id])

    def cancel_order(self, *, txid: str | None = None, cl_ord_id: str | None = None) -> int:
        with self._lock:
            self._process_time()
            targets = self._targets(txid, cl_ord_id)
            for order in targets:
                finish(self._state, order, "canceled", "User requested")
            return len(targets)

    def cancel_all(self) -> int:
        with self._lock:
            self._process_time()
            targets = self._state.live_orders()
            for order in targets:
                finish(self._state, order, "canceled", "User requested")
            return len(targets)

    def cancel_all_after(self, timeout: int) -> dict[str, str]:
        """Kraken's dead man's switch: cancel everything at now+timeout unless refreshed; 0 disarms."""
        if not 0 <= timeout <= MAX_DEAD_MAN_TIMEOUT:
            raise invalid("timeout")
        with self._lock:
            self._process_time()
            now = self._state.now()
            self._state.dead_man_at = now + timeout if timeout else None
            return {"currentTime": rfc3339(now), "triggerTime": rfc3339(now + timeout) if timeout else "0"}

    @property
    def dead_man_at(self) -> float | None:
        return self._state.dead_man_at

    # -- order queries ------------------------------------------------------------------------

    def query_orders(self, txids: list[str], *, trades: bool = False, userref: int | None = None) -> dict[str, Any]:
        with self._lock:
            self._process_time()
            result = {}
            for txid in txids:
                order = self._state.orders.get(txid)
                if order is None:
                    # Kraken answers QueryOrders for an unknown id with "Invalid order" (CancelOrder: "Unknown order")
                    raise KrakenRejection(INVALID_ORDER if looks_like_txid(txid) else "EGeneral:Invalid arguments:txid")
                if userref is None or order.userref == userref:
                    result[txid] = order_info(order, trades=trades)
            return result

    def open_orders(
        self, *, trades: bool = False, userref: int | None = None, cl_ord_id: str | None = None
    ) -> dict[str, Any]:
        with self._lock:
            self._process_time()
            orders = [o for o in self._state.live_orders() if _matches(o, userref, cl_ord_id)]
            return {"open": {o.txid: order_info(o, trades=trades) for o in orders}}

    def closed_orders(
        self, *, trades: bool = False, userref: int | None = None, cl_ord_id: str | None = None,
        start: str | None = None, end: str | None = None, ofs: int = 0, closetime: str = "both",
    ) -> dict[str, Any]:
        if closetime not in ("open", "close", "both"):
            raise invalid("closetime")
        with self._lock:
            self._process_time()
            lo, hi = self._bound(start, "start", closetime), self._bound(end, "end", closetime)
            orders = [
                o for o in self._state.orders.values()
                if o.status in FINISHED and _matches(o, userref, cl_ord_id) and _in_window(o, lo, hi, closetime)
            ]
            orders.sort(key=lambda o: (o.closetm or 0.0, o.seq), reverse=True)
            page = orders[ofs:ofs + PAGE]
            return {"closed": {o.txid: order_info(o, trades=trades) for o in page}, "count": len(orders)}

    def _bound(self, value: str | None, name: str, closetime: str) -> float | None:
        """A start/end bound: a unix time, or a txid meaning that order's time."""
        if value is None or value == "":
            return None
        order = self._state.orders.get(value)
        if order is not None:
            return order.opentm if closetime == "open" or order.closetm is None else order.closetm
        try:
            return float(value)  # float-ok: a start/end time, not money
        except ValueError:
            raise invalid(name) from None

    def order(self, txid: str) -> dict[str, Any]:
        """One order in QueryOrders' shape (with trades); NotFoundError if the txid is unknown."""
        with self._lock:
            self._process_time()
            order = self._state.orders.get(txid)
            if order is None:
                raise NotFoundError(f"no paper order {txid!r}")
            return order_info(order, trades=True)

    # -- trades and positions -----------------------------------------------------------------

    def trades_history(self, *, start: float | None = None, end: float | None = None, ofs: int = 0) -> dict[str, Any]:
        with self._lock:
            trades = [
                t for t in reversed(self._state.trades.values())
                if (start is None or t.time > start) and (end is None or t.time <= end)
            ]
            return {"trades": {t.txid: trade_info(t) for t in trades[ofs:ofs + PAGE]}, "count": len(trades)}

    def trade_records(self) -> list[TradeRecord]:
        """Every fill as an exact (unrounded, immutable) record, oldest first."""
        with self._lock:
            return list(self._state.trades.values())

    def all_trades(self) -> dict[str, Any]:
        with self._lock:
            return {t.txid: trade_info(t) for t in self._state.trades.values()}

    def query_trades(self, txids: list[str]) -> dict[str, Any]:
        with self._lock:
            result = {}
            for txid in txids:
                trade = self._state.trades.get(txid)
                if trade is None:
                    raise invalid("txid")
                result[txid] = trade_info(trade)
            return result

    def open_positions(self, txids: list[str] | None = None) -> dict[str, Any]:
        with self._lock:
            self._process_time()
            state = self._state
            return {
                row.posid: position_info(row, state.prices.get(row.pair.id))
                for row in state.positions.open_rows() if txids is None or row.posid in txids
            }

    # -- balances -----------------------------------------------------------------------------

    def balances(self) -> dict[str, Decimal]:
        with self._lock:
            return self._state.ledger.balances()

    def holds(self) -> dict[str, Decimal]:
        with self._lock:
            return self._state.ledger.holds()

    def balance(self) -> dict[str, str]:
        with self._lock:
            self._process_time()
            ledger, registry = self._state.ledger, self._state.registry
            return {a: fmt(ledger.balance(a), registry.asset(a).decimals) for a in ledger.assets()}

    def balance_ex(self) -> dict[str, dict[str, str]]:
        with self._lock:
            self._process_time()
            ledger, registry = self._state.ledger, self._state.registry
            return {
                a: {"balance": fmt(ledger.balance(a), registry.asset(a).decimals),
                    "hold_trade": fmt(ledger.hold(a), registry.asset(a).decimals)}
                for a in ledger.assets()
            }

    def trade_balance(self, asset: str = "ZUSD") -> dict[str, str]:
        """TradeBalance in `asset`; holdings with no price path to it are left out."""
        with self._lock:
            self._process_time()
            state = self._state
            target = state.registry.asset(asset).id
            eb = sum((self._convert(state.ledger.balance(a), a, target) for a in state.ledger.assets()), ZERO)
            m = n = c = v = ZERO
            for row in state.positions.open_rows():
                price = state.prices.get(row.pair.id, row.entry_price)
                quote = row.pair.quote
                m += self._convert(row.margin, quote, target)
                n += self._convert(row.net(price), quote, target)
                c += self._convert(row.entry_price * row.remaining, quote, target)
                v += self._convert(price * row.remaining, quote, target)
            uv = sum((self._convert(o.remaining * self._order_price(o), o.pair.quote, target)
                      for o in state.live_orders()), ZERO)
            e = eb + n
            result = {"eb": eb, "tb": eb, "m": m, "n": n, "c": c, "v": v, "e": e, "mf": e - m, "uv": uv}
            if m:
                result["ml"] = e / m * 100
            return {k: fmt(value, 4) for k, value in result.items()}

    def _order_price(self, order: PaperOrder) -> Decimal:
        return order.limit_price or order.trigger_price or self._state.prices.get(order.pair.id, ZERO)

    def _convert(self, amount: Decimal, source: str, target: str) -> Decimal:
        if source == target or not amount:
            return amount
        for spec in self._state.registry.pairs.values():
            price = self._state.prices.get(spec.id)
            if not price:
                continue
            if (spec.base, spec.quote) == (source, target):
                return amount * price
            if (spec.base, spec.quote) == (target, source):
                return amount / price
        return ZERO


def _matches(order: PaperOrder, userref: int | None, cl_ord_id: str | None) -> bool:
    return (userref is None or order.userref == userref) and (cl_ord_id is None or order.cl_ord_id == cl_ord_id)


def _in_window(order: PaperOrder, lo: float | None, hi: float | None, closetime: str) -> bool:
    times = {"open": [order.opentm], "close": [order.closetm or order.opentm]}.get(
        closetime, [order.opentm, order.closetm or order.opentm]
    )
    return any((lo is None or t > lo) and (hi is None or t <= hi) for t in times)


def _ticker_entry(spec: PairSpec, stats: TickerStats) -> dict[str, Any]:
    price = lambda value: fmt(value, spec.pair_decimals)  # noqa: E731
    volume = fmt(stats.volume, spec.lot_decimals)
    last = price(stats.last)
    return {
        "a": [last, "1", "1.000"], "b": [last, "1", "1.000"], "c": [last, fmt(stats.last_volume, spec.lot_decimals)],
        "v": [volume, volume], "p": [price(stats.vwap), price(stats.vwap)], "t": [stats.count, stats.count],
        "l": [price(stats.low), price(stats.low)], "h": [price(stats.high), price(stats.high)], "o": price(stats.open),
    }
