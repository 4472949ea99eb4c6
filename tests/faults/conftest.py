"""Fixtures for the fault matrix: a paper-exchange core on a fake clock, the bus collected, the invariants.

The test folders are not packages (pytest runs with --import-mode=importlib), so the
shared checks in invariants.py are loaded from their file once and handed out by a
session fixture; tests/properties loads the same file the same way.
"""
from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from triplegain_fsm.core import ExecutionCore
from triplegain_fsm.kraken import retry
from triplegain_fsm.testing import FakeClock, paper_core

INVARIANTS = "triplegain_fsm_test_invariants"


def load_invariants() -> ModuleType:
    if INVARIANTS not in sys.modules:
        spec = importlib.util.spec_from_file_location(INVARIANTS, Path(__file__).with_name("invariants.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[INVARIANTS] = module
        spec.loader.exec_module(module)
    return sys.modules[INVARIANTS]


@pytest.fixture(scope="session")
def inv() -> ModuleType:
    return load_invariants()


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

    def build(account: str = "margin", price: str | None = "43000", **sections: Any) -> ExecutionCore:
        core = paper_core(tmp_path / f"core{len(cores)}.sqlite", account, price, clock, **sections)
        cores.append(core)
        return core

    yield build
    for core in cores:
        core.close()


@pytest.fixture
def collect():
    """collect(core) -> (events, alerts): every message the core publishes on its two topics."""

    def attach(core: ExecutionCore) -> tuple[list[Any], list[Any]]:
        events: list[Any] = []
        alerts: list[Any] = []
        core.bus.subscribe("execution", events.append)
        core.bus.subscribe("risk_alerts", alerts.append)
        return events, alerts

    return attach
