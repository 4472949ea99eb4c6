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
