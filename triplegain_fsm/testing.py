"""Helpers for testing a bot (or this core) against the in-process paper exchange.

    from triplegain_fsm.testing import FakeClock, paper_core
    core = paper_core("/tmp/t.sqlite", account="margin", clock=FakeClock())

No network, no key: the core trades on a paper exchange mounted on its client.
"""
from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from triplegain_fsm.config import Config
from triplegain_fsm.core import ExecutionCore


class FakeClock:
    """A clock the test moves by hand (backoffs, price freshness); starts at the real time so stored
    timestamps and the clock agree."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge config sections (extra wins)."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def paper_config(store_path: str | Path, account: str = "spot", **sections: Any) -> Config:
    data: dict[str, Any] = {
        "storage": {"path": str(store_path)},
        "exchange": {"account": account},
        "orders": {"poll_interval_seconds": 0.01},
        "paper": {"balances": {"ZUSD": "1000000"}, "prices": {"BTC/USD": "43000", "ETH/USD": "2300"}},
    }
    if account == "margin":
        data["symbols"] = {"BTC/USD": {"max_leverage": 5}, "ETH/USD": {"max_leverage": 5}}
    return Config.from_dict(merge(data, sections))


def paper_core(store_path: str | Path, account: str = "spot", price: str | None = "43000",
               clock: Any = None, **sections: Any) -> ExecutionCore:
    """A core on a fresh paper exchange; `price` is fed as the first BTC/USD tick (None: no tick)."""
    core = ExecutionCore.from_settings(paper_config(store_path, account, **sections), clock=clock or time.time)
    if price is not None:
        core.price_tick("BTC/USD", Decimal(price))
    return core


def paced_paper_core(store_path: str | Path, tier: str = "starter", account: str = "margin",
                     **sections: Any) -> ExecutionCore:
    """A core whose client paces for real (it sleeps) against a paper exchange that enforces Kraken's
    rate counters of `tier`: what a burst of calls costs in wall time, as it would at Kraken."""
    from triplegain_fsm.kraken.client import KrakenClient
    from triplegain_fsm.paper import paper_from_config
    from triplegain_fsm.store import Store

    config = paper_config(store_path, account, exchange={"account": account, "tier": tier}, **sections)
    paper = paper_from_config(config, rate_limit_tier=tier)
    client = KrakenClient(paper.api_key, paper.api_secret, config.exchange.base_url, tier=tier)
    paper.mount(client.session, config.exchange.base_url)
    core = ExecutionCore(config, client, Store(config.storage.path), paper=paper)
    core.price_tick("BTC/USD", Decimal("43000"))
    return core


@attrs.define
class BurstResult:
    calls: int
    seconds: float                   # wall time until the last caller returned
    amends_per_leg: dict[str, int]   # AmendOrder calls the exchange acted on, per protective order
    errors: list[str]                # exceptions callers saw (a refused level, a timeout)


def stop_move_burst(core: ExecutionCore, position_id: str, threads: int = 8, calls: int = 15,
                    seed: int = 0) -> BurstResult:
    """`threads` callers each make `calls` stop moves on one position, as fast as they can: moves
    with `modify_position`, trailing switched on and off, and rising price ticks that ratchet it."""
    import random
    import threading as _threading

    position = core.positions.get_position(position_id)
    assert position is not None
    before = {c.params.get("txid") for c in core.paper.calls.of("AmendOrder")}
    errors: list[str] = []
    start_line = _threading.Barrier(threads)
    ticks = iter(range(1, threads * calls + 1))   # a rising market: new highs, never the stop

    def caller(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        start_line.wait()
        for _ in range(calls):
            choice = rng.random()
            try:
                if choice < 0.6:
                    core.positions.modify_position(position_id, stop_loss=Decimal(rng.randrange(41000, 42500)))
                elif choice < 0.75:
                    core.positions.enable_trailing_stop_for_position(position_id, distance_pct=2, activation_pct=0)
                else:
                    core.price_tick("BTC/USD", Decimal(43000 + 10 * next(ticks)))
            except Exception as exc:  # what a caller saw; the burst goes on
                errors.append(f"{type(exc).__name__}: {exc}")

    workers = [_threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - began
    per_leg: dict[str, int] = {}
    for call in core.paper.calls.of("AmendOrder"):
        txid = call.params.get("txid")
        if call.acted and not call.error and txid not in before:
            order = core.orders.order_by_txid(txid)
            name = order.role.value if order is not None else str(txid)
            per_leg[name] = per_leg.get(name, 0) + 1
    return BurstResult(calls=threads * calls, seconds=seconds, amends_per_leg=per_leg, errors=errors)
