"""Order machine and order manager figures (prints; never asserts).

    python benchmarks/bench_orders.py

1. Attaching 10,000 orders: one shared Machine with add_model (our design) vs
   one Machine per order — construction time and memory per order.
2. Transitions per second through MachineKind.fire (guards + record keeping).
3. QueryOrders calls per poll cycle for 1, 20, 100, 1,000 open orders, counted
   at the paper exchange, against one call per order (the reviewed design).
4. execute_trade engine time excluding the HTTP round trip, with the price known.
"""
from __future__ import annotations

import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

from transitions import Machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from triplegain_fsm.machines.order_machine import ORDER_KIND, ORDER_TABLE  # noqa: E402
from triplegain_fsm.models import Order, OrderSide, OrderType  # noqa: E402


def _order() -> Order:
    return Order(symbol="BTC/USD", side=OrderSide.BUY, order_type=OrderType.LIMIT, size=Decimal(1),
                 price=Decimal(100))


def _attach_all(name: str, orders: list[Order]) -> list[Machine]:
    machines = []
    for order in orders:
        if name.startswith("shared"):
            ORDER_KIND.attach(order)
        else:
            machines.append(Machine(model=order, states=ORDER_KIND.states, initial=order.state,
                                    transitions=[e.as_kwargs() for e in ORDER_TABLE], auto_transitions=False))
    return machines


def attach_cost(n: int = 10_000) -> None:
    print(f"## attaching {n:,} orders (time without tracing; memory measured in a second, traced run)")
    for name in ("shared machine + add_model", "one Machine per order"):
        orders = [_order() for _ in range(n)]
        gc.collect()
        start = time.perf_counter()
        machines = _attach_all(name, orders)
        elapsed = time.perf_counter() - start
        for order in orders:
            ORDER_KIND.detach(order)
        del machines
        orders = [_order() for _ in range(n)]
        gc.collect()
        tracemalloc.start()
        machines = _attach_all(name, orders)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"{name:30s} {elapsed / n * 1e6:8.1f} µs/order  {peak / n / 1024:6.1f} KiB/order")
        for order in orders:
            ORDER_KIND.detach(order)
        del machines


def transitions_per_second(n: int = 20_000) -> None:
    orders = [_order() for _ in range(n // 4)]
    for order in orders:
        ORDER_KIND.attach(order)
    start = time.perf_counter()
    fired = 0
    for order in orders:
        ORDER_KIND.fire(order, "acknowledge")
        ORDER_KIND.fire(order, "fill", vol_exec=Decimal("0.5"), cost=Decimal(50), fee=Decimal(0))
        ORDER_KIND.fire(order, "fill", vol_exec=Decimal("0.75"), cost=Decimal(75), fee=Decimal(0))
        ORDER_KIND.fire(order, "fill", vol_exec=Decimal("1"), cost=Decimal(100), fee=Decimal(0))
        fired += 4
    elapsed = time.perf_counter() - start
    leaked = sum(1 for o in orders if ORDER_KIND.is_attached(o))
    print(f"\n## transitions: {fired / elapsed:,.0f} per second ({elapsed / fired * 1e6:.1f} µs each); "
          f"finished orders still attached: {leaked}")


def poll_calls() -> None:
    from triplegain_fsm.kraken.retry import set_testing
    from triplegain_fsm.models import TradeProposal

    set_testing(True)
    print("\n## QueryOrders calls per poll cycle (paper exchange)")
    print(f"{'open orders':>12} {'this core':>10} {'one per order':>14}")
    for n in (1, 20, 100, 1000):
        with tempfile.TemporaryDirectory() as tmp:
            core = _bench_core(tmp)
            for _ in range(n):
                core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="buy", size_usd=Decimal("100"),
                                                        entry_price=Decimal("40000")))
            core.poll_once()  # the first cycle also reconciles; measure a steady one
            before = _count(core, "QueryOrders")
            core.poll_once()
            calls = _count(core, "QueryOrders") - before
            print(f"{n:>12} {calls:>10} {n:>14}")
            core.close()


def _bench_core(tmp: str):
    """A paper core with room for 1,000 positions and the money to open them."""
    from triplegain_fsm.testing import paper_core

    return paper_core(f"{tmp}/b.sqlite", limits={"max_open_positions": 1000, "max_positions_per_symbol": 1000},
                      paper={"balances": {"ZUSD": "100000000"}})


def _count(core, method: str) -> int:
    return sum(1 for call in core.paper.calls if call.method == method)


def execute_trade_time(n: int = 300) -> None:
    from triplegain_fsm.kraken.retry import set_testing
    from triplegain_fsm.models import TradeProposal

    set_testing(True)
    with tempfile.TemporaryDirectory() as tmp:
        core = _bench_core(tmp)
        http = []
        original = core.client.add_order

        def timed_add_order(req):
            start = time.perf_counter()
            try:
                return original(req)
            finally:
                http.append(time.perf_counter() - start)

        core.client.add_order = timed_add_order
        totals = []
        requests_before = len(core.paper.calls)
        for _ in range(n):
            start = time.perf_counter()
            core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="buy", size_usd=Decimal("100"),
                                                    entry_price=Decimal("40000")))
            totals.append(time.perf_counter() - start)
        engine = [t - h for t, h in zip(totals, http, strict=False)]
        per_trade = (len(core.paper.calls) - requests_before) / n
        print(f"\n## execute_trade (limit, price known), {n} trades")
        print(f"engine time excluding AddOrder round trip: median {statistics.median(engine) * 1e3:.3f} ms, "
              f"p90 {sorted(engine)[int(n * 0.9)] * 1e3:.3f} ms; requests per trade: {per_trade:.2f}")
        core.close()


if __name__ == "__main__":
    attach_cost()
    transitions_per_second()
    poll_calls()
    execute_trade_time()
