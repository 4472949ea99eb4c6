"""Fixtures for driving the whole core through the paper exchange (the exchange boundary)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from triplegain_fsm.core import ExecutionCore
from triplegain_fsm.kraken import retry
from triplegain_fsm.testing import FakeClock, paper_core


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
        core = paper_core(tmp_path / f"core{len(cores)}.sqlite", account, price, clock, **sections)
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
