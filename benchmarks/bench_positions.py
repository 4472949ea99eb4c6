"""Position tracker figures (prints; never asserts).

    python benchmarks/bench_positions.py

1. on_price_update cost for a tick that crosses no level, with 1, 10, 100 and
   1,000 open positions on one symbol (target: <= 5 µs median, flat in N).
2. Engine time from a fill being seen (QueryOrders answer in hand) to the
   stop-loss request being sent, excluding the HTTP round trips, and the
   number of SQLite commits in between (target: < 1 ms, one commit).
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from triplegain_fsm.core import ExecutionCore  # noqa: E402
from triplegain_fsm.kraken.retry import set_testing  # noqa: E402
from triplegain_fsm.models import TradeProposal  # noqa: E402
from triplegain_fsm.testing import paper_core  # noqa: E402


def _core(tmp: str, account: str = "spot") -> ExecutionCore:
    return paper_core(f"{tmp}/bench.sqlite", account, price=None,
                      limits={"max_open_positions": 1000, "max_positions_per_symbol": 1000},
                      paper={"balances": {"ZUSD": "1000000000"}})


def tick_cost() -> None:
    print("## on_price_update, tick crossing no level (spot: stop at the exchange, target kept locally)")
    print(f"{'positions':>10} {'median µs':>10} {'p99 µs':>8}")
    for n in (1, 10, 100, 1000):
        with tempfile.TemporaryDirectory() as tmp:
            core = _core(tmp)
            core.price_tick("BTC/USD", Decimal("43000"))
            opened = 0
            while opened < n:
                core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="buy", size_usd=Decimal("100"),
                                                        stop_loss=Decimal("41000"), take_profit=Decimal("48000")))
                opened += 1
                if opened % 50 == 0 or opened == n:
                    core.poll_once()
            prices = [Decimal(42000 + (i * 37) % 5000) for i in range(20000)]
            update = core.positions.on_price_update
            samples = []
            clock = time.perf_counter_ns
            for price in prices:
                start = clock()
                update("BTC/USD", price)
                samples.append(clock() - start)
            samples.sort()
            p99 = samples[int(len(samples) * 0.99)]
            print(f"{n:>10} {statistics.median(samples) / 1000:>10.2f} {p99 / 1000:>8.2f}")
            core.close()


def fill_to_stop() -> None:
    print("\n## fill seen -> stop-loss request sent (engine time, margin account, 200 entries, one at a time)")
    with tempfile.TemporaryDirectory() as tmp:
        core = _core(tmp, account="margin")
        core.price_tick("BTC/USD", Decimal("43000"))
        client = core.client
        store = core.store
        marks: dict[str, float] = {}
        engine: list[float] = []
        commits: list[int] = []
        commit_count = [0]
        original_query, original_add, original_tx = client.query_orders, client.add_order, store.transaction

        def query(txids, trades=True):
            result = original_query(txids, trades=trades)
            marks["seen"] = time.perf_counter()
            commit_count[0] = 0
            return result

        def add(request):
            if "seen" in marks and request.order_type.value == "stop-loss":
                engine.append(time.perf_counter() - marks.pop("seen"))
                commits.append(commit_count[0])
            return original_add(request)

        def transaction():
            commit_count[0] += 1
            return original_tx()

        client.query_orders, client.add_order, store.transaction = query, add, transaction
        for _ in range(200):
            result = core.orders.execute_trade(TradeProposal(
                symbol="BTC/USD", side="buy", size_usd=Decimal("1000"), stop_loss=Decimal("41000"),
                take_profit=Decimal("48000"), leverage=2))
            core.poll_once()  # the entry is the only live order: one QueryOrders batch, then the stop
            core.positions.close_position(result.position_id)
            core.poll_once()
        p90 = sorted(engine)[int(len(engine) * 0.9)]
        print(f"median {statistics.median(engine) * 1e3:.3f} ms, p90 {p90 * 1e3:.3f} ms;"
              f" SQLite commits between: {statistics.median(commits):.0f} (max {max(commits)})")
        core.close()


if __name__ == "__main__":
    set_testing(True)
    tick_cost()
    fill_to_stop()
