"""Exchange fill -> stop-loss held at the exchange, stream vs poll (prints; never asserts).

    python benchmarks/bench_fill_to_stop.py [--fills 20]

One run against the loopback paper exchange, in each mode: 20 resting limit buys at
distinct prices are filled one at a time at random moments (the price is moved to one
entry's level; the paper engine fills it inside that call). For each fill it measures
the time until the exchange held the stop-loss (its `opentm`, by the paper exchange's
clock; the stop goes over the socket in stream mode, by REST in poll mode). The stream
mode runs the core's real WebSocket client against the paper exchange's WebSocket v2
server over a loopback socket; the poll mode runs the real
poller thread at the default 5 s interval. Also printed: unprotected position-seconds
per fill (filled volume without a resting stop, integrated), REST calls per minute
while idle with 20 working orders, and the cost of applying one pushed report.
"""
from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from triplegain_fsm.executions import from_stream  # noqa: E402
from triplegain_fsm.models import TradeProposal  # noqa: E402
from triplegain_fsm.testing import paper_core  # noqa: E402

TOP = Decimal(43000)


def entries(count: int) -> list[Decimal]:
    return [TOP - 10 * (i + 1) for i in range(count)]


def build(tmp: str, stream: str):
    core = paper_core(f"{tmp}/{stream}.sqlite", price=str(TOP + 100),
                      exchange={"stream": stream}, orders={"poll_interval_seconds": 5.0},
                      limits={"max_open_positions": 100, "max_positions_per_symbol": 100})
    core.start()
    if core.stream is not None:
        core.stream.wait_connected(10)
    return core


def fill_one_at_a_time(core, count: int, rng: random.Random) -> list[float]:
    results = [core.orders.execute_trade(TradeProposal(
        symbol="BTC/USD", side="buy", size_usd=Decimal(430), entry_price=price, stop_loss=Decimal(40000)))
        for price in entries(count)]
    latencies = []
    for result, price in zip(results, entries(count), strict=True):
        time.sleep(rng.uniform(0.05, 5.0))           # a random moment (random phase to the 5 s poll)
        core.price_tick("BTC/USD", price)            # fills exactly this entry at the exchange
        filled_at = time.time()
        deadline = filled_at + 30
        while time.time() < deadline:
            position = core.positions.get_position(result.position_id)
            stop = core.orders.get_order(position.stop_loss_order_id) if position.stop_loss_order_id else None
            if stop is not None and stop.external_id:   # opentm: when the exchange took the stop (either channel)
                latencies.append(float(core.paper.order(stop.external_id)["opentm"]) - filled_at)
                break
            time.sleep(0.0005)
        else:
            latencies.append(float("nan"))
    return latencies


def idle_rest_calls_per_minute(core, seconds: float) -> float:
    before = len(core.paper.calls)
    time.sleep(seconds)
    return (len(core.paper.calls) - before) * 60 / seconds


def apply_cost_us(core, reports: int = 2000) -> float:
    """A pushed status report for a working order, parsed and applied (no fill: no SQLite write)."""
    core.stop()   # the stream quiet: only this loop applies reports
    order = next(o for o in core.orders.working_orders() if o.external_id)
    raw = {"exec_type": "status", "order_status": "new", "order_id": order.external_id}
    started = time.perf_counter()
    for _ in range(reports):
        core.orders.apply_stream(from_stream(raw, raw))
    return (time.perf_counter() - started) / reports * 1e6


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(count: int = 20, idle_seconds: float = 20.0) -> None:
    rng = random.Random(7)
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("websocket", "poll"):
            core = build(tmp, mode)
            try:
                idle_core_orders = [core.orders.execute_trade(TradeProposal(
                    symbol="BTC/USD", side="buy", size_usd=Decimal(430), entry_price=Decimal(30000) + i,
                    stop_loss=Decimal(29000))) for i in range(20)]
                idle = idle_rest_calls_per_minute(core, idle_seconds)
                for result in idle_core_orders:
                    core.orders.cancel_order(result.order.id)
                latencies = fill_one_at_a_time(core, count, rng)
                cost = apply_cost_us(core) if mode == "websocket" else None
            finally:
                core.close()
            figures[mode] = (latencies, idle, cost)
    print(f"## exchange fill -> stop-loss held at the exchange, {count} fills one at a time")
    print(f"{'mode':>10} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'unprot. pos-s/fill':>19} "
          f"{'idle REST calls/min':>20}")
    for mode, (latencies, idle, _) in figures.items():
        ms = [x * 1000 for x in latencies]
        qty = Decimal(430) / TOP                       # every entry buys about this much
        unprotected = statistics.mean(latencies) * float(qty)
        print(f"{mode:>10} {statistics.median(ms):>10.1f} {pct(ms, 0.95):>8.1f} {max(ms):>8.1f} "
              f"{unprotected:>19.5f} {idle:>20.1f}")
    ratio = statistics.median(figures["poll"][0]) / statistics.median(figures["websocket"][0])
    print(f"poll / stream median ratio: {ratio:.0f}x")
    print(f"pushed report -> machine (parse + apply, no fill): {figures['websocket'][2]:.1f} us")


if __name__ == "__main__":
    main(int(sys.argv[sys.argv.index("--fills") + 1]) if "--fills" in sys.argv else 20)
