"""Fixtures for driving the whole core through the paper exchange (the exchange boundary)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from triplegain_fsm.config import Config
from triplegain_fsm.core import ExecutionCore
from triplegain_fsm.kraken import retry


class FakeClock:
    """The core's clock (backoffs, price freshness); starts at the real time so stored stamps agree."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


@pytest.fixture(autouse=True)
def _no_client_waits() -> Iterator[None]:
    retry.set_testing(True)
    yield
    retry.set_testing(False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_core(tmp_path, clock):
    cores: list[ExecutionCore] = []

    def build(account: str = "spot", price: str | None = "43000", **sections: Any) -> ExecutionCore:
        data: dict[str, Any] = {
            "storage": {"path": str(tmp_path / f"core{len(cores)}.sqlite")},
            "exchange": {"account": account},
            "orders": {"poll_interval_seconds": 0.01},
            "paper": {"balances": {"ZUSD": "1000000"}, "prices": {"BTC/USD": "43000", "ETH/USD": "2300"}},
        }
        if account == "margin":
            data["symbols"] = {"BTC/USD": {"max_leverage": 5}, "ETH/USD": {"max_leverage": 5}}
        config = Config.from_dict(_merge(data, sections))
        core = ExecutionCore.from_settings(config, clock=clock)
        if price is not None:
            core.price_tick("BTC/USD", Decimal(price))
        cores.append(core)
        return core

    yield build
    for core in cores:
        core.close()


@pytest.fixture
def collect():
    """Subscribe a list to a core's topics: collect(core) -> (events, alerts)."""

    def attach(core: ExecutionCore) -> tuple[list[Any], list[Any]]:
        events: list[Any] = []
        alerts: list[Any] = []
        core.bus.subscribe("execution", events.append)
        core.bus.subscribe("risk_alerts", alerts.append)
        return events, alerts

    return attach
