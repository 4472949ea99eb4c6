"""The paper market's public data: a tape of its prints, and Kraken's Depth, OHLC and Trades built from it.

The engine only knows the last price (and Ticker's running figures). A served exchange's
price moves come through `tick()` -- the `--prices` replay and `POST /admin/price` -- which
moves the engine and writes the print on the exchange's `Tape`: the recent prints (for
Trades) and, per Kraken interval, the last 720 candles (for OHLC). A price set in process
with `PaperExchange.set_price` moves Ticker and Depth but is not on the tape. The tape is
market data, not the account: it is not persisted.

Depth is synthetic: the paper engine fills at the last price, not against a book, so the
book shows the last price on both sides and further levels one tick apart, each with a
nominal volume of one lot unit. Times are the engine's clock.
"""
from __future__ import annotations

import itertools
import threading
import weakref
from collections import deque
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from triplegain_fsm.errors import ValidationError
from triplegain_fsm.money import to_decimal
from triplegain_fsm.paper.fmt import fmt

if TYPE_CHECKING:
    from triplegain_fsm.paper import PaperExchange
    from triplegain_fsm.paper.engine import Engine
    from triplegain_fsm.paper.pairs import PairSpec

ZERO = Decimal(0)
INTERVALS = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)   # minutes, as Kraken's OHLC accepts
MAX_CANDLES = 720                                          # Kraken returns at most 720 entries
MAX_PRINTS = 5000
MAX_TRADES = 1000
MAX_DEPTH = 500
NANOS = 1_000_000_000


@attrs.frozen
class Print:
    time: float          # engine seconds
    price: Decimal
    volume: Decimal
    side: str            # "b" (the price rose or held) or "s" (it fell)
    trade_id: int


@attrs.define
class Candle:
    time: int            # start of the interval, unix seconds
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = ZERO
    notional: Decimal = ZERO
    count: int = 0

    def add(self, price: Decimal, volume: Decimal) -> None:
        self.high, self.low, self.close = max(self.high, price), min(self.low, price), price
        self.volume += volume
        self.notional += price * volume
        self.count += 1

    @property
    def vwap(self) -> Decimal:
        return self.notional / self.volume if self.volume else self.close


class Tape:
    """One exchange's prints per pair, newest last; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._prints: dict[str, deque[Print]] = {}
        self._candles: dict[tuple[str, int], deque[Candle]] = {}
        self._ids = itertools.count(1)

    def record(self, pair_id: str, time: float, price: Decimal, volume: Decimal) -> Print:
        with self.lock:
            prints = self._prints.setdefault(pair_id, deque(maxlen=MAX_PRINTS))
            side = "s" if prints and price < prints[-1].price else "b"
            entry = Print(time, price, volume, side, next(self._ids))
            prints.append(entry)
            for minutes in INTERVALS:
                candles = self._candles.setdefault((pair_id, minutes), deque(maxlen=MAX_CANDLES))
                start = int(time // (minutes * 60)) * minutes * 60
                if candles and candles[-1].time == start:
                    candles[-1].add(price, volume)
                else:
                    candle = Candle(start, price, price, price, price)
                    candle.add(price, volume)
                    candles.append(candle)
            return entry

    def prints(self, pair_id: str) -> list[Print]:
        with self.lock:
            return list(self._prints.get(pair_id, ()))

    def candles(self, pair_id: str, minutes: int) -> list[Candle]:
        with self.lock:
            return [attrs.evolve(c) for c in self._candles.get((pair_id, minutes), ())]


_TAPES: weakref.WeakKeyDictionary[Engine, Tape] = weakref.WeakKeyDictionary()
_TAPES_LOCK = threading.Lock()


def tape_of(engine: Engine) -> Tape:
    """The tape of this engine's market (made on first use, gone with the engine)."""
    with _TAPES_LOCK:
        tape = _TAPES.get(engine)
        if tape is None:
            tape = _TAPES[engine] = Tape()
        return tape


def tick(exchange: PaperExchange, pair: str, price: Any, volume: Any = None) -> tuple[str, Decimal, list[Any]]:
    """Move the market of `pair` to `price` and put the print on the tape: (pair id, price as the engine
    rounded it, the trades the tick caused)."""
    engine = exchange.engine
    spec = engine.registry.resolve(pair)
    size = ZERO if volume is None else to_decimal(volume, "volume")
    if size < 0:
        raise ValidationError(f"volume: must be >= 0, got {volume}")
    tape = tape_of(engine)
    with tape.lock:   # tape, then engine: prints stay in the engine's order
        trades = exchange.set_price(spec.id, price, volume=size)
        last = engine.last_price(spec.id)
        assert last is not None
        tape.record(spec.id, engine.now(), last, size)
    return spec.id, last, trades


# --------------------------------------------------------------------------- Kraken's shapes


def depth(engine: Engine, spec: PairSpec, count: int) -> dict[str, Any]:
    """Depth for one pair: `count` levels a side around the last price (none before a first price)."""
    last = engine.last_price(spec.id)
    if last is None:
        return {spec.id: {"asks": [], "bids": []}}
    now = int(engine.now())
    volume = fmt(Decimal(1), spec.lot_decimals)
    levels = range(min(count, MAX_DEPTH))
    asks = [[fmt(last + i * spec.tick_size, spec.pair_decimals), volume, now] for i in levels]
    bids = [[fmt(last - i * spec.tick_size, spec.pair_decimals), volume, now] for i in levels
            if last - i * spec.tick_size > 0]
    return {spec.id: {"asks": asks, "bids": bids}}


def ohlc(engine: Engine, spec: PairSpec, minutes: int, since: float | None) -> dict[str, Any]:
    """OHLC candles of `minutes`, oldest first; the last one is the interval still open (always sent)."""
    candles = tape_of(engine).candles(spec.id, minutes)
    last = engine.last_price(spec.id)
    step = minutes * 60
    if not candles and last is not None:   # a price but no print yet: one candle at it, no volume
        candles = [Candle(int(engine.now() // step) * step, last, last, last, last)]
    shown = [c for c in candles[:-1] if since is None or c.time > since] + candles[-1:]
    committed = candles[-2].time if len(candles) > 1 else (candles[-1].time - step if candles else 0)
    price = lambda value: fmt(value, spec.pair_decimals)  # noqa: E731
    rows = [[c.time, price(c.open), price(c.high), price(c.low), price(c.close), price(c.vwap),
             fmt(c.volume, spec.lot_decimals), c.count] for c in shown]
    return {spec.id: rows, "last": committed}


def trades(engine: Engine, spec: PairSpec, since: float | None, count: int) -> dict[str, Any]:
    """Recent prints: after `since` (seconds) the oldest `count`, else the newest `count`."""
    prints = tape_of(engine).prints(spec.id)
    if since is not None:
        prints = [p for p in prints if p.time > since][:count]
    else:
        prints = prints[-count:]
    rows = [[fmt(p.price, spec.pair_decimals), fmt(p.volume, spec.lot_decimals), round(p.time, 4), p.side, "m", "",
             p.trade_id] for p in prints]
    newest = prints[-1].time if prints else (since or 0.0)
    return {spec.id: rows, "last": str(int(newest * NANOS))}


def since_seconds(value: float | None) -> float | None:
    """Kraken's `since` is seconds or, for Trades, nanoseconds: a value past year 5000 is read as nanoseconds."""
    if value is not None and value > 1e11:
        return value / NANOS
    return value
