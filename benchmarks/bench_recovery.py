"""Restart figures: how long a new process needs to pick up a big store (prints; never asserts).

    python benchmarks/bench_recovery.py

A paper exchange (margin account) holds 500 open BTC/USD positions, each with a
resting stop-loss and take-profit: 1,000 open orders, placed through the REST API.
Stores of 10,000 and 100,000 orders are then written directly (one transaction of
`save_order`/`save_position` rows): the 500 open positions with their filled entry
and their two open legs, the rest final orders of closed positions (entry filled,
stop-loss filled, take-profit cancelled). For each store a NEW PROCESS builds a
core on it (live mode, talking HTTP to the exchange served on a loopback port)
and syncs once, as a bot does after a crash. A fresh process each time matters:
the order and position machines are process-wide, and a closed core leaves its
models attached to them, which slows every later restore in the same process.

1. constructing ExecutionCore: opening the store and restoring every unfinished
   order and open position into its machine (no HTTP);
2. the first sync_with_exchange(): QueryOrders for every open order (20 per call),
   OpenOrders for strangers, OpenPositions for the margin exposure;
3. the API calls that recovery made, counted at the exchange, and the time Kraken's
   REST counter would make them take (starter tier: 15 calls, then one per ~3 s),
   as the client's pacer computed it (the benchmark does not sleep it).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from triplegain_fsm.config import Config  # noqa: E402
from triplegain_fsm.core import ExecutionCore  # noqa: E402
from triplegain_fsm.enums import LegLocation, OrderRole, OrderSide, OrderType  # noqa: E402
from triplegain_fsm.kraken.client import KrakenClient  # noqa: E402
from triplegain_fsm.kraken.order_request import OrderRequest  # noqa: E402
from triplegain_fsm.models import Order, Position  # noqa: E402
from triplegain_fsm.paper import KRAKEN_BASE_URL, PAPER_API_KEY, PAPER_API_SECRET, PaperExchange  # noqa: E402
from triplegain_fsm.paper.server import serve  # noqa: E402
from triplegain_fsm.store import Store  # noqa: E402

SYMBOL, PAIR = "BTC/USD", "XBTUSD"
OPEN_POSITIONS = 500                        # x 2 legs = 1,000 open orders
SIZE = Decimal("0.01")
ENTRY, STOP, TARGET = Decimal("43000"), Decimal("41000"), Decimal("48000")
LEVERAGE = 2
STORE_SIZES = (10_000, 100_000)


def no_wait(seconds: float) -> None:
    """The benchmark never sleeps for the pacer (see PacerLog for what it asked for)."""


class PacerLog:
    """A client `sleep` that records what the pacer asked for instead of sleeping.

    No real time passes, so each wait is measured from the start of the burst: the
    largest one is when the last call could have gone out at Kraken."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client_for(paper: PaperExchange, sleep=no_wait) -> KrakenClient:
    client = KrakenClient(paper.api_key, paper.api_secret, KRAKEN_BASE_URL, sleep=sleep)
    paper.mount(client.session, KRAKEN_BASE_URL)
    return client


def seed_exchange() -> tuple[PaperExchange, list[dict[str, str]]]:
    """500 margin longs at the exchange, each with a resting stop-loss and take-profit."""
    paper = PaperExchange(balances={"ZUSD": "100000000"}, prices={SYMBOL: str(ENTRY)}, account="margin", seed=1)
    client = client_for(paper)
    opened = []
    for _ in range(OPEN_POSITIONS):
        ids = {role: str(uuid.uuid4()) for role in ("entry", "stop_loss", "take_profit")}
        entry = client.add_order(OrderRequest(pair=PAIR, side=OrderSide.BUY, order_type=OrderType.MARKET,
                                              volume=SIZE, cl_ord_id=ids["entry"], leverage=LEVERAGE))
        legs = {}
        for role, kind, trigger in (("stop_loss", OrderType.STOP_LOSS, STOP),
                                    ("take_profit", OrderType.TAKE_PROFIT, TARGET)):
            ack = client.add_order(OrderRequest(pair=PAIR, side=OrderSide.SELL, order_type=kind, volume=SIZE,
                                                cl_ord_id=ids[role], trigger_price=trigger, leverage=LEVERAGE,
                                                reduce_only=True))
            legs[role] = ack.txid
        opened.append({"entry_txid": entry.txid, "entry_cl": ids["entry"],
                       "stop_loss_txid": legs["stop_loss"], "stop_loss_cl": ids["stop_loss"],
                       "take_profit_txid": legs["take_profit"], "take_profit_cl": ids["take_profit"]})
    assert len(paper.open_orders()) == 2 * OPEN_POSITIONS
    return paper, opened


def _fake_txid(n: int) -> str:
    digits = f"{n:016d}"
    return f"OB{digits[:4]}-{digits[4:9]}-{digits[9:15]}"


def _filled(order: Order, price: Decimal) -> Order:
    order.filled_size, order.filled_cost = order.size, order.size * price
    order.average_fill_price, order.fee_currency = price, "ZUSD"
    order.fee_amount = order.size * price * Decimal("0.0026")
    order.state = "FILLED"
    return order


def _leg(role: OrderRole, position: Position, size: Decimal) -> Order:
    kind = OrderType.STOP_LOSS if role is OrderRole.STOP_LOSS else OrderType.TAKE_PROFIT
    return Order(symbol=SYMBOL, side=OrderSide.SELL, order_type=kind, size=size, role=role,
                 stop_price=STOP if role is OrderRole.STOP_LOSS else TARGET, leverage=LEVERAGE, reduce_only=True,
                 position_id=position.id, parent_id=position.entry_order_id)


def build_store(path: Path, total_orders: int, opened: list[dict[str, str]]) -> tuple[int, int]:
    """Write `total_orders` orders and their positions; returns (positions, open orders) written."""
    store = Store(path)
    positions = orders = open_orders = 0
    fee = SIZE * ENTRY * Decimal("0.0026")
    with store.transaction():
        for row in opened:  # the open book: PROTECTED positions whose legs rest at the exchange
            entry = _filled(Order(symbol=SYMBOL, side=OrderSide.BUY, order_type=OrderType.MARKET, size=SIZE,
                                  leverage=LEVERAGE, client_order_id=row["entry_cl"], external_id=row["entry_txid"]),
                            ENTRY)
            position = Position(symbol=SYMBOL, side=OrderSide.BUY, leverage=LEVERAGE, size=SIZE, entry_price=ENTRY,
                                stop_loss=STOP, take_profit=TARGET, entry_order_id=entry.id, entry_size=SIZE,
                                stop_loss_location=LegLocation.EXCHANGE, take_profit_location=LegLocation.EXCHANGE,
                                stop_loss_covered=SIZE, take_profit_covered=SIZE, cash_flow=-SIZE * ENTRY,
                                total_fees=fee, state="PROTECTED")
            entry.position_id = position.id
            stop, target = _leg(OrderRole.STOP_LOSS, position, SIZE), _leg(OrderRole.TAKE_PROFIT, position, SIZE)
            for leg, name in ((stop, "stop_loss"), (target, "take_profit")):
                leg.client_order_id, leg.external_id, leg.state = row[f"{name}_cl"], row[f"{name}_txid"], "OPEN"
            stop.sibling_id, target.sibling_id = target.id, stop.id
            position.stop_loss_order_id, position.take_profit_order_id = stop.id, target.id
            for order in (entry, stop, target):
                store.save_order(order)
            store.save_position(position)
            positions, orders, open_orders = positions + 1, orders + 3, open_orders + 2
        n = 0
        while orders < total_orders:  # history: closed positions (entry filled, stop filled, target cancelled)
            entry = _filled(Order(symbol=SYMBOL, side=OrderSide.BUY, order_type=OrderType.MARKET, size=SIZE,
                                  leverage=LEVERAGE, external_id=_fake_txid(n := n + 1)), ENTRY)
            position = Position(symbol=SYMBOL, side=OrderSide.BUY, leverage=LEVERAGE, size=Decimal(0),
                                entry_price=ENTRY, stop_loss=STOP, take_profit=TARGET, entry_order_id=entry.id,
                                entry_size=SIZE, exit_size=SIZE, realized_pnl=(STOP - ENTRY) * SIZE - 2 * fee,
                                total_fees=2 * fee, close_reason="stop_loss filled", state="CLOSED")
            entry.position_id = position.id
            family = [entry]
            if total_orders - orders >= 3:
                stop = _filled(_leg(OrderRole.STOP_LOSS, position, SIZE), STOP)
                target = _leg(OrderRole.TAKE_PROFIT, position, SIZE)
                target.state = "CANCELLED"
                stop.external_id, target.external_id = _fake_txid(n := n + 1), _fake_txid(n := n + 1)
                family += [stop, target]
            for order in family:
                store.save_order(order)
            store.save_position(position)
            positions, orders = positions + 1, orders + len(family)
    store.close()
    return positions, open_orders


def restart(url: str, path: str) -> None:
    """The measured side, run in a fresh process (`--restart URL STORE`): construct, then sync once."""
    config = Config.from_dict({"exchange": {"account": "margin", "mode": "live", "base_url": url},
                               "storage": {"path": path}, "symbols": {SYMBOL: {"max_leverage": 5}}})
    pacer = PacerLog()
    # starter tier: the pacer mirrors Kraken's slowest REST counter; its waits are recorded, not slept
    client = KrakenClient(PAPER_API_KEY, PAPER_API_SECRET, url, sleep=pacer)
    start = time.perf_counter()
    core = ExecutionCore(config, client, Store(path))
    restored = time.perf_counter() - start
    start = time.perf_counter()
    report = core.sync_with_exchange()
    synced = time.perf_counter() - start
    print(json.dumps({
        "restored": restored, "synced": synced, "open_orders": len(core.orders.get_open_orders()),
        "open_positions": len(core.positions.get_open_positions()), "checked": report.orders_checked,
        "updated": report.orders_updated, "drift": len(report.position_drift),
        "strangers": len(report.unknown_exchange_orders), "reprotected": report.positions_reprotected,
        "errors": len(report.errors), "pacer_wait": max(pacer.waits, default=0.0),
    }))
    core.close()


def measure(paper: PaperExchange, url: str, opened: list[dict[str, str]], total_orders: int, workdir: Path) -> None:
    path = workdir / f"restart-{total_orders}.sqlite"
    start = time.perf_counter()
    positions, open_orders = build_store(path, total_orders, opened)
    built = time.perf_counter() - start
    paper.calls.clear()
    start = time.perf_counter()
    child = subprocess.run([sys.executable, __file__, "--restart", url, str(path)], capture_output=True, text=True,
                           timeout=600, check=True)
    wall = time.perf_counter() - start
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    calls = Counter(call.method for call in paper.calls)
    print(f"\n{total_orders:,} orders in the store ({open_orders:,} open), {positions:,} positions "
          f"({len(opened):,} open); store written in {built:.1f} s")
    print(f"  construct ExecutionCore (restore): {figures['restored'] * 1000:7.1f} ms -> "
          f"{figures['open_orders']:,} open orders, {figures['open_positions']:,} open positions in their machines")
    print(f"  first sync_with_exchange():        {figures['synced'] * 1000:7.1f} ms (checked {figures['checked']:,} "
          f"orders, updated {figures['updated']}, drift {figures['drift']}, strangers {figures['strangers']}, "
          f"re-protected {figures['reprotected']}, errors {figures['errors']})")
    print(f"  the whole new process, interpreter start and imports included: {wall:.2f} s")
    print(f"  API calls during recovery: {sum(calls.values())} "
          f"({', '.join(f'{method} {n}' for method, n in sorted(calls.items()))})")
    print(f"  at Kraken, the starter tier's REST counter would stretch these calls over "
          f"~{figures['pacer_wait']:.0f} s (the pacer's computed wait; not slept here)")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--restart":
        restart(sys.argv[2], sys.argv[3])
        return
    print(__doc__.split("\n\n")[0])
    start = time.perf_counter()
    paper, opened = seed_exchange()
    print(f"\nexchange seeded: {len(opened)} margin positions, {len(paper.open_orders()):,} open orders "
          f"({len(paper.calls):,} API calls, {time.perf_counter() - start:.1f} s)")
    with serve(paper) as server, tempfile.TemporaryDirectory() as tmp:
        for total in STORE_SIZES:
            measure(paper, server.url, opened, total, Path(tmp))
    print(f"\nwhole benchmark: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
