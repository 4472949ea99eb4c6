"""Trading-counter points spent per protected spot position (prints; never asserts).

    python benchmarks/bench_spot_points.py [--positions 5]

Opens protected spot positions (market entry, stop-loss and take-profit) one at a time on
a paper exchange that enforces Kraken's Starter-tier counters, and records every charge
the exchange's per-pair trading counter takes (AddOrder 1, refused or not; cancels and
amends by the order's age), plus the REJECTED rows left in the store. Issue 11 #6: on a
spot account the take-profit used to be sent, refused for the coins the stop holds, and
recorded REJECTED; it is now kept locally when BalanceEx says the coins are not free.
Run it on an older commit to get the "before" figure (the script uses only public API).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from triplegain_fsm.models import TradeProposal  # noqa: E402
from triplegain_fsm.testing import paced_paper_core  # noqa: E402


def run(positions: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        core = paced_paper_core(f"{tmp}/points.sqlite", account="spot",
                                limits={"max_positions_per_symbol": positions, "max_open_positions": positions})
        limiter = core.paper.api.rate_limiter
        charges: list[float] = []
        original = limiter.charge_trading

        def recording(pair_id: str, cost: float) -> None:
            charges.append(cost)
            original(pair_id, cost)

        limiter.charge_trading = recording   # type: ignore[method-assign]
        protected = 0
        for _ in range(positions):
            result = core.orders.execute_trade(TradeProposal(
                symbol="BTC/USD", side="buy", size_usd=Decimal("430"), order_type="market",
                stop_loss=Decimal("41000"), take_profit=Decimal("48000")))
            for _ in range(5):
                core.poll_once()
            position = core.positions.get_position(result.position_id)
            protected += position is not None and position.state == "PROTECTED"
        rejected = [o for o in core.store.load_orders() if o.state == "REJECTED"]
        adds = sum(1 for c in core.paper.calls if c.method == "AddOrder")
        print(f"{positions} spot positions, {protected} protected; AddOrder calls {adds}; "
              f"REJECTED rows {len(rejected)}")
        print(f"trading-counter points: {sum(charges):g} in all, {sum(charges) / positions:.2f} per position")
        core.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=5)
    run(parser.parse_args().positions)


if __name__ == "__main__":
    main()
