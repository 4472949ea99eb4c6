"""Paper exchange engine throughput (prints figures; never asserts).

    python benchmarks/bench_paper_engine.py

1. Ticks per second `set_price` processes with 0, 10 and 1,000 resting orders
   that the ticks do not fill: resting limits only, and a mix of limits, stops
   and trailing stops (trailing stops recompute their trigger on every tick).
   This is the cost a replay pays per price: 12,477 XRP/ETH prints at the
   measured rate show how long a full replay takes.
2. Ticks per second while one large resting order fills a little on every tick
   (liquidity-limited partial fills: a trade record per tick).
3. AddOrder per second straight into the engine (validation, hold, matching).
Timings vary by machine: orders of magnitude, not promises.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from triplegain_fsm.paper.clock import ManualClock
from triplegain_fsm.paper.engine import Engine
from triplegain_fsm.paper.params import parse_add_order

PAIR = "XBTUSD"
PRICES = [str(Decimal(43000) + Decimal(i % 100) - 50) for i in range(1000)]   # a +-50 USD wobble


def engine(**kwargs) -> Engine:
    e = Engine(balances={"ZUSD": "100000000", "XXBT": "100000"}, clock=ManualClock(), seed=1, **kwargs)
    e.set_price(PAIR, "43000")
    return e


def add(e: Engine, **params: str) -> None:
    e.add_order(parse_add_order({"pair": PAIR, **params}))


def resting_limits(e: Engine, n: int) -> None:
    for i in range(n):
        add(e, type="buy", ordertype="limit", price=str(Decimal(30000) - Decimal(i) / 10), volume="0.001")


def resting_mix(e: Engine, n: int) -> None:
    for i in range(n):
        kind = i % 3
        if kind == 0:
            add(e, type="buy", ordertype="limit", price=str(Decimal(30000) - Decimal(i) / 10), volume="0.001")
        elif kind == 1:
            add(e, type="sell", ordertype="stop-loss", price=str(Decimal(30000) - Decimal(i) / 10), volume="0.001")
        else:
            add(e, type="sell", ordertype="trailing-stop", price="+5000", volume="0.001")


def ticks_per_second(e: Engine, ticks: int) -> float:
    start = time.perf_counter()
    for i in range(ticks):
        e.set_price(PAIR, PRICES[i % len(PRICES)])
    return ticks / (time.perf_counter() - start)


def run_book(label: str, build: Callable[[Engine, int], None]) -> None:
    print(f"\n{label}")
    print(f"  {'resting orders':>15} {'ticks/s':>12} {'us/tick':>10} {'12,477-tick replay':>20}")
    for n, ticks in ((0, 20000), (10, 20000), (1000, 2000)):
        e = engine()
        build(e, n)
        assert len(e.open_orders()["open"]) == n
        rate = ticks_per_second(e, ticks)
        print(f"  {n:>15,} {rate:>12,.0f} {1e6 / rate:>10.1f} {12477 / rate:>19.2f}s")


def run_partial_fills() -> None:
    e = engine(liquidity_per_tick="0.001")
    e.set_price(PAIR, "44000")
    add(e, type="buy", ordertype="limit", price="43100", volume="50")   # rests, then every tick is below it
    rate = ticks_per_second(e, 5000)
    print(f"\none resting order filling 0.001 per tick: {rate:,.0f} ticks/s (a trade per tick), "
          f"{len(e.all_trades()):,} trades")


def run_add_order() -> None:
    e = engine()
    n = 3000
    start = time.perf_counter()
    resting_limits(e, n)
    rate = n / (time.perf_counter() - start)
    print(f"AddOrder (resting limit) straight into the engine: {rate:,.0f} orders/s")


def main() -> None:
    run_book("1a. ticks/s, resting limit orders (not filled)", resting_limits)
    run_book("1b. ticks/s, mix of limits, stop-losses and trailing stops (not triggered)", resting_mix)
    run_partial_fills()
    run_add_order()


if __name__ == "__main__":
    main()
