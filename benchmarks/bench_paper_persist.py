"""What keeping the paper account in SQLite costs (prints figures; never asserts).

    python benchmarks/bench_paper_persist.py

Each row runs the same work on a paper exchange without a state file ("off") and with one
("on", a temporary file: WAL, synchronous=NORMAL, one transaction per operation that changed
something):

1. ticks that move only the price (10 resting orders far away): kept in memory, no commit;
2. ticks that move a trailing stop's trigger each time (a real change: one commit per tick);
3. ticks that partly fill a resting order each time (order, trade, balances: one commit);
4. AddOrder of a resting limit (one commit each), and of a market order that fills at once.
Timings vary by machine: orders of magnitude, not promises.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from triplegain_fsm.paper import ManualClock, PaperExchange
from triplegain_fsm.paper.params import parse_add_order

PAIR = "XBTUSD"
WOBBLE = [str(Decimal(43000) + Decimal(i % 100) - 50) for i in range(1000)]   # +-50 USD, never reaches 30000


def exchange(path: Path | None, **kwargs: object) -> PaperExchange:
    return PaperExchange(balances={"ZUSD": "100000000", "XXBT": "100000"}, prices={"BTC/USD": "43000"},
                         clock=ManualClock(), seed=1, state_path=path, **kwargs)  # type: ignore[arg-type]


def add(ex: PaperExchange, **params: str) -> None:
    ex.engine.add_order(parse_add_order({"pair": PAIR, **params}))


def rate(count: int, work: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(count):
        work(i)
    return count / (time.perf_counter() - start)


def price_only(ex: PaperExchange, n: int) -> float:
    for i in range(10):
        add(ex, type="buy", ordertype="limit", price=str(30000 - i), volume="0.001")
    return rate(n, lambda i: ex.set_price("BTC/USD", WOBBLE[i % len(WOBBLE)]))


def trailing(ex: PaperExchange, n: int) -> float:
    add(ex, type="sell", ordertype="trailing-stop", price="+5000", volume="0.001")
    return rate(n, lambda i: ex.set_price("BTC/USD", str(43000 + i)))        # a new high every tick


def partial_fills(ex: PaperExchange, n: int) -> float:
    ex.set_price("BTC/USD", "44000")
    add(ex, type="buy", ordertype="limit", price="43100", volume="50")
    return rate(n, lambda i: ex.set_price("BTC/USD", WOBBLE[i % len(WOBBLE)]))


def resting_limits(ex: PaperExchange, n: int) -> float:
    return rate(n, lambda i: add(ex, type="buy", ordertype="limit", price=str(30000 - i % 5000), volume="0.001"))


def market_orders(ex: PaperExchange, n: int) -> float:
    return rate(n, lambda i: add(ex, type="buy" if i % 2 else "sell", ordertype="market", volume="0.001"))


CASES: list[tuple[str, str, Callable[[PaperExchange, int], float], int, dict[str, object]]] = [
    ("ticks, price only (10 resting orders)", "ticks/s", price_only, 20000, {}),
    ("ticks, trailing stop moves each tick", "ticks/s", trailing, 3000, {}),
    ("ticks, a partial fill each tick", "ticks/s", partial_fills, 3000, {"liquidity_per_tick": "0.001"}),
    ("AddOrder, resting limit", "placements/s", resting_limits, 3000, {}),
    ("AddOrder, market (fills at once)", "placements/s", market_orders, 3000, {}),
]


def main() -> None:
    print(f"{'':40} {'unit':>13} {'off':>11} {'on':>11} {'on/off':>7} {'us added':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for n, (label, unit, case, count, kwargs) in enumerate(CASES):
            off = case(exchange(None, **kwargs), count)
            persisted = exchange(Path(tmp) / f"case{n}.sqlite", **kwargs)
            on = case(persisted, count)
            persisted.close()
            added = 1e6 / on - 1e6 / off
            print(f"{label:40} {unit:>13} {off:>11,.0f} {on:>11,.0f} {on / off:>7.2f} {added:>9.1f}")
        size = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
        print(f"\nstate files after the runs: {size:.1f} MB in total")


if __name__ == "__main__":
    main()
