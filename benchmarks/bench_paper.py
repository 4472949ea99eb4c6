"""Paper-session figures: stop-loss slippage in a flash crash, and session throughput (prints; never asserts).

    python benchmarks/bench_paper.py

1. Stop-loss exits in the demo's flash crash (12 % over four one-second ticks).
   This design: the stop rests at the exchange (a Kraken stop-loss order) and
   the core checks every tick (on_price_update), so the exit is the first tick
   at or through the stop. The old design (the reviewed execution layer) kept
   SL/TP locally and checked them every 60 seconds: emulated on the same series
   by looking at the price once every 60 s of the series' timestamps and
   exiting at that price if it is at or through the stop. Its result depends on
   where the 60-s checks fall, so it is shown over all 60 phases: the mean and
   the worst exit, and how many phases never saw the stop because the price had
   recovered above it before the next check (the position stayed open through
   the crash, unprotected).
2. Ticks per second a paper session processes (price tick to the paper
   exchange and on_price_update, poll, store writes), on the demo series and on
   the 12,477 real XRP/ETH prints scaled to BTC/USD levels, polling after every
   tick and after every 10.
"""
from __future__ import annotations

import logging
import statistics
import sys
import tempfile
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from triplegain_fsm.config import Config  # noqa: E402
from triplegain_fsm.paper.feeds import Tick  # noqa: E402
from triplegain_fsm.session import (  # noqa: E402
    Open,
    demo_config,
    demo_schedule,
    demo_ticks,
    load_price_csv,
    run_paper_session,
)

DATA = Path(__file__).resolve().parent.parent / "triplegain_fsm" / "data"
STOPS_PCT = ("1", "2", "3", "5", "8", "10")
OPEN_AT = 600            # ticks before the crash at 700 (demo series)
CHECK_EVERY = 60.0       # seconds: the old design's SL/TP check interval


def _config(store: Path) -> Config:
    base = demo_config(store)
    return Config.from_dict({
        "exchange": {"mode": "paper"}, "storage": {"path": str(store)},
        "limits": {"max_open_positions": 20, "max_positions_per_symbol": 20},
        "paper": {"balances": {"ZUSD": 1_000_000}, "prices": dict(base.paper.prices)},
    })


def stop_slippage() -> None:
    ticks = demo_ticks()
    schedule = [(OPEN_AT + i, Open(f"sl{pct}", size_usd=Decimal(2000), stop_loss_pct=Decimal(pct),
                                   take_profit_pct=Decimal(30)))
                for i, pct in enumerate(STOPS_PCT)]
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_paper_session(_config(Path(tmp) / "bench.sqlite"), ticks, schedule)
    print("## 1. stop-loss exits in the flash crash (demo series: 12 % over ticks 700-703, 1 s apart)")
    print(f"session books: {'agree to the cent' if summary.ok else 'DISAGREE: ' + '; '.join(summary.problems())}")
    header = (f"{'stop':>5}  {'stop level':>10}  {'per-tick exit':>13}  {'slip':>6}  "
              f"{'60-s mean exit':>14}  {'mean slip':>9}  {'60-s worst exit':>15}  {'worst slip':>10}  missed")
    print(header)
    print("-" * len(header))
    per_tick_slips: list[Decimal] = []
    old_slips: list[Decimal] = []
    for pct, position in zip(STOPS_PCT, summary.positions, strict=True):
        stop = position.stop_loss
        assert stop is not None
        if position.exit_by != "stop_loss order" or position.exit_price is None:
            print(f"{pct:>4}%  {stop:>10,.1f}  not stopped out ({position.exit_by})")
            continue
        slip = (stop - position.exit_price) / stop * 100
        per_tick_slips.append(slip)
        exits, missed = _sixty_second_exits(ticks, stop, start=ticks[OPEN_AT].time)
        mean_exit = sum(exits, Decimal(0)) / len(exits) if exits else None
        worst = min(exits) if exits else None
        mean_slip = (stop - mean_exit) / stop * 100 if mean_exit is not None else None
        worst_slip = (stop - worst) / stop * 100 if worst is not None else None
        old_slips.extend((stop - e) / stop * 100 for e in exits)
        print(f"{pct:>4}%  {stop:>10,.1f}  {position.exit_price:>13,.1f}  {slip:>5.2f}%  "
              f"{_fmt(mean_exit, 14)}  {_pct(mean_slip, 9)}  {_fmt(worst, 15)}  {_pct(worst_slip, 10)}  "
              f"{missed}/60")
    if per_tick_slips and old_slips:
        print(f"mean slippage past the stop: per-tick {statistics.mean(per_tick_slips):.2f} %, "
              f"60-s checks {statistics.mean(old_slips):.2f} % (over the phases that exited)")


def _sixty_second_exits(ticks: Sequence[Tick], stop: Decimal, start: float) -> tuple[list[Decimal], int]:
    """Exit prices of a local-only stop checked every 60 s, one per check phase (0..59 s); and the misses.

    A check at time t sees the last tick at or before t. A check that sees the
    price at or through the stop exits at that price. A check that sees it
    above the stop although some tick since the previous check was through it
    has missed the breach: that phase's position rode the crash out unprotected.
    """
    exits: list[Decimal] = []
    missed = 0
    for phase in range(60):
        check = start + phase
        index = 0
        while check <= ticks[-1].time:
            first = index
            while index + 1 < len(ticks) and ticks[index + 1].time <= check:
                index += 1
            if ticks[index].price <= stop:
                exits.append(ticks[index].price)
                break
            if any(t.price <= stop for t in ticks[first:index + 1]):
                missed += 1
                break
            check += CHECK_EVERY
    return exits, missed


def _fmt(value: Decimal | None, width: int) -> str:
    return f"{value:>{width},.1f}" if value is not None else f"{'-':>{width}}"


def _pct(value: Decimal | None, width: int) -> str:
    return f"{value:>{width - 1}.2f}%" if value is not None else f"{'-':>{width}}"


def throughput() -> None:
    print("\n## 2. ticks per second a paper session processes (2-core machine; orders of magnitude)")
    xrp = load_price_csv(DATA / "xrp_eth_trades.csv", scale=Decimal(30_000_000))
    series = {"demo flash crash": demo_ticks(), "XRP/ETH prints x3e7": xrp}
    print(f"{'series':<22} {'ticks':>7} {'poll every':>10} {'actions':>8} {'seconds':>8} {'ticks/s':>9}")
    for name, ticks in series.items():
        for poll_every in (1, 10):
            for with_trades in (True, False):
                schedule = demo_schedule(len(ticks)) if with_trades else []
                with tempfile.TemporaryDirectory() as tmp:
                    summary = run_paper_session(demo_config(Path(tmp) / "t.sqlite"), ticks, schedule,
                                                poll_every=poll_every)
                print(f"{name:<22} {len(ticks):>7,} {poll_every:>10} {len(schedule):>8} "
                      f"{summary.elapsed_seconds:>8.2f} {summary.ticks_per_second:>9,.0f}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    stop_slippage()
    throughput()
