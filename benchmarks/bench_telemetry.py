"""Telemetry figures (prints; never asserts).

    python benchmarks/bench_telemetry.py

1. A Prometheus scrape (the whole registry rendered, state gauges computed from the core's
   memory under its lock) with 1, 100 and 1,000 open positions.
2. What the telemetry adds to a poll cycle (metrics and heartbeat flag: `Telemetry.poll_done`).
3. An alert that goes to the notifications outbox, against one that does not (the extra row in
   the same commit).
The tick path has no telemetry at all: see bench_positions.py for `on_price_update`.
"""
from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import attrs  # noqa: E402
from prometheus_client import generate_latest  # noqa: E402

from triplegain_fsm import alerts  # noqa: E402
from triplegain_fsm.config import ExchangeConfig  # noqa: E402
from triplegain_fsm.kraken.retry import set_testing  # noqa: E402
from triplegain_fsm.models import TradeProposal  # noqa: E402
from triplegain_fsm.orders import PollReport  # noqa: E402
from triplegain_fsm.testing import paper_core  # noqa: E402


def _timed(fn, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9)]


def _core(tmp: str, **sections):
    extra = {"exchange": {"stream": "poll"}} if _has_stream() else {}   # REST polling only: nothing in the background
    return paper_core(f"{tmp}/bench.sqlite", price=None, **extra, **sections)


def _scrape_row(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        core = _core(tmp, limits={"max_open_positions": 1000, "max_positions_per_symbol": 1000},
                     paper={"balances": {"ZUSD": "1000000000"}})
        core.price_tick("BTC/USD", Decimal("43000"))
        for opened in range(1, n + 1):
            core.orders.execute_trade(TradeProposal(symbol="BTC/USD", side="buy", size_usd=Decimal("100"),
                                                    stop_loss=Decimal("41000"), take_profit=Decimal("48000")))
            if opened % 50 == 0 or opened == n:
                core.poll_once()
        registry = core.metrics.registry
        scrape = _timed(lambda: generate_latest(registry), 50)
        report = PollReport()
        poll = _timed(lambda: core.telemetry.poll_done(report), 200)
        resync = _timed(core.metrics.resync, 20)
        print(f"{n:>10} {scrape[0] * 1e3:>10.2f} {scrape[1] * 1e3:>8.2f} {poll[0] * 1e6:>13.1f} "
              f"{poll[1] * 1e6:>8.1f} {resync[0] * 1e3:>10.2f}")
        core.close()


def scrape_and_poll_cost() -> None:
    print("## one scrape (render the registry), the telemetry's share of a poll cycle, and the once-a-minute"
          " re-read of every position (held under the core's lock)")
    print(f"{'positions':>10} {'scrape ms':>10} {'p90 ms':>8} {'poll_done µs':>13} {'p90 µs':>8} {'resync ms':>10}")
    for n in (1, 100, 1000):
        _scrape_row(n)


def _alert_row(urls: tuple[str, ...]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        core = _core(tmp, notifications={"urls": list(urls)}, alerts={"repeat_after_seconds": 0})
        counter = iter(range(10**9))

        def raise_one() -> None:
            with core.guard.unit() as unit:
                unit.alert(alerts.POSITION_UNPROTECTED, alerts.CRITICAL, "bench", position_id=f"p{next(counter)}")

        median, p90 = _timed(raise_one, 500)
        label = "outbox on " if urls else "outbox off"
        print(f"{label}: median {median * 1e6:.0f} µs, p90 {p90 * 1e6:.0f} µs")
        core.close()


def alert_cost() -> None:
    print("\n## one alert committed (unit of work), without and with its outbox row")
    for urls in ((), ("json://127.0.0.1:9/bench",)):
        _alert_row(urls)


def _has_stream() -> bool:
    return "stream" in {f.name for f in attrs.fields(ExchangeConfig)}


if __name__ == "__main__":
    set_testing(True)
    logging.disable(logging.CRITICAL)
    scrape_and_poll_cost()
    alert_cost()
