"""A burst of stop moves on one position, on the Starter tier's real counters (prints; never asserts).

    python benchmarks/bench_burst.py

Eight threads each make 15 stop moves on one protected margin position as fast as they can
(modify_position, trailing switched on, rising ticks that ratchet it), against a paper exchange
that enforces Kraken's Starter counters, with a client that really waits for budget. Prints the
wall time until the last caller returned, the AmendOrders the exchange accepted per leg, and
whether the exchange's final trigger is the position's last desired level (goal: well under
30 s, a handful of amends per leg, never one per call).
"""
from __future__ import annotations

import sys
import tempfile
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from triplegain_fsm.models import TradeProposal  # noqa: E402
from triplegain_fsm.testing import paced_paper_core, stop_move_burst  # noqa: E402


def main(seeds: int = 3) -> None:
    print("## 8 threads x 15 stop moves on one position, Starter tier")
    print(f"{'seed':>4} {'seconds':>8} {'stop amends':>11} {'errors':>6}  final trigger == desired")
    for seed in range(seeds):
        with tempfile.TemporaryDirectory() as tmp:
            core = paced_paper_core(f"{tmp}/burst.sqlite")
            result = core.orders.execute_trade(TradeProposal(
                symbol="BTC/USD", side="buy", size_usd=Decimal("4300"), stop_loss=Decimal(41000),
                take_profit=Decimal(48000), leverage=2))
            core.poll_once()
            burst = stop_move_burst(core, result.position_id, seed=seed)
            core.poll_once()
            position = core.positions.get_position(result.position_id)
            stop = core.orders.get_order(position.stop_loss_order_id)
            held = Decimal(core.paper.order(stop.external_id)["descr"]["price"])
            print(f"{seed:>4} {burst.seconds:>8.1f} {burst.amends_per_leg.get('stop_loss', 0):>11} "
                  f"{len(burst.errors):>6}  {held == position.stop_loss} ({held} / {position.stop_loss})")
            core.close()


if __name__ == "__main__":
    main()
